package engine

import (
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/connec/connec/callctx"
)

// benchPolicy returns n rules, ten per user (as authz's benchmarks store
// them), the users and the project the conditional rules name.
func benchPolicy(n int) (Policy, []callctx.Subject, string) {
	project := uuid.NewString()
	users := make([]callctx.Subject, n/10)
	p := Policy{Version: 1, Rules: make([][]string, 0, n)}
	for i := range n {
		if i%10 == 0 {
			users[i/10] = randUser()
		}
		u := users[i/10]
		own := OwnerResource(u)
		var r Rule
		switch i % 10 {
		case 0:
			r = allow(u, own+"/**", ActionRead)
		case 1:
			r = allow(u, own+"/echo/*/send", ActionSend).when("project=" + project + ";task=required")
		case 2:
			r = deny(u, own+"/echo/"+uuid.NewString()+"/**", AnyAction).when("agent=rogue")
		case 3:
			r = allow(u, ResourceCatalog, ActionCatalogRead)
		default:
			r = allow(u, own+"/web/"+uuid.NewString()+"/post", ActionSend)
		}
		p.Rules = append(p.Rules, r.Values())
	}
	return p, users, project
}

// BenchmarkDecide measures the engine on the policies of authz's
// BenchmarkDecide, without a database or a decision cache: "snapshot" is
// indexing the policy (NewSnapshot, part of every policy load), "miss"
// decides a request whose caller's rules are compiled, "miss-new-caller"
// compiles them too. Two baselines, measured in the same run:
// "miss-casbin" is what "miss" replaced, a Casbin enforcer over the
// caller's rules (built beforehand), and "baseline-full-scan" is plain
// Casbin evaluating the request against the whole policy, the cost "miss"
// avoids by evaluating only the caller's rules.
func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			p, users, project := benchPolicy(n)
			u := users[len(users)/2]
			req := Request{
				Subject:  u,
				Action:   ActionSend,
				Resource: OperationResource(u, "echo", uuid.New(), "send"),
				Task:     callctx.TaskContext{ProjectID: project, TaskID: uuid.NewString(), AgentID: "planner"},
			}
			check := func(b *testing.B, d Decision, err error) {
				b.Helper()
				if err != nil || !d.Allowed {
					b.Fatalf("benchmark request denied: %+v, %v", d, err)
				}
			}
			b.Run("snapshot", func(b *testing.B) {
				for b.Loop() {
					NewSnapshot(p, Options{SubjectCache: 4096})
				}
			})
			s := NewSnapshot(p, Options{SubjectCache: 4096})
			d, err := decide(s, req)
			check(b, d, err)
			b.Run("miss", func(b *testing.B) {
				for b.Loop() {
					_, _ = decide(s, req)
				}
			})
			cold := NewSnapshot(p, Options{})
			b.Run("miss-new-caller", func(b *testing.B) {
				for b.Loop() {
					_, _ = decide(cold, req)
				}
			})
			full, err := casbinFull(p)
			if err != nil {
				b.Fatal(err)
			}
			enf, err := casbinFor(full, string(u))
			if err != nil {
				b.Fatal(err)
			}
			d, err = casbinDecide(enf, p.Version, req)
			check(b, d, err)
			b.Run("miss-casbin", func(b *testing.B) {
				for b.Loop() {
					_, _ = casbinDecide(enf, p.Version, req)
				}
			})
			facts := factsOf(req.Task)
			b.Run("baseline-full-scan", func(b *testing.B) {
				for b.Loop() {
					_, _, _ = full.EnforceEx(string(req.Subject), req.Resource, req.Action, facts)
				}
			})
		})
	}
}

// BenchmarkValidateRule measures validating one rule against the resource
// grammar and a catalog, as every stored rule is on each policy load, next
// to "syntax-only", the glob syntax check that was all a rule got before.
func BenchmarkValidateRule(b *testing.B) {
	cat := testCatalog{
		"echo": {"echo.read": ActionRead, "echo.send": ActionSend, "echo.later": ActionRead},
		"http": {"http.get": ActionRead, "http.post": ActionSend, "http.put": ActionSend, "http.delete": ActionSend},
		"smtp": {"mail.send": ActionSend},
	}
	u := randUser()
	own := OwnerResource(u)
	rules := []Rule{
		allow(u, own+"/**", AnyAction),
		allow(u, own+"/echo/*/echo.send", ActionSend).when("task=required"),
		deny(u, "connectors/*/http/*/http.*", ActionSend),
		allow(u, ResourceCatalog, ActionCatalogRead),
		allow(u, own+"/http/"+uuid.NewString()+"/http.get", ActionRead),
	}
	b.Run("grammar+catalog", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if err := rules[i%len(rules)].ValidateIn(cat); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("syntax-only", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			r := rules[i%len(rules)]
			if _, err := callctx.ParseSubject(r.Subject); err != nil {
				b.Fatal(err)
			}
			if err := checkPattern(r.Resource); err != nil {
				b.Fatal(err)
			}
			if _, err := ParseCond(r.Cond); err != nil {
				b.Fatal(err)
			}
		}
	})
}
