package interop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/connec/connec/callctx"
)

// combo is one client × transport × revision (× tool-name style) run.
type combo struct {
	client     string
	transport  string
	revision   string // "default" or a pinned revision
	underscore bool   // served with --tool-names underscore / CONNEC_TOOL_NAMES=underscore
}

func (c combo) String() string {
	s := c.client + "/" + c.transport + "/" + c.revision
	if c.underscore {
		s += "/underscore"
	}
	return s
}

func (c combo) pin() string {
	if c.revision == "default" {
		return ""
	}
	return c.revision
}

// wantNegotiated is the revision the session must end up on: the pinned one,
// or the newest the client speaks by default ("" if either is right).
func (c combo) wantNegotiated() string {
	if c.revision != "default" {
		return c.revision
	}
	if c.client == clientGo && c.transport == transportSSE {
		// The Go SDK tries server/discover at 2026-07-28 first. That
		// revision defines no SSE binding, but answering it there is no
		// worse than serving 2025-11-25 over SSE (also only
		// "backwards compatibility" since 2025-03-26): either is fine.
		return ""
	}
	if c.client == clientGo {
		return "2026-07-28"
	}
	// ts-v1 knows nothing newer; ts-v2's default negotiation mode is
	// 'legacy' (initialize with 2025-11-25) unless a host opts in.
	return "2025-11-25"
}

// combos is the matrix the stories run. ts-v1 has no pin: it always
// initializes with its LATEST_PROTOCOL_VERSION, 2025-11-25, and cannot speak
// 2026-07-28 at all. 2026-07-28 is not run over SSE, which that revision
// does not define (the Go SDK's default still tries it there and must fall
// back).
func combos() []combo {
	var cs []combo
	for _, tr := range []string{transportStdio, transportSSE, transportStreamable} {
		cs = append(cs, combo{client: clientTSv1, transport: tr, revision: "default"})
		for _, cl := range []string{clientTSv2, clientGo} {
			for _, rev := range []string{"default", "2025-11-25", "2026-07-28"} {
				if tr == transportSSE && rev == "2026-07-28" {
					continue
				}
				cs = append(cs, combo{client: cl, transport: tr, revision: rev})
			}
		}
		// Underscore tool names are for hosts (built on the v1 SDK) whose
		// LLM APIs accept only ^[a-zA-Z0-9_-]{1,64}$.
		cs = append(cs, combo{client: clientTSv1, transport: tr, revision: "default", underscore: true})
	}
	return append(cs, combo{client: clientGo, transport: transportStreamable, revision: "2026-07-28", underscore: true})
}

// row is one line of the results table.
type row struct {
	combo
	negotiated string
	failure    string
}

// TestClientStories runs the README's user story with each independent
// client over each transport: list tools; connector.catalog.list; install an
// echo instance; create a credential; invoke echo.read with a task context in
// _meta (and find it on the run and the audit row); connector.run.list/get;
// revoke the credential (the next invoke fails credential_revoked); and two
// other users who are refused. It prints the client × transport × revision
// table at the end.
func TestClientStories(t *testing.T) {
	f := shared.get(t)
	var mu sync.Mutex
	var rows []*row
	t.Run("story", func(t *testing.T) {
		for i, c := range combos() {
			r := &row{combo: c}
			t.Run(c.String(), func(t *testing.T) {
				mu.Lock()
				rows = append(rows, r)
				mu.Unlock()
				t.Parallel()
				s := &story{t: t, f: f, c: c, row: r, n: i}
				t.Cleanup(func() {
					if t.Failed() && r.failure == "" {
						r.failure = "failed (see log)"
					}
					if t.Skipped() {
						r.failure = "skipped"
					}
				})
				s.run()
			})
		}
	})
	t.Log("client × transport × revision (as of this run):\n" + table(rows))
}

