package core

import (
	"context"
	"net/http"
	"strings"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/fault"
)

// The inputs and outputs the catalog's entries add to the use cases' own.
type (
	// NoInput is the input of operations that take none.
	NoInput struct{}
	// InstanceRef names one connector instance.
	InstanceRef struct {
		InstanceID string `json:"instance_id" jsonschema:"Connector instance id." schema:"format=uuid"`
	}
	// CredentialRef names one credential, optionally under its instance.
	CredentialRef struct {
		CredentialID string `json:"credential_id" jsonschema:"Credential id." schema:"format=uuid"`
		InstanceID   string `json:"instance_id,omitempty" jsonschema:"The credential's instance: when given, a credential of another instance is not found." schema:"format=uuid"`
	}
	// CredentialRotation is a rotation, optionally under the instance.
	CredentialRotation struct {
		RotateInput
		InstanceID string `json:"instance_id,omitempty" jsonschema:"The credential's instance: when given, a credential of another instance is not found." schema:"format=uuid"`
	}
	// RunRef names one run.
	RunRef struct {
		RunID string `json:"run_id" jsonschema:"Run id (from connector.op.invoke)." schema:"format=uuid"`
	}
	// PolicyListInput filters connector.policy.list.
	PolicyListInput struct {
		Subject string `json:"subject,omitempty" jsonschema:"Only rules of this subject (user:<uuid> or group:<uuid>)."`
	}
	// RuleInput names a rule by its fields.
	RuleInput struct {
		Subject  string `json:"subject" jsonschema:"user:<uuid> or group:<uuid>."`
		Resource string `json:"resource" jsonschema:"Resource pattern: catalog | policy | audit | network/private | connectors/<owner>[/<type>/<instance-id>[/<operation>]], ids as lower-case uuids; * within a segment, a trailing /** for everything below. A pattern that can match nothing is refused." schema:"minLength=1,maxLength=512"`
		Action   string `json:"action" schema:"enum=@rule-actions"`
		Cond     string `json:"cond,omitempty" jsonschema:"Task-context condition: project=<uuid>; agent=<id>|<id>; task=required (joined with ;)." schema:"maxLength=512"`
	}
	// RuleEffectInput is a rule with its effect (default allow).
	RuleEffectInput struct {
		RuleInput
		Effect string `json:"effect,omitempty" jsonschema:"The rule's effect (default allow)." schema:"enum=allow|deny"`
	}
	// CatalogList is connector.catalog.list's answer.
	CatalogList struct {
		Types []connectors.TypeSpec `json:"types" schema:"type=array"`
	}
	// CredentialList is connector.credential.list's answer.
	CredentialList struct {
		Credentials []Credential `json:"credentials" schema:"type=array"`
	}
	// RuleList is connector.policy.list's answer.
	RuleList struct {
		Rules []authz.Rule `json:"rules" schema:"type=array"`
	}
)

func (r RuleInput) rule(effect string) authz.Rule {
	if effect == "" {
		effect = authz.EffectAllow
	}
	return authz.Rule{Subject: r.Subject, Resource: r.Resource, Action: r.Action, Cond: r.Cond, Effect: effect}
}

var (
	anyRight = []string{authz.ActionRead, authz.ActionSend, authz.ActionAdmin}
	admin    = []string{authz.ActionAdmin}
)

func readOnly(title string) Hints { return Hints{Title: title, ReadOnly: true} }

func mutating(title string, destructive, idempotent bool) Hints {
	return Hints{Title: title, Destructive: destructive, Idempotent: idempotent}
}

// What the documentation says is checked.
const (
	onInstance    = "connector.admin on the instance"
	onRunInstance = "any of connector.read, connector.send, connector.admin on the run's instance (or your own runs)"
	ruleExample   = `{"subject":"user:0b7f4a52-3c1e-4d0a-9a6b-2f7c1e5d8a90","resource":"connectors/user:0b7f4a52-3c1e-4d0a-9a6b-2f7c1e5d8a90/**","action":"*","effect":"allow"}`
)

// REST paths.
const (
	instancesPath   = "/v1/connector-instances"
	instancePath    = instancesPath + "/{instance_id}"
	credentialsPath = instancePath + "/credentials"
	credentialPath  = credentialsPath + "/{credential_id}"
)

