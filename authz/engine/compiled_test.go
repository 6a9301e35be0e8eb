package engine

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	"github.com/google/uuid"

	"github.com/connec/connec/callctx"
)

// TestCompiledMatchesCasbin is the differential test of the engine: on
// randomized policies (users, groups with nested and cyclic memberships,
// every action and "*", patterns with *, **, ?, classes, alternatives and
// malformed ones, valid and invalid conditions, allow, deny and other
// effects, duplicate rules) and randomized requests, the engine gives what
// Casbin gives: the same answer, the same cited rule, and an error in
// exactly the same cases, with the same message. The whole Decision (or
// its error) is compared with one built from a Casbin enforcer over the
// caller's rules (casbinFor, the evaluation authz used before the compiled
// evaluator), evaluate with that enforcer's EnforceEx, both with plain
// Casbin over the whole policy, and the caller's groups with Casbin's.
func TestCompiledMatchesCasbin(t *testing.T) {
	t.Parallel()
	policies, requestsPerPolicy := 120, 120
	if raceEnabled {
		policies = 40
	}
	rng := rand.New(rand.NewPCG(20261124, 7))
	var stats struct {
		cases, allowed, deniedByRule, defaultDeny, errors, invalid int
		// two or more of the caller's rules match
		multiMatch int
		// an allow rule matches before the deny that decides
		allowBeforeDeny int
		// callers in at least one group, and in a group through another
		grouped, nested int
		// cases of the raw-rule check (checkRawRules)
		raw int
	}
	for p := range policies {
		g := newPolicyGen(rng)
		stats.raw += checkRawRules(t, g, 20)
		pol := g.policy(int64(p + 1))
		s := NewSnapshot(pol, Options{SubjectCache: 1000})
		full, err := casbinFull(pol)
		if err != nil {
			t.Fatal(err)
		}
		enfs := map[string]*casbin.Enforcer{}
		for range requestsPerPolicy {
			req := g.request()
			stats.cases++
			where := func() string {
				return fmt.Sprintf("policy %d, request %+v\npolicy:\n%s", p, req, g.dump())
			}

			// The whole Decision against the Casbin path.
			got, gotErr := decide(s, req)
			key, why := Canonical(req)
			var enf *casbin.Enforcer
			if why == "" {
				if enf = enfs[key.sub]; enf == nil {
					if enf, err = casbinFor(full, key.sub); err != nil {
						t.Fatalf("%s: casbin enforcer: %v", where(), err)
					}
					enfs[key.sub] = enf
				}
			}
			want, wantErr := casbinDecide(enf, pol.Version, req)
			if (gotErr == nil) != (wantErr == nil) {
				t.Fatalf("%s:\nengine error %v, casbin error %v", where(), gotErr, wantErr)
			}
			if gotErr != nil {
				if gotErr.Error() != wantErr.Error() {
					t.Fatalf("%s:\nengine error %v, want casbin's %v", where(), gotErr, wantErr)
				}
			} else {
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(want)
				if !reflect.DeepEqual(got, want) || string(gj) != string(wj) {
					t.Fatalf("%s:\nengine %s\ncasbin %s", where(), gj, wj)
				}
			}
			if why != "" {
				stats.invalid++
				continue
			}

			// Groups as Casbin resolves them.
			groups := s.groupsOf(key.sub)
			wantGroups, err := full.GetImplicitRolesForUser(key.sub)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(slices.Sorted(slices.Values(groups)), slices.Sorted(slices.Values(wantGroups))) {
				t.Fatalf("%s:\ngroups %q, casbin %q", where(), groups, wantGroups)
			}
			if len(groups) > 0 {
				stats.grouped++
			}
			if len(groups) > len(s.groups[key.sub]) {
				stats.nested++
			}

			// The evaluator itself against EnforceEx.
			rules := s.rulesFor(key.sub)
			ok, explain, err := evaluate(rules, key.act, key.res, key.facts)
			wok, wexplain, werr := enf.EnforceEx(key.sub, key.res, key.act, key.facts)
			if ok != wok || !slices.Equal(explain, wexplain) || (err == nil) != (werr == nil) || (err != nil && err.Error() != werr.Error()) {
				t.Fatalf("%s:\nevaluate %v %q %v\nEnforceEx %v %q %v", where(), ok, explain, err, wok, wexplain, werr)
			}
			// How many rules match, each on its own (errors aside).
			var matched []ruleEffect
			for i := range rules {
				if ok, explain, err := evaluate(rules[i:i+1], key.act, key.res, key.facts); err == nil && (ok || len(explain) > 0) {
					matched = append(matched, rules[i].eft)
				}
			}
			if len(matched) >= 2 {
				stats.multiMatch++
			}
			if i := slices.Index(matched, effectDeny); err == nil && i > 0 && slices.Contains(matched[:i], effectAllow) {
				stats.allowBeforeDeny++
			}
			switch {
			case err != nil:
				stats.errors++
			case ok:
				stats.allowed++
			case len(explain) > 0:
				stats.deniedByRule++
			default:
				stats.defaultDeny++
			}

			// Evaluating only the caller's rules answers as the whole
			// policy does, errors included: other subjects' rules fail
			// g() before their pattern or condition is looked at.
			fok, fexplain, ferr := full.EnforceEx(key.sub, key.res, key.act, key.facts)
			if fok != ok || !slices.Equal(fexplain, explain) || (ferr == nil) != (err == nil) || (err != nil && err.Error() != ferr.Error()) {
				t.Fatalf("%s:\nevaluate %v %q %v, full policy %v %q %v", where(), ok, explain, err, fok, fexplain, ferr)
			}
		}
	}
	t.Logf("%+v", stats)
	if stats.raw < policies*10 {
		t.Errorf("only %d raw-rule cases", stats.raw)
	}
	// Every kind of outcome must be well represented, or the generator
	// has drifted and the comparison proves little.
	for name, n := range map[string]int{"allowed": stats.allowed, "denied by rule": stats.deniedByRule,
		"default deny": stats.defaultDeny, "errors": stats.errors, "invalid": stats.invalid,
		"with several matching rules": stats.multiMatch, "with an allow before the deciding deny": stats.allowBeforeDeny,
		"by a caller in a group": stats.grouped, "by a caller in a group through another": stats.nested} {
		if n < stats.cases/50 {
			t.Errorf("only %d of %d cases %s", n, stats.cases, name)
		}
	}
}

