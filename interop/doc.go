// Package interop holds connec's outside checks: MCP clients and tools that
// connec's authors did not write, run against the real binary by `make test`.
//
// The tests (package interop_test) build bin/connec once, give it one
// throwaway PostgreSQL database and a key file, and drive it the way hosts do:
// the official TypeScript SDK v1 client (@modelcontextprotocol/sdk), the v2
// client (@modelcontextprotocol/client) and the official Go SDK client
// (github.com/modelcontextprotocol/go-sdk) each run one user story over stdio
// (the client spawns `connec serve --stdio`), SSE (/sse) and streamable HTTP
// (/mcp); the MCP Inspector CLI must see the same tools as the raw protocol;
// and the official conformance suite (@modelcontextprotocol/conformance) runs
// against `connec serve --http` with an explained expected-failures baseline.
//
// The npm packages are pinned in package.json/package-lock.json and installed
// by `make test` (npm ci in this directory). With CONNEC_INTEROP_NPM=1, which
// make test sets, missing packages fail the tests instead of skipping them.
package interop
