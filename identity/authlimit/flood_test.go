package authlimit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connec/connec/audit"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/identity/authlimit"
	"github.com/connec/connec/internal/app"
	"github.com/connec/connec/internal/platform/metrics"
)

// flush ends every source's interval (as its end would), so that what was
// counted is written.
func (e *env) flush() {
	e.t.Helper()
	if err := e.app.Service.AuthGuard().Flush(context.Background()); err != nil {
		e.t.Fatalf("flush: %v", err)
	}
}

// refusals sums the counts of the rows of failed authentications whose
// reason names source ("" for every source).
func (e *env) refusals(source string) int64 {
	return e.count(`SELECT coalesce(sum(count), 0) FROM audit_events WHERE subject = 'anonymous'
		AND error_type = 'unauthenticated' AND reason LIKE '%from '||$1||'%'`, source)
}

// verified checks the audit chain still verifies.
func (e *env) verified() {
	e.t.Helper()
	rep, err := audit.Verify(context.Background(), e.app.Pool)
	if err != nil || !rep.OK() {
		e.t.Fatalf("audit chain: %v %v", err, rep.Err())
	}
}

// A flood of requests with bad credentials from one source writes a few
// audit rows per interval, not one per request, and every refusal is
// accounted for in their counts.
func TestFloodWritesRowsPerIntervalNotPerRequest(t *testing.T) {
	e := newEnv(t)
	revoked := e.revokedToken()
	c := from("127.0.0.1")
	const n, intervals = 240, 3
	for round := range intervals {
		before := e.anonymousRows()
		for i := range n {
			h := http.Header{}
			if i%3 == 0 {
				h.Set("Authorization", "Bearer "+revoked)
			}
			if s := e.badRequest(c, i, h); s != http.StatusUnauthorized && s != http.StatusTooManyRequests {
				t.Fatalf("request %d with a bad token: status %d", i, s)
			}
		}
		// Two transports (MCP streamable HTTP, REST): the first refusal of
		// each is written at once, the rest are counted.
		if rows := e.anonymousRows() - before; rows > 2 {
			t.Fatalf("round %d: %d requests with bad tokens from one source wrote %d audit rows, want at most 2 in one interval", round, n, rows)
		}
		e.flush()
		if rows := e.anonymousRows() - before; rows > 4 {
			t.Fatalf("round %d: %d rows once the interval ended, want at most 4", round, rows)
		}
	}
	if got := e.refusals("ip:127.0.0.1"); got != n*intervals {
		t.Fatalf("the rows count %d refusals, want %d", got, n*intervals)
	}
	e.verified()
}

// The rows say how many refusals they stand for: the first of the interval
// (with its request's id), then one row with the rest, how many of them were
// refused unchecked, and when.
func TestAggregateRowsCarryTheCount(t *testing.T) {
	e := newEnv(t)
	c := from("127.0.0.1")
	const n = 50
	limited := 0
	for i := range n {
		if e.badRequest(c, 2*i, nil) == http.StatusTooManyRequests { // MCP only
			limited++
		}
	}
	type row struct {
		count      int64
		reason, id string
		durationUS int64
	}
	read := func() []row {
		rows, err := e.app.Pool.Query(context.Background(), `SELECT count, reason, request_id, duration_us FROM audit_events
			WHERE subject = 'anonymous' ORDER BY seq`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.count, &r.reason, &r.id, &r.durationUS); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		return out
	}
	rows := read()
	if len(rows) != 1 || rows[0].count != 1 || rows[0].id == "" || !strings.Contains(rows[0].reason, "from ip:127.0.0.1") {
		t.Fatalf("rows written at once: %+v, want one for the first refusal", rows)
	}
	e.flush()
	rows = read()
	if len(rows) != 2 {
		t.Fatalf("rows after the interval: %+v, want 2", rows)
	}
	agg := rows[1]
	want := fmt.Sprintf("%d failed authentications from ip:127.0.0.1", n-1)
	if agg.count != n-1 || !strings.Contains(agg.reason, want) || agg.id != "" {
		t.Fatalf("aggregate row %+v, want count %d and a reason saying %q", agg, n-1, want)
	}
	if limited == 0 || !strings.Contains(agg.reason, fmt.Sprintf("%d of them refused unchecked (429)", limited)) {
		t.Fatalf("aggregate row %q does not say %d were refused unchecked", agg.reason, limited)
	}
	e.verified()
}

