// Command connec is the governed door between AI agents and connectors: an
// MCP server (stdio, SSE, streamable HTTP) plus the operator commands that
// manage users, tokens and policy. It only parses flags; internal/app does
// the work.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/identity"
	"github.com/connec/connec/internal/app"
)

func main() {
	// A client that closes our stderr must not kill connec before it has
	// stopped its embedded PostgreSQL: writes then fail instead.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := root().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "connec:", err)
		os.Exit(1)
	}
}

type flags struct {
	cfg app.Config
}

func root() *cobra.Command {
	f := &flags{cfg: app.FromEnv()}
	cmd := &cobra.Command{
		Use:   "connec",
		Short: "The governed door between AI agents and connectors (MCP server)",
		Long: "connec serves MCP tools that let agents use connector instances (HTTP APIs, mail, chat) without ever\n" +
			"seeing a credential. Every call is checked default-deny against policy and audited.\n\n" +
			"With no DATABASE_URL, connec starts and manages a local PostgreSQL in CONNEC_DATA_DIR.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.cfg.DatabaseURL, "database-url", f.cfg.DatabaseURL, "PostgreSQL URL (env DATABASE_URL); empty: embedded local cluster")
	pf.StringVar(&f.cfg.DataDir, "data-dir", f.cfg.DataDir, "data directory for the embedded cluster and key (env CONNEC_DATA_DIR)")
	pf.StringVar(&f.cfg.KeyFile, "key-file", f.cfg.KeyFile, "age identity file with the key-encryption keys (env CONNEC_KEY_FILE; default DATA_DIR/connec.key)")
	pf.StringVar(&f.cfg.LogFormat, "log-format", f.cfg.LogFormat, "log format: text or json (env CONNEC_LOG_FORMAT)")
	pf.StringVar(&f.cfg.Subject, "subject", f.cfg.Subject, "user a stdio session or credential command acts as: name or user:<uuid> (env CONNEC_SUBJECT)")
	pf.StringVar(&f.cfg.LogLevel, "log-level", f.cfg.LogLevel, "log level: debug, info, warn, error (env CONNEC_LOG_LEVEL)")
	cmd.AddCommand(serveCmd(f), migrateCmd(f), userCmd(f), groupCmd(f), tokenCmd(f), policyCmd(f), keyCmd(f), credentialCmd(f), auditCmd(f), openclawCmd(f), mcpCmd(f))
	refuseUnknownSubcommands(cmd)
	return cmd
}

// refuseUnknownSubcommands makes every command that only groups others fail
// on an unknown subcommand. Left to itself cobra prints the help and exits
// 0, so a mistyped `connec user disabel bob` would look like success.
func refuseUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if !c.HasParent() || !c.HasSubCommands() || c.Runnable() {
		return
	}
	c.Args = cobra.ArbitraryArgs
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("unknown command %q for %q (see %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())
		}
		return cmd.Help()
	}
}

