package openclaw

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/internal/platform/nodejs"
)

// RecordFile is the install record connec writes next to an installed
// plugin's node_modules. It is connec's (trusted) view of the plugin: what
// the operator reviewed and pinned.
const RecordFile = "connec-plugin.json"

// recordFormat is the install record's format version.
const recordFormat = 1

// Record is an installed plugin as reviewed by the operator.
type Record struct {
	Format int `json:"format"`
	// Name is the install directory's name under the plugins directory.
	Name string `json:"name"`
	// Package and Version are the npm package and its exact version.
	Package string `json:"package"`
	Version string `json:"version"`
	// Integrity and Resolved come from npm's package-lock.json.
	Integrity   string    `json:"integrity,omitempty"`
	Resolved    string    `json:"resolved,omitempty"`
	InstalledAt time.Time `json:"installed_at"`
	// Entry is the plugin's runtime entry, relative to the package directory.
	Entry string `json:"entry"`
	// TSRuntime is amaro's directory relative to the install directory,
	// set when Entry is TypeScript.
	TSRuntime string `json:"ts_runtime,omitempty"`
	// Manifest is the plugin's openclaw.plugin.json (the fields connec uses).
	Manifest Manifest `json:"manifest"`
	// Described is what the plugin registered when the host described it
	// (with an empty configuration, no credential and no network).
	Described Description `json:"described"`
	// ToolKinds overrides the kind of a tool's operation (by tool name).
	ToolKinds map[string]connectors.Kind `json:"tool_kinds,omitempty"`
	// EgressHosts is the type's declared egress (default ["*"]: each
	// instance names its hosts in egress_hosts).
	EgressHosts []string `json:"egress_hosts,omitempty"`
	// TimeoutMS caps one operation (default 30 s, at most 5 min).
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
}

// Manifest is the part of an openclaw.plugin.json connec reads.
type Manifest struct {
	ID             string                   `json:"id"`
	Name           string                   `json:"name,omitempty"`
	Description    string                   `json:"description,omitempty"`
	Version        string                   `json:"version,omitempty"`
	ConfigSchema   json.RawMessage          `json:"configSchema,omitempty"`
	Channels       []string                 `json:"channels,omitempty"`
	ChannelConfigs map[string]ChannelConfig `json:"channelConfigs,omitempty"`
	Contracts      struct {
		Tools []string `json:"tools,omitempty"`
	} `json:"contracts"`
	ToolMetadata map[string]ToolMetadata `json:"toolMetadata,omitempty"`
}

// ChannelConfig is a manifest's channelConfigs entry.
type ChannelConfig struct {
	Schema      json.RawMessage `json:"schema,omitempty"`
	Label       string          `json:"label,omitempty"`
	Description string          `json:"description,omitempty"`
}

// ToolMetadata is a manifest's toolMetadata entry.
type ToolMetadata struct {
	SideEffecting bool `json:"sideEffecting,omitempty"`
	ReplaySafe    bool `json:"replaySafe,omitempty"`
	Optional      bool `json:"optional,omitempty"`
}

// Description is the host's answer to describe.
type Description struct {
	Plugin struct {
		ID          string `json:"id,omitempty"`
		Name        string `json:"name,omitempty"`
		Version     string `json:"version,omitempty"`
		Description string `json:"description,omitempty"`
	} `json:"plugin"`
	Tools         []ToolInfo       `json:"tools"`
	Channels      []ChannelInfo    `json:"channels"`
	Unsupported   []UnsupportedUse `json:"unsupported,omitempty"`
	Problems      []string         `json:"problems,omitempty"`
	RegisterError string           `json:"register_error,omitempty"`
}

