package core_test

import (
	"slices"
	"testing"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/identity"
)

// A subject's instance tools are every operation of every enabled instance
// policy could let it invoke: <handle>.<operation> for its own instances,
// qualified by the owner's name for the others; a disabled instance, an
// operation no rule reaches and another owner's instance without a rule
// show none. A name resolves to its instance and operation.
func TestInstanceTools(t *testing.T) {
	f := newFixture(t, noHub)
	owner, _ := callctx.PrincipalFrom(f.ctx)
	install := func(display, groupOwner string, enable bool) core.Instance {
		t.Helper()
		in, err := f.svc.Install(f.ctx, core.InstallInput{Type: "echo", DisplayName: display, Owner: groupOwner, Enable: enable})
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	rule := func(sub callctx.Subject, resource, action string) {
		t.Helper()
		if _, err := f.az.AddRule(f.ctx, f.pool, authz.Rule{Subject: string(sub), Resource: resource, Action: action, Effect: "allow"}); err != nil {
			t.Fatal(err)
		}
		if err := f.az.Refresh(f.ctx); err != nil {
			t.Fatal(err)
		}
	}
	names := func(ctx callctx.Principal) []string {
		t.Helper()
		tools, err := f.svc.InstanceTools(callctx.WithPrincipal(f.ctx, ctx))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, tl := range tools {
			out = append(out, tl.Name)
		}
		return out
	}

	mail := install("Work Mail", "", true)
	install("Parked", "", false)
	team, err := identity.CreateGroup(f.ctx, f.pool, "team")
	if err != nil {
		t.Fatal(err)
	}
	rule(owner.Subject, "connectors/"+string(team.Subject())+"/**", "*")
	shared := install("Work Mail", string(team.Subject()), true)

	want := []string{"team.work-mail.echo.later", "team.work-mail.echo.read", "team.work-mail.echo.send",
		"work-mail.echo.later", "work-mail.echo.read", "work-mail.echo.send"}
	if got := names(owner); !slices.Equal(got, want) {
		t.Fatalf("owner's tools %q, want %q", got, want)
	}

	// Another user granted one read operation sees that one, under the
	// owner's name.
	bob, err := identity.CreateUser(f.ctx, f.pool, "bob")
	if err != nil {
		t.Fatal(err)
	}
	bobP, err := identity.PrincipalFor(f.ctx, f.pool, bob.Subject())
	if err != nil {
		t.Fatal(err)
	}
	if got := names(bobP); len(got) != 0 {
		t.Fatalf("bob, with no rule, sees %q", got)
	}
	rule(bob.Subject(), authz.OperationResource(mail.Owner, "echo", mail.ID.UUID(), "echo.read"), authz.ActionRead)
	if got, want := names(bobP), []string{"owner.work-mail.echo.read"}; !slices.Equal(got, want) {
		t.Fatalf("bob's tools %q, want %q", got, want)
	}

	tool, ok, err := f.svc.InstanceToolNamed(f.ctx, "team.work-mail.echo.send")
	if err != nil || !ok || tool.InstanceID != shared.ID || tool.Op.Name != "echo.send" || tool.OwnerName != "team" {
		t.Fatalf("resolve: %+v %v %v", tool, ok, err)
	}
	if _, ok, _ := f.svc.InstanceToolNamed(f.ctx, "parked.echo.read"); ok {
		t.Fatal("a disabled instance's tool resolved")
	}
}

// A tool name's possible handles are its parts but the last that are valid
// handles, in either spelling.
func TestHandlesIn(t *testing.T) {
	for _, c := range []struct {
		name, sep string
		want      []string
	}{
		{"work-mail.mail.send", ".", []string{"work-mail", "mail"}},
		{"team.work-mail.echo.read", ".", []string{"team", "work-mail", "echo"}},
		{"Ops.Team.work-mail.echo.read", ".", []string{"work-mail", "echo"}},
		{"work-mail_echo_read", "_", []string{"work-mail", "echo"}},
		{"connector.op.invoke", ".", []string{"connector", "op"}},
		{"nodots", ".", nil},
	} {
		if got := core.HandlesIn(c.name, c.sep); !slices.Equal(got, c.want) {
			t.Errorf("HandlesIn(%q, %q) = %q, want %q", c.name, c.sep, got, c.want)
		}
	}
}