// policyGen generates one random policy and requests against it.
type policyGen struct {
	rng      *rand.Rand
	sources  []string // names the patterns were made from
	users    []string
	groups   []string
	proj     string
	names    []string // resource names requests use
	patterns []string
	rules    [][]string
	links    [][2]string
}

func newPolicyGen(rng *rand.Rand) *policyGen {
	g := &policyGen{rng: rng, proj: uuid.NewString()}
	for range 5 {
		g.users = append(g.users, string(randUser()))
	}
	for range 4 {
		g.groups = append(g.groups, string(randGroup()))
	}
	i1, i2 := uuid.NewString(), uuid.NewString()
	g.names = []string{ResourceCatalog, ResourcePolicy, ResourceAudit, "catalogs", "connectors/é,x"}
	for _, owner := range []string{g.users[0], g.users[1], g.groups[0]} {
		own := "connectors/" + owner
		g.names = append(g.names, own)
		for _, typ := range []string{"echo", "web"} {
			for _, inst := range []string{i1, i2} {
				g.names = append(g.names, own+"/"+typ+"/"+inst)
				for _, op := range []string{"send", "read", "a", "b", "ab", "é"} {
					g.names = append(g.names, own+"/"+typ+"/"+inst+"/"+op)
				}
			}
		}
	}
	// Patterns: exact names and names with globs worked in, plus fixed
	// ones, plus malformed ones (some fail only for some names).
	for range 40 {
		name := g.pick(g.names)
		g.sources = append(g.sources, name)
		g.patterns = append(g.patterns, g.mutate(name))
	}
	g.patterns = append(g.patterns, "**", "*", "?", "connectors/**", "connectors/*/echo/*/send", "connectors/*/*/*/{a,b}",
		"connectors/"+g.users[0]+"**", "connectors/"+g.users[0]+"/**", "connectors/"+g.users[0]+"/echo/"+i1+"/*",
		"connectors/"+g.users[0]+"/{echo,web}/**", "connectors/"+g.users[1]+"/*/"+i2+"/[ab]", "catalo?", "{catalog,policy}",
		"connectors/"+g.users[0]+"/echo/"+i1+"/[!a]*", "connectors/"+g.users[0]+"/echo/"+i1+"/[a-b]", "connectors/é\\,x",
		// malformed
		"[", "connectors/[", "connectors/"+g.users[0]+"/{echo", "connectors/"+g.users[0]+"/echo}/**", "catalog\\",
		"connectors/"+g.users[1]+"/echo/[]", "{catalog", "catalog}", "connectors/\xff/**", "connectors/\ufffd", "\xff")
	nRules := 30 + g.rng.IntN(120)
	bad := []float64{0, 0, 0.03, 0.1}[g.rng.IntN(4)]
	subjects := append(slices.Clone(g.users), g.groups...)
	for range nRules {
		cond := g.pick([]string{"", "", "", "task=required", "project=" + g.proj, "project=" + strings.ToUpper(g.proj), "agent=a|b", "agent=b;task=required"})
		if g.rng.Float64() < bad {
			cond = g.pick([]string{"bogus", "agent=", "project=x", ";", "task=maybe", "agent=a b", "task=required;task=required"})
		}
		eft := g.pick([]string{EffectAllow, EffectAllow, EffectAllow, EffectDeny})
		if g.rng.IntN(30) == 0 {
			eft = g.pick([]string{"maybe", "", "Allow"})
		}
		act := g.pick(append([]string{AnyAction, AnyAction, "connector.bogus", ""}, Actions...))
		pattern := g.pick(g.patterns)
		if g.rng.IntN(4) == 0 { // broad ones, so that rules overlap
			pattern = g.pick([]string{"**", "connectors/**", "connectors/" + g.users[0] + "/**", "connectors/*/*/*/*",
				"connectors/" + g.users[1] + "/*/*/*", "connectors/*/{echo,web}/**", "connectors/" + g.groups[0] + "/**"})
		}
		if g.rng.Float64() >= bad && !doublestar.ValidatePattern(pattern) {
			pattern = g.pick(g.names)
		}
		g.rules = append(g.rules, []string{g.pick(subjects), pattern, act, cond, eft})
	}
	// Now and then a rule stored twice (rows that differ only in v5,
	// which the model leaves out, read as one rule twice).
	for range g.rng.IntN(3) {
		g.rules = append(g.rules, slices.Clone(g.rules[g.rng.IntN(len(g.rules))]))
	}
	// Memberships: users in groups, some groups in groups, now and then
	// a cycle.
	for _, u := range g.users[:4] {
		for _, gr := range g.groups {
			if g.rng.IntN(3) == 0 {
				g.links = append(g.links, [2]string{u, gr})
			}
		}
	}
	if g.rng.IntN(2) == 0 {
		g.links = append(g.links, [2]string{g.groups[0], g.groups[1]})
	}
	if g.rng.IntN(4) == 0 {
		g.links = append(g.links, [2]string{g.groups[1], g.groups[2]}, [2]string{g.groups[2], g.groups[0]})
	}
	return g
}

