package mcp

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/core"
)

// The argument types every tool's input schema is generated from.
type (
	// taskArg is the task_id every tool accepts.
	taskArg struct {
		TaskID string `json:"task_id,omitempty" jsonschema:"Task this call runs for (also accepted in _meta[\"connec.dev/task\"])." schema:"format=uuid"`
	}
	instanceArgs struct {
		InstanceID string `json:"instance_id" jsonschema:"Connector instance id." schema:"format=uuid"`
		taskArg
	}
	credentialArgs struct {
		CredentialID string `json:"credential_id" jsonschema:"Credential id." schema:"format=uuid"`
		taskArg
	}
	runArgs struct {
		RunID string `json:"run_id" jsonschema:"Run id (from connector.op.invoke)." schema:"format=uuid"`
		taskArg
	}
	installArgs struct {
		core.InstallInput
		taskArg
	}
	listArgs struct {
		core.ListInput
		taskArg
	}
	invokeArgs struct {
		core.InvokeInput
		taskArg
	}
	createCredentialArgs struct {
		core.CredentialInput
		taskArg
	}
	rotateCredentialArgs struct {
		core.RotateInput
		taskArg
	}
	policyListArgs struct {
		Subject string `json:"subject,omitempty" jsonschema:"Only rules of this subject (user:<uuid> or group:<uuid>)."`
		taskArg
	}
	ruleArgs struct {
		Subject  string `json:"subject" jsonschema:"user:<uuid> or group:<uuid>."`
		Resource string `json:"resource" jsonschema:"Resource pattern: catalog | policy | audit | network/private | connectors/<owner>[/<type>/<instance-id>[/<operation>]], ids as lower-case uuids; * within a segment, a trailing /** for everything below. A pattern that can match nothing is refused." schema:"minLength=1,maxLength=512"`
		Action   string `json:"action" schema:"enum=@rule-actions"`
		Cond     string `json:"cond,omitempty" jsonschema:"Task-context condition: project=<uuid>; agent=<id>|<id>; task=required (joined with ;)." schema:"maxLength=512"`
		taskArg
	}
	removeRuleArgs struct {
		ruleArgs
		Effect string `json:"effect,omitempty" jsonschema:"Effect of the rule to remove (default allow)." schema:"enum=allow|deny"`
	}
	explainArgs struct {
		core.ExplainInput
		taskArg
	}
	mintArgs struct {
		core.MintInput
		taskArg
	}
)

// The result types of list tools: an object, as MCP structured content must be.
type (
	catalogResult struct {
		Types []connectors.TypeSpec `json:"types" schema:"type=array"`
	}
	instancesResult struct {
		Instances []core.Instance `json:"instances" schema:"type=array"`
	}
	credentialsResult struct {
		Credentials []core.Credential `json:"credentials" schema:"type=array"`
	}
	runsResult struct {
		Runs []core.Run `json:"runs" schema:"type=array"`
	}
	rulesResult struct {
		Rules []authz.Rule `json:"rules" schema:"type=array"`
	}
)

// nonNil keeps an empty list an empty JSON array, as the schemas say.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

var anyRight = []string{authz.ActionRead, authz.ActionSend, authz.ActionAdmin}

// Inventory returns every tool connec serves.
func Inventory() []Tool {
	tools := instanceTools()
	tools = append(tools, credentialTools()...)
	tools = append(tools, runTools()...)
	tools = append(tools, policyTools()...)
	return append(tools, tokenTools()...)
}

func tokenTools() []Tool {
	return []Tool{
		tool(about{name: core.ToolTokenMint, annotations: mutating("Mint a task-bound token", false, false),
			description: "Mint a short-lived token bound to a task context (orchestrators, with connector.token.mint on tokens/<user>): every call made with it runs for that task — it may add the fields left open, never change one — so policy conditions marked from=token can rely on them. The token is shown once.",
			actions:     []string{authz.ActionTokenMint}, refuseAs: authz.ActionTokenMint, resource: "tokens/**"},
			func(ctx context.Context, svc *core.Service, a mintArgs) (core.MintedToken, error) {
				return svc.MintToken(ctx, a.MintInput)
			}),
	}
}

