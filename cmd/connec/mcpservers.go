package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/mcpserver"
	"github.com/connec/connec/internal/app"
)

// mcpCmd manages the MCP servers connec governs as connector types. Their
// records live in $CONNEC_DATA_DIR/mcp; a running connec loads them at
// start.
func mcpCmd(f *flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mcp",
		Short: "Add, approve, list and remove MCP servers governed as connector types",
		Long: "An MCP server (streamable HTTP) becomes connector type mcp-<name>: each of its tools, as reviewed when added, an\n" +
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
func (d *discoverFlags) discover(ctx context.Context, name, url string) (mcpserver.Record, error) {
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
	rec, err := mcpserver.Discover(ctx, name, url, headers, &http.Client{Timeout: 30 * time.Second})
	if err != nil {
		return mcpserver.Record{}, err
	}
	for i, t := range rec.Tools {
		switch {
		case slices.Contains(d.readTools, t.Tool) && slices.Contains(d.sendTo, t.Tool):
			return mcpserver.Record{}, fmt.Errorf("tool %s is given both --read and --send", t.Tool)
		case slices.Contains(d.readTools, t.Tool):
			rec.Tools[i].Kind = connectors.KindRead
		case slices.Contains(d.sendTo, t.Tool):
			rec.Tools[i].Kind = connectors.KindSend
		}
	}
	return rec, nil
}

func mcpAddCmd(f *flags) *cobra.Command {
	var d discoverFlags
	var url string
	cmd := &cobra.Command{
		Use:     "add NAME --url URL",
		Short:   "Add an MCP server as connector type mcp-NAME after showing its tools for review",
		Example: `  connec mcp add docs --url https://mcp.example.com/mcp --header "Authorization: Bearer $TOKEN"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if url == "" {
				return errors.New("--url is required: the server's streamable HTTP endpoint")
			}
			// The database first: an addition that cannot be audited is not
			// made.
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				rec, err := d.discover(ctx, args[0], url)
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
				fmt.Fprintf(out, "added %s as connector type %s; restart connec to load it\n", rec.Name, mcpserver.TypeName(rec.Name))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "the server's streamable HTTP endpoint, e.g. https://mcp.example.com/mcp")
	d.register(cmd)
	return cmd
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
				rec, err := d.discover(ctx, old.Name, old.URL)
				if err != nil {
					return err
				}
				rec.AddedAt = old.AddedAt
				out := cmd.OutOrStdout()
				changes := mcpChanges(old, rec)
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
				fmt.Fprintf(out, "approved %s; restart connec to load it\n", rec.Name)
				return nil
			})
		},
	}
	d.register(cmd)
	return cmd
}

// mcpChanges says which tools changed, came or went between two reviews.
func mcpChanges(old, cur mcpserver.Record) string {
	was := map[string]string{}
	for _, t := range old.Tools {
		was[t.Tool] = t.Hash
	}
	var changed, added, gone []string
	for _, t := range cur.Tools {
		h, ok := was[t.Tool]
		switch {
		case !ok:
			added = append(added, t.Tool)
		case h != t.Hash:
			changed = append(changed, t.Tool)
		}
		delete(was, t.Tool)
	}
	for t := range was {
		gone = append(gone, t)
	}
	slices.Sort(gone)
	var parts []string
	for _, p := range []struct {
		what  string
		tools []string
	}{{"changed", changed}, {"added", added}, {"gone", gone}} {
		if len(p.tools) > 0 {
			parts = append(parts, p.what+" "+strings.Join(p.tools, ", "))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

// printMCPReview shows what an operator approves: the server, its type and
// every tool's operation, kind and input schema.
func printMCPReview(w io.Writer, rec mcpserver.Record) {
	fmt.Fprintf(w, "MCP server      %s\nURL             %s\nConnector type  %s\nTools           %d\n\n", rec.Name, rec.URL,
		mcpserver.TypeName(rec.Name), len(rec.Tools))
	for _, t := range rec.Tools {
		fmt.Fprintf(w, "%s  (%s, tool %q)\n  %s\n%s\n\n", t.Op, t.Kind, t.Tool, ocOneLine(t.Description, 200), ocIndentJSON(t.Input))
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
			tw := table(cmd.OutOrStdout(), "NAME\tTYPE\tURL\tTOOLS\tADDED")
			for _, r := range recs {
				var tools []string
				for _, t := range r.Tools {
					tools = append(tools, t.Tool)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, mcpserver.TypeName(r.Name), r.URL, ocOrDash(strings.Join(tools, ",")),
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
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s; restart connec to unload it\n", args[0])
				return nil
			})
		},
	}
}
