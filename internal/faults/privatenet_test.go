package faults

import (
	"context"
	"errors"
	"testing"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/testkit/pgtest"
)

// A network/private grant removed through server A binds the very next call
// of an instance that reaches private networks on server B, even before B
// hears of the change: the commit that dispatches the call finds the policy
// moved, and the call is decided again, the grant included.
func TestPrivateNetworkGrantRemovedElsewhereBindsTheNextCall(t *testing.T) {
	url, key := pgtest.URL(t), keyFile(t)
	a, b := server(t, url, key), server(t, url, key)
	api, hits := counter(t)
	alice := as(t, a, "alice")
	inst := httpInstance(t, a, alice, api.URL) // grants alice network/private
	p, _ := callctx.PrincipalFrom(alice)
	grant := authz.Rule{Subject: string(p.Subject), Resource: authz.ResourcePrivateNetwork, Action: authz.ActionAdmin, Effect: authz.EffectAllow}
	get := core.InvokeInput{InstanceID: inst, Operation: "http.get", Arguments: []byte(`{"path":"/x"}`)}
	post := core.InvokeInput{InstanceID: inst, Operation: "http.post", Arguments: []byte(`{"path":"/x","body":{}}`)}
	const rounds = 20
	reached := 0
	for i := range rounds {
		in := []core.InvokeInput{get, post}[i%2]
		if _, err := a.ChangeRule(context.Background(), grant, false); err != nil {
			t.Fatal(err)
		}
		if err := b.Authz.Refresh(context.Background()); err != nil { // B holds the grant
			t.Fatal(err)
		}
		onB := principalOn(t, b, p.Subject)
		if _, err := b.Service.Invoke(onB, in); err != nil {
			t.Fatalf("%s with the grant in place: %v", in.Operation, err)
		}
		if _, err := a.ChangeRule(context.Background(), grant, true); err != nil {
			t.Fatal(err)
		}
		before := hits.Load()
		_, err := b.Service.Invoke(onB, in)
		if hits.Load() != before {
			reached++
		}
		if err == nil || !errors.Is(err, fault.ErrPolicyDenied) {
			t.Errorf("%s through B right after A removed the grant: %v, want policy_denied", in.Operation, err)
		}
	}
	if reached > 0 {
		t.Fatalf("%d of %d calls through B reached the private upstream after A removed the grant", reached, rounds)
	}
}
