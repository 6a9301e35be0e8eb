// Package mcp is connec's MCP surface: the tool inventory (names, input
// schemas, which policy action each needs) and the translation of tool calls
// to connectors.Service methods and back. It knows nothing of transports;
// transport.go serves the same server over stdio, SSE and streamable HTTP.
package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/fault"
)

// Tool is one entry of the inventory.
type Tool struct {
	Def mcp.Tool
	// Actions lists the policy actions any of which may make the tool usable;
	// a subject holding none of them does not see the tool.
	Actions []string
	// Resource, when the tool acts on one fixed resource (catalog, policy),
	// narrows visibility to rules that reach it.
	Resource string
	// Handle decodes raw arguments and calls the service.
	Handle func(ctx context.Context, svc *connectors.Service, raw json.RawMessage) (any, error)
}

const taskIDProp = `"task_id": {"type": "string", "format": "uuid", "description": "Task this call runs for (also accepted in _meta[\"connec.dev/task\"])."}`

func schema(props string, required ...string) json.RawMessage {
	req, _ := json.Marshal(required)
	if props != "" {
		props += ",\n    "
	}
	defs := ""
	if strings.Contains(props, "#/$defs/rate") {
		defs = `,
  "$defs": {"rate": {"type": "object", "properties": {"requests": {"type": "integer", "minimum": 1, "maximum": 1000000}, "window_seconds": {"type": "integer", "minimum": 1, "maximum": 86400}}, "required": ["requests", "window_seconds"], "additionalProperties": false}}`
	}
	return json.RawMessage(fmt.Sprintf(`{
  "type": "object",
  "properties": {
    %s%s
  },
  "required": %s,
  "additionalProperties": false%s
}`, props, taskIDProp, req, defs))
}

const instanceIDProp = `"instance_id": {"type": "string", "format": "uuid", "description": "Connector instance id."}`

func def(name, description string, in json.RawMessage, annotations mcp.ToolAnnotation) mcp.Tool {
	t := mcp.NewToolWithRawSchema(name, description, in)
	t.Annotations = annotations
	return t
}

func readOnly(title string) mcp.ToolAnnotation {
	return mcp.ToolAnnotation{Title: title, ReadOnlyHint: mcp.ToBoolPtr(true), OpenWorldHint: mcp.ToBoolPtr(false)}
}

func mutating(title string, destructive, idempotent bool) mcp.ToolAnnotation {
	return mcp.ToolAnnotation{Title: title, ReadOnlyHint: mcp.ToBoolPtr(false), DestructiveHint: mcp.ToBoolPtr(destructive),
		IdempotentHint: mcp.ToBoolPtr(idempotent), OpenWorldHint: mcp.ToBoolPtr(false)}
}

type idArgs struct {
	InstanceID string `json:"instance_id"`
	TaskID     string `json:"task_id,omitempty"`
}

func stateTool(name, description, title string, destructive bool, fn func(*connectors.Service, context.Context, string) (connectors.Instance, error)) Tool {
	return Tool{
		Def:     def(name, description, schema(instanceIDProp, "instance_id"), mutating(title, destructive, true)),
		Actions: []string{authz.ActionAdmin},
		Handle: decoded(name, authz.ActionAdmin, func(ctx context.Context, svc *connectors.Service, a idArgs) (any, error) {
			return fn(svc, ctx, a.InstanceID)
		}),
	}
}

const credentialIDProp = `"credential_id": {"type": "string", "format": "uuid", "description": "Credential id."}`

const secretProp = `"secret": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 16384}, "description": "Secret fields of the credential kind (bearer: token; basic|login: username, password; header|query: value; api_key: key). Write-only: never returned, logged or audited."},
    "expires_at": {"type": "string", "format": "date-time", "description": "When the credential stops working (it then behaves as disabled, with error credential_expired)."}`

func credentialStateTool(name, description, title string, destructive bool, fn func(*connectors.Service, context.Context, string) (connectors.Credential, error)) Tool {
	return Tool{
		Def:     def(name, description, schema(credentialIDProp, "credential_id"), mutating(title, destructive, true)),
		Actions: []string{authz.ActionAdmin},
		Handle: decoded(name, authz.ActionAdmin, func(ctx context.Context, svc *connectors.Service, a struct {
			CredentialID string `json:"credential_id"`
			TaskID       string `json:"task_id,omitempty"`
		}) (any, error) {
			return fn(svc, ctx, a.CredentialID)
		}),
	}
}