func (g *policyGen) pick(xs []string) string { return xs[g.rng.IntN(len(xs))] }

// mutate works glob syntax into a resource name.
func (g *policyGen) mutate(name string) string {
	segs := strings.Split(name, "/")
	for range 1 + g.rng.IntN(2) {
		i := g.rng.IntN(len(segs))
		seg := segs[i]
		switch g.rng.IntN(10) {
		case 0:
			segs[i] = "*"
		case 1:
			segs[i] = "**"
		case 2:
			if seg != "" {
				j := g.rng.IntN(len(seg))
				segs[i] = seg[:j] + "?" + seg[j+1:]
			}
		case 3:
			segs[i] = "{" + seg + ",x}"
		case 4:
			segs[i] = "{x," + seg[:len(seg)/2] + "*}"
		case 5:
			segs[i] = seg[:len(seg)/2] + "*"
		case 6:
			segs = append(segs[:i+1], "**")
		case 7:
			segs[i] = seg + "**"
		case 8:
			if seg != "" {
				segs[i] = "[" + seg[:1] + "z]" + seg[1:]
			}
		case 9:
			// a stray metacharacter: malformed, or not
			j := g.rng.IntN(len(seg) + 1)
			segs[i] = seg[:j] + g.pick([]string{"[", "]", "{", "}", "\\", ","}) + seg[j:]
		}
	}
	return strings.Join(segs, "/")
}

// policy returns the generated policy as version v.
func (g *policyGen) policy(v int64) Policy {
	return Policy{Version: v, Rules: g.rules, Links: g.links}
}

func (g *policyGen) request() Request {
	subs := append(slices.Clone(g.users), g.groups...)
	subs = append(subs, string(randUser()))
	req := Request{Subject: callctx.Subject(g.pick(subs)), Action: g.pick(Actions), Resource: g.pick(g.names)}
	if g.rng.IntN(2) == 0 {
		req.Resource = g.pick(g.sources)
	}
	tasks := []callctx.TaskContext{{}, {}, {AgentID: "a"}, {AgentID: "b", TaskID: uuid.NewString()}, {ProjectID: g.proj},
		{ProjectID: strings.ToUpper(g.proj), TaskID: uuid.NewString(), AgentID: "c"}, {ProjectID: g.proj, TaskID: uuid.NewString(), AgentID: "b"}}
	req.Task = tasks[g.rng.IntN(len(tasks))]
	if g.rng.IntN(40) == 0 { // malformed requests: denied before evaluation
		switch g.rng.IntN(4) {
		case 0:
			req.Resource = g.pick([]string{"connectors//x", "catalog*", "a b", ""})
		case 1:
			req.Action = g.pick([]string{AnyAction, "connector.bogus"})
		case 2:
			req.Subject = "user:nope"
		case 3:
			req.Task = callctx.TaskContext{ProjectID: "nope"}
		}
	}
	return req
}

