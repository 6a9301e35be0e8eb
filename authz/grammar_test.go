package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/testkit/pgtest"
)

// A rule whose resource pattern can match no resource name (or whose action
// is never asked on what it names) is refused, naming the field: a deny that
// silently matches nothing fails open.
func TestRuleResourceGrammar(t *testing.T) {
	t.Parallel()
	u := randUser()
	g := randGroup()
	inst := uuid.NewString()
	upper := "user:" + strings.ToUpper(u.ID().String())
	own := OwnerResource(u)
	for _, tc := range []struct {
		resource, action, field string // field "" : accepted
	}{
		// Accepted: every documented form.
		{"**", AnyAction, ""},
		{"*", ActionCatalogRead, ""},
		{ResourceCatalog, ActionCatalogRead, ""},
		{ResourcePolicy, ActionPolicyAdmin, ""},
		{ResourceAudit, ActionAuditRead, ""},
		{ResourcePrivateNetwork, ActionAdmin, ""},
		{"network/**", ActionAdmin, ""},
		{"catalog/**", ActionCatalogRead, ""},
		{"connectors/**", ActionSend, ""},
		{"connectors/*", ActionAdmin, ""},
		{"connectors/user:*/**", ActionRead, ""},
		{"connectors/group:*", ActionAdmin, ""},
		{own, ActionAdmin, ""},
		{own + "/**", AnyAction, ""},
		{"connectors/" + string(g) + "/**", ActionRead, ""},
		{own + "/echo/**", ActionRead, ""},
		{own + "/echo/" + inst, ActionAdmin, ""},
		{own + "/echo/" + inst, ActionAuditRead, ""},
		{own + "/echo/" + inst + "/*", ActionSend, ""},
		{own + "/echo/" + inst + "/echo.read", ActionRead, ""},
		{"connectors/*/echo/*/send", ActionSend, ""},
		{"connectors/*/*/*/echo.*", AnyAction, ""},
		// * within an id: accepted where it can match a canonical id.
		{own + "*", ActionAdmin, ""},
		{"connectors/user:" + u.ID().String()[:8] + "*", ActionAdmin, ""},
		{"connectors/*:" + u.ID().String(), ActionAdmin, ""},
		{own + "/echo/" + inst[:8] + "*", ActionRead, ""},
		{own + "/e*/" + inst, ActionRead, ""},
		// Minting task-bound tokens, for users only.
		{TokenResource(u), ActionTokenMint, ""},
		{"tokens/**", ActionTokenMint, ""},
		{"tokens/user:*", ActionTokenMint, ""},
		{TokenResource(u), ActionRead, "action"},
		{"tokens/" + string(g), ActionTokenMint, "resource"},
		{"tokens", ActionTokenMint, "resource"},
		{TokenResource(u) + "/x", ActionTokenMint, "resource"},
		{"tokens/" + upper, ActionTokenMint, "resource"},

		// The review's examples.
		{"connectors/" + upper + "/**", ActionSend, "resource"},
		{"connectors/user:alice/**", ActionSend, "resource"},
		{"Connectors/**", ActionSend, "resource"},
		{"x", ActionRead, "resource"},
		// Unknown prefixes and parts below a resource that has none.
		{"connector/**", ActionRead, "resource"},
		{"catalogs", ActionCatalogRead, "resource"},
		{"catalog/x", ActionCatalogRead, "resource"},
		{"network", ActionAdmin, "resource"},
		{"network/public", ActionAdmin, "resource"},
		{"network/private/x", ActionAdmin, "resource"},
		{"connectors", ActionAdmin, "resource"},
		// Owners and instance ids: canonical ids, globs only whole.
		{"connectors/alice", ActionAdmin, "resource"},
		{"connectors/role:" + u.ID().String(), ActionAdmin, "resource"},
		{"connectors/user:alice*", ActionAdmin, "resource"},
		{"connectors/user:" + strings.ToUpper(u.ID().String()[:8]) + "*", ActionAdmin, "resource"},
		{"connectors/user:*-*-*-*-*-*", ActionAdmin, "resource"},
		{own + "/echo", ActionRead, "resource"},
		{own + "/echo/not-a-uuid", ActionRead, "resource"},
		{own + "/echo/" + strings.ToUpper(inst), ActionRead, "resource"},
		{own + "/echo/x*", ActionRead, "resource"},
		{own + "/echo/" + inst + "/echo.read/x", ActionRead, "resource"},
		// Only * within a segment and a trailing /**.
		{"connectors/**/echo.send", ActionSend, "resource"},
		{own + "**", ActionAdmin, "resource"},
		{own + "/{echo,http}/**", ActionRead, "resource"},
		{own + "/ech?/**", ActionRead, "resource"},
		{own + "/[e]cho/**", ActionRead, "resource"},
		{"{catalog,policy}", ActionCatalogRead, "resource"},
		// Actions never asked on what the pattern names.
		{ResourceCatalog, ActionRead, "action"},
		{ResourcePolicy, ActionAdmin, "action"},
		{ResourceAudit, ActionPolicyAdmin, "action"},
		{ResourcePrivateNetwork, ActionRead, "action"},
		{"*", ActionSend, "action"},
		{own, ActionRead, "action"},
		{own + "/**", ActionCatalogRead, "action"},
		{own + "/echo/" + inst, ActionPolicyAdmin, "action"},
		{own + "/echo/" + inst + "/echo.read", ActionAuditRead, "action"},
	} {
		r := Rule{Subject: string(u), Resource: tc.resource, Action: tc.action, Effect: EffectDeny}
		err := r.Validate()
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s %s refused: %v", tc.action, tc.resource, err)
			}
			continue
		}
		var fe *fault.Error
		if !errors.As(err, &fe) || fe.Type != fault.InvalidArgument {
			t.Errorf("%s %s: %v, want invalid_argument", tc.action, tc.resource, err)
			continue
		}
		if fe.Details["field"] != tc.field {
			t.Errorf("%s %s: field %v, want %s (%v)", tc.action, tc.resource, fe.Details["field"], tc.field, err)
		}
	}
}

