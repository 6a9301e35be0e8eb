package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/openclaw"
	"github.com/connec/connec/internal/app"
)

// openclawCmd manages OpenClaw plugins installed as connector types.
// Plugins live in $CONNEC_DATA_DIR/openclaw/plugins and a running connec
// loads them at start; adding and removing one is audited, so those need
// the database (listing does not).
func openclawCmd(f *flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "openclaw",
		Short: "Install and list OpenClaw plugins (npm packages) as untrusted, sandboxed connector types",
		Long: "OpenClaw plugins become connector types named openclaw-<plugin id>: each tool an operation, each channel a send\n" +
			"operation. Each call runs in a Node process of its own (Node.js 20 or newer) inside an OS sandbox (Linux namespaces,\n" +
			"Landlock, seccomp, kernel limits; plugins do not run where the machine cannot give it), reaches only the hosts an instance\n" +
			"lists in egress_hosts, and gets its credential for that call only. Restart connec after adding or removing one.",
	}
	cmd.AddCommand(openclawAddCmd(f), openclawListCmd(f), openclawRemoveCmd(f))
	return cmd
}

func openclawAddCmd(f *flags) *cobra.Command {
	var (
		yes, replace bool
		readTools    []string
		sendTools    []string
		egressHosts  []string
		timeout      time.Duration
		registry     string
	)
	cmd := &cobra.Command{
		Use:   "add <npm-package>@<version>",
		Short: "Install an OpenClaw plugin from npm (exact version, no install scripts) after showing it for review",
		Long: "Installs the package with npm install --ignore-scripts into $CONNEC_DATA_DIR/openclaw/plugins/<name>, has a\n" +
			"sandboxed host describe it (no credential, no network), and shows its manifest, tools, channels and config\n" +
			"schema. It is put in place only when you confirm (or with --yes). The version must be exact (x.y.z).\n\n" +
			"Tools are read-kind operations unless the manifest marks them side-effecting; --send/--read override that.",
		Example: "  connec openclaw add @ollama/openclaw-web-search@0.2.2",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := app.NewLogger(cmd.ErrOrStderr(), f.cfg.LogFormat, f.cfg.LogLevel)
			if err != nil {
				return err
			}
			kinds := map[string]connectors.Kind{}
			for _, t := range readTools {
				kinds[t] = connectors.KindRead
			}
			for _, t := range sendTools {
				if _, dup := kinds[t]; dup {
					return fmt.Errorf("tool %s is given both --read and --send", t)
				}
				kinds[t] = connectors.KindSend
			}
			in := openclaw.InstallOptions{
				Output: cmd.ErrOrStderr(), ToolKinds: kinds, EgressHosts: egressHosts,
				TimeoutMS: timeout.Milliseconds(), Replace: replace, Registry: registry,
			}
			if len(kinds) == 0 {
				in.ToolKinds = nil
			}
			// The database first: an install that cannot be audited is not
			// made, and nothing is fetched for it.
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				dir := openclaw.PluginsDir(f.cfg.DataDir)
				fmt.Fprintf(cmd.ErrOrStderr(), "installing %s into %s (npm, no scripts)…\n", args[0], dir)
				staged, err := openclaw.Stage(ctx, dir, args[0], in, openclaw.WithLogger(log))
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if err := printOpenclawReview(out, staged.Record); err != nil {
					_ = staged.Discard()
					return err
				}
				if !yes {
					ok, err := ocConfirm(cmd.InOrStdin(), out, "Install it? [y/N] ")
					if err != nil || !ok {
						_ = staged.Discard()
						if err != nil {
							return err
						}
						return errors.New("not installed")
					}
				}
				if err := a.InstallPlugin(ctx, staged); err != nil {
					_ = staged.Discard()
					return err
				}
				fmt.Fprintf(out, "installed %s@%s as connector type %s in %s; restart connec to load it\n",
					staged.Record.Package, staged.Record.Version, openclaw.TypeName(staged.Record.Manifest.ID), staged.Final)
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&yes, "yes", "y", false, "install without asking (after printing the review)")
	fl.BoolVar(&replace, "replace", false, "replace an installed plugin of the same package")
	fl.StringSliceVar(&readTools, "read", nil, "make these tools read-kind operations (comma-separated tool names)")
	fl.StringSliceVar(&sendTools, "send", nil, "make these tools send-kind operations (comma-separated tool names)")
	fl.StringSliceVar(&egressHosts, "egress", nil, "pin the type's egress to these host[:port] patterns (default: each instance lists its own)")
	fl.DurationVar(&timeout, "timeout", 0, "cap each operation (default 30s, at most 5m)")
	fl.StringVar(&registry, "registry", "", "npm registry URL (default: npm's own configuration)")
	return cmd
}

// confirm asks on a terminal; without one it refuses (use --yes).
func ocConfirm(in io.Reader, out io.Writer, prompt string) (bool, error) {
	if f, ok := in.(*os.File); ok {
		if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
			return false, errors.New("not installed: standard input is not a terminal; review the above and rerun with --yes")
		}
	}
	fmt.Fprint(out, prompt)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes", nil
}

