package gateway_test

import (
	"context"
	"html"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/gateway"
	"github.com/connec/connec/internal/app"
)

// The pages show what people read: an audit row's instance (not a Go
// pointer), run ids that tell runs apart, user and group names with the ids
// at hand, the trail newest first with paging that neither skips nor
// repeats, and, for an instance's admins who are not auditors, the rows of
// the instances they administer — decided by the core, as over REST.
func TestWebUIPagesShowWhatPeopleRead(t *testing.T) {
	namer := &countingNamer{}
	env := newEnv(t,
		func(c *gateway.Config, a *app.App) { namer.of = a.Identity; c.Names = namer })
	e := env
	ctx := context.Background()
	alice, aliceTok := e.user("alice", false)
	bob, bobTok := e.user("bob", false)
	_, carolTok := e.user("carol", false)
	auditor, auditorTok := e.user("auditor", true)
	e.allow(auditor, authz.ResourceAudit, authz.ActionAuditRead)
	ops, err := e.app.AddGroup(ctx, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.app.AddMember(ctx, "ops", "alice"); err != nil {
		t.Fatal(err)
	}
	e.allow(alice, authz.OwnerResource(ops.Subject())+"/**", authz.AnyAction)

	primary := e.must(http.StatusCreated, "POST", "/v1/connector-instances", aliceTok,
		map[string]any{"type": "echo", "display_name": "Primary echo", "enable": true}).id(t)
	team := e.must(http.StatusCreated, "POST", "/v1/connector-instances", aliceTok,
		map[string]any{"type": "echo", "display_name": "Team echo", "owner": string(ops.Subject()), "enable": true}).id(t)
	bobs := e.must(http.StatusCreated, "POST", "/v1/connector-instances", bobTok,
		map[string]any{"type": "echo", "display_name": "Bob echo", "enable": true}).id(t)
	task := callctx.TaskContext{TaskID: uuid.NewString(), AgentID: "planner-1"}
	var runIDs []string
	for _, op := range []string{"echo.read", "echo.send", "echo.read"} {
		runIDs = append(runIDs, e.invoke(aliceTok, primary, op, task))
	}
	e.invoke(aliceTok, team, "echo.read", task)
	e.invoke(bobTok, bobs, "echo.read", callctx.TaskContext{})

	t.Run("an audit row's instance is the instance, not a Go pointer", func(t *testing.T) {
		ui := env.on(t).browser()
		ui.login(auditorTok)
		page := ui.get("/ui/audit?instance_id=" + primary)
		rows := mustTable(t, page, "Instance")
		if len(rows) < 4 {
			t.Fatalf("want the install and three invocations of the instance, got %d rows", len(rows))
		}
		for _, row := range rows {
			cell := row["Instance"]
			if regexp.MustCompile(`0x[0-9a-f]{6,}`).MatchString(cell.text) {
				t.Fatalf("the Instance column shows a Go pointer: %q", cell.text)
			}
			if !strings.Contains(cell.text, tailOf(primary)) || !strings.Contains(cell.html, `href="/ui/instances/`+primary+`"`) ||
				!strings.Contains(cell.html, `title="`+primary+`"`) {
				t.Fatalf("the Instance column does not show instance %s (with its full id at hand): %q", primary, cell.html)
			}
		}
	})

	t.Run("run ids tell runs apart, with the full id at hand", func(t *testing.T) {
		ui := env.on(t).browser()
		ui.login(aliceTok)
		rows := mustTable(t, ui.get("/ui/runs?instance_id="+primary), "Run")
		if len(rows) != 3 {
			t.Fatalf("want 3 runs, got %d", len(rows))
		}
		shown := texts(rows, "Run")
		if slices.Sort(shown); len(slices.Compact(shown)) != len(rows) {
			t.Fatalf("runs look alike: %v", texts(rows, "Run"))
		}
		for _, row := range rows {
			cell := row["Run"]
			full := ""
			for _, id := range runIDs {
				if strings.Contains(cell.html, `title="`+id+`"`) && strings.Contains(cell.html, `href="/ui/runs/`+id+`"`) {
					full = id
				}
			}
			if full == "" || !strings.Contains(full, strings.Trim(cell.text, "…")) {
				t.Fatalf("run cell %q shows no part of one run's id with the full id in its title and link", cell.html)
			}
		}
	})

	t.Run("owners and subjects by name, ids at hand", func(t *testing.T) {
		ui := env.on(t).browser()
		ui.login(aliceTok)
		byName := map[string]cell{}
		for _, row := range mustTable(t, ui.get("/ui/instances"), "Name", "Owner") {
			byName[row["Name"].text] = row["Owner"]
		}
		wantName(t, "instances page, Primary echo's owner", byName["Primary echo primary-echo "+primary], "alice", alice)
		wantName(t, "instances page, Team echo's owner", byName["Team echo team-echo "+team], "ops", ops.Subject())
		one := ui.get("/ui/instances/" + primary)
		if !strings.Contains(visible(one.String()), "Owner alice") || !strings.Contains(one.String(), string(alice)) {
			t.Fatalf("instance page does not name its owner (with the id at hand): %s", visible(one.String()))
		}
		for _, row := range mustTable(t, ui.get("/ui/runs"), "Subject") {
			wantName(t, "runs page subject", row["Subject"], "alice", alice)
		}
		run := ui.get("/ui/runs/" + runIDs[0])
		if !strings.Contains(visible(run.String()), "Subject alice") || !strings.Contains(run.String(), string(alice)) {
			t.Fatalf("run page does not name its subject (with the id at hand): %s", visible(run.String()))
		}

		au := env.on(t).browser()
		au.login(auditorTok)
		subjects := map[string]cell{}
		before := namer.calls()
		rows := mustTable(t, au.get("/ui/audit?limit=1000"), "Subject")
		for _, row := range rows {
			subjects[row["Subject"].text] = row["Subject"]
		}
		// One lookup for the page, of each subject once, however many rows.
		if calls, last := namer.calls()-before, namer.lastAsked(); calls != 1 || len(last) > len(subjects) {
			t.Fatalf("naming %d rows by %d subjects took %d lookups, the last of %d subjects", len(rows), len(subjects), calls, len(last))
		}
		wantName(t, "audit page, alice's rows", subjects["alice"], "alice", alice)
		wantName(t, "audit page, bob's rows", subjects["bob"], "bob", bob)
		wantName(t, "audit page, the auditor's rows", subjects["auditor"], "auditor", auditor)
	})

	t.Run("the audit trail reads newest first, and its pages neither skip nor repeat", func(t *testing.T) {
		ui := env.on(t).browser()
		ui.login(auditorTok)
		page := ui.get("/ui/audit?limit=7")
		var seqs []int64
		for pages := 0; ; pages++ {
			for _, row := range mustTable(t, page, "Seq") {
				n, err := strconv.ParseInt(row["Seq"].text, 10, 64)
				if err != nil {
					t.Fatalf("seq %q: %v", row["Seq"].text, err)
				}
				if len(seqs) > 0 && n >= seqs[len(seqs)-1] {
					t.Fatalf("page %d: seq %d after %d: the trail is not newest first (%v)", pages+1, n, seqs[len(seqs)-1], seqs)
				}
				seqs = append(seqs, n)
			}
			next := nextLink(page)
			if next == "" {
				break
			}
			if pages > 100 {
				t.Fatal("the next links never end")
			}
			page = ui.get(next)
		}
		// Newest first from the head down to seq 1: every row once.
		if len(seqs) < 20 || seqs[len(seqs)-1] != 1 || int64(len(seqs)) != seqs[0] {
			t.Fatalf("pages gave %d rows from seq %d down to %d", len(seqs), seqs[0], seqs[len(seqs)-1])
		}
		// Oldest first remains on request.
		old := mustTable(t, ui.get("/ui/audit?order=oldest&limit=3"), "Seq")
		if len(old) != 3 || old[0]["Seq"].text != "1" || old[2]["Seq"].text != "3" {
			t.Fatalf("oldest first: %v", texts(old, "Seq"))
		}
	})

	t.Run("an instance admin who is not an auditor sees the rows of the instances they administer", func(t *testing.T) {
		e := env.on(t)
		ui := e.browser()
		ui.login(aliceTok)
		page := ui.get("/ui/audit?limit=1000")
		if page.Status != http.StatusOK || strings.Contains(page.String(), "Denied by policy") {
			t.Fatalf("alice's audit page: %d %s", page.Status, visible(page.String()))
		}
		got := map[string]int{}
		var seqs []string
		for _, row := range mustTable(t, page, "Seq", "Instance") {
			got[instanceOf(row["Instance"])]++
			seqs = append(seqs, row["Seq"].text)
		}
		if got[primary] < 4 || got[team] < 2 || len(got) != 2 {
			t.Fatalf("alice's rows by instance: %v (primary %s, team %s)", got, primary, team)
		}
		if strings.Contains(page.String(), bobs) {
			t.Fatal("alice's audit page shows bob's instance")
		}
		if !strings.Contains(visible(page.String()), "auditors") {
			t.Fatalf("the chain status does not say verification is for auditors: %s", visible(page.String()))
		}
		// The same rows as the REST API gives her (the same core call).
		var api core.AuditPage
		e.must(http.StatusOK, "GET", "/v1/audit-events?limit=1000", aliceTok, nil).json(t, &api)
		var apiSeqs []string
		for _, r := range api.Events {
			apiSeqs = append(apiSeqs, strconv.FormatInt(r.Seq, 10))
		}
		slices.Reverse(apiSeqs)
		if !slices.Equal(seqs, apiSeqs) {
			t.Fatalf("UI rows %v, REST rows (newest first) %v", seqs, apiSeqs)
		}
		// Bob sees his instance's rows only; carol, who administers
		// nothing, is refused as before.
		bui := e.browser()
		bui.login(bobTok)
		for _, row := range mustTable(t, bui.get("/ui/audit"), "Instance") {
			if id := instanceOf(row["Instance"]); id != bobs {
				t.Fatalf("bob sees a row of instance %q", id)
			}
		}
		cui := e.browser()
		cui.login(carolTok)
		if r := cui.get("/ui/audit"); r.Status != http.StatusForbidden || strings.Contains(r.String(), "<tbody>") {
			t.Fatalf("carol's audit page: %d %s", r.Status, visible(r.String()))
		}
		problem(t, e.do("GET", "/v1/audit-events", carolTok, nil), http.StatusForbidden, "policy_denied")
	})
}

// cell is one table cell: its markup and the text a reader sees.
type cell struct{ html, text string }

var (
	tableRe = regexp.MustCompile(`(?s)<table[^>]*>(.*?)</table>`)
	thRe    = regexp.MustCompile(`(?s)<th[^>]*>(.*?)</th>`)
	trRe    = regexp.MustCompile(`(?s)<tr[^>]*>(.*?)</tr>`)
	tdRe    = regexp.MustCompile(`(?s)<td[^>]*>(.*?)</td>`)
	tagRe   = regexp.MustCompile(`(?s)<[^>]*>`)
	spaceRe = regexp.MustCompile(`\s+`)
	nextRe  = regexp.MustCompile(`<a href="([^"]*)"[^>]*>Next page`)
	hrefRe  = regexp.MustCompile(`href="/ui/instances/([^"]+)"`)
)

// visible is the text of markup as a reader sees it (tags dropped,
// entities decoded, whitespace collapsed).
func visible(markup string) string {
	return strings.TrimSpace(spaceRe.ReplaceAllString(html.UnescapeString(tagRe.ReplaceAllString(markup, " ")), " "))
}

// mustTable returns the rows of the page's first table with all the given
// columns, each row by column header.
func mustTable(t *testing.T, page response, columns ...string) []map[string]cell {
	t.Helper()
	if page.Status != http.StatusOK {
		t.Fatalf("page: %d %s", page.Status, visible(page.String()))
	}
	for _, tm := range tableRe.FindAllStringSubmatch(page.String(), -1) {
		var heads []string
		for _, th := range thRe.FindAllStringSubmatch(tm[1], -1) {
			heads = append(heads, visible(th[1]))
		}
		if !containsAll(heads, columns) {
			continue
		}
		var out []map[string]cell
		for _, tr := range trRe.FindAllStringSubmatch(tm[1], -1) {
			tds := tdRe.FindAllStringSubmatch(tr[1], -1)
			if len(tds) == 0 {
				continue
			}
			if len(tds) != len(heads) {
				t.Fatalf("row with %d cells under %d headers: %s", len(tds), len(heads), tr[0])
			}
			row := map[string]cell{}
			for i, td := range tds {
				row[heads[i]] = cell{html: td[1], text: visible(td[1])}
			}
			out = append(out, row)
		}
		return out
	}
	t.Fatalf("no table with columns %v on the page: %s", columns, visible(page.String()))
	return nil
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func texts(rows []map[string]cell, col string) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r[col].text)
	}
	return out
}

