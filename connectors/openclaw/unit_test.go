package openclaw

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/driverkit/drivertest"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/jsonschema"
)

func TestParseSpec(t *testing.T) {
	for _, c := range []struct {
		in, pkg, ver string
		ok           bool
	}{
		{"@ollama/openclaw-web-search@0.2.2", "@ollama/openclaw-web-search", "0.2.2", true},
		{"left-pad@1.3.0", "left-pad", "1.3.0", true},
		{"x@1.0.0-beta.1", "x", "1.0.0-beta.1", true},
		{"x@^1.0.0", "", "", false},
		{"x@latest", "", "", false},
		{"x", "", "", false},
		{"@scope/x", "", "", false},
		{"git+https://example.com/x.git@1.0.0", "", "", false},
		{"file:../x@1.0.0", "", "", false},
		{"X@1.0.0", "", "", false},
	} {
		pkg, ver, err := ParseSpec(c.in)
		if (err == nil) != c.ok || pkg != c.pkg || ver != c.ver {
			t.Errorf("ParseSpec(%q) = %q, %q, %v", c.in, pkg, ver, err)
		}
	}
}

func TestNames(t *testing.T) {
	for in, want := range map[string]string{
		"openclaw-web-search":                  "openclaw-openclaw-web-search",
		"Connec Test":                          "openclaw-connec-test",
		"9lives":                               "openclaw-lives",
		"":                                     "openclaw-plugin",
		"a-very-long-plugin-identifier-indeed": "openclaw-a-very-long-pl",
	} {
		got := TypeName(in)
		if !strings.HasPrefix(got, want) || len(got) > 32 {
			t.Errorf("TypeName(%q) = %q, want prefix %q and at most 32 characters", in, got, want)
		}
	}
	if DirName("@ollama/openclaw-web-search") != "ollama-openclaw-web-search" {
		t.Errorf("DirName = %q", DirName("@ollama/openclaw-web-search"))
	}
	if toolOpName("Web.Search") != "web-search" {
		t.Errorf("toolOpName = %q", toolOpName("Web.Search"))
	}
}

func TestSanitizeSchema(t *testing.T) {
	out, err := sanitizeSchema(json.RawMessage(`{"$schema":"http://json-schema.org/draft-07/schema#","$id":"file:///etc/x","type":"object","required":["a"],"properties":{"a":{"$ref":"#/$defs/s"}},"$defs":{"s":{"type":"string"}}}`), true)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "$schema") || strings.Contains(string(out), "$id") || strings.Contains(string(out), "required") {
		t.Errorf("sanitized = %s", out)
	}
	if _, err := jsonschema.Compile(out); err != nil {
		t.Errorf("compile: %v", err)
	}
	for _, bad := range []string{
		`{"properties":{"a":{"$ref":"file:///etc/passwd"}}}`,
		`{"$ref":"https://example.com/s.json"}`,
		`{"allOf":[{"$dynamicRef":"other.json#x"}]}`,
		`[]`,
		`"x"`,
	} {
		if _, err := sanitizeSchema(json.RawMessage(bad), false); err == nil {
			t.Errorf("sanitizeSchema(%s) accepted", bad)
		}
	}
}

func TestToolKind(t *testing.T) {
	r := &Record{}
	r.Manifest.ToolMetadata = map[string]ToolMetadata{"post": {SideEffecting: true}, "get": {}}
	r.ToolKinds = map[string]connectors.Kind{"get2": connectors.KindSend, "post": connectors.KindRead}
	for tool, want := range map[string]connectors.Kind{"get": "read", "other": "read", "get2": "send", "post": "read"} {
		if got := r.toolKind(tool); got != want {
			t.Errorf("toolKind(%s) = %s, want %s", tool, got, want)
		}
	}
	delete(r.ToolKinds, "post")
	if r.toolKind("post") != connectors.KindSend {
		t.Error("a sideEffecting tool is not send")
	}
}