// entries declares the catalog, domain by domain.
func entries() []*Entry {
	var all []*Entry
	for _, group := range [][]*Entry{instanceEntries(), credentialEntries(), runEntries(), serverEntries(), policyEntries(), tokenEntries(), auditEntries()} {
		all = append(all, group...)
	}
	return all
}

func instanceEntries() []*Entry {
	state := func(name, description, title, method, path string, destructive bool, fn func(*Service, context.Context, string) (Instance, error)) *Entry {
		return op(Entry{Name: name, Description: description, Hints: mutating(title, destructive, true), Actions: admin, Checks: onInstance,
			Route: &Route{Method: method, Path: path, Body: OptionalBody, Hide: true, Example: "{}"}},
			func(s *Service, ctx context.Context, in InstanceRef) (Instance, error) {
				return fn(s, ctx, in.InstanceID)
			})
	}
	return []*Entry{
		op(Entry{Name: ToolCatalogList, Hints: readOnly("List connector types"),
			Description: "List the connector types this server supports, with their operations, operation kinds (read|send|admin), input/output schemas, config schema, accepted credential kinds and egress hosts.",
			Actions:     []string{authz.ActionCatalogRead}, Resource: authz.ResourceCatalog, Checks: "connector.catalog.read on catalog",
			Route: &Route{Method: http.MethodGet, Path: "/v1/connector-types"}},
			func(s *Service, ctx context.Context, _ NoInput) (CatalogList, error) {
				types, err := s.ListCatalog(ctx)
				return CatalogList{Types: nonNil(types)}, err
			}),
		op(Entry{Name: ToolInstanceInstall, Hints: mutating("Install connector instance", false, false),
			Description: "Install a connector instance of a catalog type for an owner (yourself by default, or a group where policy allows), optionally scoped to a project. The config is validated against the type's config schema. New instances are disabled unless enable is true.",
			Actions:     admin, Checks: "connector.admin on connectors/<owner> (and on network/private when the config sets allow_private_network)",
			Route: &Route{Method: http.MethodPost, Path: instancesPath, Body: RequiredBody, Created: true, Location: instancesPath + "/{id}",
				Example: `{"type":"echo","display_name":"Team echo","config":{"prefix":"echo: "},"enable":true}`}},
			(*Service).Install),
		op(Entry{Name: ToolInstanceRename, Hints: mutating("Rename connector instance", false, true),
			Description: "Change a connector instance's display name. Its handle stays.",
			Actions:     admin, Checks: onInstance,
			Route: &Route{Method: http.MethodPatch, Path: instancePath, Body: RequiredBody, Hide: true, Example: `{"display_name":"Work mail (EU)"}`}},
			(*Service).Rename),
		state(ToolInstanceEnable, "Enable a connector instance so its operations can be invoked.", "Enable connector instance",
			http.MethodPost, instancePath+"/enable", false, (*Service).Enable),
		state(ToolInstanceDisable, "Disable a connector instance; invocations are refused until it is enabled again.", "Disable connector instance",
			http.MethodPost, instancePath+"/disable", false, (*Service).Disable),
		state(ToolInstanceUninstall, "Uninstall a connector instance for good: its credentials are revoked and it stays only as a tombstone for audit; its id is never reused.", "Uninstall connector instance",
			http.MethodDelete, instancePath, true, (*Service).Uninstall),
		op(Entry{Name: ToolInstanceList, Hints: readOnly("List connector instances"),
			Description: "List the connector instances you hold any right on, optionally filtered by owner, project, type or state, one page at a time in the order they were installed.",
			Actions:     anyRight, RefuseAs: authz.ActionRead, Checks: "any of connector.read, connector.send, connector.admin on each instance listed",
			Route: &Route{Method: http.MethodGet, Path: instancesPath, Query: []string{"owner", "project_id", "type", "enabled", "include_uninstalled", "cursor", "limit"}}},
			(*Service).ListInstances),
		op(Entry{Name: ToolInstanceGet, Description: "Get one connector instance.", Hints: readOnly("Get connector instance"),
			Actions: anyRight, RefuseAs: authz.ActionRead, Checks: "any of connector.read, connector.send, connector.admin on the instance",
			Route: &Route{Method: http.MethodGet, Path: instancePath, Hide: true}},
			func(s *Service, ctx context.Context, in InstanceRef) (Instance, error) {
				return s.Get(ctx, in.InstanceID)
			}),
		op(Entry{Name: ToolOpInvoke, Surfaces: OnMCP,
			Hints:       Hints{Title: "Invoke connector operation", OpenWorld: true},
			Description: "Invoke one operation of a connector instance. Policy is checked for the operation's kind (connector.read or connector.send) on that instance and operation, with your task context. Arguments are validated against the operation's input schema; the result against its output schema. Credentials are never returned.",
			Actions:     []string{authz.ActionRead, authz.ActionSend}, RefuseAs: authz.ActionRead,
			Checks: "connector.read or connector.send (the operation's kind) on connectors/<owner>/<type>/<instance>/<operation>, with the task context",
			MayAsk: true},
			(*Service).Invoke),
	}
}

