// Package bench measures connec against baselines measured in the same run,
// on the same machine, and renders the figures as BENCHMARKS.md
// (cmd/connec-bench, `make bench-report`).
//
// Every figure that has a natural baseline is reported next to it and as a
// ratio, so the report says how much connec adds rather than how fast one
// machine happened to be:
//
//   - connector.op.invoke of echo.read against a bare mcp-go server with an
//     equivalent echo tool, over streamable HTTP, SSE and stdio, at several
//     concurrencies. Both servers run as separate processes (connec as
//     `connec serve`, the baseline as this binary re-executed in role
//     RoleBare); the load generator is this process, using mcp-go's clients
//     over loopback TCP (HTTP) or pipes (stdio). CPU time per call is
//     accounted per process group (server, PostgreSQL, load generator).
//   - PostgreSQL's own durable single-row commit (INSERT + COMMIT,
//     synchronous_commit and fsync on): the floor for anything audited.
//   - the commit's database cost: what PostgreSQL does per governed call
//     (WAL inserted, transactions that wrote, statements from
//     pg_stat_statements, PostgreSQL's CPU), counted while connec serves
//     calls, against the same counts per commit of the floor run by
//     pgbench at as many clients (commit.go, pgbench.go).
//   - one, two and three `connec serve --http` processes on one database,
//     loaded together, with CPU per call (servers.go).
//
// Config.ConnecBefore names an earlier connec binary measured beside
// Config.Connec in the same run: each binary sets up and migrates its own
// database on the cluster through its own command line and MCP tools
// (binfixture.go), and its turns alternate with the others' in every cell,
// so the report has before and after figures.
//   - policy decisions against plain Casbin evaluating the whole policy;
//     commit.Writer.Record against single-row durable commits from as many
//     callers; credential seal against the bare AEAD layer, credential open
//     against an executor call without a credential; key rotation against
//     the same database statements without the cryptography; a rule change
//     seen by a second server against the change on the first; peak RSS and
//     cold start against the bare server.
//
// Run measures; Report.Markdown renders. RunChildIfRequested must be called
// first thing by any binary used as a child (the connec-bench command and
// this package's tests).
package bench
