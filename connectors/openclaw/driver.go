package openclaw

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/egress"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/jsonschema"
	"github.com/connec/connec/vault"
)

// target is what an operation runs in the plugin.
type target struct {
	tool    string // a tool's name, or
	channel string // a channel's id (send)
}

// Driver is one installed OpenClaw plugin as a connector type. It runs one
// host process per connector instance, started on the first call.
type Driver struct {
	rec        *Record
	installDir string
	pkgDir     string
	entry      string
	tsRuntime  string
	opts       *options
	spec       connectors.TypeSpec
	targets    map[string]target
	pluginCfg  *jsonschema.Schema // the manifest's configSchema, checked with the credential in place

	mu     sync.Mutex
	hosts  map[string]*instanceHost
	closed bool
	bg     sync.WaitGroup // hosts being started ahead of calls
}

var (
	_ connectors.Driver = (*Driver)(nil)
	_ egress.Scoped     = (*Driver)(nil)
)

// LoadDrivers returns a driver for every plugin installed under dir (the
// plugins directory, $CONNEC_DATA_DIR/openclaw/plugins; a missing
// directory holds none). A plugin that cannot be loaded is left out and
// its error joined into the returned error; the others are still
// returned. Loading starts no process: hosts start on an instance's first
// call.
func LoadDrivers(dir string, opts ...Option) ([]connectors.Driver, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("openclaw: plugins directory: %w", err)
	}
	o := newOptions(opts)
	var out []connectors.Driver
	var errs []error
	seen := map[string]string{}
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		d, err := newDriver(filepath.Join(dir, e.Name()), o)
		if err != nil {
			errs = append(errs, fmt.Errorf("openclaw plugin %s: %w", e.Name(), err))
			continue
		}
		if prev, dup := seen[d.spec.Name]; dup {
			errs = append(errs, fmt.Errorf("openclaw plugin %s: type %s is already provided by %s", e.Name(), d.spec.Name, prev))
			continue
		}
		seen[d.spec.Name] = e.Name()
		out = append(out, d)
	}
	if len(out) > 0 {
		// At start-up: remove what hosts of connec processes that are gone
		// left behind (the error, if any, comes back with the first host).
		_, _ = o.processState()
	}
	return out, errors.Join(errs...)
}

// NewDriver returns the driver for the plugin installed in installDir.
func NewDriver(installDir string, opts ...Option) (*Driver, error) {
	return newDriver(installDir, newOptions(opts))
}

func newDriver(installDir string, o *options) (*Driver, error) {
	abs, err := filepath.Abs(installDir)
	if err != nil {
		return nil, err
	}
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return nil, fmt.Errorf("openclaw: install directory: %w", err)
	}
	rec, err := ReadRecord(abs)
	if err != nil {
		return nil, err
	}
	pkgDir := PackageDir(abs, rec.Package)
	pj, _, entry, err := readPackage(pkgDir)
	if err != nil {
		return nil, err
	}
	if pj.Name != rec.Package || pj.Version != rec.Version {
		return nil, fmt.Errorf("openclaw: installed package is %s@%s but the install record pins %s@%s; reinstall with connec openclaw add", pj.Name, pj.Version, rec.Package, rec.Version)
	}
	if entry != filepath.FromSlash(rec.Entry) {
		return nil, fmt.Errorf("openclaw: the package's entry changed since review (%s, reviewed %s)", entry, rec.Entry)
	}
	d := &Driver{
		rec: rec, installDir: abs, pkgDir: pkgDir, entry: filepath.Join(pkgDir, entry),
		opts: o, hosts: map[string]*instanceHost{}, targets: map[string]target{},
	}
	if rec.TSRuntime != "" {
		d.tsRuntime = filepath.Join(abs, filepath.FromSlash(rec.TSRuntime))
	}
	if err := d.buildSpec(); err != nil {
		return nil, err
	}
	return d, nil
}

// Record returns the plugin's install record.
func (d *Driver) Record() *Record { return d.rec }

// Spec declares the type: one operation per tool and per channel that can
// send text.
func (d *Driver) Spec() connectors.TypeSpec {
	s := d.spec
	s.Operations = slices.Clone(d.spec.Operations)
	return s
}

var credentialKinds = []string{"api_key", "bearer", "header", "query", "basic", "login"}

