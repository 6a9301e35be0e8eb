package connectors

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connec/connec/vault"
)

// Kind is what an operation does, and so which action policy checks.
type Kind string

// Operation kinds.
const (
	KindRead  Kind = "read"
	KindSend  Kind = "send"
	KindAdmin Kind = "admin"
)

// Action is the policy action an invocation of an operation of kind k is
// decided under: connector.read, connector.send or connector.admin (the
// core checks that these are its actions).
func (k Kind) Action() string {
	switch k {
	case KindSend, KindAdmin:
		return "connector." + string(k)
	}
	return "connector.read"
}

// Operation declares one operation of a connector type.
type Operation struct {
	Name        string          `json:"name"`
	Kind        Kind            `json:"kind"`
	Description string          `json:"description"`
	Input       json.RawMessage `json:"input_schema" jsonschema:"JSON Schema of the operation's arguments."`
	Output      json.RawMessage `json:"output_schema" jsonschema:"JSON Schema of the operation's output."`
	// Timeout caps one execution; a caller may ask for less, never more.
	Timeout time.Duration `json:"-"`
	// TimeoutMS is Timeout as shown in the catalog.
	TimeoutMS int64 `json:"timeout_ms"`
	// Async operations return a run id at once; connector.run.get reports
	// their progress and result.
	Async bool `json:"async,omitempty"`
	// ToolResult marks an operation whose output is an MCP tool's result,
	// {content, structured_content?, is_error} (package mcpserver): as an
	// instance tool it answers with that result as the tool gave it, and
	// ResultSchema, if set, is the tool's own output schema.
	ToolResult   bool            `json:"-"`
	ResultSchema json.RawMessage `json:"-"`
	// Prompt, when set, says the operation gets an MCP prompt (package
	// mcpserver): its arguments are the prompt's (strings), its output the
	// prompt's {description?, messages}, and a transport that speaks MCP
	// may serve it as a prompt of its own besides a tool.
	Prompt *Prompt `json:"-"`
	// MCP, when set, says the operation serves an MCP server's (package
	// mcpserver) "resources.list", "resources.templates" (input {cursor?}),
	// "resources.read" (input {uri}) or "complete" (input {ref, argument,
	// context?}), answering as the server does: a transport that speaks
	// MCP may serve them as its own resources and completions. Role
	// "resources.subscribe" (input {uri}) is a watch: it runs while its
	// caller keeps it (Invocation.Watch), and a transport serves it only
	// as MCP's resources/subscribe, never as a tool.
	MCP string `json:"-"`
}

// Prompt is an MCP prompt an operation gets.
type Prompt struct {
	Name        string
	Description string
	Arguments   []PromptArgument
}

// PromptArgument is one argument of a Prompt.
type PromptArgument struct {
	Name        string
	Description string
	Required    bool
}

// TypeSpec declares a connector type: its operations, configuration,
// accepted credential kinds and the hosts it may reach.
type TypeSpec struct {
	Name            string          `json:"name"`
	Version         string          `json:"version"`
	Description     string          `json:"description"`
	Operations      []Operation     `json:"operations"`
	ConfigSchema    json.RawMessage `json:"config_schema" jsonschema:"JSON Schema of an instance's configuration."`
	CredentialKinds []string        `json:"credential_kinds"`
	// CredentialRequired refuses invocations of instances without a live
	// credential.
	CredentialRequired bool     `json:"credential_required"`
	EgressHosts        []string `json:"egress_hosts"`
}