func credentialTools() []Tool {
	return []Tool{
		{
			Def: def(connectors.ToolCredentialCreate, "Store a credential for a connector instance, sealed (envelope encryption) so that only the executor can open it. The secret is write-only: no tool ever returns it. An instance has at most one live credential; rotate it to change the secret.",
				schema(instanceIDProp+`,
    "kind": {"type": "string", "enum": ["api_key", "basic", "bearer", "header", "login", "query"], "description": "Credential kind; the type's catalog entry lists the kinds it accepts."},
    `+secretProp, "instance_id", "kind", "secret"),
				mutating("Create credential", false, false)),
			Actions: []string{authz.ActionAdmin},
			Handle: decoded(connectors.ToolCredentialCreate, authz.ActionAdmin, func(ctx context.Context, svc *connectors.Service, a struct {
				connectors.CredentialInput
				TaskID string `json:"task_id,omitempty"`
			}) (any, error) {
				defer wipe(a.Secret)
				return svc.CreateCredential(ctx, a.CredentialInput)
			}),
		},
		{
			Def: def(connectors.ToolCredentialRotate, "Replace a credential's secret. The credential id and the instance id stay the same; the version goes up by one; every server drops cached keys for it at once.",
				schema(credentialIDProp+`,
    `+secretProp, "credential_id", "secret"),
				mutating("Rotate credential", false, false)),
			Actions: []string{authz.ActionAdmin},
			Handle: decoded(connectors.ToolCredentialRotate, authz.ActionAdmin, func(ctx context.Context, svc *connectors.Service, a struct {
				connectors.RotateInput
				TaskID string `json:"task_id,omitempty"`
			}) (any, error) {
				defer wipe(a.Secret)
				return svc.RotateCredential(ctx, a.RotateInput)
			}),
		},
		credentialStateTool(connectors.ToolCredentialRevoke, "Revoke a credential: immediate and final. The very next invocation of its instance fails with credential_revoked, on every server.", "Revoke credential", true, (*connectors.Service).RevokeCredential),
		credentialStateTool(connectors.ToolCredentialDisable, "Disable a credential until it is enabled again; invocations fail with credential_disabled meanwhile.", "Disable credential", false, (*connectors.Service).DisableCredential),
		credentialStateTool(connectors.ToolCredentialEnable, "Enable a disabled credential.", "Enable credential", false, (*connectors.Service).EnableCredential),
		{
			Def:     def(connectors.ToolCredentialList, "List an instance's credentials (metadata only: kind, state, version, field names, key id, dates).", schema(instanceIDProp, "instance_id"), readOnly("List credentials")),
			Actions: []string{authz.ActionAdmin},
			Handle: decoded(connectors.ToolCredentialList, authz.ActionAdmin, func(ctx context.Context, svc *connectors.Service, a idArgs) (any, error) {
				list, err := svc.ListCredentials(ctx, a.InstanceID)
				return map[string]any{"credentials": list}, err
			}),
		},
		{
			Def:     def(connectors.ToolCredentialGet, "Get one credential's metadata (never its secret).", schema(credentialIDProp, "credential_id"), readOnly("Get credential")),
			Actions: []string{authz.ActionAdmin},
			Handle: decoded(connectors.ToolCredentialGet, authz.ActionAdmin, func(ctx context.Context, svc *connectors.Service, a struct {
				CredentialID string `json:"credential_id"`
				TaskID       string `json:"task_id,omitempty"`
			}) (any, error) {
				return svc.GetCredential(ctx, a.CredentialID)
			}),
		},
	}
}

// wipe drops the plaintext secret strings from the decoded arguments map.
// Go strings cannot be zeroed; dropping references is the best available.
func wipe(m map[string]string) {
	for k := range m {
		delete(m, k)
	}
}

const ruleProps = `"subject": {"type": "string", "description": "user:<uuid> or group:<uuid>."},
    "resource": {"type": "string", "minLength": 1, "maxLength": 512, "description": "Resource pattern: catalog | policy | connectors/<owner>[/<type>/<instance-id>[/<operation>]]; * within a segment, trailing /** across segments."},
    "action": {"type": "string", "enum": ["*", "connector.admin", "connector.catalog.read", "connector.policy.admin", "connector.read", "connector.send"]},
    "cond": {"type": "string", "maxLength": 512, "description": "Task-context condition: project=<uuid>; agent=<id>|<id>; task=required (joined with ;)."}`

