package leaks

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"

	"github.com/connec/connec/core"
)

// secretOf returns a random credential value of n characters; with
// specials it includes characters that every escaping scheme escapes.
func secretOf(prefix string, n int, specials bool) string {
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	s := prefix + string(b)
	if specials {
		s = s[:8] + "/" + s[8:16] + "+" + s[16:24] + "=" + s[24:]
	}
	return s
}

// leakLog collects what the scans found, grouped so that a failure says
// which encodings, content types and places leak.
type leakLog struct {
	mu       sync.Mutex
	byGroup  map[string]int
	examples map[string]string
	total    int
}

func (l *leakLog) add(group, example string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byGroup == nil {
		l.byGroup, l.examples = map[string]int{}, map[string]string{}
	}
	l.byGroup[group]++
	l.total++
	if _, ok := l.examples[group]; !ok {
		l.examples[group] = example
	}
}

func (l *leakLog) report(t *testing.T, cases int) {
	t.Helper()
	if l.total == 0 {
		return
	}
	groups := make([]string, 0, len(l.byGroup))
	for g := range l.byGroup {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d findings over %d cases, in %d groups:\n", l.total, cases, len(groups))
	for _, g := range groups {
		fmt.Fprintf(&sb, "  %-70s %4d  e.g. %.160s\n", g, l.byGroup[g], l.examples[g])
	}
	t.Error(sb.String())
}

type style struct {
	name   string
	auth   map[string]any
	kind   string
	secret map[string]string
}

// TestRedactionCorpus drives a generated corpus — every encoding ×
// base64 alignment × position × content type (JSON, text, HTML bodies and
// response headers), for every auth style of the http type — through
// connector.op.invoke over MCP (streamable HTTP) against a real upstream
// that echoes what it received, with an idempotency key so each result is
// stored. Then it scans, with a decoder independent of connec's
// redaction: every answer, every run as connector.run.get returns it, the
// connector_runs and audit_events tables, the server's logs and a pg_dump
// of the database. A very short username ("api", also the upstream's base
// path) must be redacted only inside the pair it forms with the password,
// never in unrelated text such as the path "/api/echo".
func TestRedactionCorpus(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice")
	api := httptest.NewServer(http.HandlerFunc(upstream))
	t.Cleanup(api.Close)

	token := secretOf("tok_", 32, false)
	password := secretOf("pw_", 28, false)
	value := secretOf("key_", 30, true)
	styles := []style{
		{"bearer", map[string]any{"style": "bearer"}, "bearer", map[string]string{"token": token}},
		{"basic", map[string]any{"style": "basic"}, "basic", map[string]string{"username": "api", "password": password}},
		{"header", map[string]any{"style": "header", "header_name": "X-Api-Key"}, "header", map[string]string{"value": value}},
		{"query", map[string]any{"style": "query", "query_param": "api_key"}, "query", map[string]string{"value": value}},
	}
	echoToken := secretOf("etok_", 32, true)
	orc := NewOracle(map[string]string{"token": token, "password": password, "header/query value": value,
		"username:password": "api:" + password, "echo token": echoToken})

	setup := e.client(tok)
	instances := map[string]string{}
	for _, s := range styles {
		cfg := map[string]any{"base_url": api.URL + "/api", "auth": s.auth, "allow_private_network": true}
		var inst struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(mustOK(t, setup, core.ToolInstanceInstall, map[string]any{"type": "http", "display_name": s.name, "config": cfg, "enable": true}), &inst)
		mustOK(t, setup, core.ToolCredentialCreate, map[string]any{"instance_id": inst.ID, "kind": s.kind, "secret": s.secret})
		instances[s.name] = inst.ID
	}

	type job struct {
		style, enc, ct string
		rot            int
	}
	var jobs []job
	for _, s := range styles {
		for _, enc := range Encodings {
			for _, ct := range contentTypes {
				// A JSON body holds every position in each answer; text and
				// HTML bodies put a different alignment first and last in
				// each of three answers (as do the headers).
				for rot := range Fills {
					if ct != "json" || rot == 0 {
						jobs = append(jobs, job{s.name, enc.Name, ct, rot})
					}
				}
			}
		}
	}
	var leaks leakLog
	var mu sync.Mutex
	var redactedRuns, storedRuns, gets int
	soak := os.Getenv("CONNEC_SOAK") == "1"
	work := make(chan job)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		c := e.client(tok)
		wg.Add(1)
		go func(c *client.Client) {
			defer wg.Done()
			for j := range work {
				group := j.enc + " / " + j.ct
				path := fmt.Sprintf("echo/%s/%s/%s/%d", j.style, j.enc, j.ct, j.rot)
				a := call(t, c, core.ToolOpInvoke, map[string]any{"instance_id": instances[j.style], "operation": "http.post",
					"arguments": map[string]any{"path": path, "body": map[string]any{"n": 1}}, "idempotency_key": path})
				if a.Status != "ok" {
					t.Errorf("%s: invoke failed: %s", path, a.Wire)
					continue
				}
				if f := orc.Find(a.Wire); f != "" {
					leaks.add(group+" / response", j.style+": "+f)
				}
				shredCheck(&leaks, group, j.style, a.Wire)
				// connector.run.get for one answer per encoding, content
				// type and style (for every answer under make soak); the
				// table scan below reads every stored result.
				if j.rot != 0 && !soak {
					continue
				}
				var res struct {
					RunID string `json:"run_id"`
				}
				_ = json.Unmarshal(a.Result, &res)
				g := call(t, c, core.ToolRunGet, map[string]any{"run_id": res.RunID})
				if f := orc.Find(g.Wire); f != "" {
					leaks.add(group+" / connector.run.get", j.style+": "+f)
				}
				var run core.Run
				_ = json.Unmarshal(g.Result, &run)
				mu.Lock()
				gets++
				if run.Redacted {
					redactedRuns++
				}
				if len(run.Result) > 0 {
					storedRuns++
				}
				mu.Unlock()
			}
		}(c)
	}
	start := time.Now()
	for _, j := range jobs {
		work <- j
	}
	close(work)
	wg.Wait()
	t.Logf("corpus: %d invocations (%d encodings × 3 alignments × 3 positions × %d body types + headers × %d auth styles, 3 subjects each) in %s",
		len(jobs), len(Encodings), len(contentTypes), len(styles), time.Since(start).Round(time.Millisecond))
	if storedRuns != gets {
		t.Errorf("%d of %d runs read kept their result; the corpus needs every one stored", storedRuns, gets)
	}
	if redactedRuns != gets {
		t.Errorf("%d of %d runs read say they were redacted", redactedRuns, gets)
	}
	var unflagged int
	if err := e.app.Pool.QueryRow(context.Background(), `SELECT count(*) FROM connector_runs WHERE connector_type = 'http' AND (result IS NULL OR NOT redacted)`).Scan(&unflagged); err != nil || unflagged != 0 {
		t.Errorf("%d http runs without a stored result or not flagged redacted (%v)", unflagged, err)
	}

	asyncRuns := asyncCorpus(t, setup, echoToken, orc, &leaks)

	for _, table := range []string{"connector_runs", "audit_events"} {
		for _, row := range e.rows(table) {
			if f := orc.Find(row); f != "" {
				leaks.add("table "+table, f)
			}
		}
	}
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if f := orc.Find(line); f != "" {
			leaks.add("logs", f)
		}
	}
	for _, line := range strings.Split(e.dump(), "\n") {
		if f := orc.Find(line); f != "" {
			leaks.add("pg_dump", f)
		}
	}
	leaks.report(t, len(jobs)+asyncRuns)
}

