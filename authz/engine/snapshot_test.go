package engine

import (
	"fmt"
	"slices"
	"testing"

	"github.com/connec/connec/callctx"
)

// Group membership is followed as Casbin's default role manager followed
// it: through groups of groups, each group once (cycles end), and at most
// ten levels deep. A chain of fourteen groups, each holding one rule, is
// decided as Casbin decides it, and its groups are Casbin's.
func TestGroupDepthMatchesCasbin(t *testing.T) {
	t.Parallel()
	u := string(randUser())
	chain := make([]string, 14)
	var p Policy
	for i := range chain {
		chain[i] = string(randGroup())
		member := u
		if i > 0 {
			member = chain[i-1]
		}
		p.Links = append(p.Links, [2]string{member, chain[i]})
		p.Rules = append(p.Rules, []string{chain[i], fmt.Sprintf("connectors/%s/echo/**", chain[i]), ActionRead, "", EffectAllow})
	}
	// A cycle back to the start, and a second path to a deep group.
	p.Links = append(p.Links, [2]string{chain[13], chain[0]}, [2]string{u, chain[11]})
	s := NewSnapshot(p, Options{})
	full, err := casbinFull(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range append([]string{u}, chain...) {
		want, err := full.GetImplicitRolesForUser(sub)
		if err != nil {
			t.Fatal(err)
		}
		got := s.groupsOf(sub)
		if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
			t.Fatalf("groups of %s: %q, casbin %q", sub, got, want)
		}
	}
	if n := len(s.groupsOf(u)); n == len(chain) || n < 10 {
		t.Fatalf("%s is in %d groups: the depth limit is not exercised", u, n)
	}
	reached := 0
	for i, g := range chain {
		req := Request{Subject: callctx.Subject(u), Action: ActionRead, Resource: fmt.Sprintf("connectors/%s/echo/%s", g, "0b6f1e7a-1c2d-4e5f-8a9b-0c1d2e3f4a5b")}
		got, err := decide(s, req)
		if err != nil {
			t.Fatal(err)
		}
		enf, err := casbinFor(full, u)
		if err != nil {
			t.Fatal(err)
		}
		want, err := casbinDecide(enf, 0, req)
		if err != nil {
			t.Fatal(err)
		}
		fok, _, err := full.EnforceEx(u, req.Resource, req.Action, factsOf(req.Task))
		if err != nil {
			t.Fatal(err)
		}
		if got.Allowed != want.Allowed || got.Reason != want.Reason || got.Allowed != fok {
			t.Fatalf("group %d: engine %+v, casbin %+v, full policy %v", i+1, got, want, fok)
		}
		if got.Allowed {
			reached++
		}
	}
	if reached == 0 || reached == len(chain) {
		t.Fatalf("%d of %d groups' rules apply: the depth limit is not exercised", reached, len(chain))
	}
}

// Rules are read as Casbin's loader read them: of rules whose fields joined
// by "," are equal, the first is kept (NewSnapshot), so decisions and the
// validation report do not change. The second rule here differs from the
// first, yet Casbin never saw it.
func TestDuplicateRulesAsCasbinReadThem(t *testing.T) {
	t.Parallel()
	u := randUser()
	own := OwnerResource(u)
	p := Policy{Rules: [][]string{
		{string(u), own + "/echo/*/a", "b," + ActionSend, "", EffectAllow}, // joins as …/a,b,connector.send,,allow
		{string(u), own + "/echo/*/a,b", ActionSend, "", EffectAllow},      // joins the same
		allow(u, own+"/**", ActionRead).Values(),
		allow(u, own+"/**", ActionRead).Values(), // the same rule twice
		deny(u, own+"/**", ActionRead).when("agent=x").Values(),
	}}
	s := NewSnapshot(p, Options{})
	full, err := casbinFull(p)
	if err != nil {
		t.Fatal(err)
	}
	want, err := full.GetPolicy()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(s.rules) != fmt.Sprint(want) {
		t.Fatalf("engine reads\n%q\ncasbin read\n%q", s.rules, want)
	}
	req := Request{Subject: u, Action: ActionSend, Resource: own + "/echo/0b6f1e7a-1c2d-4e5f-8a9b-0c1d2e3f4a5b/a,b"}
	if d, err := decide(s, req); err != nil || d.Allowed {
		t.Fatalf("%+v, %v: want default deny, as Casbin never loaded the rule that would allow", d, err)
	}
	if len(s.Invalid()) != 1 {
		t.Fatalf("invalid rules %q, want the first rule only, once", s.Invalid())
	}
}