// Distinct sources are counted and limited apart: distinct addresses, and,
// behind a trusted proxy, distinct X-Forwarded-For clients; an untrusted
// peer's X-Forwarded-For is ignored.
func TestSourcesAreKeptApart(t *testing.T) {
	t.Run("addresses", func(t *testing.T) {
		e := newEnv(t)
		a, b := from("127.0.0.2"), from("127.0.0.3")
		for i := range 30 {
			e.badRequest(a, 2*i, nil) // MCP only
		}
		for i := range 50 {
			e.badRequest(b, 2*i, nil)
		}
		if rows := e.anonymousRows(); rows != 2 {
			t.Fatalf("two sources with 30 and 50 refusals wrote %d rows at once, want one each", rows)
		}
		e.flush()
		if got2, got3 := e.refusals("ip:127.0.0.2"), e.refusals("ip:127.0.0.3"); got2 != 30 || got3 != 50 {
			t.Fatalf("rows count %d and %d refusals for the two sources, want 30 and 50", got2, got3)
		}
	})
	t.Run("X-Forwarded-For is ignored from an untrusted peer", func(t *testing.T) {
		e := newEnv(t)
		c := from("127.0.0.1")
		for i := range 20 {
			h := http.Header{"X-Forwarded-For": {fmt.Sprintf("198.51.100.%d", i)}}
			e.badRequest(c, 2*i, h)
		}
		e.flush()
		if got := e.refusals("ip:127.0.0.1"); got != 20 {
			t.Fatalf("refusals counted for the peer: %d, want all 20", got)
		}
	})
	t.Run("behind a trusted proxy", func(t *testing.T) {
		e := newEnv(t, withConfig(func(c *app.Config) { c.TrustedProxies = []string{"127.0.0.1"} }))
		c := from("127.0.0.1")
		for i := range 20 {
			// A client's own X-Forwarded-For entries come first; the
			// proxy appends the address it saw.
			e.badRequest(c, 2*i, http.Header{"X-Forwarded-For": {"203.0.113.66, 198.51.100." + strconv.Itoa(i%2+1)}})
		}
		e.flush()
		if a, b, spoofed := e.refusals("ip:198.51.100.1"), e.refusals("ip:198.51.100.2"), e.refusals("ip:203.0.113.66"); a != 10 || b != 10 || spoofed != 0 {
			t.Fatalf("refusals per forwarded client: %d, %d (spoofed entry: %d), want 10, 10, 0", a, b, spoofed)
		}
	})
}