// withApp opens the core for one command and closes it after.
func withApp(cmd *cobra.Command, f *flags, fn func(ctx context.Context, a *app.App) error) error {
	log, err := app.NewLogger(os.Stderr, f.cfg.LogFormat, f.cfg.LogLevel)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	a, err := app.Open(ctx, f.cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	return explain(fn(ctx, a))
}

// explain turns a fault into its public message for the terminal.
func explain(err error) error {
	if err == nil {
		return nil
	}
	var fe *fault.Error
	if errors.As(err, &fe) {
		p := fault.PublicOf(err)
		return fmt.Errorf("%s: %s", p.Type, p.Message)
	}
	return err
}

func serveCmd(f *flags) *cobra.Command {
	var o app.ServeOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve MCP over stdio and/or HTTP (SSE at /sse, streamable HTTP at /mcp)",
		Long: "Serve MCP. --stdio speaks MCP on stdin/stdout as CONNEC_SUBJECT (or CONNEC_TOKEN; in the embedded default,\n" +
			"the local operator). --http ADDR serves SSE (/sse + /message), streamable HTTP (/mcp) and /healthz; every\n" +
			"HTTP request needs Authorization: Bearer <token>. With neither flag, --stdio is assumed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !o.Stdio && o.HTTPAddr == "" {
				o.Stdio = true
			}
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error { return a.Serve(ctx, o) })
		},
	}
	cmd.Flags().BoolVar(&o.Stdio, "stdio", false, "serve MCP on stdin/stdout")
	cmd.Flags().StringVar(&o.HTTPAddr, "http", "", "serve MCP over HTTP on this address, e.g. 127.0.0.1:8080")
	cmd.Flags().DurationVar(&f.cfg.ServerLease, "server-lease", f.cfg.ServerLease,
		"how long this server's lease lasts unless renewed; once it runs out, other servers fail the runs it left open (env CONNEC_SERVER_LEASE; 0: 1m)")
	cmd.Flags().StringVar(&f.cfg.ToolNames, "tool-names", f.cfg.ToolNames,
		"how tool names are spelled: dotted (connector.op.invoke) or underscore (connector_op_invoke, for hosts that accept only [a-zA-Z0-9_-]) (env CONNEC_TOOL_NAMES)")
	cmd.Flags().StringVar(&f.cfg.Toolsets, "toolsets", f.cfg.Toolsets,
		"which MCP tools to serve: all, management (the connector.* tools) or instances (one tool per operation of each instance the caller may use) (env CONNEC_TOOLSETS)")
	cmd.Flags().StringVar(&f.cfg.InstanceToolNames, "instance-tool-names", f.cfg.InstanceToolNames,
		"how instance tools are named: qualified (<handle>.<operation>) or bare (the operation alone where unique; an added MCP server's own tool names) (env CONNEC_INSTANCE_TOOL_NAMES)")
	cmd.Flags().StringVar(&f.cfg.MetricsAddr, "metrics-addr", f.cfg.MetricsAddr,
		"serve Prometheus metrics at /metrics on this address only, e.g. 127.0.0.1:9090 (env CONNEC_METRICS_ADDR; empty: no metrics)")
	cmd.Flags().StringSliceVar(&f.cfg.AllowedOrigins, "allowed-origin", f.cfg.AllowedOrigins,
		"a browser origin (scheme://host[:port]) allowed to call the HTTP MCP endpoints; repeat or comma-separate (env CONNEC_ALLOWED_ORIGINS)")
	cmd.Flags().StringSliceVar(&f.cfg.TrustedProxies, "trusted-proxy", f.cfg.TrustedProxies,
		"a reverse proxy (address or CIDR prefix) whose X-Forwarded-For names a request's source; repeat or comma-separate (env CONNEC_TRUSTED_PROXIES; default none)")
	cmd.Flags().DurationVar(&f.cfg.AuthFailureInterval, "auth-failure-interval", f.cfg.AuthFailureInterval,
		"how long failed authentications from one source are counted into one audit row, and the window of --auth-failure-limit (env CONNEC_AUTH_FAILURE_INTERVAL; 0: 10s)")
	cmd.Flags().IntVar(&f.cfg.AuthFailureLimit, "auth-failure-limit", f.cfg.AuthFailureLimit,
		"failed authentications a source may have per interval before its requests get 429 unchecked (env CONNEC_AUTH_FAILURE_LIMIT; 0: 20)")
	return cmd
}

func migrateCmd(f *flags) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply database migrations (also done at every start)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				fmt.Fprintln(cmd.OutOrStdout(), "database schema is up to date")
				return nil
			})
		},
	}
}