// asyncCorpus runs the corpus through a connector type that does no
// redaction of its own (echo, its message carrying what an upstream would
// have echoed) as asynchronous runs, whose results are stored: the
// executor's final pass alone must catch every form, before storage. It
// returns the number of runs.
func asyncCorpus(t *testing.T, c *client.Client, token string, orc *Oracle, leaks *leakLog) int {
	t.Helper()
	var inst struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(mustOK(t, c, core.ToolInstanceInstall, map[string]any{"type": "echo", "display_name": "async", "enable": true}), &inst)
	mustOK(t, c, core.ToolCredentialCreate, map[string]any{"instance_id": inst.ID, "kind": "bearer", "secret": map[string]string{"token": token}})
	subjects := []string{"Bearer " + token, token}
	filler := " - seen at /api/echo/async; "
	type pending struct{ runID, group string }
	var runs []pending
	for _, enc := range Encodings {
		for rot := range Fills {
			var sb strings.Builder
			sb.WriteString(enc.Encode(Fills[rot] + subjects[0]))
			for _, s := range subjects {
				for _, f := range Fills {
					sb.WriteString(filler + enc.Encode(f+s) + filler)
				}
			}
			sb.WriteString(enc.Encode(Fills[(rot+1)%3] + subjects[1]))
			a := call(t, c, core.ToolOpInvoke, map[string]any{"instance_id": inst.ID, "operation": "echo.later",
				"arguments": map[string]any{"message": sb.String()}})
			var res struct {
				RunID string `json:"run_id"`
			}
			if a.Status != "ok" || json.Unmarshal(a.Result, &res) != nil || res.RunID == "" {
				t.Errorf("echo.later %s: %s", enc.Name, a.Wire)
				continue
			}
			runs = append(runs, pending{res.RunID, enc.Name + " / async text"})
		}
	}
	for _, p := range runs {
		deadline := time.Now().Add(30 * time.Second)
		for {
			g := call(t, c, core.ToolRunGet, map[string]any{"run_id": p.runID})
			var run core.Run
			_ = json.Unmarshal(g.Result, &run)
			if run.Status == core.RunSucceeded {
				if f := orc.Find(g.Wire); f != "" {
					leaks.add(p.group+" / connector.run.get", f)
				}
				if !run.Redacted || !strings.Contains(string(run.Result), "/api/echo/async") {
					leaks.add(p.group+" / not flagged or shredded", string(run.Result))
				}
				break
			}
			if run.Status != core.RunPending && run.Status != core.RunRunning || time.Now().After(deadline) {
				t.Errorf("async run %s: %s", p.runID, g.Wire)
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return len(runs)
}

// shredCheck fails a case whose unrelated text lost the short username:
// the upstream's path /api/echo must come back whole.
func shredCheck(l *leakLog, group, style, wire string) {
	if strings.Contains(wire, "/"+"[REDACTED]"+"/") || !strings.Contains(wire, "/api/echo/"+style+"/") {
		i := strings.Index(wire, "seen at")
		l.add(group+" / shredded", style+": "+wire[max(0, i):min(len(wire), max(0, i)+120)])
	}
}