func credentialEntries() []*Entry {
	state := func(name, description, title, verb string, destructive bool, fn func(*Service, context.Context, string) (Credential, error)) *Entry {
		return op(Entry{Name: name, Description: description, Hints: mutating(title, destructive, true), Actions: admin, Checks: onInstance,
			Route: &Route{Method: http.MethodPost, Path: credentialPath + "/" + verb, Body: OptionalBody, Hide: true, Example: "{}"}},
			func(s *Service, ctx context.Context, in CredentialRef) (Credential, error) {
				if err := s.credentialUnder(ctx, in); err != nil {
					return Credential{}, err
				}
				return fn(s, ctx, in.CredentialID)
			})
	}
	return []*Entry{
		op(Entry{Name: ToolCredentialCreate, Hints: mutating("Create credential", false, false),
			Description: "Store a credential for a connector instance, sealed (envelope encryption) so that only the executor can open it. The secret is write-only: no tool ever returns it. An instance has at most one live credential; rotate it to change the secret.",
			Actions:     admin, Checks: onInstance,
			Route: &Route{Method: http.MethodPost, Path: credentialsPath, Body: RequiredBody, Hide: true, Created: true, Location: instancesPath + "/{instance_id}/credentials/{id}",
				Example: `{"kind":"bearer","secret":{"token":"s3cr3t-token"},"expires_at":"2030-01-01T00:00:00Z"}`}},
			func(s *Service, ctx context.Context, in CredentialInput) (Credential, error) {
				defer wipe(in.Secret)
				return s.CreateCredential(ctx, in)
			}),
		op(Entry{Name: ToolCredentialRotate, Hints: mutating("Rotate credential", false, false),
			Description: "Replace a credential's secret. The credential id and the instance id stay the same; the version goes up by one; every server drops cached keys for it at once.",
			Actions:     admin, Checks: onInstance,
			Route: &Route{Method: http.MethodPost, Path: credentialPath + "/rotate", Body: RequiredBody, Hide: true, Example: `{"secret":{"token":"n3w-s3cr3t"}}`}},
			func(s *Service, ctx context.Context, in CredentialRotation) (Credential, error) {
				defer wipe(in.Secret)
				if err := s.credentialUnder(ctx, CredentialRef{CredentialID: in.CredentialID, InstanceID: in.InstanceID}); err != nil {
					return Credential{}, err
				}
				return s.RotateCredential(ctx, in.RotateInput)
			}),
		state(ToolCredentialRevoke, "Revoke a credential: immediate and final. The very next invocation of its instance fails with credential_revoked, on every server.", "Revoke credential", "revoke", true, (*Service).RevokeCredential),
		state(ToolCredentialDisable, "Disable a credential until it is enabled again; invocations fail with credential_disabled meanwhile.", "Disable credential", "disable", false, (*Service).DisableCredential),
		state(ToolCredentialEnable, "Enable a disabled credential.", "Enable credential", "enable", false, (*Service).EnableCredential),
		op(Entry{Name: ToolCredentialList, Hints: readOnly("List credentials"),
			Description: "List an instance's credentials (metadata only: kind, state, version, field names, key id, dates).",
			Actions:     admin, Checks: onInstance, Route: &Route{Method: http.MethodGet, Path: credentialsPath, Hide: true}},
			func(s *Service, ctx context.Context, in InstanceRef) (CredentialList, error) {
				list, err := s.ListCredentials(ctx, in.InstanceID)
				return CredentialList{Credentials: nonNil(list)}, err
			}),
		op(Entry{Name: ToolCredentialGet, Description: "Get one credential's metadata (never its secret).", Hints: readOnly("Get credential"),
			Actions: admin, Checks: onInstance, Route: &Route{Method: http.MethodGet, Path: credentialPath, Hide: true}},
			func(s *Service, ctx context.Context, in CredentialRef) (Credential, error) {
				c, err := s.GetCredential(ctx, in.CredentialID)
				if err == nil && in.InstanceID != "" {
					err = notUnder(c, in.InstanceID)
				}
				return c, err
			}),
	}
}

