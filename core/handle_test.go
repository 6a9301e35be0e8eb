package core_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/identity"
)

// An instance's handle is chosen at install or derived from its display
// name (taken handles get -2, -3, …), unique among its owner's live
// instances (another owner may use it; uninstalling frees it), and stays
// when the display name changes. A bad or taken handle is refused in the
// caller's terms and installs nothing.
func TestInstanceHandles(t *testing.T) {
	f := newFixture(t, noHub)
	install := func(in core.InstallInput) (core.Instance, error) {
		t.Helper()
		in.Type = "echo"
		return f.svc.Install(f.ctx, in)
	}
	must := func(in core.InstallInput) core.Instance {
		t.Helper()
		out, err := install(in)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	count := func() int {
		t.Helper()
		var n int
		if err := f.pool.QueryRow(f.ctx, `SELECT count(*) FROM connector_instances`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	for _, c := range []struct{ display, want string }{
		{"Work Mail!", "work-mail"},
		{"Work mail", "work-mail-2"},
		{"work  MAIL", "work-mail-3"},
		{"2024 reports", "i-2024-reports"},
		{"École ✉", "cole"},
		{"✉✉", "instance"},
		{strings.Repeat("abcdefg ", 10), "abcdefg-abcdefg-abcdefg-abcd"},
	} {
		if got := must(core.InstallInput{DisplayName: c.display}).Handle; got != c.want {
			t.Errorf("display name %q: handle %q, want %q", c.display, got, c.want)
		}
	}
	chosen := must(core.InstallInput{DisplayName: "Anything", Handle: "mail-eu"})
	if chosen.Handle != "mail-eu" {
		t.Fatalf("chosen handle: got %q", chosen.Handle)
	}

	before := count()
	for _, bad := range []string{"Mail", "-mail", "mail-", "mail--eu", "mail_eu", "mail.eu", "9mail", "mail\x00", strings.Repeat("a", 41)} {
		_, err := install(core.InstallInput{DisplayName: "x", Handle: bad})
		var fe *fault.Error
		if !errors.As(err, &fe) || fe.Type != fault.InvalidArgument || fe.Details["field"] != "handle" {
			t.Errorf("handle %q: got %v, want invalid_argument on handle", bad, err)
		}
	}
	_, err := install(core.InstallInput{DisplayName: "x", Handle: "mail-eu"})
	if !errors.Is(err, fault.ErrConflict) || !strings.Contains(err.Error(), `"mail-eu"`) {
		t.Errorf("taken handle: got %v, want conflict naming it", err)
	}
	if n := count(); n != before {
		t.Fatalf("refused installs left %d instances, want %d", n, before)
	}

	// Another owner may use the handle.
	g, err := identity.CreateGroup(f.ctx, f.pool, "team")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := callctx.PrincipalFrom(f.ctx)
	if _, err := f.az.AddRule(f.ctx, f.pool, authz.Rule{Subject: string(p.Subject), Resource: "connectors/" + string(g.Subject()) + "/**", Action: "*", Effect: "allow"}); err != nil {
		t.Fatal(err)
	}
	if err := f.az.Refresh(f.ctx); err != nil {
		t.Fatal(err)
	}
	if got := must(core.InstallInput{DisplayName: "x", Handle: "mail-eu", Owner: string(g.Subject())}); got.Handle != "mail-eu" {
		t.Errorf("another owner's instance: handle %q", got.Handle)
	}

	// Renaming keeps the handle; uninstalling frees it.
	renamed, err := f.svc.Rename(f.ctx, core.RenameInput{InstanceID: string(chosen.ID), DisplayName: "  Mail (EU)  "})
	if err != nil {
		t.Fatal(err)
	}
	if renamed.DisplayName != "Mail (EU)" || renamed.Handle != "mail-eu" {
		t.Fatalf("renamed: %q / %q, want Mail (EU) / mail-eu", renamed.DisplayName, renamed.Handle)
	}
	if _, err := f.svc.Rename(f.ctx, core.RenameInput{InstanceID: string(chosen.ID), DisplayName: " "}); err == nil {
		t.Fatal("an empty display name was accepted")
	}
	if _, err := f.svc.Uninstall(f.ctx, string(chosen.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Rename(f.ctx, core.RenameInput{InstanceID: string(chosen.ID), DisplayName: "again"}); !errors.Is(err, fault.ErrConflict) {
		t.Fatalf("renaming an uninstalled instance: got %v, want conflict", err)
	}
	if got := must(core.InstallInput{DisplayName: "x", Handle: "mail-eu"}); got.Handle != "mail-eu" {
		t.Errorf("after uninstall: handle %q", got.Handle)
	}
	// Every rename was audited under its own tool: done, refused for its
	// input, failed for the instance's state.
	rows, err := f.pool.Query(f.ctx, `SELECT decision || '/' || status || '/' || COALESCE(error_type, '') FROM audit_events
WHERE tool = $1 ORDER BY seq`, core.ToolInstanceRename)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"allow/ok/", "deny/error/invalid_argument", "allow/error/conflict"}; !slices.Equal(got, want) {
		t.Errorf("rename rows %q, want %q", got, want)
	}
}