func TestReadFrame(t *testing.T) {
	br := bufio.NewReaderSize(strings.NewReader("{\"a\":1}\r\n"+strings.Repeat("x", 100)+"\nshort\n"), 16)
	if b, err := readFrame(br, 50); err != nil || string(b) != `{"a":1}` {
		t.Fatalf("first = %q, %v", b, err)
	}
	if _, err := readFrame(br, 50); !errors.Is(err, errFrameTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	br = bufio.NewReaderSize(strings.NewReader("partial"), 16)
	if _, err := readFrame(br, 50); !errors.Is(err, io.EOF) {
		t.Fatalf("partial: %v", err)
	}
}

func TestNormalizeTool(t *testing.T) {
	red := driverkit.NewRedactor(drivertest.Fields("key", "s3cret-value"))
	out, err := normalizeTool(json.RawMessage(`{"content":[{"type":"text","text":"a s3cret-value b","extra":1},{"type":"image","data":"aGk=","mimeType":"image/png"}],"details":{"k":"czNjcmV0LXZhbHVl"},"junk":true}`), red, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"content":[{"text":"a [REDACTED] b","type":"text"},{"data":"aGk=","mimeType":"image/png","type":"image"}],"details":{"k":"[REDACTED]"},"redacted":true}`
	if string(out.JSON) != want || !out.Redacted {
		t.Errorf("normalized = %s\nwant %s", out.JSON, want)
	}
	schema := jsonschema.MustCompile(toolOutputSchema)
	if err := schema.Validate(out.JSON); err != nil {
		t.Errorf("output schema: %v", err)
	}
	if out, err := normalizeTool(json.RawMessage(`{"content":[]}`), nil, 1<<20); err != nil || string(out.JSON) != `{"content":[],"details":{}}` {
		t.Errorf("no details = %s, %v", out.JSON, err)
	}
	for _, bad := range []string{`[]`, `{"details":{}}`, `{"content":{}}`, `{"content":[1]}`, `{"content":[{"type":"text"}]}`,
		`{"content":[{"type":"image","data":"!!","mimeType":"image/png"}]}`, `{"content":[{"type":"audio"}]}`, `{"content":[],"details":[]}`, `nope`} {
		_, err := normalizeTool(json.RawMessage(bad), nil, 1<<20)
		drivertest.WantFault(t, err, fault.Validation, "")
	}
	_, err = normalizeTool(json.RawMessage(`{"content":[{"type":"text","text":"`+strings.Repeat("x", 200)+`"}]}`), nil, 100)
	drivertest.WantFault(t, err, fault.ResponseTooLarge, "")
}

func TestNormalizeSend(t *testing.T) {
	out, err := normalizeSend(json.RawMessage(`{"messageId":42,"meta":{"a":1}}`), "chat", nil, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if string(out.JSON) != `{"channel":"chat","details":{"meta":{"a":1}},"message_id":"42"}` {
		t.Errorf("normalized = %s", out.JSON)
	}
	if err := jsonschema.MustCompile(sendOutputSchema).Validate(out.JSON); err != nil {
		t.Error(err)
	}
	_, err = normalizeSend(json.RawMessage(`{"channel":"x"}`), "chat", nil, 1<<20)
	drivertest.WantFault(t, err, fault.Validation, "")
}

func TestBuildConfig(t *testing.T) {
	d := &Driver{}
	cfg := func(m map[string]any) *instanceConfig {
		c, err := parseConfig(drivertest.JSON(t, m))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	b, err := d.buildConfig(cfg(map[string]any{
		"plugin_config":          map[string]any{"auth": map[string]any{"realm": "r"}},
		"channel_config":         map[string]any{"chat": map[string]any{"room": "x"}},
		"credential_config_path": "auth.login",
		"credential_field_paths": map[string]string{"password": "channels.chat.password"},
		"credential_env":         map[string]string{"CHAT_USER": "username"},
	}), "basic", drivertest.Fields("username", "bob", "password", `p"w\`))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"plugin":{"auth":{"login":{"password":"p\"w\\","username":"bob"},"realm":"r"}},"channels":{"chat":{"password":"p\"w\\","room":"x"}},"env":{"CHAT_USER":"bob"}}`
	if string(b) != want {
		t.Errorf("config = %s\nwant   %s", b, want)
	}
	for _, bad := range []map[string]any{
		{"credential_config_path": "__proto__.polluted"},
		{"credential_config_path": "a.constructor.prototype"},
		{"credential_config_path": "channels.only"},
		{"credential_env": map[string]string{"lower": "key"}},
		{"unknown": true},
	} {
		if _, err := parseConfig(drivertest.JSON(t, bad)); err == nil {
			t.Errorf("parseConfig(%v) accepted", bad)
		}
	}
	_, err = d.buildConfig(cfg(map[string]any{"credential_field_paths": map[string]string{"token": "t"}}), "api_key", drivertest.Fields("key", "k"))
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonConfig)
	_, err = d.buildConfig(cfg(map[string]any{"plugin_config": map[string]any{"a": "str"}, "credential_config_path": "a.b"}), "api_key", drivertest.Fields("key", "k"))
	drivertest.WantFault(t, err, fault.Permanent, driverkit.ReasonConfig)
}

func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{0: 0, 1: 0, 2: 250 * time.Millisecond, 3: 500 * time.Millisecond, 20: maxBackoff} {
		if got := backoff(n); got != want {
			t.Errorf("backoff(%d) = %s, want %s", n, got, want)
		}
	}
}

// LoadDrivers finds nothing in a missing directory and refuses a package
// that no longer matches its install record.
func TestLoadDriversChecksTheRecord(t *testing.T) {
	if ds, err := LoadDrivers(filepath.Join(t.TempDir(), "none")); ds != nil || err != nil {
		t.Errorf("missing dir: %v, %v", ds, err)
	}
	f := newFixture(t)
	pj := filepath.Join(PackageDir(filepath.Join(f.plugins, "connec-test-plugin"), "connec-test-plugin"), "package.json")
	b, _ := os.ReadFile(pj)
	if err := os.WriteFile(pj, []byte(strings.Replace(string(b), `"1.0.0"`, `"1.0.1"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	ds, err := LoadDrivers(f.plugins)
	if len(ds) != 0 || err == nil || !strings.Contains(err.Error(), "pins connec-test-plugin@1.0.0") {
		t.Errorf("tampered package loaded: %v, %v", ds, err)
	}
	recs, err := List(f.plugins)
	if err != nil || len(recs) != 1 || recs[0].Manifest.ID != "connec-test" {
		t.Errorf("List = %v, %v", recs, err)
	}
}
