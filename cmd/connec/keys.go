package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/executor"
	"github.com/connec/connec/internal/app"
	"github.com/connec/connec/vault"
)

func keyCmd(f *flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Manage the key-encryption keys (age identities) that wrap credential data keys",
		Long: "Credentials are sealed with a data key per credential version; each data key is wrapped with age to the\n" +
			"current key-encryption key (the LAST identity in the key file). The key file never enters the database.\n" +
			"Rotate: `connec key add` (append a new identity), restart or reload servers, `connec key rotate`\n" +
			"(rewrap every data key to the new key, online, resumable), then remove the old identity from the file.",
	}
	var x25519 bool
	initC := &cobra.Command{
		Use: "init", Short: "Create a new key file (0600) at --key-file (default DATA_DIR/connec.key); audited", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Open must not create the key itself (the embedded default
			// would), so that this command is the one that does, audited.
			f.cfg.NoKeyCreate = true
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				recipient, err := a.InitKey(ctx, !x25519)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created %s\nkey id %s\npublic key %s\n", f.cfg.KeyPath(), vault.KeyID(recipient), recipient)
				return nil
			})
		},
	}
	initC.Flags().BoolVar(&x25519, "x25519", false, "classic X25519 key instead of the default post-quantum hybrid (ML-KEM-768 + X25519)")
	add := &cobra.Command{
		Use: "add", Short: "Append a new identity to the key file; it becomes the key new credentials are sealed to; audited", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				recipient, err := a.AddKey(ctx, !x25519)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "added key id %s to %s\nrun `connec key rotate` to rewrap existing credentials to it\n", vault.KeyID(recipient), f.cfg.KeyPath())
				return nil
			})
		},
	}
	add.Flags().BoolVar(&x25519, "x25519", false, "classic X25519 key instead of the post-quantum hybrid")
	status := &cobra.Command{
		Use: "status", Short: "Show how many credential rows each key id wraps", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				counts, current, err := a.KeyStatus(ctx)
				if err != nil {
					return err
				}
				w := table(cmd.OutOrStdout(), "KEY ID\tROWS\tIN KEY FILE\tCURRENT")
				for _, k := range counts {
					fmt.Fprintf(w, "%s\t%d\t%v\t%v\n", k.KeyID, k.Rows, k.Loaded, k.KeyID == current)
				}
				return w.Flush()
			})
		},
	}
	var batch int
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Rewrap every credential's data key to the current key (online, in batches, resumable); audited as it starts and ends",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				bar := newProgress(os.Stderr)
				n, to, err := a.RotateKeys(ctx, executor.RotateOptions{Batch: batch, Progress: bar.update})
				bar.done()
				if err != nil {
					return fmt.Errorf("after %d rows: %w", n, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "rewrapped %d credentials to key %s\n", n, to)
				return nil
			})
		},
	}
	rotate.Flags().IntVar(&batch, "batch", 100, "rows per transaction")
	cmd.AddCommand(initC, add, status, rotate)
	return cmd
}

// progress draws a bar on a terminal and stays quiet elsewhere.
type progress struct {
	w    io.Writer
	tty  bool
	last time.Time
	any  bool
}

func newProgress(f *os.File) *progress {
	fi, err := f.Stat()
	return &progress{w: f, tty: err == nil && fi.Mode()&os.ModeCharDevice != 0}
}

func (p *progress) update(done, total int64) {
	if !p.tty || total == 0 || (time.Since(p.last) < 100*time.Millisecond && done < total) {
		return
	}
	p.last, p.any = time.Now(), true
	const width = 30
	filled := int(done * width / total)
	fmt.Fprintf(p.w, "\r[%s%s] %3d%% %d/%d", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), done*100/total, done, total)
}

func (p *progress) done() {
	if p.any {
		fmt.Fprintln(p.w)
	}
}