func table(rows []*row) string {
	var b bytes.Buffer
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "CLIENT\tTRANSPORT\tREVISION\tNEGOTIATED\tTOOL NAMES\tRESULT")
	for _, r := range rows {
		names := "dotted"
		if r.underscore {
			names = "underscore"
		}
		result := "PASS"
		if r.failure != "" {
			result = "FAIL: " + strings.Join(strings.Fields(r.failure), " ")
			if len(result) > 160 {
				result = result[:160] + "…"
			}
		}
		neg := r.negotiated
		if neg == "" {
			neg = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.client, r.transport, r.revision, neg, names, result)
	}
	_ = w.Flush()
	return b.String()
}

// story is one run of the user story.
type story struct {
	t   *testing.T
	f   *fixture
	c   combo
	row *row
	n   int
	// secret is the credential's value: it must never come back.
	secret string
}

func (s *story) fatalf(format string, args ...any) {
	s.t.Helper()
	msg := fmt.Sprintf(format, args...)
	if s.row.failure == "" {
		s.row.failure = msg
	}
	s.t.Fatal(msg)
}

// name is the tool name as this combo's server serves it.
func (s *story) name(dotted string) string {
	if s.c.underscore {
		return strings.ReplaceAll(dotted, ".", "_")
	}
	return dotted
}

func (s *story) connect(token string) mcpClient {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	d := dial{client: s.c.client, transport: s.c.transport, pin: s.c.pin(), token: token}
	switch {
	case s.c.transport == transportStdio:
		d.command, d.env = s.f.bin, s.f.stdioEnv(token, s.c.underscore)
	case s.c.underscore:
		if s.f.underscore == nil {
			s.fatalf("no server with --tool-names underscore: %v", s.f.underscoreErr)
		}
		d.baseURL = s.f.underscore.url
	default:
		d.baseURL = s.f.dotted.url
	}
	var c mcpClient
	var err error
	stderr := newTail(16 << 10)
	if s.c.client == clientGo {
		// The Go SDK's SSE stream lives as long as the context Connect
		// gets: give it one that ends with the test (the timer bounds the
		// dial itself).
		life, end := context.WithCancel(context.Background())
		s.t.Cleanup(end)
		timer := time.AfterFunc(90*time.Second, end)
		c, err = dialGo(life, d, s.f.baseEnv(), stderr)
		timer.Stop()
	} else {
		c, err = dialTS(ctx, s.f.driver(s.t), d)
	}
	if err != nil {
		s.fatalf("connect: %v\n%s", err, stderr)
	}
	s.t.Cleanup(func() {
		if err := c.Close(); err != nil {
			s.t.Logf("close: %v", err)
		}
	})
	return c
}

