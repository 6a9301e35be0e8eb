package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/internal/app"
)

func auditCmd(f *flags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify and export the audit trail",
		Long: "Every call, allowed or denied, leaves one append-only audit row. Rows form hash chains, one per writer (each\n" +
			"server, each operator command continues a free one): each row's hash covers all its fields, its chain and place\n" +
			"there, and the previous row's hash in that chain, so an edited, deleted, inserted or reordered row shows.",
	}
	var expect []string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Walk the hash chains; print OK and checkpoints to keep, or the first broken link and exit non-zero",
		Long: "Walk every audit chain together in order and check every row's hash, every link and each chain's head.\n" +
			"Prints OK with the row count and, per chain, a checkpoint line \"checkpoint CHAIN:SEQ:HASH\" (its last row):\n" +
			"keep them somewhere outside the database (a ticket, another machine). A chain whose newest rows were deleted\n" +
			"together with its head, or that was rewritten with every hash recomputed, verifies by itself; given its kept\n" +
			"checkpoint with --expect it does not. Prints the first broken link and exits 1 if the trail is broken.",
		Example: "  connec audit verify\n  connec audit verify --expect 1:1234:5f1e… --expect 2:87:a0c3…",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var kept []audit.Checkpoint
			for _, e := range expect {
				cp, err := audit.ParseCheckpoint(e)
				if err != nil {
					return fmt.Errorf("--expect: %w", err)
				}
				kept = append(kept, cp)
			}
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				rep, err := a.VerifyAudit(ctx, kept...)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if !rep.OK() {
					fmt.Fprintf(out, "BROKEN: first broken link in chain %d at seq %d (%s): %s\n", rep.Broken.Chain, rep.Broken.Seq,
						rep.Broken.Reason, rep.Broken.Detail)
					fmt.Fprintf(out, "%d rows verified before it; the walk reached row %d\n", rep.Rows, rep.HeadSeq)
					return rep.Err()
				}
				fmt.Fprintf(out, "OK: %d rows in %d chain(s), last seq %d, last hash %s\n", rep.Rows, len(rep.Chains), rep.LastSeq, rep.LastHash)
				if len(kept) > 0 {
					fmt.Fprintf(out, "the chains hold the %d kept checkpoint(s)\n", len(kept))
				}
				for _, cp := range rep.Checkpoints() {
					fmt.Fprintf(out, "checkpoint %s\n", cp)
				}
				return nil
			})
		},
	}
	verify.Flags().StringArrayVar(&expect, "expect", nil, "a checkpoint CHAIN:SEQ:HASH kept from an earlier verify; its chain must still hold it (repeatable; SEQ:HASH is chain 1's)")
	var since, until, format string
	export := &cobra.Command{
		Use:   "export",
		Short: "Write audit rows as JSON Lines to stdout",
		Long: "Write the audit rows with since <= time < until, in the order they were written (seq; every chain), one JSON object per line: every field\n" +
			"(absent ones null), times RFC 3339 UTC, hashes hex. Arguments, results and secrets are never recorded.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "jsonl" {
				return fmt.Errorf("--format %q: only jsonl is supported", format)
			}
			from, err := time.Parse(time.RFC3339Nano, since)
			if err != nil {
				return fmt.Errorf("--since: want RFC 3339, e.g. 2026-01-02T15:04:05Z: %w", err)
			}
			var to time.Time
			if until != "" {
				if to, err = time.Parse(time.RFC3339Nano, until); err != nil {
					return fmt.Errorf("--until: want RFC 3339, e.g. 2026-02-01T00:00:00Z: %w", err)
				}
				if !to.After(from) {
					return fmt.Errorf("--until %s is not after --since %s", until, since)
				}
			}
			return withApp(cmd, f, func(ctx context.Context, a *app.App) error {
				return a.ExportAudit(ctx, from, to, cmd.OutOrStdout())
			})
		},
	}
	export.Flags().StringVar(&since, "since", "", "first time to export, RFC 3339 (required)")
	export.Flags().StringVar(&until, "until", "", "export rows before this time, RFC 3339 (default: no limit)")
	export.Flags().StringVar(&format, "format", "jsonl", "output format: jsonl")
	_ = export.MarkFlagRequired("since")
	cmd.AddCommand(verify, export)
	return cmd
}