// Past the limit a source is answered 429 with Retry-After, without a token
// check or an audit write: it is answered so even with the database gone. A
// token this server already knows valid from memory still gets in; one it
// has not seen is refused with the rest.
func TestOverTheLimitIs429WithoutDatabaseWork(t *testing.T) {
	e := newEnv(t, withConfig(func(c *app.Config) { c.AuthFailureLimit = 5 }), withUsers("alice"))
	alice := e.tokens["alice"]
	c := from("127.0.0.1")
	get := func(path, token string) *http.Response {
		req, _ := http.NewRequest("GET", e.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if r := get("/v1/connector-types", alice); r.StatusCode != http.StatusOK {
		t.Fatalf("alice before the flood: %d", r.StatusCode)
	}
	statuses := map[int]int{}
	for i := range 40 {
		statuses[e.badRequest(c, i, nil)]++
	}
	// Limit 5 per transport: 5 refusals on each of the two, then 429.
	if statuses[http.StatusUnauthorized] != 10 || statuses[http.StatusTooManyRequests] != 30 {
		t.Fatalf("40 bad requests answered %v, want 10 × 401 and 30 × 429", statuses)
	}
	r := get("/v1/connector-instances", "cnc_not-a-token")
	body, _ := io.ReadAll(r.Body)
	var problem struct {
		ErrorType string `json:"error_type"`
	}
	_ = json.Unmarshal(body, &problem)
	if r.StatusCode != http.StatusTooManyRequests || problem.ErrorType != "quota_exceeded" {
		t.Fatalf("REST over the limit: %d %s", r.StatusCode, body)
	}
	if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || s < 1 || s > 10 {
		t.Fatalf("Retry-After %q, want 1..10 seconds", r.Header.Get("Retry-After"))
	}
	if r := get("/v1/connector-types", alice); r.StatusCode != http.StatusOK {
		t.Fatalf("alice, whose token this server knows, from the limited address: %d", r.StatusCode)
	}
	bob := e.user("bob") // also makes the server forget the tokens it knew
	if r := get("/v1/connector-types", bob); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a token not yet known, from the limited address: %d, want 429", r.StatusCode)
	}
	if n := authFailures(t, "rest", "limited"); n == 0 {
		t.Fatal("connec_auth_failures_total does not count the limited failures")
	}
	// The web UI's session cookie is checked the same way.
	noRedirect := *c
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	var ui []int
	for range 7 {
		req, _ := http.NewRequest("GET", e.url+"/ui/instances", nil)
		req.AddCookie(&http.Cookie{Name: "connec_session", Value: "cnc_not-a-token"})
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		ui = append(ui, resp.StatusCode)
	}
	if fmt.Sprint(ui) != "[303 303 303 303 303 429 429]" {
		t.Fatalf("UI pages with a bad session cookie answered %v, want 5 redirects to the login, then 429", ui)
	}
	e.databaseDown()
	if s := e.badRequest(c, 0, nil); s != http.StatusTooManyRequests {
		t.Fatalf("a limited source with the database down: status %d, want 429", s)
	}
}

// A real user keeps working while a flood of bad tokens comes from the same
// address (a shared NAT or a proxy connec was not told to trust): the
// flood is limited and aggregated, the user's calls all succeed.
func TestRealCallerKeepsWorkingDuringAFlood(t *testing.T) {
	e := newEnv(t, withUsers("alice"))
	k := newCaller(t, e, e.tokens["alice"])
	ctx := context.Background()
	if err := k.invoke(ctx); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var flooders sync.WaitGroup
	var statuses sync.Map
	var sent atomic.Int64
	for w := range 4 {
		flooders.Go(func() {
			c := from("127.0.0.1")
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				s := e.badRequest(c, w+i, nil)
				sent.Add(1)
				v, _ := statuses.LoadOrStore(s, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			}
		})
	}
	for i := range 40 {
		if err := k.invoke(ctx); err != nil {
			close(stop)
			flooders.Wait()
			t.Fatalf("the real user's call %d during the flood: %v", i, err)
		}
	}
	close(stop)
	flooders.Wait()
	statuses.Range(func(k, v any) bool {
		if s := k.(int); s != http.StatusUnauthorized && s != http.StatusTooManyRequests {
			t.Errorf("flood request answered %d", s)
		}
		return true
	})
	if v, ok := statuses.Load(http.StatusTooManyRequests); !ok || v.(*atomic.Int64).Load() == 0 {
		t.Error("the flood was never answered 429")
	}
	if rows := e.anonymousRows(); rows > 2 {
		t.Fatalf("the flood wrote %d audit rows in one interval, want at most 2", rows)
	}
	e.flush()
	if got := e.refusals("ip:127.0.0.1"); got != sent.Load() {
		t.Fatalf("rows count %d refusals, the flood sent %d", got, sent.Load())
	}
}

// With the database gone every bad credential is still refused (401, 429,
// or 503 when the refusal cannot be checked or written), never let
// through; the refusals that could not be written are written once it is
// back.
func TestRefusedWhileTheDatabaseIsDown(t *testing.T) {
	e := newEnv(t)
	revoked := e.revokedToken()
	c := from("127.0.0.4")
	up := e.databaseDown()
	const n = 30
	statuses := map[int]int{}
	for i := range n {
		h := http.Header{}
		if i%2 == 0 {
			h.Set("Authorization", "Bearer "+revoked) // needs a lookup: 503
		}
		s := e.badRequest(c, i, h)
		switch s {
		case http.StatusUnauthorized, http.StatusTooManyRequests, http.StatusServiceUnavailable:
		default:
			t.Fatalf("request %d with the database down: status %d", i, s)
		}
		statuses[s]++
	}
	up()
	waitFor(t, "the database to answer again", func() bool { return e.app.Pool.Ping(context.Background()) == nil })
	// The malformed tokens (the odd requests) were refused without a
	// lookup: counted, and written now.
	waitFor(t, "the counted refusals to be written", func() bool {
		return e.app.Service.AuthGuard().Flush(context.Background()) == nil
	})
	if got := e.refusals("ip:127.0.0.4"); got != n/2 {
		t.Fatalf("rows count %d refusals from the outage, want %d (answered %v)", got, n/2, statuses)
	}
	e.verified()
}

// Memory is bounded: past MaxSources, new sources are counted together as
// one, "overflow", limited together and audited as one.
func TestSourcesBeyondTheBoundAreCountedTogether(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	g := authlimit.New(authlimit.Config{Interval: time.Hour, Limit: 3, MaxSources: 4}, e.app.Service.RecordRefusal)
	statuses := map[fault.Type]int{}
	for i := range 100 {
		_, err := g.Authenticate(ctx, authlimit.Attempt{Source: authlimit.Source(fmt.Sprintf("ip:198.51.100.%d", i)),
			Transport: "rest", Tool: "http:rest"}, e.app.Identity)
		statuses[fault.As(err).Type]++
	}
	if n := g.Tracked(); n > 5 {
		t.Fatalf("%d sources tracked, want at most 4 and the overflow", n)
	}
	// 4 sources of their own; the overflow's first 3 refusals, then 429.
	if statuses[fault.Unauthenticated] != 7 || statuses[fault.QuotaExceeded] != 93 {
		t.Fatalf("100 sources answered %v, want 7 unauthenticated, 93 quota_exceeded", statuses)
	}
	if rows := e.anonymousRows(); rows != 5 {
		t.Fatalf("%d rows written at once, want 5 (4 sources, the overflow's first)", rows)
	}
	if err := g.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The overflow's first refusal was written at once under its own
	// source; the other 95 as the overflow's.
	if got := e.refusals("overflow"); got != 95 {
		t.Fatalf("the overflow's rows count %d, want 95", got)
	}
	if got := e.refusals(""); got != 100 {
		t.Fatalf("rows count %d refusals, want 100", got)
	}
	// Closed, the guard writes each refusal at once.
	before := e.anonymousRows()
	for range 3 {
		_ = g.Refuse(ctx, authlimit.Attempt{Source: "ip:198.51.100.1", Transport: "rest", Tool: "http:rest"})
	}
	if rows := e.anonymousRows() - before; rows != 3 {
		t.Fatalf("after Close: %d rows for 3 refusals, want 3", rows)
	}
	e.verified()
}

// Counts are written when the interval ends, without anything else
// happening.
func TestCountsAreWrittenWhenTheIntervalEnds(t *testing.T) {
	e := newEnv(t, withConfig(func(c *app.Config) { c.AuthFailureInterval = 50 * time.Millisecond; c.AuthFailureLimit = 1000 }))
	c := from("127.0.0.5")
	for i := range 20 {
		e.badRequest(c, 2*i, nil)
	}
	waitFor(t, "the interval's row", func() bool { return e.refusals("ip:127.0.0.5") == 20 })
}

// authFailures reads connec_auth_failures_total for transport and outcome
// (process-wide: tests only check it moved).
func authFailures(t *testing.T, transport, outcome string) float64 {
	t.Helper()
	fams, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "connec_auth_failures_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["transport"] == transport && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