// outcome is connec's structured tool result: {status, result, error}.
type outcome struct {
	Status string          `json:"status"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Type    string         `json:"type"`
		Message string         `json:"message"`
		Details map[string]any `json:"details"`
	} `json:"error"`
	raw string
}

// call calls a tool and checks the result's shape: structuredContent is
// {status, result, error}, isError is set exactly for errors, the text
// content carries the same JSON once, and the credential's secret is never
// in it.
func (s *story) call(c mcpClient, dotted string, args, meta map[string]any) (outcome, error) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := c.CallTool(ctx, s.name(dotted), args, meta)
	if err != nil {
		return outcome{}, err
	}
	var o outcome
	if err := json.Unmarshal(res.Structured, &o); err != nil || (o.Status != "ok" && o.Status != "error") {
		s.fatalf("%s: structuredContent is not {status, result, error}: %s (%v)", dotted, res.Structured, err)
	}
	o.raw = string(res.Structured)
	if res.IsError != (o.Status == "error") {
		s.fatalf("%s: isError %v with status %q", dotted, res.IsError, o.Status)
	}
	if o.Status == "error" && (o.Error == nil || o.Error.Type == "") {
		s.fatalf("%s: error result without an error type: %s", dotted, res.Structured)
	}
	if len(res.Texts) != 1 || !jsonEqual(res.Texts[0], string(res.Structured)) {
		s.fatalf("%s: want the structured JSON once as text content, got %d text blocks: %.300q", dotted, len(res.Texts), res.Texts)
	}
	if s.secret != "" && (strings.Contains(o.raw, s.secret) || strings.Contains(res.Texts[0], s.secret)) {
		s.fatalf("%s: the credential's secret came back: %s", dotted, o.raw)
	}
	return o, nil
}

func (s *story) ok(c mcpClient, dotted string, args, meta map[string]any, into any) {
	s.t.Helper()
	o, err := s.call(c, dotted, args, meta)
	if err != nil {
		s.fatalf("%s: %v", dotted, err)
	}
	if o.Status != "ok" {
		s.fatalf("%s: want ok, got %s", dotted, o.raw)
	}
	if into != nil {
		if err := json.Unmarshal(o.Result, into); err != nil {
			s.fatalf("%s: result %s: %v", dotted, o.Result, err)
		}
	}
}

func (s *story) fails(c mcpClient, dotted string, args, meta map[string]any, wantType string) {
	s.t.Helper()
	o, err := s.call(c, dotted, args, meta)
	if err != nil {
		s.fatalf("%s: want error %s, got a protocol error: %v", dotted, wantType, err)
	}
	if o.Status != "error" || o.Error.Type != wantType {
		s.fatalf("%s: want error %s, got %s", dotted, wantType, o.raw)
	}
}

func (s *story) tools(c mcpClient) []string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tools, err := c.ListTools(ctx)
	if err != nil {
		s.fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tl := range tools {
		names = append(names, tl.Name)
	}
	sort.Strings(names)
	return names
}

// portableName is what LLM APIs and IDE hosts accept as a tool name.
var portableName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

func (s *story) run() {
	t := s.t
	f := s.f
	owner, ownerTok := f.user(t, fmt.Sprintf("story%d", s.n), false)
	_, strangerTok := f.user(t, fmt.Sprintf("stranger%d", s.n), true)
	_, otherTok := f.user(t, fmt.Sprintf("other%d", s.n), false)

	c := s.connect(ownerTok)
	s.row.negotiated = c.Negotiated()
	if want := s.c.wantNegotiated(); s.row.negotiated != want && (want != "" || s.row.negotiated == "") {
		s.fatalf("negotiated protocol revision %q, want %q", s.row.negotiated, want)
	}

	// 1. The tools an owner needs are listed, under this server's names.
	names := s.tools(c)
	for _, want := range []string{"connector.catalog.list", "connector.instance.install", "connector.instance.list", "connector.credential.create",
		"connector.credential.revoke", "connector.op.invoke", "connector.run.list", "connector.run.get"} {
		if !slices.Contains(names, s.name(want)) {
			s.fatalf("tools/list lacks %s: %v", s.name(want), names)
		}
	}
	if slices.Contains(names, s.name("connector.policy.allow")) {
		s.fatalf("a user with only the owner rule is shown connector.policy.allow: %v", names)
	}
	if s.c.underscore {
		for _, n := range names {
			if !portableName.MatchString(n) {
				s.fatalf("with underscore tool names, %q does not match %s", n, portableName)
			}
		}
	}

	// 2. The catalog has echo and its echo.read operation.
	var catalog struct {
		Types []struct {
			Name       string `json:"name"`
			Operations []struct {
				Name string `json:"name"`
			} `json:"operations"`
		} `json:"types"`
	}
	s.ok(c, "connector.catalog.list", map[string]any{}, nil, &catalog)
	echoRead := false
	for _, ty := range catalog.Types {
		for _, op := range ty.Operations {
			echoRead = echoRead || (ty.Name == "echo" && op.Name == "echo.read")
		}
	}
	if !echoRead {
		s.fatalf("connector.catalog.list has no echo type with echo.read")
	}

	// 3. Install an echo instance, enabled.
	var inst struct {
		ID    string `json:"id"`
		Owner string `json:"owner"`
		State string `json:"state"`
	}
	s.ok(c, "connector.instance.install", map[string]any{"type": "echo", "display_name": "interop " + s.c.String(), "handle": "mail",
		"enable": true}, nil, &inst)
	if _, err := uuid.Parse(inst.ID); err != nil || inst.Owner != string(owner) {
		s.fatalf("install: id %q owner %q (want owner %s)", inst.ID, inst.Owner, owner)
	}

	// 4. A bearer credential; its secret never comes back.
	s.secret = "interop-secret-" + uuid.NewString()
	var cred struct {
		ID    string `json:"id"`
		Kind  string `json:"kind"`
		State string `json:"state"`
	}
	s.ok(c, "connector.credential.create", map[string]any{"instance_id": inst.ID, "kind": "bearer", "secret": map[string]any{"token": s.secret}}, nil, &cred)
	if cred.ID == "" || cred.Kind != "bearer" {
		s.fatalf("credential.create answered %+v", cred)
	}

	// 5. Invoke echo.read for a task: the task context rides in _meta.
	task := callctx.TaskContext{TaskID: uuid.NewString(), AgentID: "interop-" + s.c.client}
	meta := map[string]any{callctx.MetaKey: map[string]any{"task_id": task.TaskID, "agent_id": task.AgentID}}
	message := "hello from " + s.c.String()
	invoke := map[string]any{"instance_id": inst.ID, "operation": "echo.read", "arguments": map[string]any{"message": message}}
	var inv struct {
		RunID  string `json:"run_id"`
		Status string `json:"status"`
		Output struct {
			Message        string `json:"message"`
			CredentialKind string `json:"credential_kind"`
		} `json:"output"`
	}
	s.ok(c, "connector.op.invoke", invoke, meta, &inv)
	if inv.Output.Message != message || inv.Output.CredentialKind != "bearer" || inv.RunID == "" {
		s.fatalf("echo.read answered %+v", inv)
	}

	// 5b. The same operation as the instance's own tool: listed under the
	// handle, with the operation's schemas (the client checks the answer
	// against the declared output schema), answering with the operation's
	// output.
	if got := s.tools(c); !slices.Contains(got, s.name("mail.echo.read")) {
		s.fatalf("tools/list lacks the instance tool %s: %v", s.name("mail.echo.read"), got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	res, err := c.CallTool(ctx, s.name("mail.echo.read"), map[string]any{"message": message}, meta)
	cancel()
	if err != nil {
		s.fatalf("%s: %v", s.name("mail.echo.read"), err)
	}
	var direct struct {
		Message        string `json:"message"`
		CredentialKind string `json:"credential_kind"`
	}
	if res.IsError || json.Unmarshal(res.Structured, &direct) != nil || direct.Message != message || direct.CredentialKind != "bearer" ||
		len(res.Texts) != 1 || !jsonEqual(res.Texts[0], string(res.Structured)) || strings.Contains(string(res.Structured), s.secret) {
		s.fatalf("instance tool answered %s / %q", res.Structured, res.Texts)
	}

	// 6. The runs carry the task context, in the list and on their own.
	var runs struct {
		Runs []struct {
			ID     string              `json:"id"`
			Status string              `json:"status"`
			Task   callctx.TaskContext `json:"task"`
		} `json:"runs"`
	}
	s.ok(c, "connector.run.list", map[string]any{"instance_id": inst.ID}, nil, &runs)
	if len(runs.Runs) != 2 || runs.Runs[1].ID != inv.RunID {
		s.fatalf("run.list: want two runs, %s the older, got %+v", inv.RunID, runs.Runs)
	}
	for _, r := range runs.Runs {
		if r.Task != task || r.Status != "succeeded" {
			s.fatalf("run.list: want succeeded runs with task %+v, got %+v", task, runs.Runs)
		}
	}
	var run struct {
		ID        string              `json:"id"`
		Subject   string              `json:"subject"`
		Operation string              `json:"operation"`
		Status    string              `json:"status"`
		Task      callctx.TaskContext `json:"task"`
	}
	s.ok(c, "connector.run.get", map[string]any{"run_id": inv.RunID}, nil, &run)
	if run.ID != inv.RunID || run.Subject != string(owner) || run.Operation != "echo.read" || run.Status != "succeeded" || run.Task != task {
		s.fatalf("run.get: %+v, want run %s of %s with task %+v", run, inv.RunID, owner, task)
	}

	// 7. The audit row of the invocation carries the task and the transport;
	// the instance tool's rows (decision, outcome) name it, dotted.
	s.auditRow(owner, inst.ID, task)
	var named int
	if err := f.app.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE task_id = $1 AND tool = 'mail.echo.read'`,
		task.TaskID).Scan(&named); err != nil || named != 2 {
		s.fatalf("%d audit rows name the instance tool, want 2 (%v)", named, err)
	}

	// 8. Revoke: the very next invocation fails credential_revoked.
	s.ok(c, "connector.credential.revoke", map[string]any{"credential_id": cred.ID}, nil, nil)
	s.fails(c, "connector.op.invoke", invoke, meta, "credential_revoked")

	// 9. A user with no rules sees no such tool and cannot use the instance.
	stranger := s.connect(strangerTok)
	if got := s.tools(stranger); slices.Contains(got, s.name("connector.op.invoke")) || slices.Contains(got, s.name("connector.instance.get")) {
		s.fatalf("a user with no rules is shown %v", got)
	}
	s.refused(stranger, invoke)

	// 10. A user with rules on their own things only cannot see or use it.
	other := s.connect(otherTok)
	var list struct {
		Instances []struct {
			ID string `json:"id"`
		} `json:"instances"`
	}
	s.ok(other, "connector.instance.list", map[string]any{}, nil, &list)
	for _, in := range list.Instances {
		if in.ID == inst.ID {
			s.fatalf("another user lists the owner's instance")
		}
	}
	s.fails(other, "connector.op.invoke", invoke, nil, "policy_denied")
}