// printReview shows what an operator approves: identity, what the plugin
// registers and the operations it becomes, its configuration schema, and
// what it touched that connec does not serve.
func printOpenclawReview(w io.Writer, r *openclaw.Record) error {
	ops, err := r.Operations()
	if err != nil {
		return err
	}
	m := r.Manifest
	fmt.Fprintf(w, "Plugin          %s", m.ID)
	if m.Name != "" {
		fmt.Fprintf(w, " (%s)", m.Name)
	}
	fmt.Fprintln(w)
	if m.Description != "" {
		fmt.Fprintf(w, "Description     %s\n", m.Description)
	}
	fmt.Fprintf(w, "Package         %s@%s\n", r.Package, r.Version)
	if r.Integrity != "" {
		fmt.Fprintf(w, "Integrity       %s\n", r.Integrity)
	}
	entry := r.Entry
	if r.TSRuntime != "" {
		entry += " (TypeScript: types are stripped with " + openclaw.AmaroSpec + " inside the sandbox)"
	}
	fmt.Fprintf(w, "Entry           %s\n", entry)
	fmt.Fprintf(w, "Connector type  %s\n", openclaw.TypeName(m.ID))
	egress := "each instance's egress_hosts"
	if len(r.EgressHosts) > 0 {
		egress = strings.Join(r.EgressHosts, ", ") + " (narrowed by each instance's egress_hosts)"
	}
	fmt.Fprintf(w, "Egress          %s\n", egress)
	if boundary, err := openclaw.SandboxStatus(); err == nil {
		fmt.Fprintf(w, "Sandbox         %s; one host per call, its memory, CPU and home capped by the kernel\n", boundary)
	}
	fmt.Fprintln(w)

	tw := table(w, "OPERATION\tKIND\tTIMEOUT\tDESCRIPTION")
	for _, op := range ops {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", op.Name, op.Kind, op.Timeout, ocOneLine(op.Description, 90))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range r.Described.Channels {
		if !c.Text {
			fmt.Fprintf(w, "channel %s has no text send; it makes no operation\n", c.ID)
		}
	}
	fmt.Fprintln(w)
	for _, t := range r.Described.Tools {
		fmt.Fprintf(w, "Tool %s input schema:\n%s\n", t.Name, ocIndentJSON(t.Parameters))
	}
	fmt.Fprintf(w, "Config schema (instance plugin_config; the credential goes where credential_config_path says):\n%s\n", ocIndentJSON(m.ConfigSchema))
	for _, id := range slices.Sorted(maps.Keys(m.ChannelConfigs)) {
		fmt.Fprintf(w, "Channel %s config schema (instance channel_config.%s):\n%s\n", id, id, ocIndentJSON(m.ChannelConfigs[id].Schema))
	}
	var registered []string
	for _, t := range r.Described.Tools {
		registered = append(registered, t.Name)
	}
	for _, t := range m.Contracts.Tools {
		if !slices.Contains(registered, t) {
			fmt.Fprintf(w, "warning: the manifest declares tool %s, which the plugin did not register\n", t)
		}
	}
	for _, t := range registered {
		if len(m.Contracts.Tools) > 0 && !slices.Contains(m.Contracts.Tools, t) {
			fmt.Fprintf(w, "warning: the plugin registered tool %s, which its manifest does not declare\n", t)
		}
	}
	for _, u := range r.Described.Unsupported {
		fmt.Fprintf(w, "note: the plugin touched %s (accessed %d, called %d), which connec does not serve; calling it fails\n", u.API, u.Accessed, u.Called)
	}
	for _, p := range r.Described.Problems {
		fmt.Fprintf(w, "note: %s\n", p)
	}
	if r.Described.RegisterError != "" {
		fmt.Fprintf(w, "warning: register(api) failed with an empty configuration: %s\n", r.Described.RegisterError)
	}
	return nil
}

func openclawListCmd(f *flags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List installed OpenClaw plugins",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			recs, err := openclaw.List(openclaw.PluginsDir(f.cfg.DataDir))
			tw := table(cmd.OutOrStdout(), "NAME\tTYPE\tPACKAGE\tVERSION\tTOOLS\tCHANNELS\tINSTALLED")
			for _, r := range recs {
				var tools, chans []string
				for _, t := range r.Described.Tools {
					tools = append(tools, t.Name)
				}
				for _, c := range r.Described.Channels {
					chans = append(chans, c.ID)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, openclaw.TypeName(r.Manifest.ID), r.Package, r.Version,
					ocOrDash(strings.Join(tools, ",")), ocOrDash(strings.Join(chans, ",")), r.InstalledAt.Format(time.RFC3339))
			}
			if ferr := tw.Flush(); ferr != nil {
				return ferr
			}
			return err
		},
	}
}

func openclawRemoveCmd(f *flags) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove an installed OpenClaw plugin (NAME as openclaw list shows it); restart connec afterwards",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				if err := a.RemovePlugin(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s; restart connec to unload it\n", args[0])
				return nil
			})
		},
	}
}

func ocIndentJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "  {}"
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "  " + string(raw)
	}
	b, _ := json.MarshalIndent(v, "  ", "  ")
	return "  " + string(b)
}

func ocOneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func ocOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
