package gateway_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
)

// The web UI in a real browser: headless Chromium driven over chromedriver's
// W3C WebDriver HTTP API signs in with a token, views every page, toggles
// an instance through its CSRF-protected form, signs out, and saves a
// screenshot of each page in test-artifacts/gateway-ui/. What it checks on
// a page it reads as rendered (names, not ids; run ids that differ; the
// trail newest first; an instance admin's rows, an auditor's whole trail).
func TestWebUIInHeadlessChromium(t *testing.T) {
	chromium, driver := ensureChromium(t)
	start := time.Now()

	// Runs and the audit trail from the core itself, as connec serves them:
	// what each user sees is what policy lets them see.
	e := newEnv(t)
	alice, aliceTok := e.user("alice", false)
	_, bobTok := e.user("bob", false)
	auditor, auditorTok := e.user("auditor", true)
	e.allow(auditor, authz.ResourceAudit, authz.ActionAuditRead)
	primary := e.must(http.StatusCreated, "POST", "/v1/connector-instances", aliceTok,
		map[string]any{"type": "echo", "display_name": "Primary echo", "config": map[string]any{"prefix": "echo: "}, "enable": true}).id(t)
	e.must(http.StatusCreated, "POST", "/v1/connector-instances/"+primary+"/credentials", aliceTok,
		map[string]any{"kind": "bearer", "secret": map[string]string{"token": "browser-test-secret"}})
	staging := e.must(http.StatusCreated, "POST", "/v1/connector-instances", aliceTok, map[string]any{"type": "echo", "display_name": "Staging echo"}).id(t)
	bobs := e.must(http.StatusCreated, "POST", "/v1/connector-instances", bobTok, map[string]any{"type": "echo", "display_name": "Bob's private echo"}).id(t)
	// An MCP server an administrator added (its page is for everyone who
	// may read the catalog).
	up := server.NewMCPServer("docs", "1")
	up.AddTool(mcp.NewTool("search_docs", mcp.WithDescription("Search the team's documentation."), mcp.WithReadOnlyHintAnnotation(true),
		mcp.WithString("query", mcp.Required())), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return mcp.NewToolResultText("found"), nil
	})
	up.AddTool(mcp.NewTool("file_issue", mcp.WithDescription("File an issue in the tracker."), mcp.WithString("title", mcp.Required())),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("filed"), nil
		})
	upHTTP := httptest.NewServer(server.NewStreamableHTTPServer(up))
	t.Cleanup(upHTTP.Close)
	_, rootTok := e.admin("root")
	e.must(http.StatusCreated, "POST", "/v1/mcp-servers", rootTok, map[string]any{"name": "docs", "url": upHTTP.URL + "/mcp"})
	// Real runs, through the core, as an agent would make them.
	task := callctx.TaskContext{TaskID: uuid.NewString(), AgentID: "planner-1"}
	for _, op := range []string{"echo.read", "echo.send", "echo.read"} {
		e.invoke(aliceTok, primary, op, task)
	}

	wd := startDriver(t, driver, chromium)
	shots := artifactsDir(t)
	shot := func(name string) {
		t.Helper()
		raw := wd.screenshot()
		img, err := png.Decode(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 600 {
			t.Fatalf("screenshot %s is %v", name, b)
		}
		path := filepath.Join(shots, name+".png")
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", path)
	}
	// A click that submits a form may return before the next page has
	// loaded: wait (briefly) for what should be there.
	eventually := func(ok func() bool) bool {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if ok() {
				return true
			}
			if time.Now().After(deadline) {
				return false
			}
		}
	}
	expectPath := func(want string) {
		t.Helper()
		if !eventually(func() bool { return wd.path() == want }) {
			t.Fatalf("at %s, want %s\n%s", wd.path(), want, wd.source())
		}
	}
	expectText := func(texts ...string) {
		t.Helper()
		for _, s := range texts {
			if !eventually(func() bool { return strings.Contains(wd.source(), s) }) {
				t.Fatalf("page %s lacks %q:\n%s", wd.path(), s, wd.source())
			}
		}
	}

	// Signed out, the instances page sends the browser to the login page.
	wd.navigate(e.http.URL + "/ui/instances")
	expectPath("/ui/login")
	shot("01-login")

	wd.sendKeys(wd.find("#token"), aliceTok)
	wd.click(wd.find("#login"))
	expectPath("/ui/instances")
	expectText("Primary echo", "Staging echo", "bearer v1", "primary-echo", "staging-echo")
	if strings.Contains(wd.source(), "Bob&#39;s private echo") || strings.Contains(wd.source(), "Bob's private echo") {
		t.Fatal("alice sees bob's instance")
	}
	for _, c := range wd.cookies() {
		if c.Name == "connec_session" && (!c.HTTPOnly || c.SameSite != "Strict") {
			t.Fatalf("session cookie in the browser: %+v", c)
		}
	}
	for _, c := range wd.column("Owner") {
		if c.Text != "alice" || c.Title != string(alice) {
			t.Fatalf("the Owner column shows %q (title %q), want alice's name with her id at hand", c.Text, c.Title)
		}
	}
	shot("02-instances")

	wd.click(wd.find(`a.instance-link[href="/ui/instances/` + primary + `"]`))
	expectPath("/ui/instances/" + primary)
	expectText("Primary echo", "enabled", "Credentials", "token")
	if h := wd.text(wd.find("#handle")); h != "primary-echo" {
		t.Fatalf("the instance page shows handle %q, want primary-echo", h)
	}
	shot("03-instance")

	wd.click(wd.find("#disable"))
	expectPath("/ui/instances/" + primary)
	expectText("The instance is disabled.")
	if n := e.count(`SELECT count(*) FROM connector_instances WHERE id = $1 AND state = 'disabled'`, primary); n != 1 {
		t.Fatal("the form did not disable the instance")
	}
	shot("04-instance-disabled")
	wd.click(wd.find("#enable"))
	expectText("The instance is enabled.")
	if n := e.count(`SELECT count(*) FROM connector_instances WHERE id = $1 AND state = 'enabled'`, primary); n != 1 {
		t.Fatal("the form did not enable the instance")
	}

	wd.navigate(e.http.URL + "/ui/runs")
	expectText("echo.read", "echo.send", "succeeded")
	runs := map[string]bool{}
	for _, c := range wd.column("Run") {
		if runs[c.Text] || c.Title == "" || !strings.Contains(c.Title, strings.Trim(c.Text, "…")) {
			t.Fatalf("run ids do not tell runs apart, or lack the full id: %+v", wd.column("Run"))
		}
		runs[c.Text] = true
	}
	for _, c := range wd.column("Subject") {
		if c.Text != "alice" || c.Title != string(alice) {
			t.Fatalf("the Subject column shows %q (title %q), want alice's name", c.Text, c.Title)
		}
	}
	shot("05-runs")
	wd.click(wd.find("a.run-link"))
	expectText("Operation", "planner-1", "Attempts")
	shot("06-run")

	// Alice is no auditor: she reads the rows of the instance she
	// administers, newest first, and not bob's.
	wd.navigate(e.http.URL + "/ui/audit")
	expectText("connector.instance.disable", "connector.instance.enable", "web")
	if src := wd.source(); strings.Contains(src, "Denied by policy") || strings.Contains(src, bobs) {
		t.Fatalf("alice's audit page:\n%s", src)
	}
	expectNewestFirst := func() {
		t.Helper()
		var prev int64
		for i, c := range wd.column("Seq") {
			n, err := strconv.ParseInt(c.Text, 10, 64)
			if err != nil || (i > 0 && n >= prev) {
				t.Fatalf("the audit rows are not newest first: %+v", wd.column("Seq"))
			}
			prev = n
		}
	}
	expectNewestFirst()
	for _, c := range wd.column("Instance") {
		if (c.Title != primary && c.Title != staging) || !strings.Contains(c.Text, c.Title[len(c.Title)-12:]) {
			t.Fatalf("the Instance column shows %q (title %q), want one of alice's instances", c.Text, c.Title)
		}
	}
	shot("07-audit")

	wd.navigate(e.http.URL + "/ui/servers")
	expectText("MCP servers", "mcp-docs", "docs.search_docs", "docs.file_issue", upHTTP.URL+"/mcp")
	if got := wd.column("Kind"); len(got) != 2 || got[0].Text != "send" || got[1].Text != "read" {
		t.Fatalf("the servers page's kinds: %+v", got)
	}
	shot("10-servers")

	wd.click(wd.find("#logout"))
	expectPath("/ui/login")
	expectText("You are signed out.")
	shot("08-signed-out")

	// The auditor reads the whole trail, by name, with the chain verified.
	wd.sendKeys(wd.find("#token"), auditorTok)
	wd.click(wd.find("#login"))
	expectPath("/ui/instances")
	wd.navigate(e.http.URL + "/ui/audit")
	expectText("Chain verified", bobs)
	expectNewestFirst()
	names := map[string]bool{}
	for _, c := range wd.column("Subject") {
		names[c.Text] = true
	}
	if !names["alice"] || !names["bob"] || !names["auditor"] {
		t.Fatalf("the auditor's audit page names %v", names)
	}
	shot("09-audit-auditor")
	wd.click(wd.find("#logout"))
	expectPath("/ui/login")
	wd.navigate(e.http.URL + "/ui/instances")
	expectPath("/ui/login")

	if strings.Contains(wd.source(), "browser-test-secret") {
		t.Fatal("a page shows the secret")
	}
	t.Logf("browser flow took %s", time.Since(start).Round(time.Millisecond))
}