// ToolInfo is one registered tool.
type ToolInfo struct {
	Name        string          `json:"name"`
	Label       string          `json:"label,omitempty"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
}

// ChannelInfo is one registered channel.
type ChannelInfo struct {
	ID          string `json:"id"`
	Label       string `json:"label,omitempty"`
	Description string `json:"description,omitempty"`
	Text        bool   `json:"text"`
	Media       bool   `json:"media"`
}

// UnsupportedUse is a plugin API member the host does not serve that the
// plugin touched.
type UnsupportedUse struct {
	API      string `json:"api"`
	Accessed int    `json:"accessed"`
	Called   int    `json:"called"`
}

// ReadRecord reads the install record in dir.
func ReadRecord(dir string) (*Record, error) {
	b, err := os.ReadFile(filepath.Join(dir, RecordFile))
	if err != nil {
		return nil, fmt.Errorf("openclaw: read install record: %w", err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("openclaw: install record %s: %w", filepath.Join(dir, RecordFile), err)
	}
	if r.Format != recordFormat {
		return nil, fmt.Errorf("openclaw: install record %s has format %d, want %d", filepath.Join(dir, RecordFile), r.Format, recordFormat)
	}
	return &r, nil
}

// WriteRecord writes r into dir (0644: it holds nothing secret).
func WriteRecord(dir string, r *Record) error {
	r.Format = recordFormat
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("openclaw: encode install record: %w", err)
	}
	tmp := filepath.Join(dir, RecordFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("openclaw: write install record: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, RecordFile)); err != nil {
		return fmt.Errorf("openclaw: write install record: %w", err)
	}
	return nil
}

// PackageDir is where package pkg lives inside install directory dir.
func PackageDir(dir, pkg string) string { return nodejs.PackageDir(dir, pkg) }

// packageJSON is the part of a package.json connec reads.
type packageJSON struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Main     string `json:"main"`
	OpenClaw struct {
		Extensions        []string `json:"extensions"`
		RuntimeExtensions []string `json:"runtimeExtensions"`
	} `json:"openclaw"`
}

// readPackage reads a plugin package's package.json and manifest and
// resolves its runtime entry (runtimeExtensions before extensions before
// main), which must stay inside the package directory.
func readPackage(pkgDir string) (*packageJSON, *Manifest, string, error) {
	b, err := os.ReadFile(filepath.Join(pkgDir, "package.json"))
	if err != nil {
		return nil, nil, "", fmt.Errorf("openclaw: read package.json: %w", err)
	}
	var pj packageJSON
	if err := json.Unmarshal(b, &pj); err != nil {
		return nil, nil, "", fmt.Errorf("openclaw: package.json: %w", err)
	}
	mb, err := os.ReadFile(filepath.Join(pkgDir, "openclaw.plugin.json"))
	if err != nil {
		return nil, nil, "", fmt.Errorf("openclaw: %s is not an OpenClaw plugin (no openclaw.plugin.json): %w", pj.Name, err)
	}
	var m Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, nil, "", fmt.Errorf("openclaw: openclaw.plugin.json: %w", err)
	}
	if m.ID == "" {
		return nil, nil, "", errors.New("openclaw: openclaw.plugin.json has no id")
	}
	if len(m.ConfigSchema) == 0 || string(m.ConfigSchema) == "null" {
		m.ConfigSchema = json.RawMessage(`{"type":"object"}`)
	}
	var entry string
	switch {
	case len(pj.OpenClaw.RuntimeExtensions) > 0:
		entry = pj.OpenClaw.RuntimeExtensions[0]
	case len(pj.OpenClaw.Extensions) > 0:
		entry = pj.OpenClaw.Extensions[0]
	case pj.Main != "":
		entry = pj.Main
	default:
		return nil, nil, "", fmt.Errorf("openclaw: %s names no extension entry (package.json openclaw.extensions)", pj.Name)
	}
	rel := filepath.Clean(filepath.FromSlash(entry))
	if filepath.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return nil, nil, "", fmt.Errorf("openclaw: entry %q leaves the package directory", entry)
	}
	abs := filepath.Join(pkgDir, rel)
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, nil, "", fmt.Errorf("openclaw: entry %q: %w", entry, err)
	}
	realPkg, err := filepath.EvalSymlinks(pkgDir)
	if err != nil {
		return nil, nil, "", fmt.Errorf("openclaw: package directory: %w", err)
	}
	if !within(realPkg, real) {
		return nil, nil, "", fmt.Errorf("openclaw: entry %q leaves the package directory", entry)
	}
	return &pj, &m, rel, nil
}

func within(dir, p string) bool {
	r, err := filepath.Rel(dir, p)
	return err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator)) && !filepath.IsAbs(r)
}

func isTypeScript(entry string) bool {
	switch strings.ToLower(filepath.Ext(entry)) {
	case ".ts", ".mts", ".cts":
		return true
	}
	return false
}

// ParseSpec splits "<npm-package>@<version>" and insists on an exact
// version (no ranges, tags, URLs, files or git).
func ParseSpec(spec string) (pkg, version string, err error) {
	pkg, version, err = nodejs.ParseSpec(spec, "@ollama/openclaw-web-search@0.2.2")
	if err != nil {
		return "", "", fmt.Errorf("openclaw: %w", err)
	}
	return pkg, version, nil
}

// DirName is the install directory name for an npm package.
func DirName(pkg string) string {
	return sanitize(strings.ReplaceAll(strings.TrimPrefix(pkg, "@"), "/", "-"), 64)
}

// TypeName is the connector type name for a plugin id: "openclaw-" and
// the id, sanitized to the registry's rules (at most 32 characters).
func TypeName(pluginID string) string {
	return "openclaw-" + sanitize(pluginID, 32-len("openclaw-"))
}

// namespace is the operation namespace for a plugin id.
func namespace(pluginID string) string { return sanitize(pluginID, 32) }

// sanitize lowercases s and keeps [a-z0-9_-], starting with a letter, at
// most n characters (a long name keeps a hash of the whole for
// uniqueness).
func sanitize(s string, n int) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
			dash = false
		default:
			if !dash {
				b.WriteByte('-')
				dash = true
			}
		}
	}
	out := strings.Trim(b.String(), "-_")
	for out != "" && !(out[0] >= 'a' && out[0] <= 'z') {
		out = out[1:]
	}
	if out == "" {
		out = "plugin"
	}
	if len(out) > n {
		sum := sha256.Sum256([]byte(s))
		h := hex.EncodeToString(sum[:])[:6]
		out = strings.TrimRight(out[:n-7], "-_") + "-" + h
	}
	return out
}

// toolOpName is an operation's second segment for a tool name.
func toolOpName(tool string) string { return sanitize(tool, 64) }

// maxSchemaBytes bounds a schema taken from a plugin.
const maxSchemaBytes = 64 << 10

// sanitizeSchema makes a JSON Schema from an untrusted plugin safe to
// compile: references may only point inside the document ("#..."), $id
// and $schema are dropped (so nothing is fetched or read from disk), the
// document is bounded in size and depth. dropRequired removes the
// top-level "required" (for configuration whose secret part connec adds
// per call).
func sanitizeSchema(raw json.RawMessage, dropRequired bool) (json.RawMessage, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return json.RawMessage(`{"type":"object"}`), nil
	}
	if len(raw) > maxSchemaBytes {
		return nil, fmt.Errorf("schema is over %d bytes", maxSchemaBytes)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("schema is not JSON: %w", err)
	}
	top, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("schema is not an object")
	}
	if dropRequired {
		delete(top, "required")
	}
	if err := cleanSchema(v, 0); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func cleanSchema(v any, depth int) error {
	if depth > 32 {
		return errors.New("schema is nested too deeply")
	}
	switch x := v.(type) {
	case map[string]any:
		delete(x, "$id")
		delete(x, "$schema")
		for _, k := range []string{"$ref", "$dynamicRef", "$recursiveRef"} {
			if r, ok := x[k]; ok {
				s, _ := r.(string)
				if !strings.HasPrefix(s, "#") {
					return fmt.Errorf("schema has a %s outside the document (%q)", k, s)
				}
			}
		}
		for _, e := range x {
			if err := cleanSchema(e, depth+1); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := cleanSchema(e, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// toolKind decides a tool operation's kind: the operator's override, else
// send when the manifest marks the tool side-effecting, else read.
func (r *Record) toolKind(tool string) connectors.Kind {
	if k, ok := r.ToolKinds[tool]; ok {
		return k
	}
	if md, ok := r.Manifest.ToolMetadata[tool]; ok && md.SideEffecting {
		return connectors.KindSend
	}
	return connectors.KindRead
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