// nextLink is the page's "Next page" link, "" on the last page.
func nextLink(page response) string {
	m := nextRe.FindStringSubmatch(page.String())
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// instanceOf is the instance a cell links to.
func instanceOf(c cell) string {
	m := hrefRe.FindStringSubmatch(c.html)
	if m == nil {
		return ""
	}
	return m[1]
}

// tailOf is the last group of a uuid: what tells UUIDv7s apart.
func tailOf(id string) string { return id[strings.LastIndex(id, "-")+1:] }

// wantName checks that a cell shows name, with the subject's id in a title.
func wantName(t *testing.T, where string, c cell, name string, sub callctx.Subject) {
	t.Helper()
	if !strings.HasPrefix(c.text, name) || strings.Contains(c.text, string(sub)) || !strings.Contains(c.html, `title="`+string(sub)+`"`) {
		t.Fatalf("%s shows %q (%s), want the name %q with %s in its title", where, c.text, c.html, name, sub)
	}
}

// countingNamer counts the lookups the UI makes.
type countingNamer struct {
	of gateway.SubjectNamer

	mu    sync.Mutex
	n     int
	asked []callctx.Subject
}

func (c *countingNamer) Names(ctx context.Context, subjects []callctx.Subject) (map[callctx.Subject]string, error) {
	c.mu.Lock()
	c.n++
	c.asked = slices.Clone(subjects)
	c.mu.Unlock()
	return c.of.Names(ctx, subjects)
}

func (c *countingNamer) calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *countingNamer) lastAsked() []callctx.Subject {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.asked
}