func (d *Driver) buildSpec() error {
	rec := d.rec
	id := rec.Manifest.ID
	ns := namespace(id)
	timeout := DefaultOpTimeout
	if rec.TimeoutMS > 0 {
		timeout = min(time.Duration(rec.TimeoutMS)*time.Millisecond, MaxOpTimeout)
	}
	var ops []connectors.Operation
	for _, t := range rec.Described.Tools {
		name := ns + "." + toolOpName(t.Name)
		if _, dup := d.targets[name]; dup {
			return fmt.Errorf("openclaw: tools %q and %q map to the same operation %s", d.targets[name].tool, t.Name, name)
		}
		in, err := sanitizeSchema(t.Parameters, false)
		if err != nil {
			return fmt.Errorf("openclaw: tool %s input schema: %w", t.Name, err)
		}
		if _, err := jsonschema.Compile(in); err != nil {
			return fmt.Errorf("openclaw: tool %s input schema: %w", t.Name, err)
		}
		kind := rec.toolKind(t.Name)
		desc := t.Description
		if desc == "" {
			desc = t.Label
		}
		ops = append(ops, connectors.Operation{
			Name: name, Kind: kind, Description: clip("OpenClaw tool "+t.Name+": "+desc, 1024),
			Input: in, Output: json.RawMessage(toolOutputSchema), Timeout: timeout,
		})
		d.targets[name] = target{tool: t.Name}
	}
	for _, c := range rec.Described.Channels {
		if !c.Text {
			continue
		}
		name := ns + "." + toolOpName(c.ID) + ".send"
		if _, dup := d.targets[name]; dup {
			return fmt.Errorf("openclaw: channel %q maps to an operation already taken (%s)", c.ID, name)
		}
		label := c.Label
		if label == "" {
			label = c.ID
		}
		ops = append(ops, connectors.Operation{
			Name: name, Kind: connectors.KindSend, Description: clip("Send a text message through the OpenClaw channel "+label+".", 1024),
			Input: json.RawMessage(sendInputSchema), Output: json.RawMessage(sendOutputSchema), Timeout: timeout,
		})
		d.targets[name] = target{channel: c.ID}
	}
	cfgSchema, pluginSchema, err := configSchema(rec)
	if err != nil {
		return err
	}
	if d.pluginCfg, err = jsonschema.Compile(pluginSchema); err != nil {
		return fmt.Errorf("openclaw: plugin config schema: %w", err)
	}
	hosts := rec.EgressHosts
	if len(hosts) == 0 {
		hosts = []string{"*"}
	}
	desc := rec.Manifest.Description
	if desc == "" {
		desc = rec.Described.Plugin.Description
	}
	d.spec = connectors.TypeSpec{
		Name:    TypeName(id),
		Version: rec.Version,
		Description: clip(fmt.Sprintf("OpenClaw plugin %s@%s (%s), untrusted: each call runs in a sandboxed Node process of its own; network only to the instance's egress_hosts. %s",
			rec.Package, rec.Version, id, desc), 2048),
		Operations:      ops,
		ConfigSchema:    cfgSchema,
		CredentialKinds: credentialKinds,
		EgressHosts:     hosts,
	}
	return nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// Paths name where a credential value goes in the plugin's configuration:
// dotted segments; "channels.<id>.<key>…" goes into the OpenClaw config's
// channels (ctx.cfg.channels), anything else into the plugin's own config
// (api.pluginConfig).
var (
	pathRe = `^[A-Za-z_$][A-Za-z0-9_$-]{0,63}(\.[A-Za-z_$][A-Za-z0-9_$-]{0,63}){0,7}$`
	envRe  = `^[A-Z_][A-Z0-9_]{0,63}$`
	pathRx = regexp.MustCompile(pathRe)
	envRx  = regexp.MustCompile(envRe)
)

// configSchema builds the instance configuration schema, and the schema
// the plugin's own configuration (with the credential in place) must meet.
func configSchema(rec *Record) (json.RawMessage, json.RawMessage, error) {
	full, err := sanitizeSchema(rec.Manifest.ConfigSchema, false)
	if err != nil {
		return nil, nil, fmt.Errorf("openclaw: manifest configSchema: %w", err)
	}
	relaxed, err := sanitizeSchema(rec.Manifest.ConfigSchema, true)
	if err != nil {
		return nil, nil, fmt.Errorf("openclaw: manifest configSchema: %w", err)
	}
	chans := map[string]any{}
	for _, id := range sortedKeys(rec.Manifest.ChannelConfigs) {
		s, err := sanitizeSchema(rec.Manifest.ChannelConfigs[id].Schema, true)
		if err != nil {
			return nil, nil, fmt.Errorf("openclaw: manifest channelConfigs.%s schema: %w", id, err)
		}
		chans[id] = json.RawMessage(s)
	}
	for _, c := range rec.Described.Channels {
		if _, ok := chans[c.ID]; !ok {
			chans[c.ID] = map[string]any{"type": "object"}
		}
	}
	schema := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"plugin_config": json.RawMessage(relaxed),
			"channel_config": map[string]any{
				"type": "object", "properties": chans, "additionalProperties": false,
				"description": "Non-secret configuration of the plugin's channels (cfg.channels.<id>).",
			},
			"credential_config_path": map[string]any{
				"type": "string", "pattern": pathRe,
				"description": "Where the credential goes: a dotted path into the plugin config (e.g. apiKey), or channels.<id>.<key>. A one-field kind puts its value there, a two-field kind an object {username, password}.",
			},
			"credential_field_paths": map[string]any{
				"type": "object", "additionalProperties": map[string]any{"type": "string", "pattern": pathRe}, "maxProperties": 8,
				"description": "Per credential field (token, key, value, username, password): a dotted path as in credential_config_path.",
			},
			"credential_env": map[string]any{
				"type": "object", "propertyNames": map[string]any{"pattern": envRe}, "additionalProperties": map[string]any{"type": "string"}, "maxProperties": 8,
				"description": "Environment-style names the plugin reads (process.env.NAME) mapped to a credential field. Visible to the plugin during the call only; never in the host's OS environment.",
			},
			"egress_hosts": map[string]any{
				"type": "array", "items": map[string]any{"type": "string", "minLength": 1, "maxLength": 260}, "maxItems": 32,
				"description": "host or host:port patterns the plugin may reach (through connec's egress proxy); nothing else is reachable.",
			},
			"allow_private_network": map[string]any{"type": "boolean", "description": "Let egress_hosts resolve to loopback/private addresses (default false)."},
		},
		"additionalProperties": false,
	}
	b, err := json.Marshal(schema)
	if err != nil {
		return nil, nil, err
	}
	return b, full, nil
}

