// Package mcpserver is the "mcp" connector type: an existing MCP server,
// governed like every connector. Each server an administrator adds is a
// connector type of its own, "mcp-<name>", whose operations are the
// server's tools as they were reviewed when it was added (the Record):
// "<name>.<tool>" with the tool's input schema, a read or send kind from
// its annotations (readOnlyHint: true is read), and each definition pinned
// by its hash. Every call first reads the server's list and refuses a tool
// whose definition no longer matches its pin, until an administrator
// re-reviews and approves it.
//
// A remote server is reached over streamable HTTP or the legacy SSE
// transport, through the egress guard; instances hold their owner's
// credential (bearer, header or basic), attached to every request to the
// server, never shown to the agent; the agent's own token is never passed
// on. Sessions are kept between calls (httppool.go), and connec speaks
// the revision its caller speaks, passing a 2026-07-28 server's
// input_required through (call.go).
//
// A local server (an npm package installed pinned with its scripts off, or
// a program) runs on stdio in the OS sandbox, one supervised process per
// instance with a state directory of its own (stdio.go, stdiopool.go); the
// credential reaches it only in the variable its record names. It has no
// network unless its record declares egress hosts; then its only way out
// is an egress proxy (connectors/egress.Proxy) on a socket bound into its
// sandbox, open during its instance's calls only, checked by each call's
// egress guard (npm servers have fetch, http and https sent through it by
// a preloaded module).
package mcpserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/internal/platform/jsonschema"
)

// Record is one added server: where it is and the tools reviewed.
type Record struct {
	// Name names the type (mcp-<name>) and prefixes its operations.
	Name string `json:"name"`
	// URL is a remote server's streamable HTTP endpoint; Stdio how a
	// local one is started (one or the other).
	URL string `json:"url,omitempty"`
	// Transport is a remote server's: streamable-http (default) or sse.
	Transport string       `json:"transport,omitempty"`
	Stdio     *StdioSpec   `json:"stdio,omitempty"`
	Tools     []ToolRecord `json:"tools"`
	AddedAt   time.Time    `json:"added_at"`
	// Skipped are the tools the server lists that connec cannot serve
	// (a schema that is not a valid JSON Schema), with why.
	Skipped []SkippedTool `json:"skipped,omitempty"`
	// Resources says the server serves resources, Completions that it
	// completes arguments; Prompts are its prompts as reviewed (extras.go).
	Resources   bool           `json:"resources,omitempty"`
	Completions bool           `json:"completions,omitempty"`
	Prompts     []PromptRecord `json:"prompts,omitempty"`
}

// SkippedTool is a listed tool connec does not serve.
type SkippedTool struct {
	Tool   string `json:"tool"`
	Reason string `json:"reason"`
}

// ToolRecord is one reviewed tool.
type ToolRecord struct {
	// Tool is the server's name for it; Op the operation's.
	Tool        string          `json:"tool"`
	Op          string          `json:"op"`
	Description string          `json:"description,omitempty"`
	Input       json.RawMessage `json:"input_schema"`
	Output      json.RawMessage `json:"output_schema,omitempty"`
	Kind        connectors.Kind `json:"kind"`
	// Hash pins the definition as reviewed (DefinitionHash).
	Hash string `json:"hash"`
}

var nameRe = regexp.MustCompile(`^[a-z][a-z0-9-]{0,27}$`)

// ValidName checks a server's name: it names the type "mcp-<name>".
func ValidName(name string) error {
	if !nameRe.MatchString(name) {
		return errors.New("the name must be 1 to 28 lowercase letters, digits and hyphens, starting with a letter")
	}
	return nil
}

// checkURL accepts an http(s) URL without user info, query or fragment.
func checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("the URL must be an http or https URL with a host")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("the URL must carry no user info, query or fragment (credentials belong in an instance's credential)")
	}
	return u, nil
}

// hostPort is u's host:port, the port made explicit.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return u.Hostname() + ":443"
	}
	return u.Hostname() + ":80"
}

// definition is what a pin covers: everything about a tool an agent or
// policy relies on.
type definition struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Input       json.RawMessage `json:"inputSchema"`
	Output      json.RawMessage `json:"outputSchema,omitempty"`
	ReadOnly    bool            `json:"readOnly"`
}