func ruleTool(name, description, title, effect string, remove bool) Tool {
	props := ruleProps
	if remove {
		props += `,
    "effect": {"type": "string", "enum": ["allow", "deny"], "description": "Effect of the rule to remove (default allow)."}`
	}
	return Tool{
		Def:      def(name, description, schema(props, "subject", "resource", "action"), mutating(title, remove, true)),
		Actions:  []string{authz.ActionPolicyAdmin},
		Resource: authz.ResourcePolicy,
		Handle: decoded(name, authz.ActionPolicyAdmin, func(ctx context.Context, svc *connectors.Service, a struct {
			authz.Rule
			TaskID string `json:"task_id,omitempty"`
		}) (any, error) {
			r := a.Rule
			if effect != "" && r.Effect != "" {
				return nil, svc.Refuse(ctx, name, authz.ActionPolicyAdmin, fault.Invalid("effect", "%s implies effect %s; do not pass effect", name, effect))
			}
			if effect != "" {
				r.Effect = effect
			} else if r.Effect == "" {
				r.Effect = authz.EffectAllow
			}
			return svc.ChangeRule(ctx, name, r, remove)
		}),
	}
}

func policyTools() []Tool {
	return []Tool{
		{
			Def: def(connectors.ToolPolicyList, "List policy rules (administrators).",
				schema(`"subject": {"type": "string", "description": "Only rules of this subject (user:<uuid> or group:<uuid>)."}`), readOnly("List policy rules")),
			Actions:  []string{authz.ActionPolicyAdmin},
			Resource: authz.ResourcePolicy,
			Handle: decoded(connectors.ToolPolicyList, authz.ActionPolicyAdmin, func(ctx context.Context, svc *connectors.Service, a struct {
				Subject string `json:"subject,omitempty"`
				TaskID  string `json:"task_id,omitempty"`
			}) (any, error) {
				rules, err := svc.ListRules(ctx, a.Subject)
				return map[string]any{"rules": rules}, err
			}),
		},
		ruleTool(connectors.ToolPolicyAllow, "Add an allow rule (administrators). Default deny: nothing is allowed until a rule says so.", "Allow by policy", authz.EffectAllow, false),
		ruleTool(connectors.ToolPolicyDeny, "Add a deny rule (administrators). A matching deny beats every allow.", "Deny by policy", authz.EffectDeny, false),
		ruleTool(connectors.ToolPolicyRemove, "Remove a policy rule (administrators).", "Remove policy rule", "", true),
		{
			Def: def(connectors.ToolPolicyExplain, "Explain how policy decides a request (administrators): allowed or not, the rule that decided, and the policy version.",
				schema(`"subject": {"type": "string", "description": "user:<uuid> or group:<uuid>."},
    "action": {"type": "string", "enum": ["connector.admin", "connector.catalog.read", "connector.policy.admin", "connector.read", "connector.send"]},
    "resource": {"type": "string", "minLength": 1, "maxLength": 512, "description": "A concrete resource, e.g. connectors/user:<uuid>/echo/<instance-id>/echo.read."},
    "task": {"type": "object", "description": "Task context to decide with.", "properties": {"task_id": {"type": "string"}, "project_id": {"type": "string"}, "run_id": {"type": "string"}, "job_id": {"type": "string"}, "agent_id": {"type": "string"}}, "additionalProperties": false}`, "subject", "action", "resource"),
				readOnly("Explain a policy decision")),
			Actions:  []string{authz.ActionPolicyAdmin},
			Resource: authz.ResourcePolicy,
			Handle: decoded(connectors.ToolPolicyExplain, authz.ActionPolicyAdmin, func(ctx context.Context, svc *connectors.Service, a struct {
				connectors.ExplainInput
				TaskID string `json:"task_id,omitempty"`
			}) (any, error) {
				return svc.Explain(ctx, a.ExplainInput)
			}),
		},
	}
}

const runIDProp = `"run_id": {"type": "string", "format": "uuid", "description": "Run id (from connector.op.invoke)."}`