// instanceConfig is an instance's configuration.
type instanceConfig struct {
	PluginConfig         json.RawMessage            `json:"plugin_config,omitempty"`
	ChannelConfig        map[string]json.RawMessage `json:"channel_config,omitempty"`
	CredentialConfigPath string                     `json:"credential_config_path,omitempty"`
	CredentialFieldPaths map[string]string          `json:"credential_field_paths,omitempty"`
	CredentialEnv        map[string]string          `json:"credential_env,omitempty"`
	EgressHosts          []string                   `json:"egress_hosts,omitempty"`
	AllowPrivateNetwork  bool                       `json:"allow_private_network,omitempty"`
}

func configError(format string, args ...any) *fault.Error {
	return fault.New(fault.Permanent, "instance configuration: "+format, args...).WithDetails(map[string]any{"reason": driverkit.ReasonConfig})
}

func parseConfig(raw json.RawMessage) (*instanceConfig, error) {
	var c instanceConfig
	if len(raw) > 0 && string(raw) != "null" {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return nil, configError("not valid for this type: %v", err)
		}
	}
	if c.CredentialConfigPath != "" && !validPath(c.CredentialConfigPath) {
		return nil, configError("credential_config_path is not a dotted path")
	}
	for f, p := range c.CredentialFieldPaths {
		if !validPath(p) {
			return nil, configError("credential_field_paths.%s is not a dotted path", f)
		}
	}
	for env := range c.CredentialEnv {
		if !envRx.MatchString(env) {
			return nil, configError("credential_env name %q is not an environment variable name", env)
		}
	}
	return &c, nil
}

func validPath(p string) bool {
	if !pathRx.MatchString(p) {
		return false
	}
	for _, s := range strings.Split(p, ".") {
		switch s {
		case "__proto__", "constructor", "prototype":
			return false
		}
	}
	// A channel path names the channel and a key in it.
	return !strings.HasPrefix(p+".", "channels.") || strings.Count(p, ".") >= 2
}

// EgressScope returns the hosts the instance names in egress_hosts (or,
// when it names none, the hosts the operator pinned for the type) and
// whether it allows private networks.
func (d *Driver) EgressScope(raw json.RawMessage) (egress.Scope, error) {
	c, err := parseConfig(raw)
	if err != nil {
		return egress.Scope{}, err
	}
	hosts := c.EgressHosts
	if len(hosts) == 0 {
		for _, h := range d.spec.EgressHosts {
			if h != "*" && !strings.HasPrefix(h, "*:") {
				hosts = append(hosts, h)
			}
		}
	}
	return egress.Scope{Hosts: hosts, AllowPrivate: c.AllowPrivateNetwork}, nil
}