func runEntries() []*Entry {
	return []*Entry{
		op(Entry{Name: ToolRunList, Hints: readOnly("List runs"),
			Description: "List run history, newest first, one page at a time: every run of an instance you hold any right on (with instance_id), or your own runs (without).",
			Actions:     anyRight, RefuseAs: authz.ActionRead, Checks: onRunInstance,
			Route: &Route{Method: http.MethodGet, Path: "/v1/connector-runs", Query: []string{"instance_id", "task_id", "status", "cursor", "limit"}}},
			(*Service).ListRunPage),
		op(Entry{Name: ToolRunGet, Hints: readOnly("Get run"),
			Description: "Get one run: status (pending, running, succeeded, failed, canceled), error, timing and — for async and idempotent runs — the result.",
			Actions:     anyRight, RefuseAs: authz.ActionRead, Checks: onRunInstance,
			Route: &Route{Method: http.MethodGet, Path: "/v1/connector-runs/{run_id}", Hide: true}},
			func(s *Service, ctx context.Context, in RunRef) (Run, error) { return s.GetRun(ctx, in.RunID) }),
		op(Entry{Name: ToolRunCancel, Hints: mutating("Cancel run", false, true),
			Description: "Ask for a pending or running async run you started (or any, with connector.admin on its instance) to stop. The server running it records what happened: canceled, or the outcome it had already reached (poll connector.run.get). Synchronous runs cannot be canceled.",
			Actions:     anyRight, RefuseAs: authz.ActionAdmin, Checks: "your own run, or connector.admin on its instance",
			Route: &Route{Method: http.MethodPost, Path: "/v1/connector-runs/{run_id}/cancel", Body: OptionalBody, Hide: true, Example: "{}"}},
			func(s *Service, ctx context.Context, in RunRef) (Run, error) { return s.CancelRun(ctx, in.RunID) }),
	}
}

func serverEntries() []*Entry {
	catalogAdmin := func(e Entry) Entry {
		e.Actions, e.Resource, e.Checks = admin, authz.ResourceCatalog, "connector.admin on catalog"
		return e
	}
	doneStatus := func(out any) int {
		if out.(Server).Done {
			return http.StatusCreated
		}
		return http.StatusOK
	}
	return []*Entry{
		op(Entry{Name: ToolServerList, Hints: readOnly("List MCP servers"),
			Description: "List the MCP servers added as connector types (mcp-<name>): where each is, and its tools as reviewed, each an operation with its kind and the hash its definition is pinned by.",
			Actions:     []string{authz.ActionCatalogRead}, Resource: authz.ResourceCatalog, Checks: "connector.catalog.read on catalog",
			Route: &Route{Method: http.MethodGet, Path: "/v1/mcp-servers"}},
			func(s *Service, ctx context.Context, _ NoInput) (ServerList, error) {
				out, err := s.ListServers(ctx)
				return ServerList{Servers: nonNil(out)}, err
			}),
		op(catalogAdmin(Entry{Name: ToolServerAdd, Hints: mutating("Add an MCP server", false, false),
			Description: "Add an existing MCP server as connector type mcp-<name> (administrators): a remote one by url (streamable HTTP, or sse), a local one from npm (package, pinned, scripts off) or a program (command), both run on stdio in a sandbox. Its tools are listed and each becomes an operation <name>.<tool>, read-kind only when the tool says readOnlyHint (read_tools/send_tools override), its definition pinned by hash. With review_only the tools are shown and nothing changes. The type is served at once on this server. 201 when added, 200 for a review.",
			Route: &Route{Method: http.MethodPost, Path: "/v1/mcp-servers", Body: RequiredBody, Status: doneStatus,
				Example: `{"name":"docs","url":"https://mcp.example.com/mcp","headers":{"Authorization":"Bearer <listing token>"},"review_only":true}`}}),
			(*Service).AddServer),
		op(Entry{Name: ToolServerApprove, Hints: mutating("Approve an MCP server's tools", false, true),
			Description: "List an added MCP server's tools again and pin them as they are now (the catalog's administrators, or whoever administers every instance of the server, since an approval binds them all): what changed, came and went is shown, and a tool it changed, refused until now, may be called again; a new tool appears. With review_only nothing changes.",
			// (Seen by whoever administers anything: the use case decides.)
			Actions: admin, Checks: "connector.admin on catalog, or on every instance of the server",
			Route: &Route{Method: http.MethodPost, Path: "/v1/mcp-servers/{name}/approval", Body: OptionalBody, Example: `{"review_only":true}`}},
			(*Service).ApproveServer),
		op(catalogAdmin(Entry{Name: ToolServerRemove, Hints: mutating("Remove an MCP server", true, true),
			Description: "Remove an added MCP server and its connector type (administrators); a server with live instances is refused until they are uninstalled.",
			Route:       &Route{Method: http.MethodDelete, Path: "/v1/mcp-servers/{name}", Body: NoBody}}),
			(*Service).RemoveServer),
	}
}