func runTools() []Tool {
	return []Tool{
		{
			Def: def(connectors.ToolRunList, "List run history, newest first: every run of an instance you hold any right on (with instance_id), or your own runs (without).",
				schema(instanceIDProp+`,
    "status": {"type": "string", "enum": ["pending", "running", "succeeded", "failed", "canceled"]},
    "limit": {"type": "integer", "minimum": 1, "maximum": 200},
    "before": {"type": "string", "format": "uuid", "description": "Page: runs older than this run id."}`), readOnly("List runs")),
			Actions: []string{authz.ActionRead, authz.ActionSend, authz.ActionAdmin},
			Handle: decoded(connectors.ToolRunList, authz.ActionRead, func(ctx context.Context, svc *connectors.Service, a connectors.RunFilter) (any, error) {
				a.TaskID = callctx.TaskFrom(ctx).TaskID
				runs, err := svc.ListRuns(ctx, a)
				return map[string]any{"runs": runs}, err
			}),
		},
		{
			Def:     def(connectors.ToolRunGet, "Get one run: status (pending, running, succeeded, failed, canceled), error, timing and — for async and idempotent runs — the result.", schema(runIDProp, "run_id"), readOnly("Get run")),
			Actions: []string{authz.ActionRead, authz.ActionSend, authz.ActionAdmin},
			Handle: decoded(connectors.ToolRunGet, authz.ActionRead, func(ctx context.Context, svc *connectors.Service, a struct {
				RunID  string `json:"run_id"`
				TaskID string `json:"task_id,omitempty"`
			}) (any, error) {
				return svc.GetRun(ctx, a.RunID)
			}),
		},
		{
			Def:     def(connectors.ToolRunCancel, "Cancel a pending or running async run you started (or any, with connector.admin on its instance).", schema(runIDProp, "run_id"), mutating("Cancel run", false, true)),
			Actions: []string{authz.ActionRead, authz.ActionSend, authz.ActionAdmin},
			Handle: decoded(connectors.ToolRunCancel, authz.ActionAdmin, func(ctx context.Context, svc *connectors.Service, a struct {
				RunID  string `json:"run_id"`
				TaskID string `json:"task_id,omitempty"`
			}) (any, error) {
				return svc.CancelRun(ctx, a.RunID)
			}),
		},
	}
}

// decoded adapts a typed handler: it decodes the arguments strictly into
// T, and a call whose arguments do not decode is refused (and audited)
// before it reaches the service.
func decoded[T any](name, action string, fn func(ctx context.Context, svc *connectors.Service, a T) (any, error)) func(context.Context, *connectors.Service, json.RawMessage) (any, error) {
	return func(ctx context.Context, svc *connectors.Service, raw json.RawMessage) (any, error) {
		var a T
		if err := decode(raw, &a); err != nil {
			return nil, svc.Refuse(ctx, name, action, err)
		}
		return fn(ctx, svc, a)
	}
}

// Inventory returns every tool connec serves.
func Inventory() []Tool {
	tools := instanceTools()
	tools = append(tools, credentialTools()...)
	tools = append(tools, runTools()...)
	return append(tools, policyTools()...)
}