// secretJSON renders a secret as a JSON string when marshalled (vault.Secret
// itself always renders [REDACTED]). It exists only inside a call's config.
type secretJSON struct{ s vault.Secret }

func (v secretJSON) MarshalJSON() ([]byte, error) { return appendJSONString(nil, v.s.Expose()), nil }

// appendJSONString appends b as a JSON string literal (b must be UTF-8).
func appendJSONString(dst, b []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for _, c := range b {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20 || c == 0x7f:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// callConfig is what the host receives as a call's config.
type callConfig struct {
	Plugin   map[string]any `json:"plugin"`
	Channels map[string]any `json:"channels"`
	Env      map[string]any `json:"env,omitempty"`
}

// buildConfig merges the instance's non-secret configuration with the
// credential, as the instance's mapping says. The encoded result holds the
// credential: the caller wipes it once sent.
func (d *Driver) buildConfig(c *instanceConfig, kind string, cred vault.Fields) ([]byte, error) {
	cc := callConfig{Plugin: map[string]any{}, Channels: map[string]any{}}
	if len(c.PluginConfig) > 0 && string(c.PluginConfig) != "null" {
		if err := json.Unmarshal(c.PluginConfig, &cc.Plugin); err != nil {
			return nil, configError("plugin_config is not an object")
		}
	}
	for id, raw := range c.ChannelConfig {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, configError("channel_config.%s is not an object", id)
		}
		cc.Channels[id] = m
	}
	mapped := c.CredentialConfigPath != "" || len(c.CredentialFieldPaths) > 0 || len(c.CredentialEnv) > 0
	switch {
	case len(cred) == 0 && mapped:
		return nil, driverkit.NoCredential("the instance maps a credential into the plugin's configuration but has none; create one with connector.credential.create")
	case len(cred) > 0 && !mapped:
		return nil, configError("the instance has a credential but does not say where the plugin takes it: set credential_config_path, credential_field_paths or credential_env")
	}
	want := connectors.CredentialKinds[kind]
	field := func(name, where string) (secretJSON, error) {
		s, ok := cred[name]
		if !ok || !slices.Contains(want, name) {
			return secretJSON{}, configError("%s names credential field %q, which credential kind %s does not have (fields: %s)", where, name, kind, strings.Join(want, ", "))
		}
		return secretJSON{s}, nil
	}
	if p := c.CredentialConfigPath; p != "" {
		var v any
		if len(want) == 1 {
			f, err := field(want[0], "credential_config_path")
			if err != nil {
				return nil, err
			}
			v = f
		} else {
			obj := map[string]any{}
			for _, n := range want {
				f, err := field(n, "credential_config_path")
				if err != nil {
					return nil, err
				}
				obj[n] = f
			}
			v = obj
		}
		if err := cc.set(p, v); err != nil {
			return nil, err
		}
	}
	for _, name := range sortedKeys(c.CredentialFieldPaths) {
		f, err := field(name, "credential_field_paths")
		if err != nil {
			return nil, err
		}
		if err := cc.set(c.CredentialFieldPaths[name], f); err != nil {
			return nil, err
		}
	}
	if len(c.CredentialEnv) > 0 {
		cc.Env = map[string]any{}
		for _, env := range sortedKeys(c.CredentialEnv) {
			f, err := field(c.CredentialEnv[env], "credential_env."+env)
			if err != nil {
				return nil, err
			}
			cc.Env[env] = f
		}
	}
	b, err := json.Marshal(cc)
	if err != nil {
		return nil, fault.Wrap(fault.Internal, err, "cannot encode the plugin configuration")
	}
	return b, nil
}

// set puts v at a dotted path.
func (cc *callConfig) set(path string, v any) error {
	segs := strings.Split(path, ".")
	root := cc.Plugin
	if segs[0] == "channels" {
		root, segs = cc.Channels, segs[1:]
	}
	m := root
	for i, s := range segs {
		if i == len(segs)-1 {
			m[s] = v
			return nil
		}
		next, ok := m[s]
		if !ok {
			nm := map[string]any{}
			m[s] = nm
			m = nm
			continue
		}
		nm, ok := next.(map[string]any)
		if !ok {
			return configError("a credential path crosses a key the plugin configuration sets to a non-object")
		}
		m = nm
	}
	return nil
}

// Invoke runs one operation in the instance's plugin host.
func (d *Driver) Invoke(ctx context.Context, inv connectors.Invocation) (json.RawMessage, error) {
	tg, ok := d.targets[inv.Operation]
	if !ok {
		return nil, fault.New(fault.InvalidArgument, "%s has no operation %q", d.spec.Name, inv.Operation)
	}
	op := d.op(inv.Operation)
	ctx, cancel := context.WithTimeout(ctx, op.Timeout)
	defer cancel()

	cfg, err := parseConfig(inv.Config)
	if err != nil {
		return nil, err
	}
	red := driverkit.ForInvocation(inv)
	defer red.Wipe()

	config, err := d.buildConfig(cfg, inv.CredentialKind, inv.Credential)
	if err != nil {
		return nil, err
	}
	defer clear(config)
	if err := d.checkPluginConfig(config, red); err != nil {
		return nil, err
	}

	var method string
	var params []byte
	if tg.tool != "" {
		method = "tools/call"
		args := inv.Args
		if len(args) == 0 {
			args = json.RawMessage(`{}`)
		}
		params = buildParams(`"tool":`, jsonQuote(tg.tool), `,"tool_call_id":`, jsonQuote(fmt.Sprintf("connec-%d", time.Now().UnixNano())), `,"params":`, string(args), `,"config":`, string(config))
	} else {
		var a struct {
			To   string `json:"to"`
			Text string `json:"text"`
		}
		if err := json.Unmarshal(inv.Args, &a); err != nil || a.To == "" || a.Text == "" {
			return nil, fault.Invalid("", "arguments must be {to, text}")
		}
		method = "channel/send"
		params = buildParams(`"channel":`, jsonQuote(tg.channel), `,"to":`, jsonQuote(a.To), `,"text":`, jsonQuote(a.Text), `,"config":`, string(config))
	}
	defer clear(params)

	ih := d.instance(inv.InstanceID)
	if ih == nil {
		return nil, fault.New(fault.Unavailable, "the %s connector type is shut down", d.spec.Name)
	}
	f, refused, err := ih.run(ctx, inv.Egress, method, params, driverkit.ForInvocation(inv), op.Timeout)
	if err == nil && f.Error != nil {
		err = rpcFault(f.Error, red)
	}
	if err != nil {
		var fe *fault.Error
		if len(refused) > 0 && errors.As(err, &fe) && fe.Type != fault.Timeout && fe.Type != fault.ResponseTooLarge {
			return nil, fault.Wrap(fault.Permanent, err, "the plugin's connection to %s was refused by the egress policy (%s)", refused[0].Host, red.String(fe.Message)).
				WithDetails(map[string]any{"reason": driverkit.ReasonEgress, "host": refused[0].Host, "refused": egress.RefusedSummary(refused)})
		}
		return nil, err
	}
	var n normalized
	if tg.tool != "" {
		n, err = normalizeTool(f.Result, red, d.opts.maxResultBytes)
	} else {
		n, err = normalizeSend(f.Result, tg.channel, red, d.opts.maxResultBytes)
	}
	if err != nil {
		return nil, err
	}
	if n.Redacted {
		// The result says so ("redacted": true), and the audit row will.
		inv.Findings.MarkRedacted()
		d.opts.log.WarnContext(ctx, "credential material found in an OpenClaw plugin's result and redacted",
			"type", d.spec.Name, "operation", inv.Operation, "instance", inv.InstanceID, "reason", ReasonCredentialInOut)
	}
	return n.JSON, nil
}

func (d *Driver) op(name string) connectors.Operation {
	for _, op := range d.spec.Operations {
		if op.Name == name {
			return op
		}
	}
	return connectors.Operation{Timeout: DefaultOpTimeout}
}

// checkPluginConfig validates the plugin's configuration, credential in
// place, against the manifest's configSchema; violation messages are
// redacted.
func (d *Driver) checkPluginConfig(config []byte, red *driverkit.Redactor) error {
	var cc struct {
		Plugin json.RawMessage `json:"plugin"`
	}
	if err := json.Unmarshal(config, &cc); err != nil {
		return fault.Wrap(fault.Internal, err, "cannot read back the plugin configuration")
	}
	defer clear(cc.Plugin)
	if err := d.pluginCfg.Validate(cc.Plugin); err != nil {
		return configError("the plugin configuration (with the credential in place) does not match the plugin's configSchema: %s", red.String(err.Error()))
	}
	return nil
}

func jsonQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func buildParams(parts ...string) []byte {
	n := 2
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	for _, p := range parts {
		b = append(b, p...)
	}
	return append(b, '}')
}
