package faults

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/app"
	"github.com/connec/connec/internal/testkit/pgtest"
)

// A change made through one server applies to the very next operation on
// another, before that server has heard of it: the commit that lets an
// operation start checks that the policy version it was decided under and
// the token it was authenticated with are still current, and decides again
// (or refuses) if not. Each round makes the change through A and at once
// sends through B, whose caches still hold the old state.
func TestChangesOnOneServerBindTheNextCallOnAnother(t *testing.T) {
	url, key := pgtest.URL(t), keyFile(t)
	a, b := server(t, url, key), server(t, url, key)
	alice := as(t, a, "alice")
	inst, err := a.Service.Install(alice, core.InstallInput{Type: "echo", DisplayName: "shared", Enable: true})
	if err != nil {
		t.Fatal(err)
	}
	bobUser, err := a.AddUser(context.Background(), "bob", true)
	if err != nil {
		t.Fatal(err)
	}
	send := core.InvokeInput{InstanceID: string(inst.ID), Operation: "echo.send", Arguments: []byte(`{"message":"x"}`)}
	rule := authz.Rule{Subject: string(bobUser.Subject()), Resource: authz.OperationResource(inst.Owner, inst.Type, inst.ID.UUID(), "echo.send"),
		Action: authz.ActionSend, Effect: authz.EffectAllow}

	t.Run("rule removed", func(t *testing.T) {
		const rounds = 40
		allowed := 0
		for range rounds {
			if _, err := a.ChangeRule(context.Background(), rule, false); err != nil {
				t.Fatal(err)
			}
			if err := b.Authz.Refresh(context.Background()); err != nil { // B holds the allow
				t.Fatal(err)
			}
			bob := principalOn(t, b, bobUser.Subject())
			if _, err := b.Service.Invoke(bob, send); err != nil {
				t.Fatalf("bob's send with the rule in place: %v", err)
			}
			if _, err := a.ChangeRule(context.Background(), rule, true); err != nil {
				t.Fatal(err)
			}
			_, err := b.Service.Invoke(bob, send)
			switch {
			case err == nil:
				allowed++
			case !errors.Is(err, fault.ErrPolicyDenied):
				t.Fatalf("bob's send after the rule went: %v, want policy_denied", err)
			}
		}
		if allowed > 0 {
			t.Fatalf("%d of %d sends through B right after A removed the rule were allowed", allowed, rounds)
		}
	})

	t.Run("token revoked", func(t *testing.T) {
		if _, err := a.ChangeRule(context.Background(), rule, false); err != nil {
			t.Fatal(err)
		}
		if err := b.Authz.Refresh(context.Background()); err != nil { // B holds the allow
			t.Fatal(err)
		}
		const rounds = 20
		allowed := 0
		for range rounds {
			tok, tk, err := a.Identity.CreateToken(context.Background(), bobUser.Subject(), "r", 0)
			if err != nil {
				t.Fatal(err)
			}
			p, err := b.Identity.Authenticate(context.Background(), tok) // B remembers it
			if err != nil {
				t.Fatal(err)
			}
			p.Transport = "test"
			ctx := callctx.WithPrincipal(context.Background(), p)
			if _, err := a.Pool.Exec(context.Background(), `UPDATE api_tokens SET revoked_at = now() WHERE id = $1`, tk.ID); err != nil {
				t.Fatal(err)
			}
			_, err = b.Service.Invoke(ctx, send)
			switch {
			case err == nil:
				allowed++
			case !errors.Is(err, fault.ErrUnauthenticated):
				t.Fatalf("send with a token revoked a moment ago: %v, want unauthenticated", err)
			}
		}
		if allowed > 0 {
			t.Fatalf("%d of %d sends through B with a token just revoked by SQL were allowed", allowed, rounds)
		}
	})
}