// lockedBuffer collects log output written from any goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// records returns the JSON log records whose message contains msg.
func (l *lockedBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(l.b.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m, _ := rec["msg"].(string); strings.Contains(m, msg) {
			out = append(out, rec)
		}
	}
	return out
}

// Rules stored before validation was strict (or written by SQL) that can
// never match do not break loading: they stay in force as written, and one
// warning lists them when the policy is loaded and again only when that
// list changes.
func TestStoredRulesThatMatchNothingLoadWithAWarning(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	u := randUser()
	insert := func(r Rule) {
		t.Helper()
		if _, err := pool.Exec(ctx, `INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4) VALUES ('p', $1, $2, $3, $4, $5)`,
			r.Subject, r.Resource, r.Action, r.Cond, r.Effect); err != nil {
			t.Fatal(err)
		}
	}
	byName := deny(u, "connectors/user:alice/**", ActionSend)
	upper := allow(u, "Connectors/**", ActionRead)
	good := allow(u, OwnerResource(u)+"/**", AnyAction)
	insert(byName)
	insert(upper)
	insert(good)
	logs := &lockedBuffer{}
	a := newAuthz(t, pool, WithoutWatcher(), WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	const msg = "can never match"
	warned := func(want ...Rule) {
		t.Helper()
		recs := logs.records(t, msg)
		if len(recs) == 0 {
			t.Fatalf("no warning naming the rules that can never match")
		}
		last := recs[len(recs)-1]
		if last["level"] != "WARN" {
			t.Errorf("level %v, want WARN", last["level"])
		}
		listed := fmt.Sprint(last["rules"])
		for _, r := range want {
			if !strings.Contains(listed, r.String()) {
				t.Errorf("warning does not list %s: %s", r, listed)
			}
		}
		if strings.Contains(listed, good.String()) {
			t.Errorf("warning lists a valid rule: %s", listed)
		}
	}
	warned(byName, upper)
	// Loaded and in force as written: the valid rule decides as before.
	own := OperationResource(u, "echo", uuid.New(), "echo.read")
	if d := decide(t, a, Request{Subject: u, Action: ActionRead, Resource: own}); !d.Allowed {
		t.Fatalf("valid rule not in force: %+v", d)
	}
	// A change that leaves the list as it was does not warn again.
	addRules(t, a, pool, allow(u, ResourceCatalog, ActionCatalogRead))
	if n := len(logs.records(t, msg)); n != 1 {
		t.Fatalf("%d warnings after an unrelated change, want still 1", n)
	}
	// A new one does, with the whole list.
	opName := deny(u, "connectors/*/echo/*/echo.send/x", ActionSend)
	insert(opName)
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(logs.records(t, msg)); n != 2 {
		t.Fatalf("%d warnings after a new bad rule, want 2", n)
	}
	warned(byName, upper, opName)
}

// testCatalog is a Catalog of fixed types: type -> operation -> action.
type testCatalog map[string]map[string]string

func (c testCatalog) ConnectorTypes() []string {
	var out []string
	for t := range c {
		out = append(out, t)
	}
	return out
}

func (c testCatalog) Operations(t string) map[string]string { return c[t] }

// With a catalog, a rule names only connector types and operations that
// exist, and an operation under the action it is decided with.
func TestRuleCatalogNames(t *testing.T) {
	t.Parallel()
	cat := testCatalog{
		"echo": {"echo.read": ActionRead, "echo.send": ActionSend},
		"http": {"http.get": ActionRead, "http.post": ActionSend},
	}
	own := OwnerResource(randUser())
	for _, tc := range []struct {
		resource, action, field string
	}{
		{"connectors/*/echo/*/echo.read", ActionRead, ""},
		{"connectors/*/http/*/http.post", ActionSend, ""},
		{"connectors/*/*/*/*.post", ActionSend, ""},
		{"connectors/*/e*/**", ActionRead, ""},
		{own + "/echo/**", ActionAdmin, ""},
		{"connectors/*/*/*/*", AnyAction, ""},
		{"connectors/*/echo/*/echo.reed", ActionRead, "resource"},
		{"connectors/*/echo/*/send", ActionSend, "resource"},
		{"connectors/*/echo/*/http.get", ActionRead, "resource"},
		{"connectors/*/*/*/*.nothing", ActionRead, "resource"},
		{"connectors/*/ech/**", ActionRead, "resource"},
		{"connectors/*/x*/**", ActionRead, "resource"},
		// Operations are decided under the action of their kind only.
		{"connectors/*/http/*/http.post", ActionRead, "action"},
		{"connectors/*/*/*/*.post", ActionRead, "action"},
		{"connectors/*/echo/*/echo.read", ActionAdmin, "action"},
	} {
		err := Rule{Subject: string(randUser()), Resource: tc.resource, Action: tc.action, Effect: EffectDeny}.ValidateIn(cat)
		var fe *fault.Error
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s %s refused: %v", tc.action, tc.resource, err)
		case tc.field == "":
		case !errors.As(err, &fe) || fe.Type != fault.InvalidArgument || fe.Details["field"] != tc.field:
			t.Errorf("%s %s: %v, want invalid_argument on %s", tc.action, tc.resource, err, tc.field)
		}
	}

	// The Authorizer applies its catalog when adding a rule and when
	// loading stored ones.
	pool := pgtest.Pool(t)
	u := randUser()
	typo := deny(u, "connectors/*/echo/*/echo.reed", ActionRead)
	if _, err := pool.Exec(context.Background(), `INSERT INTO casbin_rule (ptype, v0, v1, v2, v3, v4) VALUES ('p', $1, $2, $3, '', $4)`,
		typo.Subject, typo.Resource, typo.Action, typo.Effect); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	a := newAuthz(t, pool, WithoutWatcher(), WithCatalog(cat), WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	if recs := logs.records(t, "can never match"); len(recs) != 1 || !strings.Contains(fmt.Sprint(recs[0]["rules"]), typo.String()) {
		t.Fatalf("stored typo not reported: %v", recs)
	}
	var fe *fault.Error
	if _, err := a.AddRule(context.Background(), pool, typo); !errors.As(err, &fe) || fe.Details["field"] != "resource" {
		t.Fatalf("AddRule(%s) = %v, want invalid_argument on resource", typo, err)
	}
}