func credentialCmd(f *flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "credential",
		Short: "Manage connector credentials (acts as CONNEC_SUBJECT/CONNEC_TOKEN, or the local operator)",
		Long: "The same operations as the connector.credential.* tools, checked by policy and audited. Secrets are read\n" +
			"from standard input as a JSON object of fields (e.g. {\"token\": \"...\"}), never from arguments.",
	}
	var instance, kind, credID, expires string
	readSecret := func(cmd *cobra.Command) (map[string]string, error) {
		var m map[string]string
		dec := json.NewDecoder(io.LimitReader(cmd.InOrStdin(), 1<<20))
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("read the secret from stdin as a JSON object of string fields: %w", err)
		}
		return m, nil
	}
	expiry := func() (*time.Time, error) {
		if expires == "" {
			return nil, nil
		}
		t, err := time.Parse(time.RFC3339, expires)
		if err != nil {
			return nil, fmt.Errorf("--expires-at: want RFC 3339, e.g. 2027-01-31T00:00:00Z")
		}
		return &t, nil
	}
	asCaller := func(cmd *cobra.Command, fn func(ctx context.Context, a *app.App) (any, error)) error {
		return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
			p, err := a.StdioPrincipal(ctx)
			if err != nil {
				return err
			}
			p.Transport = "cli"
			ctx = callctx.WithPrincipal(ctx, p)
			v, err := fn(ctx, a)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(v)
		})
	}
	create := &cobra.Command{
		Use: "create", Short: "Create a credential for an instance (secret fields as JSON on stdin)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exp, err := expiry()
			if err != nil {
				return err
			}
			secret, err := readSecret(cmd)
			if err != nil {
				return err
			}
			return asCaller(cmd, func(ctx context.Context, a *app.App) (any, error) {
				return a.Service.CreateCredential(ctx, core.CredentialInput{InstanceID: instance, Kind: kind, Secret: secret, ExpiresAt: exp})
			})
		},
	}
	create.Flags().StringVar(&instance, "instance", "", "instance id (required)")
	create.Flags().StringVar(&kind, "kind", "", "credential kind: bearer, basic, login, header, query, api_key (required)")
	create.Flags().StringVar(&expires, "expires-at", "", "expiry time, RFC 3339")
	_ = create.MarkFlagRequired("instance")
	_ = create.MarkFlagRequired("kind")
	rotate := &cobra.Command{
		Use: "rotate", Short: "Rotate a credential's secret (new secret fields as JSON on stdin)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exp, err := expiry()
			if err != nil {
				return err
			}
			secret, err := readSecret(cmd)
			if err != nil {
				return err
			}
			return asCaller(cmd, func(ctx context.Context, a *app.App) (any, error) {
				return a.Service.RotateCredential(ctx, core.RotateInput{CredentialID: credID, Secret: secret, ExpiresAt: exp})
			})
		},
	}
	rotate.Flags().StringVar(&credID, "credential", "", "credential id (required)")
	rotate.Flags().StringVar(&expires, "expires-at", "", "new expiry time, RFC 3339")
	_ = rotate.MarkFlagRequired("credential")
	state := func(use, short string, fn func(*core.Service, context.Context, string) (core.Credential, error)) *cobra.Command {
		c := &cobra.Command{
			Use: use, Short: short, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return asCaller(cmd, func(ctx context.Context, a *app.App) (any, error) { return fn(a.Service, ctx, credID) })
			},
		}
		c.Flags().StringVar(&credID, "credential", "", "credential id (required)")
		_ = c.MarkFlagRequired("credential")
		return c
	}
	list := &cobra.Command{
		Use: "list", Short: "List an instance's credentials (metadata only)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return asCaller(cmd, func(ctx context.Context, a *app.App) (any, error) { return a.Service.ListCredentials(ctx, instance) })
		},
	}
	list.Flags().StringVar(&instance, "instance", "", "instance id (required)")
	_ = list.MarkFlagRequired("instance")
	cmd.AddCommand(create, rotate,
		state("revoke", "Revoke a credential (immediate, final)", (*core.Service).RevokeCredential),
		state("disable", "Disable a credential", (*core.Service).DisableCredential),
		state("enable", "Enable a disabled credential", (*core.Service).EnableCredential),
		state("get", "Show a credential's metadata", (*core.Service).GetCredential),
		list)
	return cmd
}