func instanceTools() []Tool {
	admin := func(name, description, title string, destructive bool, fn func(*core.Service, context.Context, string) (core.Instance, error)) Tool {
		return tool(about{name: name, description: description, annotations: mutating(title, destructive, true),
			actions: []string{authz.ActionAdmin}, refuseAs: authz.ActionAdmin},
			func(ctx context.Context, svc *core.Service, a instanceArgs) (core.Instance, error) {
				return fn(svc, ctx, a.InstanceID)
			})
	}
	return []Tool{
		tool(about{name: core.ToolCatalogList, annotations: readOnly("List connector types"),
			description: "List the connector types this server supports, with their operations, operation kinds (read|send|admin), input/output schemas, config schema, accepted credential kinds and egress hosts.",
			actions:     []string{authz.ActionCatalogRead}, refuseAs: authz.ActionCatalogRead, resource: authz.ResourceCatalog},
			func(ctx context.Context, svc *core.Service, _ taskArg) (catalogResult, error) {
				types, err := svc.ListCatalog(ctx)
				return catalogResult{Types: nonNil(types)}, err
			}),
		tool(about{name: core.ToolInstanceInstall, annotations: mutating("Install connector instance", false, false),
			description: "Install a connector instance of a catalog type for an owner (yourself by default, or a group where policy allows), optionally scoped to a project. The config is validated against the type's config schema. New instances are disabled unless enable is true.",
			actions:     []string{authz.ActionAdmin}, refuseAs: authz.ActionAdmin},
			func(ctx context.Context, svc *core.Service, a installArgs) (core.Instance, error) {
				return svc.Install(ctx, a.InstallInput)
			}),
		admin(core.ToolInstanceEnable, "Enable a connector instance so its operations can be invoked.", "Enable connector instance", false, (*core.Service).Enable),
		admin(core.ToolInstanceDisable, "Disable a connector instance; invocations are refused until it is enabled again.", "Disable connector instance", false, (*core.Service).Disable),
		admin(core.ToolInstanceUninstall, "Uninstall a connector instance for good: its credentials are revoked and it stays only as a tombstone for audit; its id is never reused.", "Uninstall connector instance", true, (*core.Service).Uninstall),
		tool(about{name: core.ToolInstanceList, annotations: readOnly("List connector instances"),
			description: "List the connector instances you hold any right on, optionally filtered by owner, project or type.",
			actions:     anyRight, refuseAs: authz.ActionRead},
			func(ctx context.Context, svc *core.Service, a listArgs) (instancesResult, error) {
				list, err := svc.List(ctx, a.ListInput)
				return instancesResult{Instances: nonNil(list)}, err
			}),
		tool(about{name: core.ToolInstanceGet, description: "Get one connector instance.", annotations: readOnly("Get connector instance"),
			actions: anyRight, refuseAs: authz.ActionRead},
			func(ctx context.Context, svc *core.Service, a instanceArgs) (core.Instance, error) {
				return svc.Get(ctx, a.InstanceID)
			}),
		tool(about{name: core.ToolOpInvoke,
			annotations: mcp.ToolAnnotation{Title: "Invoke connector operation", ReadOnlyHint: mcp.ToBoolPtr(false), OpenWorldHint: mcp.ToBoolPtr(true)},
			description: "Invoke one operation of a connector instance. Policy is checked for the operation's kind (connector.read or connector.send) on that instance and operation, with your task context. Arguments are validated against the operation's input schema; the result against its output schema. Credentials are never returned.",
			actions:     []string{authz.ActionRead, authz.ActionSend}, refuseAs: authz.ActionRead},
			func(ctx context.Context, svc *core.Service, a invokeArgs) (core.InvokeResult, error) {
				return svc.Invoke(ctx, a.InvokeInput)
			}),
	}
}

func credentialTools() []Tool {
	state := func(name, description, title string, destructive bool, fn func(*core.Service, context.Context, string) (core.Credential, error)) Tool {
		return tool(about{name: name, description: description, annotations: mutating(title, destructive, true),
			actions: []string{authz.ActionAdmin}, refuseAs: authz.ActionAdmin},
			func(ctx context.Context, svc *core.Service, a credentialArgs) (core.Credential, error) {
				return fn(svc, ctx, a.CredentialID)
			})
	}
	return []Tool{
		tool(about{name: core.ToolCredentialCreate, annotations: mutating("Create credential", false, false),
			description: "Store a credential for a connector instance, sealed (envelope encryption) so that only the executor can open it. The secret is write-only: no tool ever returns it. An instance has at most one live credential; rotate it to change the secret.",
			actions:     []string{authz.ActionAdmin}, refuseAs: authz.ActionAdmin},
			func(ctx context.Context, svc *core.Service, a createCredentialArgs) (core.Credential, error) {
				defer wipe(a.Secret)
				return svc.CreateCredential(ctx, a.CredentialInput)
			}),
		tool(about{name: core.ToolCredentialRotate, annotations: mutating("Rotate credential", false, false),
			description: "Replace a credential's secret. The credential id and the instance id stay the same; the version goes up by one; every server drops cached keys for it at once.",
			actions:     []string{authz.ActionAdmin}, refuseAs: authz.ActionAdmin},
			func(ctx context.Context, svc *core.Service, a rotateCredentialArgs) (core.Credential, error) {
				defer wipe(a.Secret)
				return svc.RotateCredential(ctx, a.RotateInput)
			}),
		state(core.ToolCredentialRevoke, "Revoke a credential: immediate and final. The very next invocation of its instance fails with credential_revoked, on every server.", "Revoke credential", true, (*core.Service).RevokeCredential),
		state(core.ToolCredentialDisable, "Disable a credential until it is enabled again; invocations fail with credential_disabled meanwhile.", "Disable credential", false, (*core.Service).DisableCredential),
		state(core.ToolCredentialEnable, "Enable a disabled credential.", "Enable credential", false, (*core.Service).EnableCredential),
		tool(about{name: core.ToolCredentialList, annotations: readOnly("List credentials"),
			description: "List an instance's credentials (metadata only: kind, state, version, field names, key id, dates).",
			actions:     []string{authz.ActionAdmin}, refuseAs: authz.ActionAdmin},
			func(ctx context.Context, svc *core.Service, a instanceArgs) (credentialsResult, error) {
				list, err := svc.ListCredentials(ctx, a.InstanceID)
				return credentialsResult{Credentials: nonNil(list)}, err
			}),
		tool(about{name: core.ToolCredentialGet, description: "Get one credential's metadata (never its secret).", annotations: readOnly("Get credential"),
			actions: []string{authz.ActionAdmin}, refuseAs: authz.ActionAdmin},
			func(ctx context.Context, svc *core.Service, a credentialArgs) (core.Credential, error) {
				return svc.GetCredential(ctx, a.CredentialID)
			}),
	}
}

