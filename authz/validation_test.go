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

// The Authorizer applies its catalog when adding a rule and when loading
// stored ones.
func TestCatalogAppliesToStoredAndAddedRules(t *testing.T) {
	t.Parallel()
	cat := testCatalog{
		"echo": {"echo.read": ActionRead, "echo.send": ActionSend},
		"http": {"http.get": ActionRead, "http.post": ActionSend},
	}
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