// DefinitionHash is the pin of a tool's definition: SHA-256 of its
// canonical JSON (schemas re-encoded with sorted keys).
func DefinitionHash(name, description string, input, output json.RawMessage, readOnly bool) (string, error) {
	canon := func(raw json.RawMessage) (json.RawMessage, error) {
		if len(raw) == 0 {
			return nil, nil
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		return json.Marshal(v) // maps marshal with sorted keys
	}
	in, err := canon(input)
	if err != nil {
		return "", fmt.Errorf("tool %q: input schema: %w", name, err)
	}
	out, err := canon(output)
	if err != nil {
		return "", fmt.Errorf("tool %q: output schema: %w", name, err)
	}
	b, err := json.Marshal(definition{Name: name, Description: description, Input: in, Output: out, ReadOnly: readOnly})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

var opPartRe = regexp.MustCompile(`[^a-z0-9_-]+`)

// opName is the operation a tool becomes: "<server>.<tool>", the tool's
// name lowered and every run of other characters an underscore, cut to the
// operation grammar's 64 characters.
func opName(server, tool string) string {
	p := strings.Trim(opPartRe.ReplaceAllString(strings.ToLower(tool), "_"), "_")
	if p == "" || p[0] < 'a' || p[0] > 'z' {
		p = "t_" + p
	}
	if len(p) > 64 {
		p = p[:64]
	}
	return server + "." + p
}

// toolHash is DefinitionHash of a tool as a server lists it.
func toolHash(t listedTool) (string, error) {
	return DefinitionHash(t.Name, t.Description, t.Input, nullToNone(t.Output), readOnly(t))
}

// nullToNone treats an output schema sent as null as none.
func nullToNone(raw json.RawMessage) json.RawMessage {
	if string(raw) == "null" {
		return nil
	}
	return raw
}

// readOnly is the tool's readOnlyHint: only an explicit true makes it read.
func readOnly(t listedTool) bool {
	return t.Annotations.ReadOnly != nil && *t.Annotations.ReadOnly
}

// Discover connects to the server at rawURL (with headers, for a server
// that wants a credential to list its tools; they are not kept) and
// returns its record for review: every tool, its operation, kind and pin.
func Discover(ctx context.Context, name, rawURL string, headers map[string]string, hc *http.Client) (Record, error) {
	return DiscoverRemote(ctx, Record{Name: name, URL: rawURL}, headers, hc)
}

// DiscoverRemote is Discover of the remote server rec names (its name,
// URL and transport).
func DiscoverRemote(ctx context.Context, rec Record, headers map[string]string, hc *http.Client) (Record, error) {
	name, rawURL := rec.Name, rec.URL
	if err := ValidName(name); err != nil {
		return Record{}, err
	}
	if _, err := checkURL(rawURL); err != nil {
		return Record{}, err
	}
	c, err := connect(ctx, rawURL, rec.Transport, headers, hc, hello{})
	if err != nil {
		return Record{}, err
	}
	defer c.Close()
	tools, err := listTools(ctx, c)
	if err != nil {
		return Record{}, upstreamFault(err)
	}
	out, err := review(Record{Name: name, URL: rawURL, Transport: rec.Transport, AddedAt: time.Now().UTC()}, tools)
	if err != nil {
		return Record{}, err
	}
	return out, listExtras(ctx, c, &out)
}

// review completes rec with what the server lists: every tool, its
// operation, kind and pin. Operation names two tools would share get -2,
// -3, ….
func review(rec Record, tools []listedTool) (Record, error) {
	used := map[string]bool{}
	for _, t := range tools {
		h, err := toolHash(t)
		if err != nil {
			return Record{}, err
		}
		in, out := t.Input, nullToNone(t.Output)
		if len(in) == 0 {
			in = json.RawMessage(`{"type":"object"}`)
		}
		// A schema connec cannot compile would keep the type from loading
		// and could make clients refuse every tool list it is in (the
		// official TypeScript client rejects "required": null).
		if why := badSchema(in, out); why != "" {
			rec.Skipped = append(rec.Skipped, SkippedTool{Tool: t.Name, Reason: why})
			continue
		}
		op := opName(rec.Name, t.Name)
		for n := 2; used[op]; n++ {
			op = opName(rec.Name, t.Name) + "-" + strconv.Itoa(n)
		}
		used[op] = true
		kind := connectors.KindSend
		if readOnly(t) {
			kind = connectors.KindRead
		}
		rec.Tools = append(rec.Tools, ToolRecord{Tool: t.Name, Op: op, Description: t.Description, Input: in, Output: out, Kind: kind, Hash: h})
	}
	return rec, nil
}

// badSchema says what is wrong with a tool's schemas, or "".
func badSchema(in, out json.RawMessage) string {
	if _, err := jsonschema.Compile(in); err != nil {
		return "its input schema is not a valid JSON Schema: " + err.Error()
	}
	if len(out) > 0 {
		if _, err := jsonschema.Compile(out); err != nil {
			return "its output schema is not a valid JSON Schema: " + err.Error()
		}
	}
	return ""
}

// Dir is where added servers' records live under connec's data directory.
func Dir(dataDir string) string { return filepath.Join(dataDir, "mcp") }

// Save writes rec as <dir>/<name>.json (atomically: a reader sees the old
// record or the new one).
func Save(dir string, rec Record) error {
	if err := ValidName(rec.Name); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+rec.Name+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, rec.Name+".json"))
}

// ErrNotAdded: no server of that name was added.
var ErrNotAdded = errors.New("no MCP server of that name was added")

// Read reads the record of the server called name.
func Read(dir, name string) (Record, error) {
	if err := ValidName(name); err != nil {
		return Record{}, err
	}
	b, err := os.ReadFile(filepath.Join(dir, name+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, fmt.Errorf("%w: %s", ErrNotAdded, name)
	}
	if err != nil {
		return Record{}, err
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil || rec.Name != name {
		return Record{}, fmt.Errorf("the record of MCP server %s is damaged", name)
	}
	return rec, nil
}

// List reads every added server's record, by name. A damaged record is
// reported and skipped.
func List(dir string) ([]Record, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Record
	var errs []error
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		rec, err := Read(dir, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, rec)
	}
	return out, errors.Join(errs...)
}

// Remove deletes the record of the server called name, and the package
// installed for it.
func Remove(dir, name string) error {
	if _, err := Read(dir, name); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, name+".json")); err != nil {
		return err
	}
	_ = os.RemoveAll(filepath.Join(dir, "state", name)) // its instances' state
	return os.RemoveAll(PackageDir(dir, name))
}

// LoadDrivers returns a driver for every added server (and what kept any
// from loading).
func LoadDrivers(dir string, log *slog.Logger) ([]connectors.Driver, error) {
	recs, err := List(dir)
	var out []connectors.Driver
	for _, r := range recs {
		d, derr := New(r, dir, log)
		if derr == nil {
			// One record that does not compile (edited by hand) must not
			// keep every other type from loading.
			_, derr = connectors.NewRegistry(d)
		}
		if derr != nil {
			err = errors.Join(err, fmt.Errorf("MCP server %s: %w", r.Name, derr))
			continue
		}
		out = append(out, d)
	}
	return out, err
}