func instanceTools() []Tool {
	return []Tool{
		{
			Def: def(connectors.ToolCatalogList, "List the connector types this server supports, with their operations, operation kinds (read|send|admin), input/output schemas, config schema, accepted credential kinds and egress hosts.",
				schema(""), readOnly("List connector types")),
			Actions:  []string{authz.ActionCatalogRead},
			Resource: authz.ResourceCatalog,
			Handle: decoded(connectors.ToolCatalogList, authz.ActionCatalogRead, func(ctx context.Context, svc *connectors.Service, a struct {
				TaskID string `json:"task_id,omitempty"`
			}) (any, error) {
				types, err := svc.ListCatalog(ctx)
				return map[string]any{"types": types}, err
			}),
		},
		{
			Def: def(connectors.ToolInstanceInstall, "Install a connector instance of a catalog type for an owner (yourself by default, or a group where policy allows), optionally scoped to a project. The config is validated against the type's config schema. New instances are disabled unless enable is true.",
				schema(`"type": {"type": "string", "description": "Connector type name from connector.catalog.list."},
    "display_name": {"type": "string", "minLength": 1, "maxLength": 200},
    "owner": {"type": "string", "description": "Owner subject: user:<uuid> or group:<uuid>. Defaults to the caller."},
    "project_id": {"type": "string", "format": "uuid", "description": "Scope the instance to one project: it may then only be invoked with that project_id in the task context."},
    "config": {"type": "object", "description": "Instance configuration, validated against the type's config schema."},
    "limits": {"type": "object", "description": "Rate limits enforced across every server: {per_subject|per_instance: {requests, window_seconds}}.", "properties": {"per_subject": {"$ref": "#/$defs/rate"}, "per_instance": {"$ref": "#/$defs/rate"}}, "additionalProperties": false},
    "enable": {"type": "boolean", "description": "Enable the instance at once."}`, "type", "display_name"),
				mutating("Install connector instance", false, false)),
			Actions: []string{authz.ActionAdmin},
			Handle: decoded(connectors.ToolInstanceInstall, authz.ActionAdmin, func(ctx context.Context, svc *connectors.Service, a struct {
				connectors.InstallInput
				TaskID string `json:"task_id,omitempty"`
			}) (any, error) {
				return svc.Install(ctx, a.InstallInput)
			}),
		},
		stateTool(connectors.ToolInstanceEnable, "Enable a connector instance so its operations can be invoked.", "Enable connector instance", false, (*connectors.Service).Enable),
		stateTool(connectors.ToolInstanceDisable, "Disable a connector instance; invocations are refused until it is enabled again.", "Disable connector instance", false, (*connectors.Service).Disable),
		stateTool(connectors.ToolInstanceUninstall, "Uninstall a connector instance for good: its credentials are revoked and it stays only as a tombstone for audit; its id is never reused.", "Uninstall connector instance", true, (*connectors.Service).Uninstall),
		{
			Def: def(connectors.ToolInstanceList, "List the connector instances you hold any right on, optionally filtered by owner, project or type.",
				schema(`"owner": {"type": "string", "description": "Only instances of this owner subject."},
    "project_id": {"type": "string", "format": "uuid"},
    "type": {"type": "string"},
    "include_uninstalled": {"type": "boolean", "description": "Also list uninstalled (tombstoned) instances."}`),
				readOnly("List connector instances")),
			Actions: []string{authz.ActionRead, authz.ActionSend, authz.ActionAdmin},
			Handle: decoded(connectors.ToolInstanceList, authz.ActionRead, func(ctx context.Context, svc *connectors.Service, a struct {
				connectors.ListInput
				TaskID string `json:"task_id,omitempty"`
			}) (any, error) {
				list, err := svc.List(ctx, a.ListInput)
				return map[string]any{"instances": list}, err
			}),
		},
		{
			Def:     def(connectors.ToolInstanceGet, "Get one connector instance.", schema(instanceIDProp, "instance_id"), readOnly("Get connector instance")),
			Actions: []string{authz.ActionRead, authz.ActionSend, authz.ActionAdmin},
			Handle: decoded(connectors.ToolInstanceGet, authz.ActionRead, func(ctx context.Context, svc *connectors.Service, a idArgs) (any, error) {
				return svc.Get(ctx, a.InstanceID)
			}),
		},
		{
			Def: def(connectors.ToolOpInvoke, "Invoke one operation of a connector instance. Policy is checked for the operation's kind (connector.read or connector.send) on that instance and operation, with your task context. Arguments are validated against the operation's input schema; the result against its output schema. Credentials are never returned.",
				schema(instanceIDProp+`,
    "operation": {"type": "string", "description": "Operation name, e.g. echo.read."},
    "arguments": {"type": "object", "description": "Operation arguments, validated against the operation's input schema."},
    "timeout_ms": {"type": "integer", "minimum": 1, "maximum": 600000, "description": "Ask for a shorter timeout than the operation's cap."},
    "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 200, "description": "Send-kind operations only: execute at most once per instance within 24h; a repeat returns the first outcome."}`, "instance_id", "operation"),
				mcp.ToolAnnotation{Title: "Invoke connector operation", ReadOnlyHint: mcp.ToBoolPtr(false), OpenWorldHint: mcp.ToBoolPtr(true)}),
			Actions: []string{authz.ActionRead, authz.ActionSend},
			Handle: decoded(connectors.ToolOpInvoke, authz.ActionRead, func(ctx context.Context, svc *connectors.Service, a struct {
				connectors.InvokeInput
				TaskID string `json:"task_id,omitempty"`
			}) (any, error) {
				if a.Arguments != nil && !isObject(a.Arguments) {
					return nil, svc.Refuse(ctx, connectors.ToolOpInvoke, authz.ActionRead, fault.Invalid("arguments", "arguments must be a JSON object"))
				}
				return svc.Invoke(ctx, a.InvokeInput)
			}),
		},
	}
}

