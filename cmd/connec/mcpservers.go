package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/connec/connec/connectors/mcpserver"
	"github.com/connec/connec/internal/app"
	"github.com/connec/connec/internal/platform/nodejs"
)

// mcpCmd manages the MCP servers connec governs as connector types. Their
// records live in $CONNEC_DATA_DIR/mcp; a running connec loads them at
// start.
func mcpCmd(f *flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mcp",
		Short: "Add, approve, list and remove MCP servers governed as connector types",
		Long: "An MCP server (remote over streamable HTTP, or local: an npm package or a program run on stdio in a sandbox) becomes connector type mcp-<name>: each of its tools, as reviewed when added, an\n" +
			"operation <name>.<tool> (read-kind only when the tool says readOnlyHint: true; --read/--send override), its\n" +
			"definition pinned. A tool the server changes later is refused until you approve it (connec mcp approve); a tool\n" +
			"it adds stays hidden until then. Instances of the type hold their owner's credential, which connec attaches to\n" +
			"every request to the server. Restart connec after a change.",
	}
	cmd.AddCommand(mcpAddCmd(f), mcpApproveCmd(f), mcpListCmd(f), mcpRemoveCmd(f))
	return cmd
}

// discoverFlags are what add and approve share: how to reach the server to
// list its tools (a header for a server that wants a credential to list;
// it is not kept) and the operator's kind overrides.
type discoverFlags struct {
	headers           []string
	readTools, sendTo []string
	yes               bool
}

func (d *discoverFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&d.headers, "header", nil, `a request header for listing the tools, e.g. "Authorization: Bearer $TOKEN" (not kept)`)
	fl.StringSliceVar(&d.readTools, "read", nil, "make these tools read-kind operations (comma-separated tool names)")
	fl.StringSliceVar(&d.sendTo, "send", nil, "make these tools send-kind operations (comma-separated tool names)")
	fl.BoolVarP(&d.yes, "yes", "y", false, "do it without asking (after printing the review)")
}

// discover lists the server's tools and applies the kind overrides.
func (d *discoverFlags) discover(ctx context.Context, remote mcpserver.Record) (mcpserver.Record, error) {
	headers := map[string]string{}
	for _, h := range d.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return mcpserver.Record{}, fmt.Errorf("--header %q: want \"Name: value\"", strings.SplitN(h, ":", 2)[0])
		}
		headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rec, err := mcpserver.DiscoverRemote(ctx, remote, headers, &http.Client{Timeout: 30 * time.Second})
	if err != nil {
		return mcpserver.Record{}, err
	}
	return rec, d.override(&rec)
}

// override applies the operator's kind overrides.
func (d *discoverFlags) override(rec *mcpserver.Record) error {
	return mcpserver.Classify(rec, d.readTools, d.sendTo)
}

// localFlags say how a local server is started.
type localFlags struct {
	command, bin, credEnv string
	args, env, egress     []string
}

func (l *localFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&l.command, "command", "", "the absolute path of a program speaking MCP on stdio (run in a sandbox)")
	fl.StringVar(&l.bin, "bin", "", "the package's program, when it has several")
	fl.StringArrayVar(&l.args, "arg", nil, "an argument for the local server (repeatable; not secret: others may read argv)")
	fl.StringArrayVar(&l.env, "env", nil, "NAME=VALUE: a variable the local server needs (repeatable; not secret: credentials belong in instances)")
	fl.StringVar(&l.credEnv, "credential-env", "", "the variable an instance's credential (bearer token or header value) reaches the local server in")
	fl.StringArrayVar(&l.egress, "egress-host", nil, "a host or host:port pattern the local server may reach through connec's egress proxy, during calls only (repeatable; \"*\" lets each instance name its own; default: no network)")
}

func (l *localFlags) spec() (mcpserver.StdioSpec, error) {
	s := mcpserver.StdioSpec{Command: l.command, Args: l.args, CredentialEnv: l.credEnv, EgressHosts: l.egress}
	if err := mcpserver.ValidEgressHosts(l.egress); err != nil {
		return s, fmt.Errorf("--egress-host: %w", err)
	}
	for _, kv := range l.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return s, fmt.Errorf("--env %q: want NAME=VALUE", strings.SplitN(kv, "=", 2)[0])
		}
		if s.Env == nil {
			s.Env = map[string]string{}
		}
		s.Env[k] = v
	}
	return s, nil
}