func userCmd(f *flags) *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage users"}
	var bare bool
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Create a user (with the owner rule: full rights on what it owns, and catalog read)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				u, err := a.AddUser(ctx, args[0], bare)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", u.Subject(), u.Name)
				return nil
			})
		},
	}
	add.Flags().BoolVar(&bare, "no-owner-rule", false, "create the user with no rules at all (strict default deny)")
	list := &cobra.Command{
		Use: "list", Short: "List users", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				us, err := a.ListUsers(ctx)
				if err != nil {
					return err
				}
				w := table(cmd.OutOrStdout(), "SUBJECT\tNAME\tSTATE\tCREATED")
				for _, u := range us {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", u.Subject(), u.Name, state(u.DisabledAt), u.CreatedAt.Format(time.RFC3339))
				}
				return w.Flush()
			})
		},
	}
	change := func(use, short string, fn func(*app.App, context.Context, string) (identity.User, error), done string) *cobra.Command {
		return &cobra.Command{
			Use: use + " USER", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
					u, err := fn(a, ctx, args[0])
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s %s (%s)\n", done, u.Name, u.Subject())
					return nil
				})
			},
		}
	}
	cmd.AddCommand(add, list,
		change("disable", "Disable a user (name or user:<uuid>): its tokens and name authenticate nowhere, at once, until enabled",
			(*app.App).DisableUser, "disabled"),
		change("enable", "Enable a disabled user again", (*app.App).EnableUser, "enabled"),
		change("remove", "Remove a user with its tokens, memberships and rules (refused while it owns installed instances)",
			(*app.App).RemoveUser, "removed"))
	return cmd
}

// state shows whether a user or group is disabled.
func state(disabledAt time.Time) string {
	if disabledAt.IsZero() {
		return "enabled"
	}
	return "disabled since " + disabledAt.Format(time.RFC3339)
}

func groupCmd(f *flags) *cobra.Command {
	cmd := &cobra.Command{Use: "group", Short: "Manage groups and membership"}
	add := &cobra.Command{
		Use: "add NAME", Short: "Create a group (no rules: grant them with connec policy allow)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				g, err := a.AddGroup(ctx, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", g.Subject(), g.Name)
				return nil
			})
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "List groups and their members", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				gs, err := a.ListGroups(ctx)
				if err != nil {
					return err
				}
				w := table(cmd.OutOrStdout(), "SUBJECT\tNAME\tSTATE\tMEMBERS")
				for _, g := range gs {
					ms, err := a.ListMembers(ctx, g.ID)
					if err != nil {
						return err
					}
					names := make([]string, len(ms))
					for i, m := range ms {
						names[i] = m.Name
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", g.Subject(), g.Name, state(g.DisabledAt), orDash(strings.Join(names, ",")))
				}
				return w.Flush()
			})
		},
	}
	change := func(use, short string, fn func(*app.App, context.Context, string) (identity.Group, error), done string) *cobra.Command {
		return &cobra.Command{
			Use: use + " GROUP", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
					g, err := fn(a, ctx, args[0])
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s %s (%s)\n", done, g.Name, g.Subject())
					return nil
				})
			},
		}
	}
	member := &cobra.Command{Use: "member", Short: "Manage group membership"}
	madd := &cobra.Command{
		Use: "add GROUP USER", Short: "Add USER (name or user:<uuid>) to GROUP (name or group:<uuid>)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				g, u, err := a.AddMember(ctx, args[0], args[1])
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s (%s) is a member of %s (%s)\n", u.Name, u.Subject(), g.Name, g.Subject())
				return nil
			})
		},
	}
	mremove := &cobra.Command{
		Use: "remove GROUP USER", Short: "Take USER out of GROUP: it loses the group's rights at once, on every server", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				g, u, err := a.RemoveMember(ctx, args[0], args[1])
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s (%s) is no longer a member of %s (%s)\n", u.Name, u.Subject(), g.Name, g.Subject())
				return nil
			})
		},
	}
	member.AddCommand(madd, mremove)
	cmd.AddCommand(add, list, member,
		change("disable", "Disable a group: its members hold none of its rights, at once, until enabled", (*app.App).DisableGroup, "disabled"),
		change("enable", "Enable a disabled group again", (*app.App).EnableGroup, "enabled"),
		change("remove", "Remove a group with its memberships and rules (refused while it owns installed instances)",
			(*app.App).RemoveGroup, "removed"))
	return cmd
}

