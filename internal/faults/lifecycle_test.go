package faults

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/testkit/pgtest"
)

// Membership and life-cycle changes made through one server (the operator's
// commands) bind the very next call on another server, which has not heard
// of them yet: a disabled or removed user is refused, a user taken out of a
// group or whose group is disabled or removed loses the group's rights. B
// keeps bob's principal and policy from before each change, as a server
// whose notification is still on its way does; and once the notification
// has arrived, B's authentication refuses the token too.
func TestLifecycleChangesBindTheNextCallOnAnother(t *testing.T) {
	url, key := pgtest.URL(t), keyFile(t)
	a, b := server(t, url, key), server(t, url, key)
	alice := as(t, a, "alice")
	inst, err := a.Service.Install(alice, core.InstallInput{Type: "echo", DisplayName: "shared", Enable: true})
	if err != nil {
		t.Fatal(err)
	}
	send := core.InvokeInput{InstanceID: string(inst.ID), Operation: "echo.send", Arguments: []byte(`{"message":"x"}`)}
	ctx := context.Background()
	opsGroup, err := a.AddGroup(ctx, "ops")
	if err != nil {
		t.Fatal(err)
	}
	// ops may send on alice's instance; bob holds no rule of his own.
	if _, err := a.ChangeRule(ctx, authz.Rule{Subject: string(opsGroup.Subject()),
		Resource: authz.OperationResource(inst.Owner, inst.Type, inst.ID.UUID(), "echo.send"),
		Action:   authz.ActionSend, Effect: authz.EffectAllow}, false); err != nil {
		t.Fatal(err)
	}
	bob, err := a.AddUser(ctx, "bob", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.AddMember(ctx, "ops", "bob"); err != nil {
		t.Fatal(err)
	}
	tok, _, err := a.Identity.CreateToken(ctx, bob.Subject(), "b", 0)
	if err != nil {
		t.Fatal(err)
	}
	// onB authenticates bob's token on B (B remembers it) with B's policy
	// current, and checks that his send goes through there.
	onB := func(t *testing.T) context.Context {
		t.Helper()
		if err := b.Authz.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			p, err := b.Identity.Authenticate(ctx, tok)
			if err == nil {
				p.Transport = "test"
				bctx := callctx.WithPrincipal(ctx, p)
				if _, err = b.Service.Invoke(bctx, send); err == nil {
					return bctx
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("bob cannot send through B before the change: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// refusedNow sends through B at once and wants one of the refusals
	// want.
	refusedNow := func(t *testing.T, bctx context.Context, want ...error) {
		t.Helper()
		_, err := b.Service.Invoke(bctx, send)
		for _, w := range want {
			if errors.Is(err, w) {
				return
			}
		}
		t.Fatalf("bob's send through B right after the change: %v, want %v", err, want)
	}
	// tokenRefused waits for B to hear of the change and refuse the token.
	tokenRefused := func(t *testing.T) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := b.Identity.Authenticate(ctx, tok)
			if errors.Is(err, fault.ErrUnauthenticated) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("B still authenticates bob's token 30s after the change: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	const rounds = 5

	t.Run("user disabled", func(t *testing.T) {
		for range rounds {
			bctx := onB(t)
			if _, err := a.DisableUser(ctx, "bob"); err != nil {
				t.Fatal(err)
			}
			refusedNow(t, bctx, fault.ErrUnauthenticated)
			tokenRefused(t)
			if _, err := b.Identity.PrincipalFor(ctx, bob.Subject()); !errors.Is(err, fault.ErrUnauthenticated) {
				t.Fatalf("B's principal for a disabled user: %v", err)
			}
			if _, err := a.EnableUser(ctx, "bob"); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("member removed", func(t *testing.T) {
		for range rounds {
			bctx := onB(t)
			if _, _, err := a.RemoveMember(ctx, "ops", "bob"); err != nil {
				t.Fatal(err)
			}
			refusedNow(t, bctx, fault.ErrPolicyDenied)
			if _, _, err := a.AddMember(ctx, "ops", "bob"); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("group disabled", func(t *testing.T) {
		for range rounds {
			bctx := onB(t)
			if _, err := a.DisableGroup(ctx, "ops"); err != nil {
				t.Fatal(err)
			}
			refusedNow(t, bctx, fault.ErrPolicyDenied)
			// Membership made while the group is disabled grants nothing
			// either, and is there again once it is enabled.
			if _, err := a.EnableGroup(ctx, "ops"); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("group removed", func(t *testing.T) {
		bctx := onB(t)
		if _, err := a.RemoveGroup(ctx, "ops"); err != nil {
			t.Fatal(err)
		}
		refusedNow(t, bctx, fault.ErrPolicyDenied)
		if rules, err := a.Authz.ListRules(ctx, a.Pool, string(opsGroup.Subject())); err != nil || len(rules) != 0 {
			t.Fatalf("rules of the removed group: %v %v", rules, err)
		}
	})
	t.Run("user removed", func(t *testing.T) {
		g, err := a.AddGroup(ctx, "ops2")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.ChangeRule(ctx, authz.Rule{Subject: string(g.Subject()),
			Resource: authz.OperationResource(inst.Owner, inst.Type, inst.ID.UUID(), "echo.send"),
			Action:   authz.ActionSend, Effect: authz.EffectAllow}, false); err != nil {
			t.Fatal(err)
		}
		if _, _, err := a.AddMember(ctx, "ops2", "bob"); err != nil {
			t.Fatal(err)
		}
		bctx := onB(t)
		if _, err := a.RemoveUser(ctx, "bob"); err != nil {
			t.Fatal(err)
		}
		// His membership went with him, which moved the policy: B decides
		// again (denied), or finds him gone.
		refusedNow(t, bctx, fault.ErrUnauthenticated, fault.ErrPolicyDenied)
		tokenRefused(t)
		if _, err := a.Identity.ResolveUser(ctx, "bob"); !errors.Is(err, fault.ErrNotFound) {
			t.Fatalf("bob after removal: %v", err)
		}
	})
	t.Run("a user who owns instances is not removed", func(t *testing.T) {
		_, err := a.RemoveUser(ctx, "alice")
		if !errors.Is(err, fault.ErrConflict) {
			t.Fatalf("removing alice, who owns an instance: %v, want conflict", err)
		}
		if _, err := a.Identity.ResolveUser(ctx, "alice"); err != nil {
			t.Fatalf("alice after a refused removal: %v", err)
		}
	})
}