// ensureChromium returns the Chromium binary and chromedriver, installing
// Debian's chromium and chromium-driver with apt-get when they are missing.
// It skips the test only if they cannot be installed.
func ensureChromium(t *testing.T) (chromium, driver string) {
	t.Helper()
	find := func() (string, string) {
		c := ""
		for _, p := range []string{"/usr/lib/chromium/chromium", "chromium", "chromium-browser"} {
			if path, err := exec.LookPath(p); err == nil {
				c = path
				break
			}
		}
		d, _ := exec.LookPath("chromedriver")
		if d == "" {
			if _, err := os.Stat("/usr/lib/chromium/chromedriver"); err == nil {
				d = "/usr/lib/chromium/chromedriver"
			}
		}
		return c, d
	}
	if c, d := find(); c != "" && d != "" {
		return c, d
	}
	aptGet, err := exec.LookPath("apt-get")
	if err != nil {
		t.Skip("Chromium and chromedriver are not installed and there is no apt-get to install them (Debian packages chromium, chromium-driver)")
	}
	var prefix []string
	if os.Geteuid() != 0 {
		sudo, err := exec.LookPath("sudo")
		if err != nil {
			t.Skip("Chromium and chromedriver are not installed, and installing them needs root (apt-get install chromium chromium-driver)")
		}
		prefix = []string{sudo, "-n"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := func(args ...string) ([]byte, error) {
		all := append(append([]string{}, prefix...), append([]string{aptGet}, args...)...)
		cmd := exec.CommandContext(ctx, all[0], all[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	t.Log("installing chromium and chromium-driver with apt-get (once per machine)")
	if out, err := run("install", "-y", "-q", "chromium", "chromium-driver"); err != nil {
		// The package lists may be missing or stale: update, then try again.
		if _, uerr := run("update", "-q"); uerr == nil {
			out, err = run("install", "-y", "-q", "chromium", "chromium-driver")
		}
		if err != nil {
			t.Skipf("cannot install chromium and chromium-driver with apt-get: %v\n%s", err, lastLines(out, 15))
		}
	}
	c, d := find()
	if c == "" || d == "" {
		t.Skip("apt-get installed chromium and chromium-driver, but the binaries are not where expected")
	}
	return c, d
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// artifactsDir is test-artifacts/gateway-ui at the module root (gitignored).
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	out := filepath.Join(dir, "test-artifacts", "gateway-ui")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// webDriver is a minimal W3C WebDriver client for one session.
type webDriver struct {
	t       *testing.T
	base    string
	session string
	client  *http.Client
}

// startDriver starts chromedriver on a free loopback port and opens a
// headless Chromium session; both end with the test.
func startDriver(t *testing.T, driver, chromium string) *webDriver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var logs bytes.Buffer
	cmd := exec.Command(driver, fmt.Sprintf("--port=%d", port))
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromedriver: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	wd := &webDriver{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port), client: &http.Client{Timeout: 30 * time.Second}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		var st struct {
			Value struct {
				Ready bool `json:"ready"`
			} `json:"value"`
		}
		if err := wd.raw("GET", "/status", nil, &st); err == nil && st.Value.Ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromedriver did not become ready:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{
			"binary": chromium,
			"args": []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
				"--disable-background-networking", "--disable-component-update", "--disable-sync",
				"--user-data-dir=" + t.TempDir(), "--window-size=1440,1200", "--hide-scrollbars", "--lang=en-US"},
		},
	}}}
	var created struct {
		Value struct {
			SessionID string `json:"sessionId"`
		} `json:"value"`
	}
	if err := wd.raw("POST", "/session", caps, &created); err != nil || created.Value.SessionID == "" {
		t.Fatalf("new WebDriver session: %v\n%s", err, logs.String())
	}
	wd.session = created.Value.SessionID
	t.Cleanup(func() { _ = wd.raw("DELETE", "/session/"+wd.session, nil, nil) })
	return wd
}

// raw sends one WebDriver command and decodes the answer into out.
func (wd *webDriver) raw(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, wd.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := wd.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("webdriver %s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

func (wd *webDriver) cmd(method, path string, body any) json.RawMessage {
	wd.t.Helper()
	var out struct {
		Value json.RawMessage `json:"value"`
	}
	if err := wd.raw(method, "/session/"+wd.session+path, body, &out); err != nil {
		wd.t.Fatal(err)
	}
	return out.Value
}

func (wd *webDriver) navigate(url string) {
	wd.t.Helper()
	wd.cmd("POST", "/url", map[string]string{"url": url})
}

// path is the current page's path.
func (wd *webDriver) path() string {
	wd.t.Helper()
	var u string
	if err := json.Unmarshal(wd.cmd("GET", "/url", nil), &u); err != nil {
		wd.t.Fatal(err)
	}
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
		if j := strings.Index(u, "/"); j >= 0 {
			u = u[j:]
		}
	}
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	return u
}

func (wd *webDriver) source() string {
	wd.t.Helper()
	var s string
	if err := json.Unmarshal(wd.cmd("GET", "/source", nil), &s); err != nil {
		wd.t.Fatal(err)
	}
	return s
}

const elementKey = "element-6066-11e4-a52e-4f735466cecf"

func (wd *webDriver) find(css string) string {
	wd.t.Helper()
	var el map[string]string
	raw := wd.cmd("POST", "/element", map[string]string{"using": "css selector", "value": css})
	if err := json.Unmarshal(raw, &el); err != nil || el[elementKey] == "" {
		wd.t.Fatalf("find %s: %v %s", css, err, raw)
	}
	return el[elementKey]
}

// text is an element's rendered text.
func (wd *webDriver) text(el string) string {
	wd.t.Helper()
	var s string
	if err := json.Unmarshal(wd.cmd("GET", "/element/"+el+"/text", nil), &s); err != nil {
		wd.t.Fatalf("text of %s: %v", el, err)
	}
	return s
}

func (wd *webDriver) click(el string) {
	wd.t.Helper()
	wd.cmd("POST", "/element/"+el+"/click", map[string]any{})
}

func (wd *webDriver) sendKeys(el, text string) {
	wd.t.Helper()
	wd.cmd("POST", "/element/"+el+"/value", map[string]string{"text": text})
}

// columnCell is one table cell as the browser renders it: its visible
// text, and the title of the element in it that has one.
type columnCell struct {
	Text  string `json:"text"`
	Title string `json:"title"`
}

// column returns the cells under the header named name in the page's first
// table that has one (the script runs through WebDriver, not the page, so
// the UI's Content-Security-Policy does not apply to it).
func (wd *webDriver) column(name string) []columnCell {
	wd.t.Helper()
	const script = `const name = arguments[0];
const heads = t => [...t.querySelectorAll("thead th")];
const table = [...document.querySelectorAll("table")].find(t => heads(t).some(th => th.innerText.trim() === name));
if (!table) return null;
const i = heads(table).findIndex(th => th.innerText.trim() === name);
return [...table.querySelectorAll("tbody tr")].map(tr => {
  const c = tr.cells[i], titled = c.querySelector("[title]");
  return {text: c.innerText.trim(), title: titled ? titled.title : ""};
});`
	var cells []columnCell
	raw := wd.cmd("POST", "/execute/sync", map[string]any{"script": script, "args": []any{name}})
	if err := json.Unmarshal(raw, &cells); err != nil || cells == nil {
		wd.t.Fatalf("no column %q on %s (%v):\n%s", name, wd.path(), err, wd.source())
	}
	return cells
}

func (wd *webDriver) screenshot() []byte {
	wd.t.Helper()
	var b64 string
	if err := json.Unmarshal(wd.cmd("GET", "/screenshot", nil), &b64); err != nil {
		wd.t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		wd.t.Fatal(err)
	}
	return raw
}

type wdCookie struct {
	Name     string `json:"name"`
	HTTPOnly bool   `json:"httpOnly"`
	Secure   bool   `json:"secure"`
	SameSite string `json:"sameSite"`
	Path     string `json:"path"`
}

func (wd *webDriver) cookies() []wdCookie {
	wd.t.Helper()
	var cs []wdCookie
	if err := json.Unmarshal(wd.cmd("GET", "/cookie", nil), &cs); err != nil {
		wd.t.Fatal(err)
	}
	return cs
}