// Invocation is what a driver receives for one operation. Credential holds
// unsealed secret fields and is set only by the executor.
type Invocation struct {
	InstanceID string
	Config     json.RawMessage
	Operation  string
	Args       json.RawMessage
	// CredentialKind names the kind of Credential ("" when none).
	CredentialKind string
	Credential     vault.Fields
	// Egress is the only way a driver may reach the network: it refuses
	// hosts the type and the instance do not allow.
	Egress Egress
	// Findings collects what the driver reports about this invocation
	// (e.g. that it redacted credential material), for the audit row.
	Findings *Findings
	// Progress, when the caller asked for progress, takes what the driver
	// reports while it runs (nil otherwise: report nothing).
	Progress Progress
	// Elicit, when the caller's client can be asked, asks its user (nil
	// otherwise: refuse what would need it).
	Elicit Elicit
	// Log, when the caller takes log messages, takes those the service
	// sends during the operation (MCP's notifications/message; nil
	// otherwise).
	Log Log
	// Input, when set, is a round of a multi round-trip call (2026-07-28):
	// the answers the caller gives to what the operation asked before, and
	// whether the operation may hand its questions back to the caller.
	Input *InputRound
	// Watch is set for a watch operation (Operation.MCP
	// "resources.subscribe") and only for one.
	Watch *Watch
}

// Watch is the caller's side of a watch operation: the operation says
// Ready once it watches (the upstream subscription is in place), Updated
// for each update the service announces (the URI that changed), and ends
// with an empty result once Stop is closed. It ends with an error when
// the service goes (the caller may start it again) and when its context
// ends.
type Watch struct {
	Ready   func()
	Updated func(uri string)
	Stop    <-chan struct{}
}

// WatchRole is the Operation.MCP role of a watch operation.
const WatchRole = "resources.subscribe"

// InputRound is one round of a multi round-trip call (SEP-2322).
type InputRound struct {
	// Responses are the caller's answers (an inputResponses object), with
	// State, the operation's own state from the round before.
	Responses json.RawMessage
	State     string
	// Passthrough: the caller takes questions back (input_required); else
	// the operation asks through Elicit within the call.
	Passthrough bool
}

// Elicit asks the caller's user for input on a driver's behalf: request is
// an MCP elicitation/create request's params, the answer its result. It
// fails when the caller cannot be asked.
type Elicit func(ctx context.Context, request json.RawMessage) (json.RawMessage, error)

// Log is one log message a service sends during an invocation: its
// severity (an MCP logging level: debug … emergency), the logger's name
// (may be empty) and its data (any JSON).
type Log func(level, logger string, data json.RawMessage)

// Progress is how far an invocation has got: progress so far, of total (0
// when unknown), and a message (may be empty).
type Progress func(progress, total float64, message string)

// Findings is what a driver reports about one invocation: whether it
// redacted credential material, and the values it derived from the
// credential and sent.
type Findings struct {
	redacted atomic.Bool
	mu       sync.Mutex
	sent     []vault.Secret
}

// Sent declares a value the driver derived from the credential and sends
// (an Authorization header's value, a user:password pair, an AUTH PLAIN
// blob): the executor redacts it, and its encodings, from the result and
// from errors as it does the credential's own fields. f keeps a copy,
// wiped when the invocation ends.
func (f *Findings) Sent(v []byte) {
	if f == nil || len(v) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, vault.NewSecret(v))
}

// SentValues returns the values declared with Sent.
func (f *Findings) SentValues() []vault.Secret {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sent)
}

// Wipe wipes the values declared with Sent.
func (f *Findings) Wipe() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sent {
		s.Wipe()
	}
	f.sent = nil
}

// MarkRedacted records that the driver replaced credential material.
func (f *Findings) MarkRedacted() {
	if f != nil {
		f.redacted.Store(true)
	}
}

// Redacted reports whether the driver replaced credential material.
func (f *Findings) Redacted() bool { return f != nil && f.redacted.Load() }

// Egress makes a driver's outbound connections, checked against the
// instance's allowlist at dial time (after DNS resolution, and again on
// every redirect).
type Egress interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	// HTTPClient returns a client whose every connection and redirect goes
	// through DialContext's checks.
	HTTPClient() *http.Client
}

// Driver implements a connector type. Only the executor calls Invoke.
type Driver interface {
	Spec() TypeSpec
	Invoke(ctx context.Context, inv Invocation) (json.RawMessage, error)
}