func (g *policyGen) dump() string {
	var b strings.Builder
	for _, r := range g.rules {
		fmt.Fprintf(&b, "  p, %q\n", r)
	}
	for _, l := range g.links {
		fmt.Fprintf(&b, "  g, %s, %s\n", l[0], l[1])
	}
	return b.String()
}

// TestGlobPatternMatchesDoublestar: globPattern.match returns what
// doublestar.Match returns (result and error) for random patterns and names
// over an alphabet of separators, metacharacters and multi-byte, invalid
// and replacement runes, and for the shapes rules use.
func TestGlobPatternMatchesDoublestar(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	patAlpha := []string{"a", "b", "/", "/", "*", "**", "?", "[", "]", "{", "}", ",", "\\", "!", "-", "é", "\xff", "\ufffd", "ab/"}
	nameAlpha := []string{"a", "b", "/", "é", ",", "ab", "\xff", "\ufffd", "-"}
	gen := func(alpha []string, n int) string {
		var b strings.Builder
		for range n {
			b.WriteString(alpha[rng.IntN(len(alpha))])
		}
		return b.String()
	}
	shortcut := 0
	check := func(p, name string) {
		t.Helper()
		g := compileGlob(p)
		ok, err := g.match(name)
		wok, werr := doublestar.Match(p, name)
		if ok != wok || err != werr {
			t.Fatalf("pattern %q name %q: match %v %v, doublestar %v %v", p, name, ok, err, wok, werr)
		}
		if g.literal || !strings.HasPrefix(name, g.prefix) {
			shortcut++
		}
	}
	for range 200_000 {
		p, name := gen(patAlpha, rng.IntN(9)), gen(nameAlpha, rng.IntN(9))
		check(p, name)
		// names that share the pattern's literal start
		if i := strings.IndexAny(p, globMeta); i > 0 {
			check(p, p[:rng.IntN(i+1)]+name)
		}
		check(p, p)
	}
	u := string(randUser())
	for _, p := range []string{"connectors/" + u + "/**", "connectors/" + u + "/echo/*/send", "connectors/" + u + "/web/x/post", "**", "catalog"} {
		for _, name := range []string{"connectors/" + u, "connectors/" + u + "/echo/i/send", "connectors/" + u + "/web/x/post", "connectors/" + u + "/webx", "catalog", "connectors"} {
			check(p, name)
		}
	}
	if shortcut == 0 {
		t.Error("no case took a shortcut")
	}
}

// FuzzGlobPattern: globPattern.match agrees with doublestar.Match.
func FuzzGlobPattern(f *testing.F) {
	f.Add("connectors/user:x/**", "connectors/user:x")
	f.Add("a/b/*/c", "a/b/d/c")
	f.Add("a/{b,c}/d}", "a/x")
	f.Add("a/[", "b")
	f.Fuzz(func(t *testing.T, p, name string) {
		g := compileGlob(p)
		ok, err := g.match(name)
		wok, werr := doublestar.Match(p, name)
		if ok != wok || err != werr {
			t.Fatalf("pattern %q name %q: match %v %v, doublestar %v %v", p, name, ok, err, wok, werr)
		}
	})
}

// checkRawRules compares evaluate with Casbin on g's rules as they are,
// without the rewrite NewSnapshot does (effects other than allow and deny
// stay, and now and then a rule has the wrong number of fields), all given
// to one subject. It returns the number of cases compared.
func checkRawRules(t *testing.T, g *policyGen, requests int) int {
	t.Helper()
	m, err := model.NewModelFromString(ModelConf)
	if err != nil {
		t.Fatal(err)
	}
	sub := string(randUser())
	var rules []compiledRule
	for _, r := range g.rules {
		r = append([]string{sub}, r[1:]...)
		switch g.rng.IntN(100) {
		case 0:
			r = r[:4]
		case 1:
			r = append(r, "extra")
		}
		if err := m.AddPolicy("p", "p", r); err != nil {
			t.Fatal(err)
		}
		rules = append(rules, compileRule(r, nil))
	}
	enf, err := casbinEnforcer(m)
	if err != nil {
		t.Fatal(err)
	}
	for range requests {
		req := g.request()
		facts := factsOf(req.Task)
		ok, explain, err := evaluate(rules, req.Action, req.Resource, facts)
		wok, wexplain, werr := enf.EnforceEx(sub, req.Resource, req.Action, facts)
		if ok != wok || !slices.Equal(explain, wexplain) || (err == nil) != (werr == nil) || (err != nil && err.Error() != werr.Error()) {
			t.Fatalf("raw rules, request %+v\nevaluate %v %q %v\nEnforceEx %v %q %v\npolicy:\n%s", req, ok, explain, err, wok, wexplain, werr, g.dump())
		}
	}
	return requests
}