func mcpAddCmd(f *flags) *cobra.Command {
	var d discoverFlags
	var l localFlags
	var url string
	var sse bool
	cmd := &cobra.Command{
		Use:   "add NAME (--url URL [--sse] | NPM-PACKAGE@VERSION | --command PATH)",
		Short: "Add an MCP server as connector type mcp-NAME after showing its tools for review",
		Example: `  connec mcp add docs --url https://mcp.example.com/mcp --header "Authorization: Bearer $TOKEN"
  connec mcp add memory @modelcontextprotocol/server-memory@2026.8.31 --env MEMORY_FILE_PATH=/state/memory.jsonl
  connec mcp add tickets --command /opt/tickets/mcp-server --credential-env TICKETS_TOKEN
  connec mcp add gh some-github-mcp@1.2.3 --credential-env GITHUB_TOKEN --egress-host api.github.com:443`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			npmSpec := ""
			if len(args) == 2 {
				npmSpec = args[1]
			}
			n := 0
			for _, given := range []bool{url != "", npmSpec != "", l.command != ""} {
				if given {
					n++
				}
			}
			if n != 1 {
				return errors.New("name one server: --url URL (streamable HTTP), an npm package NPM-PACKAGE@VERSION, or --command PATH")
			}
			if sse && url == "" {
				return errors.New("--sse is for a server reached by URL")
			}
			if url != "" && (len(l.args) > 0 || len(l.env) > 0 || l.credEnv != "" || l.bin != "" || len(l.egress) > 0) {
				return errors.New("--arg, --env, --bin, --credential-env and --egress-host are for local servers (an npm package or --command)")
			}
			local, err := l.spec()
			if err != nil {
				return err
			}
			// The database first: an addition that cannot be audited is not
			// made.
			return withApp(cmd, f, func(ctx context.Context, a *app.App) (err error) {
				name, dir := args[0], mcpserver.Dir(f.cfg.DataDir)
				var rec mcpserver.Record
				switch {
				case url != "":
					transport := ""
					if sse {
						transport = mcpserver.TransportSSE
					}
					rec, err = d.discover(ctx, mcpserver.Record{Name: name, URL: url, Transport: transport})
				default:
					if npmSpec != "" {
						if err := mcpserver.ValidName(name); err != nil {
							return err
						}
						if _, err := mcpserver.Read(dir, name); err == nil {
							return fmt.Errorf("an MCP server called %s was added already: remove it first", name)
						}
						out := cmd.ErrOrStderr()
						fmt.Fprintf(out, "installing %s (its scripts do not run)…\n", npmSpec)
						if err := mcpserver.InstallPackage(ctx, dir, name, npmSpec, l.bin, nodejs.NPM{Output: out}, &local); err != nil {
							return err
						}
						defer func() {
							if err != nil { // not added: nothing stays installed
								_ = os.RemoveAll(mcpserver.PackageDir(dir, name))
							}
						}()
					}
					rec, err = d.discoverLocal(ctx, dir, name, local)
				}
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				printMCPReview(out, rec)
				if !d.yes {
					if ok, err := ocConfirm(cmd.InOrStdin(), out, "Add it? [y/N] "); err != nil || !ok {
						return errors.Join(err, errors.New("not added"))
					}
				}
				if err := a.AddMCPServer(ctx, rec); err != nil {
					return err
				}
				fmt.Fprintf(out, "added %s as connector type %s; every connec server on this database loads it now\n", rec.Name, mcpserver.TypeName(rec.Name))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "the server's streamable HTTP endpoint, e.g. https://mcp.example.com/mcp")
	cmd.Flags().BoolVar(&sse, "sse", false, "the URL is the event stream of the legacy HTTP+SSE transport (e.g. https://mcp.example.com/sse)")
	d.register(cmd)
	l.register(cmd)
	return cmd
}

// discoverLocal starts the local server in its sandbox to list its tools
// and applies the kind overrides.
func (d *discoverFlags) discoverLocal(ctx context.Context, dir, name string, s mcpserver.StdioSpec) (mcpserver.Record, error) {
	if len(d.headers) > 0 {
		return mcpserver.Record{}, errors.New("--header is for servers reached by URL")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rec, err := mcpserver.DiscoverLocal(ctx, dir, name, s)
	if err != nil {
		return mcpserver.Record{}, err
	}
	return rec, d.override(&rec)
}

func mcpApproveCmd(f *flags) *cobra.Command {
	var d discoverFlags
	cmd := &cobra.Command{
		Use:   "approve NAME",
		Short: "Review what an added MCP server changed (tools changed, added, gone) and approve its tools as they are now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				old, err := mcpserver.Read(mcpserver.Dir(f.cfg.DataDir), args[0])
				if err != nil {
					return err
				}
				var rec mcpserver.Record
				if old.Stdio != nil {
					rec, err = d.discoverLocal(ctx, mcpserver.Dir(f.cfg.DataDir), old.Name, *old.Stdio)
				} else {
					rec, err = d.discover(ctx, mcpserver.Record{Name: old.Name, URL: old.URL, Transport: old.Transport})
				}
				if err != nil {
					return err
				}
				rec.AddedAt = old.AddedAt
				out := cmd.OutOrStdout()
				changes := mcpserver.Changes(old, rec)
				fmt.Fprintf(out, "Changes since review: %s\n\n", changes)
				printMCPReview(out, rec)
				if !d.yes {
					if ok, err := ocConfirm(cmd.InOrStdin(), out, "Approve it? [y/N] "); err != nil || !ok {
						return errors.Join(err, errors.New("not approved"))
					}
				}
				if err := a.ApproveMCPServer(ctx, rec, changes); err != nil {
					return err
				}
				fmt.Fprintf(out, "approved %s; every connec server on this database loads it now\n", rec.Name)
				return nil
			})
		},
	}
	d.register(cmd)
	return cmd
}