func policyEntries() []*Entry {
	policy := func(e Entry) Entry {
		e.Actions, e.Resource, e.Checks = []string{authz.ActionPolicyAdmin}, authz.ResourcePolicy, "connector.policy.admin on policy"
		return e
	}
	add := func(name, description, title, effect string) *Entry {
		return op(policy(Entry{Name: name, Description: description, Hints: mutating(title, false, true), Surfaces: OnMCP}),
			func(s *Service, ctx context.Context, in RuleInput) (RuleChange, error) {
				return s.ChangeRule(ctx, name, in.rule(effect), false)
			})
	}
	return []*Entry{
		op(policy(Entry{Name: ToolPolicyList, Description: "List policy rules (administrators).", Hints: readOnly("List policy rules"),
			Route: &Route{Method: http.MethodGet, Path: "/v1/policies", Query: []string{"subject"}}}),
			func(s *Service, ctx context.Context, in PolicyListInput) (RuleList, error) {
				rules, err := s.ListRules(ctx, in.Subject)
				return RuleList{Rules: nonNil(rules)}, err
			}),
		add(ToolPolicyAllow, "Add an allow rule (administrators). Default deny: nothing is allowed until a rule says so.", "Allow by policy", authz.EffectAllow),
		add(ToolPolicyDeny, "Add a deny rule (administrators). A matching deny beats every allow.", "Deny by policy", authz.EffectDeny),
		op(policy(Entry{Name: ToolPolicyAdd, Surfaces: OnREST, Hints: mutating("Add a policy rule", false, true),
			Description: "Add an allow rule, or a deny rule with effect deny (administrators); recorded as connector.policy.allow or connector.policy.deny. 201 when the rule is new, 200 when it already existed.",
			Route: &Route{Method: http.MethodPost, Path: "/v1/policies", Body: RequiredBody, Example: ruleExample, Status: func(out any) int {
				if out.(RuleChange).Changed {
					return http.StatusCreated
				}
				return http.StatusOK
			}}}),
			func(s *Service, ctx context.Context, in RuleEffectInput) (RuleChange, error) {
				tool := ToolPolicyAllow
				if in.Effect == authz.EffectDeny {
					tool = ToolPolicyDeny
				}
				return s.ChangeRule(ctx, tool, in.rule(in.Effect), false)
			}),
		op(policy(Entry{Name: ToolPolicyRemove, Description: "Remove a policy rule (administrators).", Hints: mutating("Remove policy rule", true, true),
			Route: &Route{Method: http.MethodDelete, Path: "/v1/policies", Query: []string{"subject", "resource", "action", "cond", "effect"}, Body: OptionalBody, Example: ruleExample}}),
			func(s *Service, ctx context.Context, in RuleEffectInput) (RuleChange, error) {
				return s.ChangeRule(ctx, ToolPolicyRemove, in.rule(in.Effect), true)
			}),
		op(policy(Entry{Name: ToolPolicyExplain, Description: "Explain how policy decides a request (administrators): allowed or not, the rule that decided, and the policy version.", Hints: readOnly("Explain a policy decision"),
			Route: &Route{Method: http.MethodPost, Path: "/v1/policies/explain", Body: RequiredBody,
				Example: `{"subject":"user:0b7f4a52-3c1e-4d0a-9a6b-2f7c1e5d8a90","action":"connector.read","resource":"connectors/user:0b7f4a52-3c1e-4d0a-9a6b-2f7c1e5d8a90/echo/5a9cfb34-f1a1-403a-8124-1a41295fdba2/echo.read","task":{"task_id":"89916736-da0c-4075-8ff9-e168d1d01ebd"}}`}}),
			(*Service).Explain),
	}
}

