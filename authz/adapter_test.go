package authz

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/testkit/pgtest"
)

// storedRules returns the casbin_rule rows of ptype as "v0,v1,...,v5",
// sorted.
func storedRules(t *testing.T, pool *pgxpool.Pool, ptype string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT concat_ws(',', v0, v1, v2, v3, v4, v5) FROM casbin_rule WHERE ptype = $1 ORDER BY 1`, ptype)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func row(v ...string) string {
	for len(v) < ruleFields {
		v = append(v, "")
	}
	return strings.Join(v, ",")
}

func wantRows(t *testing.T, pool *pgxpool.Pool, want ...string) {
	t.Helper()
	got := storedRules(t, pool, "p")
	want = slices.Sorted(slices.Values(want))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stored p rules:\n got  %q\n want %q", got, want)
	}
}

func testModel(t *testing.T) model.Model {
	t.Helper()
	m, err := NewModel()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAdapterCRUD(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	ad := NewAdapter(pool, WithLogger(quiet))
	u, v := string(randUser()), string(randUser())
	r1 := []string{u, "catalog", ActionCatalogRead, "", EffectAllow}
	r2 := []string{u, "connectors/" + u + "/**", ActionRead, "task=required", EffectAllow}
	r3 := []string{v, "**", AnyAction, "", EffectDeny}

	t.Run("through a casbin enforcer (auto-save)", func(t *testing.T) {
		e, err := casbin.NewEnforcer(testModel(t), ad)
		if err != nil {
			t.Fatal(err)
		}
		before := dbVersion(t, pool)
		for _, r := range [][]string{r1, r2, r3} {
			if ok, err := e.AddPolicy(r); err != nil || !ok {
				t.Fatalf("AddPolicy(%v) = %v, %v", r, ok, err)
			}
		}
		wantRows(t, pool, row(r1...), row(r2...), row(r3...))
		if after := dbVersion(t, pool); after <= before {
			t.Errorf("policy version did not move: %d -> %d", before, after)
		}
		if ok, err := e.RemovePolicy(r3); err != nil || !ok {
			t.Fatalf("RemovePolicy = %v, %v", ok, err)
		}
		wantRows(t, pool, row(r1...), row(r2...))

		// A fresh enforcer loads what was saved, with the model's arity
		// even where a middle field (cond) is empty.
		e2, err := casbin.NewEnforcer(testModel(t), ad)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := e2.GetPolicy()
		if fmt.Sprint(got) != fmt.Sprint([][]string{r1, r2}) {
			t.Errorf("loaded %q", got)
		}
	})

	t.Run("direct", func(t *testing.T) {
		ctx := context.Background()
		if err := ad.AddPolicyCtx(ctx, "p", "p", r3); err != nil {
			t.Fatal(err)
		}
		if err := ad.AddPolicyCtx(ctx, "p", "p", r3); err != nil {
			t.Fatalf("adding an existing rule: %v", err)
		}
		wantRows(t, pool, row(r1...), row(r2...), row(r3...))
		if err := ad.RemovePolicy("p", "p", r3); err != nil {
			t.Fatal(err)
		}
		if err := ad.RemovePolicy("p", "p", r3); err != nil {
			t.Fatalf("removing a missing rule: %v", err)
		}
		wantRows(t, pool, row(r1...), row(r2...))
	})

	t.Run("remove filtered", func(t *testing.T) {
		if err := ad.AddPolicy("p", "p", r3); err != nil {
			t.Fatal(err)
		}
		// Field 2 (action) = connector.read, any value elsewhere.
		if err := ad.RemoveFilteredPolicy("p", "p", 2, ActionRead); err != nil {
			t.Fatal(err)
		}
		wantRows(t, pool, row(r1...), row(r3...))
		// Empty values are wildcards: subject u, any resource, effect allow.
		if err := ad.RemoveFilteredPolicy("p", "p", 0, u, "", "", "", EffectAllow); err != nil {
			t.Fatal(err)
		}
		wantRows(t, pool, row(r3...))
		if err := ad.RemoveFilteredPolicy("p", "p", 5, "a", "b"); err == nil {
			t.Error("out-of-range field filter accepted")
		}
		if err := ad.RemoveFilteredPolicy("p", "p", 0, v); err != nil {
			t.Fatal(err)
		}
		wantRows(t, pool)
	})
}

func TestAdapterBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	ad := NewAdapter(pool, WithLogger(quiet))
	u := string(randUser())
	var rules [][]string
	var rows []string
	for i := range 50 {
		r := []string{u, fmt.Sprintf("connectors/%s/echo/i%d/**", u, i), ActionRead, "", EffectAllow}
		rules = append(rules, r)
		rows = append(rows, row(r...))
	}

	t.Run("add is one statement", func(t *testing.T) {
		before := dbVersion(t, pool)
		if err := ad.AddPoliciesCtx(ctx, "p", "p", append(rules, rules[0])); err != nil { // a duplicate is skipped
			t.Fatal(err)
		}
		wantRows(t, pool, rows...)
		if after := dbVersion(t, pool); after != before+1 {
			t.Errorf("version %d -> %d, want one bump for one batch", before, after)
		}
	})
	t.Run("a bad rule writes nothing", func(t *testing.T) {
		bad := append(slices.Clone(rules[:2]), []string{u, "x", "y", "z", "allow", "v5", "v6"}) // 7 fields
		if err := ad.AddPolicies("p", "p", [][]string{{u, "new", ActionRead, "", EffectAllow}, bad[2]}); err == nil {
			t.Fatal("rule with 7 fields accepted")
		}
		wantRows(t, pool, rows...)
	})
	t.Run("remove", func(t *testing.T) {
		if err := ad.RemovePoliciesCtx(ctx, "p", "p", rules[:40]); err != nil {
			t.Fatal(err)
		}
		wantRows(t, pool, rows[40:]...)
		if err := ad.RemovePolicies("p", "p", rules); err != nil {
			t.Fatal(err)
		}
		wantRows(t, pool)
	})
	t.Run("through a casbin enforcer", func(t *testing.T) {
		e, err := casbin.NewEnforcer(testModel(t), ad)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := e.AddPolicies(rules); err != nil || !ok {
			t.Fatalf("AddPolicies = %v, %v", ok, err)
		}
		wantRows(t, pool, rows...)
		if ok, err := e.RemovePolicies(rules[:25]); err != nil || !ok {
			t.Fatalf("RemovePolicies = %v, %v", ok, err)
		}
		wantRows(t, pool, rows[25:]...)
	})
}

func TestAdapterFilteredLoad(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	ad := NewAdapter(pool, WithLogger(quiet))
	alice, bob, carol := newUser(t, pool, "alice"), newUser(t, pool, "bob"), newUser(t, pool, "carol")
	eng := newGroup(t, pool, "eng")
	join(t, pool, eng, alice)
	ra := []string{string(alice), "catalog", ActionCatalogRead, "", EffectAllow}
	rb := []string{string(bob), "catalog", ActionCatalogRead, "", EffectDeny}
	rc := []string{string(carol), "policy", ActionPolicyAdmin, "", EffectAllow}
	rg := []string{string(eng), "connectors/**", ActionRead, "agent=x", EffectAllow}
	if err := ad.AddPolicies("p", "p", [][]string{ra, rb, rc, rg}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name      string
		filter    any
		wantP     [][]string
		wantG     int
		filtered  bool
		wantError error
	}{
		{"nil loads everything", nil, [][]string{ra, rb, rc, rg}, 1, false, nil},
		{"nil *Filter loads everything", (*Filter)(nil), [][]string{ra, rb, rc, rg}, 1, false, nil},
		{"empty filter", Filter{}, [][]string{ra, rb, rc, rg}, 1, true, nil},
		{"subjects", Filter{V0: []string{string(alice), string(eng)}}, [][]string{ra, rg}, 1, true, nil},
		{"p only", &Filter{PType: []string{"p"}, V0: []string{string(alice), string(carol)}}, [][]string{ra, rc}, 0, true, nil},
		{"g only", Filter{PType: []string{"g"}}, nil, 1, true, nil},
		{"several columns", Filter{V1: []string{"catalog"}, V4: []string{EffectDeny}}, [][]string{rb}, 0, true, nil},
		{"no match", Filter{V0: []string{"nobody"}}, nil, 0, true, nil},
		{"wrong type", map[string]string{"v0": "x"}, nil, 0, false, ErrUnsupportedFilter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testModel(t)
			err := ad.LoadFilteredPolicy(m, tc.filter)
			if tc.wantError != nil {
				if !errors.Is(err, tc.wantError) {
					t.Fatalf("err = %v, want %v", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := m["p"]["p"].Policy; fmt.Sprint(got) != fmt.Sprint(tc.wantP) {
				t.Errorf("p rules %q, want %q", got, tc.wantP)
			}
			if got := len(m["g"]["g"].Policy); got != tc.wantG {
				t.Errorf("%d g rules, want %d", got, tc.wantG)
			}
			if ad.IsFiltered() != tc.filtered {
				t.Errorf("IsFiltered = %v, want %v", ad.IsFiltered(), tc.filtered)
			}
		})
	}

	t.Run("enforcer with a filtered policy", func(t *testing.T) {
		e, err := casbin.NewEnforcer(testModel(t), ad)
		if err != nil {
			t.Fatal(err)
		}
		e.AddFunction("condMatch", CondMatch)
		if err := e.LoadFilteredPolicy(Filter{V0: []string{string(alice)}}); err != nil {
			t.Fatal(err)
		}
		if ok, err := e.Enforce(string(alice), "catalog", ActionCatalogRead, callctx.TaskContext{}); !ok || err != nil {
			t.Errorf("alice's rule not loaded: %v", err)
		}
		if ok, _ := e.Enforce(string(carol), "policy", ActionPolicyAdmin, callctx.TaskContext{}); ok {
			t.Error("carol's rule loaded despite the filter")
		}
		if err := e.SavePolicy(); err == nil {
			t.Error("saving a filtered policy succeeded")
		}
		if err := ad.SavePolicy(e.GetModel()); !errors.Is(err, ErrFilteredSave) {
			t.Errorf("adapter SavePolicy after filtered load: %v", err)
		}
	})
}

func TestAdapterUpdate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	ad := NewAdapter(pool, WithLogger(quiet))
	u := string(randUser())
	r1 := []string{u, "catalog", ActionCatalogRead, "", EffectAllow}
	r2 := []string{u, "policy", ActionPolicyAdmin, "", EffectAllow}
	r3 := []string{u, "connectors/**", ActionRead, "", EffectAllow}
	if err := ad.AddPolicies("p", "p", [][]string{r1, r2, r3}); err != nil {
		t.Fatal(err)
	}
	r1b := []string{u, "catalog", ActionCatalogRead, "", EffectDeny}
	r2b := []string{u, "policy", ActionPolicyAdmin, "task=required", EffectAllow}

	t.Run("one", func(t *testing.T) {
		if err := ad.UpdatePolicy("p", "p", r1, r1b); err != nil {
			t.Fatal(err)
		}
		wantRows(t, pool, row(r1b...), row(r2...), row(r3...))
		if err := ad.UpdatePolicy("p", "p", r1, r1b); !errors.Is(err, ErrRuleNotFound) {
			t.Errorf("updating a missing rule: %v", err)
		}
	})
	t.Run("several, all or nothing", func(t *testing.T) {
		missing := []string{u, "nothing", ActionRead, "", EffectAllow}
		err := ad.UpdatePoliciesCtx(ctx, "p", "p", [][]string{r2, missing}, [][]string{r2b, r1})
		if !errors.Is(err, ErrRuleNotFound) {
			t.Fatalf("err = %v, want not found", err)
		}
		wantRows(t, pool, row(r1b...), row(r2...), row(r3...)) // r2 not updated either
		if err := ad.UpdatePolicies("p", "p", [][]string{r2, r1b}, [][]string{r2b, r1}); err != nil {
			t.Fatal(err)
		}
		wantRows(t, pool, row(r1...), row(r2b...), row(r3...))
		if err := ad.UpdatePolicies("p", "p", [][]string{r1}, nil); err == nil {
			t.Error("mismatched lengths accepted")
		}
	})
	t.Run("into an existing rule is a conflict", func(t *testing.T) {
		err := ad.UpdatePolicy("p", "p", r1, r3)
		if !errors.Is(err, fault.ErrConflict) {
			t.Errorf("err = %v, want conflict", err)
		}
	})
	t.Run("filtered", func(t *testing.T) {
		v := string(randUser())
		newRules := [][]string{{v, "catalog", ActionCatalogRead, "", EffectAllow}, {v, "connectors/" + v + "/**", AnyAction, "", EffectAllow}}
		old, err := ad.UpdateFilteredPolicies("p", "p", newRules, 0, u, "", "", "", EffectAllow)
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(old, func(a, b []string) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
		want := [][]string{r1, r2b, r3}
		slices.SortFunc(want, func(a, b []string) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
		if fmt.Sprint(old) != fmt.Sprint(want) {
			t.Errorf("old rules %q, want %q", old, want)
		}
		wantRows(t, pool, row(newRules[0]...), row(newRules[1]...))
	})
	t.Run("through a casbin enforcer", func(t *testing.T) {
		e, err := casbin.NewEnforcer(testModel(t), ad)
		if err != nil {
			t.Fatal(err)
		}
		pol, _ := e.GetPolicy()
		upd := slices.Clone(pol[0])
		upd[4] = EffectDeny
		if ok, err := e.UpdatePolicy(pol[0], upd); err != nil || !ok {
			t.Fatalf("UpdatePolicy = %v, %v", ok, err)
		}
		wantRows(t, pool, row(upd...), row(pol[1]...))
		if ok, err := e.UpdatePolicies([][]string{upd, pol[1]}, [][]string{pol[0], r1}); err != nil || !ok {
			t.Fatalf("UpdatePolicies = %v, %v", ok, err)
		}
		wantRows(t, pool, row(pol[0]...), row(r1...))
	})
}

func TestAdapterMembershipIsReadOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	ad := NewAdapter(pool, WithLogger(quiet))
	alice := newUser(t, pool, "alice")
	eng := newGroup(t, pool, "eng")
	join(t, pool, eng, alice)
	link := []string{string(alice), string(eng)}
	other := []string{string(randUser()), string(eng)}

	for name, op := range map[string]func() error{
		"add":             func() error { return ad.AddPolicy("g", "g", other) },
		"add batch":       func() error { return ad.AddPoliciesCtx(ctx, "g", "g", [][]string{other}) },
		"remove":          func() error { return ad.RemovePolicy("g", "g", link) },
		"remove batch":    func() error { return ad.RemovePolicies("g", "g", [][]string{link}) },
		"remove filtered": func() error { return ad.RemoveFilteredPolicy("g", "g", 0, string(alice)) },
		"update":          func() error { return ad.UpdatePolicy("g", "g", link, other) },
		"update filtered": func() error {
			_, err := ad.UpdateFilteredPolicies("g", "g", [][]string{other}, 0, string(alice))
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			if err := op(); !errors.Is(err, ErrMembershipReadOnly) {
				t.Errorf("err = %v, want ErrMembershipReadOnly", err)
			}
			if got := storedRules(t, pool, "g"); fmt.Sprint(got) != fmt.Sprint([]string{row(link...)}) {
				t.Errorf("g rows changed: %q", got)
			}
		})
	}

	t.Run("casbin group API is refused too", func(t *testing.T) {
		e, err := casbin.NewEnforcer(testModel(t), ad)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := e.AddGroupingPolicy(other); err == nil && ok {
			t.Error("AddGroupingPolicy succeeded")
		}
		if ok, _ := e.HasGroupingPolicy(link); !ok {
			t.Error("mirrored membership not loaded")
		}
	})

	t.Run("save policy keeps membership", func(t *testing.T) {
		m := testModel(t)
		if err := ad.LoadPolicy(m); err != nil {
			t.Fatal(err)
		}
		r := []string{string(alice), "catalog", ActionCatalogRead, "", EffectAllow}
		if err := m.AddPolicy("p", "p", r); err != nil {
			t.Fatal(err)
		}
		m["g"]["g"].Policy = nil // even if the model lost them
		if err := ad.SavePolicy(m); err != nil {
			t.Fatal(err)
		}
		wantRows(t, pool, row(r...))
		if got := storedRules(t, pool, "g"); fmt.Sprint(got) != fmt.Sprint([]string{row(link...)}) {
			t.Errorf("g rows after SavePolicy: %q", got)
		}
	})
}

func TestAdapterSkipsUnknownPtype(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	ad := NewAdapter(pool, WithLogger(quiet))
	u := string(randUser())
	r := []string{u, "catalog", ActionCatalogRead, "", EffectAllow}
	if err := ad.AddPolicy("p", "p", r); err != nil {
		t.Fatal(err)
	}
	if err := ad.AddPolicy("p", "p9", []string{"x", "y"}); err != nil {
		t.Fatal(err)
	}
	m := testModel(t)
	if err := ad.LoadPolicy(m); err != nil {
		t.Fatalf("LoadPolicy with an unknown ptype row: %v", err)
	}
	if got := m["p"]["p"].Policy; fmt.Sprint(got) != fmt.Sprint([][]string{r}) {
		t.Errorf("loaded %q", got)
	}
}