// Every other kind of change made through A binds B's next call too: the
// instance disabled, its credential revoked, the caller taken out of the
// group that granted the right. Each round: B is warmed (it holds the old
// state), A changes, B is called at once.
func TestEveryChangeBindsTheNextCallOnAnotherServer(t *testing.T) {
	url, key := pgtest.URL(t), keyFile(t)
	a, b := server(t, url, key), server(t, url, key)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		want   error
		change func(t *testing.T, inst core.Instance, cred core.Credential, group string, bob callctx.Subject)
	}{
		{"instance disabled", fault.ErrPolicyDenied, func(t *testing.T, inst core.Instance, _ core.Credential, _ string, _ callctx.Subject) {
			if _, err := a.Pool.Exec(ctx, `UPDATE connector_instances SET state = 'disabled' WHERE id = $1`, string(inst.ID)); err != nil {
				t.Fatal(err)
			}
		}},
		{"credential revoked", fault.ErrCredentialRevoked, func(t *testing.T, _ core.Instance, cred core.Credential, _ string, _ callctx.Subject) {
			if _, err := a.Pool.Exec(ctx, `UPDATE connector_credentials SET state = 'revoked', revoked_at = now() WHERE id = $1`, cred.ID); err != nil {
				t.Fatal(err)
			}
		}},
		{"membership removed", fault.ErrPolicyDenied, func(t *testing.T, _ core.Instance, _ core.Credential, group string, bob callctx.Subject) {
			if _, err := a.Pool.Exec(ctx, `DELETE FROM group_members WHERE group_id = $1 AND user_id = $2`, group, bob.ID()); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for round := range 10 {
				owner := as(t, a, fmt.Sprintf("owner-%s-%d", strings.ReplaceAll(tc.name, " ", "-"), round))
				inst, err := a.Service.Install(owner, core.InstallInput{Type: "echo", DisplayName: "e", Enable: true})
				if err != nil {
					t.Fatal(err)
				}
				cred, err := a.Service.CreateCredential(owner, core.CredentialInput{InstanceID: string(inst.ID), Kind: "bearer", Secret: map[string]string{"token": "t0k3n-value"}})
				if err != nil {
					t.Fatal(err)
				}
				g, err := a.AddGroup(ctx, fmt.Sprintf("g-%s-%d", strings.ReplaceAll(tc.name, " ", "-"), round))
				if err != nil {
					t.Fatal(err)
				}
				u, err := a.AddUser(ctx, fmt.Sprintf("bob-%s-%d", strings.ReplaceAll(tc.name, " ", "-"), round), true)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := a.AddMember(ctx, string(g.Subject()), string(u.Subject())); err != nil {
					t.Fatal(err)
				}
				if _, err := a.ChangeRule(ctx, authz.Rule{Subject: string(g.Subject()), Resource: authz.OperationResource(inst.Owner, inst.Type, inst.ID.UUID(), "echo.send"),
					Action: authz.ActionSend, Effect: authz.EffectAllow}, false); err != nil {
					t.Fatal(err)
				}
				if err := b.Authz.Refresh(ctx); err != nil {
					t.Fatal(err)
				}
				bob := principalOn(t, b, u.Subject())
				send := core.InvokeInput{InstanceID: string(inst.ID), Operation: "echo.send", Arguments: []byte(`{"message":"x"}`)}
				if _, err := b.Service.Invoke(bob, send); err != nil { // B now holds instance, credential and decision
					t.Fatalf("round %d, before the change: %v", round, err)
				}
				tc.change(t, inst, cred, g.ID.String(), u.Subject())
				if _, err := b.Service.Invoke(bob, send); !errors.Is(err, tc.want) {
					t.Fatalf("round %d: the call through B right after the change through A answered %v, want %v", round, err, tc.want)
				}
			}
		})
	}
}

// principalOn is subject's principal on server s.
func principalOn(t *testing.T, s *app.App, subject callctx.Subject) context.Context {
	t.Helper()
	p, err := s.Identity.PrincipalFor(context.Background(), subject)
	if err != nil {
		t.Fatal(err)
	}
	p.Transport = "test"
	return callctx.WithPrincipal(context.Background(), p)
}