func isObject(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && (t[0] == '{' || string(t) == "null")
}

// decode reads tool arguments strictly: unknown fields and wrong types are
// invalid_argument errors naming the field.
func decode(raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage(`{}`)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return fault.Invalid(te.Field, "argument %s must be of type %s", te.Field, te.Type.String())
		case bytes.HasPrefix([]byte(err.Error()), []byte("json: unknown field ")):
			field := string(bytes.Trim([]byte(err.Error()[len("json: unknown field "):]), `"`))
			return fault.Invalid(field, "unknown argument %q", field)
		default:
			return fault.Invalid("", "arguments must be a JSON object")
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return fault.Invalid("", "arguments must be a single JSON object")
	}
	return nil
}

// Result is the structured content of every tool result.
type Result struct {
	Status string        `json:"status"`
	Result any           `json:"result,omitempty"`
	Error  *fault.Public `json:"error,omitempty"`
}

func encode(v any, err error) *mcp.CallToolResult {
	if err != nil {
		pub := fault.PublicOf(err)
		r := Result{Status: "error", Error: &pub}
		text, _ := json.Marshal(r)
		res := mcp.NewToolResultStructured(r, string(text))
		res.IsError = true
		return res
	}
	r := Result{Status: "ok", Result: v}
	text, _ := json.Marshal(r)
	return mcp.NewToolResultStructured(r, string(text))
}

// taskContext reads the task context from the request's _meta and the
// task_id argument; both may be given if they agree.
func taskContext(req mcp.CallToolRequest, raw json.RawMessage) (callctx.TaskContext, error) {
	var fromMeta callctx.TaskContext
	if req.Params.Meta != nil && req.Params.Meta.AdditionalFields != nil {
		if v, ok := req.Params.Meta.AdditionalFields[callctx.MetaKey]; ok {
			m, ok := v.(map[string]any)
			if !ok {
				return callctx.TaskContext{}, fault.Invalid("_meta", "_meta[%q] must be an object", callctx.MetaKey)
			}
			t, err := callctx.FromMap(m, false)
			if err != nil {
				return callctx.TaskContext{}, fault.Invalid("_meta."+fieldOf(err), "task context: %v", err)
			}
			fromMeta = t
		}
	}
	var a struct {
		TaskID any `json:"task_id"`
	}
	_ = json.Unmarshal(raw, &a)
	var fromArgs callctx.TaskContext
	if a.TaskID != nil {
		s, ok := a.TaskID.(string)
		if !ok {
			return callctx.TaskContext{}, fault.Invalid("task_id", "task_id must be a uuid string")
		}
		t, err := (callctx.TaskContext{TaskID: s}).Validate()
		if err != nil {
			return callctx.TaskContext{}, fault.Invalid("task_id", "task_id must be a uuid")
		}
		fromArgs = t
	}
	t, err := callctx.Merge(fromMeta, fromArgs)
	if err != nil {
		return callctx.TaskContext{}, fault.Invalid(fieldOf(err), "task context: %v", err)
	}
	return t, nil
}

func fieldOf(err error) string {
	var fe *callctx.FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}

// handler turns an inventory entry into an mcp-go handler. Bad input is a
// tool error result (IsError); Go errors are reserved for failures of the
// protocol itself and never carry internal detail.
func handler(svc *connectors.Service, t Tool) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		ctx = callctx.WithRequestID(ctx, callctx.NewRequestID())
		raw := req.Params.RawArguments
		if len(raw) == 0 && req.Params.Arguments != nil {
			b, err := json.Marshal(req.Params.Arguments)
			if err != nil {
				return encode(nil, svc.Refuse(ctx, t.Def.Name, t.Actions[0], fault.Invalid("", "arguments must be a JSON object"))), nil
			}
			raw = b
		}
		task, err := taskContext(req, raw)
		if err != nil {
			return encode(nil, svc.Refuse(ctx, t.Def.Name, t.Actions[0], err)), nil
		}
		ctx = callctx.WithTask(ctx, task)
		v, err := t.Handle(ctx, svc, raw)
		return encode(v, err), nil
	}
}