// boundText shows a token's bound task context ("-": not bound).
func boundText(t callctx.TaskContext) string {
	var parts []string
	for _, f := range []struct{ k, v string }{{"task", t.TaskID}, {"project", t.ProjectID}, {"run", t.RunID}, {"job", t.JobID}, {"agent", t.AgentID}} {
		if f.v != "" {
			parts = append(parts, f.k+"="+f.v)
		}
	}
	return orDash(strings.Join(parts, ","))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func tokenCmd(f *flags) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage API tokens"}
	var subject, name string
	var ttl time.Duration
	var bound callctx.TaskContext
	create := &cobra.Command{
		Use:   "create",
		Short: "Create an API token for a user; it is printed once and stored only as a hash",
		Long: "Create an API token for a user; it is printed once and stored only as a hash. With --task, --project,\n" +
			"--run, --job or --agent the token is bound to that task context: every call made with it runs for that task\n" +
			"(it may add the fields left open, never change one), and policy conditions marked from=token can rely on it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				tok, _, err := a.CreateToken(ctx, subject, name, ttl, bound)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), tok)
				return nil
			})
		},
	}
	create.Flags().StringVar(&subject, "subject", "", "user the token authenticates: user:<uuid>, user:<name> or a name (required)")
	create.Flags().StringVar(&name, "name", "", "a label for the token")
	create.Flags().DurationVar(&ttl, "expires", 0, "lifetime, e.g. 720h (0: no expiry)")
	create.Flags().StringVar(&bound.TaskID, "task", "", "bind the token to this task id (uuid)")
	create.Flags().StringVar(&bound.ProjectID, "project", "", "bind the token to this project id (uuid)")
	create.Flags().StringVar(&bound.RunID, "run", "", "bind the token to this run id (uuid; needs --task)")
	create.Flags().StringVar(&bound.JobID, "job", "", "bind the token to this job id (uuid; needs --task)")
	create.Flags().StringVar(&bound.AgentID, "agent", "", "bind the token to this agent id")
	_ = create.MarkFlagRequired("subject")
	var listSubject string
	list := &cobra.Command{
		Use: "list", Short: "List a user's tokens (metadata only)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				s, err := a.ResolveSubject(ctx, listSubject)
				if err != nil {
					return err
				}
				toks, err := a.ListTokens(ctx, s)
				if err != nil {
					return err
				}
				w := table(cmd.OutOrStdout(), "ID\tNAME\tCREATED\tBOUND TO\tEXPIRES\tREVOKED")
				for _, t := range toks {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.CreatedAt.Format(time.RFC3339), boundText(t.Bound),
						when(t.ExpiresAt), when(t.RevokedAt))
				}
				return w.Flush()
			})
		},
	}
	list.Flags().StringVar(&listSubject, "subject", "", "user whose tokens to list (required)")
	_ = list.MarkFlagRequired("subject")
	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke a token at once (every server refuses it on its next request)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := uuid.Parse(args[0])
			if err != nil {
				return fmt.Errorf("token id %q is not a uuid (see connec token list)", args[0])
			}
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				t, err := a.RevokeToken(ctx, id)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "revoked token %s of %s\n", t.ID, t.Subject)
				return nil
			})
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func policyCmd(f *flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Manage policy rules (default deny; deny beats allow)",
		Long: "Rules are subject, resource pattern, action, optional task-context condition and effect.\n" +
			"Resources: catalog | policy | audit | network/private | connectors/<owner>[/<type>/<instance-id>[/<operation>]];\n" +
			"'*' matches within a segment, a trailing '/**' the part before it and everything below. Owners may be given\n" +
			"as user:<name>, group:<name> or a user name, like --subject; they are stored as ids. Actions: connector.read,\n" +
			"connector.send, connector.admin, connector.catalog.read, connector.policy.admin, connector.audit.read, or '*'.\n" +
			"Conditions: project=<uuid>; agent=<id>|<id>; task=required. A rule that could never match (an unknown prefix,\n" +
			"type or operation, an action never asked of what it names) is refused.",
	}
	var r authz.Rule
	rule := func(use, short, effect string, remove bool) *cobra.Command {
		c := &cobra.Command{
			Use: use, Short: short, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
					rr := r
					if effect != "" {
						rr.Effect = effect
					}
					rr, changed, err := a.ChangeWrittenRule(ctx, rr, remove)
					if err != nil {
						return err
					}
					verb := map[bool]string{true: "removed", false: "added"}[remove]
					if !changed {
						verb = map[bool]string{true: "no such rule", false: "already present"}[remove]
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s: %s %s %s %s %s\n", verb, rr.Effect, rr.Subject, rr.Action, rr.Resource, rr.Cond)
					return nil
				})
			},
		}
		c.Flags().StringVar(&r.Subject, "subject", "", "user:<name|uuid> or group:<name|uuid> (required)")
		c.Flags().StringVar(&r.Resource, "resource", "", "resource pattern; owners by name or id (required)")
		c.Flags().StringVar(&r.Action, "action", "", "action or * (required)")
		c.Flags().StringVar(&r.Cond, "cond", "", "task-context condition, e.g. project=<uuid>;task=required")
		for _, n := range []string{"subject", "resource", "action"} {
			_ = c.MarkFlagRequired(n)
		}
		if remove {
			c.Flags().StringVar(&r.Effect, "effect", "allow", "effect of the rule to remove: allow or deny")
		}
		return c
	}
	var subject string
	list := &cobra.Command{
		Use: "list", Short: "List rules", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				s := ""
				if subject != "" {
					sub, err := a.ResolveSubject(ctx, subject)
					if err != nil {
						return err
					}
					s = string(sub)
				}
				rules, err := a.ListRules(ctx, s)
				if err != nil {
					return err
				}
				w := table(cmd.OutOrStdout(), "EFFECT\tSUBJECT\tACTION\tRESOURCE\tCOND")
				for _, r := range rules {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Effect, r.Subject, r.Action, r.Resource, r.Cond)
				}
				return w.Flush()
			})
		},
	}
	list.Flags().StringVar(&subject, "subject", "", "only rules of this subject")
	check := &cobra.Command{
		Use: "check", Args: cobra.NoArgs,
		Short: "List stored rules that fail validation (they can never match as written); exit status 1 if there are any",
		Long: "Rules stored before validation was strict, or written by SQL, stay in force as written, and a server warns\n" +
			"of them when it starts. This lists them with the reason; remove one with `connec policy remove`, giving it\n" +
			"exactly as listed.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				rules, err := a.ListRules(ctx, "")
				if err != nil {
					return err
				}
				w := table(cmd.OutOrStdout(), "EFFECT\tSUBJECT\tACTION\tRESOURCE\tCOND\tPROBLEM")
				bad := 0
				for _, r := range rules {
					if err := a.ValidateRule(r); err != nil {
						bad++
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Effect, r.Subject, r.Action, r.Resource, r.Cond, fault.PublicOf(err).Message)
					}
				}
				if bad == 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "every rule is valid (%d rules)\n", len(rules))
					return nil
				}
				if err := w.Flush(); err != nil {
					return err
				}
				return fmt.Errorf("%d of %d rules fail validation: correct or remove them", bad, len(rules))
			})
		},
	}
	cmd.AddCommand(
		rule("allow", "Add an allow rule", "allow", false),
		rule("deny", "Add a deny rule (deny beats allow)", "deny", false),
		rule("remove", "Remove a rule", "", true),
		list,
		check,
	)
	return cmd
}

func table(w io.Writer, header string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	return tw
}