func tokenEntries() []*Entry {
	return []*Entry{
		op(Entry{Name: ToolTokenMint, Hints: mutating("Mint a task-bound token", false, false),
			Description: "Mint a short-lived token bound to a task context (orchestrators, with connector.token.mint on tokens/<user>): every call made with it runs for that task — it may add the fields left open, never change one — so policy conditions marked from=token can rely on them. The token is shown once.",
			Actions:     []string{authz.ActionTokenMint}, Resource: "tokens/**", Checks: "connector.token.mint on tokens/<user>",
			Route: &Route{Method: http.MethodPost, Path: "/v1/tokens", Body: RequiredBody, Created: true,
				Example: `{"task":{"task_id":"89916736-da0c-4075-8ff9-e168d1d01ebd","agent_id":"planner-1"},"ttl_seconds":3600,"name":"planner"}`}},
			(*Service).MintToken),
	}
}

func auditEntries() []*Entry {
	auditing := func(e Entry) Entry {
		e.Surfaces, e.Actions, e.RefuseAs = OnREST, []string{authz.ActionAuditRead, authz.ActionAdmin}, authz.ActionAuditRead
		e.Checks = "connector.audit.read on audit (every row), or connector.admin on the instances whose rows are read"
		return e
	}
	return []*Entry{
		op(auditing(Entry{Name: ToolAuditList, Hints: readOnly("List audit events"),
			Description: "List audit events in chain order, one page at a time (?format=jsonl streams every page): auditors (connector.audit.read on audit) see every row, an instance's administrators the rows of the instances they administer.",
			Route: &Route{Method: http.MethodGet, Path: "/v1/audit-events", Pages: true,
				Query: []string{"subject", "instance_id", "task_id", "tool", "decision", "status", "since", "until", "cursor", "limit"}}}),
			(*Service).ListAuditPage),
		op(auditing(Entry{Name: ToolAuditVerify, Hints: readOnly("Verify the audit chain"),
			Description: "Walk the audit trail's hash chains (one per writer) and report the first broken link, if any (auditors).",
			Route:       &Route{Method: http.MethodGet, Path: "/v1/audit-events/verification"}}),
			func(s *Service, ctx context.Context, _ NoInput) (AuditVerification, error) {
				rep, err := s.VerifyAudit(ctx)
				return AuditVerification{OK: rep.OK(), Report: rep}, err
			}),
	}
}

// wipe drops the plaintext secret strings from decoded input. Go strings
// cannot be zeroed; dropping the references is the best available.
func wipe(m map[string]string) {
	for k := range m {
		delete(m, k)
	}
}

// credentialUnder refuses, as not found, a credential named under an
// instance it does not belong to (the REST API reaches a credential only
// under its own instance's URL). It reads the credential through
// GetCredential, its own decided and audited read.
func (s *Service) credentialUnder(ctx context.Context, ref CredentialRef) error {
	if ref.InstanceID == "" {
		return nil
	}
	c, err := s.GetCredential(ctx, ref.CredentialID)
	if err != nil {
		return err
	}
	return notUnder(c, ref.InstanceID)
}

func notUnder(c Credential, instance string) error {
	if !strings.EqualFold(string(c.InstanceID), instance) {
		return fault.New(fault.NotFound, "credential %s not found on instance %s", c.ID, instance)
	}
	return nil
}