// refused checks that a call of a tool the caller is not shown is refused:
// as a protocol error (the tool does not exist for them) or as a
// policy_denied result, never run.
func (s *story) refused(c mcpClient, invoke map[string]any) {
	s.t.Helper()
	o, err := s.call(c, "connector.op.invoke", invoke, nil)
	if err != nil {
		return
	}
	if o.Status != "error" || o.Error.Type != "policy_denied" {
		s.fatalf("a user with no rules invoked the owner's instance: %s", o.raw)
	}
}

// auditRow finds the allowed connector.op.invoke audit row for the task.
func (s *story) auditRow(owner callctx.Subject, instanceID string, task callctx.TaskContext) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got struct {
		transport, subject, operation, decision, status, agent, instance string
	}
	err := s.f.app.Pool.QueryRow(ctx, `SELECT transport, subject, COALESCE(operation, ''), decision, status, COALESCE(agent_id, ''), COALESCE(instance_id::text, '')
		FROM audit_events WHERE task_id = $1 AND operation = 'echo.read' ORDER BY seq LIMIT 1`, task.TaskID).
		Scan(&got.transport, &got.subject, &got.operation, &got.decision, &got.status, &got.agent, &got.instance)
	if err != nil {
		s.fatalf("audit row for task %s: %v", task.TaskID, err)
	}
	want := got
	want.transport, want.subject, want.decision, want.status, want.agent, want.instance = s.c.transport, string(owner), "allow", "ok", task.AgentID, instanceID
	if got != want {
		s.fatalf("audit row %+v, want %+v", got, want)
	}
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