// printMCPReview shows what an operator approves: the server, its type and
// every tool's operation, kind and input schema.
func printMCPReview(w io.Writer, rec mcpserver.Record) {
	fmt.Fprintf(w, "MCP server      %s\n", rec.Name)
	if s := rec.Stdio; s != nil {
		net := "no network"
		if len(s.EgressHosts) > 0 {
			net = "network only to " + strings.Join(s.EgressHosts, ", ") + ", during calls, through connec's egress proxy"
		}
		fmt.Fprintf(w, "Runs            %s, locally on stdio in a sandbox (%s)\n", s.Source(), net)
		if s.Integrity != "" {
			fmt.Fprintf(w, "Integrity       %s\n", s.Integrity)
		}
		if s.CredentialEnv != "" {
			fmt.Fprintf(w, "Credential      an instance's credential reaches it in $%s\n", s.CredentialEnv)
		}
	} else {
		fmt.Fprintf(w, "URL             %s\n", rec.Where())
	}
	fmt.Fprintf(w, "Connector type  %s\nTools           %d\n\n", mcpserver.TypeName(rec.Name), len(rec.Tools))
	for _, t := range rec.Tools {
		fmt.Fprintf(w, "%s  (%s, tool %q)\n  %s\n%s\n\n", t.Op, t.Kind, t.Tool, ocOneLine(t.Description, 200), ocIndentJSON(t.Input))
	}
	if rec.Resources {
		fmt.Fprintf(w, "%s.resources.list, %s.resources.templates, %s.resources.read  (read: its resources)\n\n", rec.Name, rec.Name, rec.Name)
	}
	if rec.Completions {
		fmt.Fprintf(w, "%s.complete  (read: its completions of prompt and template arguments)\n\n", rec.Name)
	}
	for _, p := range rec.Prompts {
		fmt.Fprintf(w, "%s  (read, prompt %q)\n  %s\n\n", p.Op, p.Prompt, ocOneLine(p.Description, 200))
	}
	for _, s := range rec.Skipped {
		fmt.Fprintf(w, "not served: tool %q: %s\n", s.Tool, ocOneLine(s.Reason, 300))
	}
}

func mcpListCmd(f *flags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the added MCP servers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			recs, err := mcpserver.List(mcpserver.Dir(f.cfg.DataDir))
			tw := table(cmd.OutOrStdout(), "NAME\tTYPE\tSERVER\tTOOLS\tADDED")
			for _, r := range recs {
				var tools []string
				for _, t := range r.Tools {
					tools = append(tools, t.Tool)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, mcpserver.TypeName(r.Name), r.Where(), ocOrDash(strings.Join(tools, ",")),
					r.AddedAt.Format(time.RFC3339))
			}
			if ferr := tw.Flush(); ferr != nil {
				return ferr
			}
			return err
		},
	}
}

func mcpRemoveCmd(f *flags) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove an added MCP server; restart connec afterwards",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				if err := a.RemoveMCPServer(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s; every connec server on this database unloads it now\n", args[0])
				return nil
			})
		},
	}
}