// wipe drops the plaintext secret strings from the decoded arguments map.
// Go strings cannot be zeroed; dropping references is the best available.
func wipe(m map[string]string) {
	for k := range m {
		delete(m, k)
	}
}

func runTools() []Tool {
	return []Tool{
		tool(about{name: core.ToolRunList, annotations: readOnly("List runs"),
			description: "List run history, newest first: every run of an instance you hold any right on (with instance_id), or your own runs (without).",
			actions:     anyRight, refuseAs: authz.ActionRead},
			func(ctx context.Context, svc *core.Service, a core.RunFilter) (runsResult, error) {
				// The task filter is the call's task context, from _meta or task_id.
				a.TaskID = callctx.TaskFrom(ctx).TaskID
				runs, err := svc.ListRuns(ctx, a)
				return runsResult{Runs: nonNil(runs)}, err
			}),
		tool(about{name: core.ToolRunGet, annotations: readOnly("Get run"),
			description: "Get one run: status (pending, running, succeeded, failed, canceled), error, timing and — for async and idempotent runs — the result.",
			actions:     anyRight, refuseAs: authz.ActionRead},
			func(ctx context.Context, svc *core.Service, a runArgs) (core.Run, error) {
				return svc.GetRun(ctx, a.RunID)
			}),
		tool(about{name: core.ToolRunCancel, annotations: mutating("Cancel run", false, true),
			description: "Ask for a pending or running async run you started (or any, with connector.admin on its instance) to stop. The server running it records what happened: canceled, or the outcome it had already reached (poll connector.run.get). Synchronous runs cannot be canceled.",
			actions:     anyRight, refuseAs: authz.ActionAdmin},
			func(ctx context.Context, svc *core.Service, a runArgs) (core.Run, error) {
				return svc.CancelRun(ctx, a.RunID)
			}),
	}
}

func policyTools() []Tool {
	admin := func(name, description string, ann mcp.ToolAnnotation) about {
		return about{name: name, description: description, annotations: ann,
			actions: []string{authz.ActionPolicyAdmin}, refuseAs: authz.ActionPolicyAdmin, resource: authz.ResourcePolicy}
	}
	add := func(name, description, title, effect string) Tool {
		return tool(admin(name, description, mutating(title, false, true)),
			func(ctx context.Context, svc *core.Service, a ruleArgs) (core.RuleChange, error) {
				return svc.ChangeRule(ctx, name, a.rule(effect), false)
			})
	}
	return []Tool{
		tool(admin(core.ToolPolicyList, "List policy rules (administrators).", readOnly("List policy rules")),
			func(ctx context.Context, svc *core.Service, a policyListArgs) (rulesResult, error) {
				rules, err := svc.ListRules(ctx, a.Subject)
				return rulesResult{Rules: nonNil(rules)}, err
			}),
		add(core.ToolPolicyAllow, "Add an allow rule (administrators). Default deny: nothing is allowed until a rule says so.", "Allow by policy", authz.EffectAllow),
		add(core.ToolPolicyDeny, "Add a deny rule (administrators). A matching deny beats every allow.", "Deny by policy", authz.EffectDeny),
		tool(admin(core.ToolPolicyRemove, "Remove a policy rule (administrators).", mutating("Remove policy rule", true, true)),
			func(ctx context.Context, svc *core.Service, a removeRuleArgs) (core.RuleChange, error) {
				effect := a.Effect
				if effect == "" {
					effect = authz.EffectAllow
				}
				return svc.ChangeRule(ctx, core.ToolPolicyRemove, a.rule(effect), true)
			}),
		tool(admin(core.ToolPolicyExplain, "Explain how policy decides a request (administrators): allowed or not, the rule that decided, and the policy version.", readOnly("Explain a policy decision")),
			func(ctx context.Context, svc *core.Service, a explainArgs) (core.Explanation, error) {
				return svc.Explain(ctx, a.ExplainInput)
			}),
	}
}

func (a ruleArgs) rule(effect string) authz.Rule {
	return authz.Rule{Subject: a.Subject, Resource: a.Resource, Action: a.Action, Cond: a.Cond, Effect: effect}
}
