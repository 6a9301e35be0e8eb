package core

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/db"
)

// InstanceTool is one operation of one enabled connector instance, offered
// to a subject as a tool of its own: calling it is connector.op.invoke on
// that instance and operation (same decision, audit row, run row,
// idempotency and limits); the transports translate.
//
// Its name is <handle>.<operation> for the subject's own instances and
// <owner name>.<handle>.<operation> for the others (a group's, or another
// user's the subject was granted): a handle is unique only among one
// owner's instances, and owner names are unique and tool-name safe, so
// every name a subject sees is unique and does not change while the
// handle, the owner's name and the operation stay.
type InstanceTool struct {
	Name        string
	InstanceID  InstanceID
	Handle      string
	Owner       callctx.Subject
	OwnerName   string
	Type        string
	DisplayName string
	ProjectID   string
	Op          connectors.Operation
}

// InstanceTools returns the caller's instance tools, sorted by name: every
// operation of every enabled instance whose action (connector.read or
// connector.send, from the operation's kind) some allow rule could grant
// the caller on that operation. Like management tools' visibility it
// ignores deny rules and conditions (the task context is the call's): the
// call decides.
func (s *Service) InstanceTools(ctx context.Context) ([]InstanceTool, error) {
	p, ok := callctx.PrincipalFrom(ctx)
	if !ok || s.toolLists == nil {
		return s.instanceTools(ctx, nil)
	}
	key := toolListKey(p)
	for range 2 {
		version := s.authz.Version()
		l, err := s.toolLists.Load(ctx, key, func(ctx context.Context) (toolList, error) {
			tools, err := s.instanceTools(ctx, nil)
			return toolList{policy: version, tools: tools}, err
		})
		if err != nil || l.policy == s.authz.Version() {
			return l.tools, err
		}
		s.toolLists.Invalidate(key) // decided under a policy since replaced
	}
	return s.instanceTools(ctx, nil)
}

// toolList is a caller's instance tools, decided under policy version
// policy. Shared by the calls that read it: read-only.
type toolList struct {
	policy int64
	tools  []InstanceTool
}

// toolListsMax bounds the callers whose instance tools are kept.
const toolListsMax = 1000

// toolListKey is who a list is for: the subject and its groups.
func toolListKey(p callctx.Principal) string {
	var b strings.Builder
	b.WriteString(string(p.Subject))
	for _, g := range p.Groups {
		b.WriteString("|" + string(g))
	}
	return b.String()
}

// InstanceToolsWithHandles is InstanceTools narrowed to instances with one
// of handles: what a call needs to find its tool (every handle its name
// could hold) without deciding every instance's operations.
func (s *Service) InstanceToolsWithHandles(ctx context.Context, handles []string) ([]InstanceTool, error) {
	if s.bareToolNames {
		// A bare name holds no handle, and is bare only among all the
		// caller's tools.
		return s.InstanceTools(ctx)
	}
	if len(handles) == 0 {
		return nil, nil
	}
	return s.instanceTools(ctx, handles)
}

func (s *Service) instanceTools(ctx context.Context, handles []string) ([]InstanceTool, error) {
	p, ok := callctx.PrincipalFrom(ctx)
	if !ok {
		return nil, nil
	}
	rows, err := listEnabledWithOwners(ctx, s.pool, handles)
	if err != nil {
		return nil, fault.Wrap(fault.Unavailable, err, "instances cannot be listed right now")
	}
	var out []InstanceTool
	for _, r := range rows {
		ct, ok := s.reg.Type(r.Type)
		if !ok {
			continue // a type this binary does not serve
		}
		for _, op := range ct.Spec.Operations {
			allowed, err := s.authz.MayAttemptOn(ctx, p.Subject, authz.OperationResource(r.Owner, r.Type, r.ID.UUID(), op.Name), op.Kind.Action())
			if err != nil {
				return nil, fault.Wrap(fault.Unavailable, err, "policy cannot be evaluated right now")
			}
			if !allowed {
				continue
			}
			name := r.Handle + "." + op.Name
			if r.Owner != p.Subject {
				name = r.ownerName + "." + name
			}
			out = append(out, InstanceTool{Name: name, InstanceID: r.ID, Handle: r.Handle, Owner: r.Owner, OwnerName: r.ownerName,
				Type: r.Type, DisplayName: r.DisplayName, ProjectID: r.ProjectID, Op: op})
		}
	}
	if s.bareToolNames {
		bare(out)
	}
	slices.SortFunc(out, func(a, b InstanceTool) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// cachedTools returns the caller's instance tools if they are kept and
// current, without computing them.
func (s *Service) cachedTools(ctx context.Context) ([]InstanceTool, bool) {
	p, ok := callctx.PrincipalFrom(ctx)
	if !ok || s.toolLists == nil {
		return nil, false
	}
	l, ok := s.toolLists.Peek(toolListKey(p))
	if !ok || l.policy != s.authz.Version() {
		return nil, false
	}
	return l.tools, true
}

// HandlesIn returns every handle a tool name could hold, its parts
// separated by sep ("." or "_"): each part but the last (an operation's
// name has a dot; a handle has neither separator) that is a valid handle.
func HandlesIn(name, sep string) []string {
	parts := strings.Split(name, sep)
	var out []string
	for _, p := range parts[:len(parts)-1] {
		if validHandle(p) == nil && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// WithBareInstanceToolNames names instance tools by their operation alone,
// without its type's namespace (for an added MCP server: the server's own
// tool names), wherever that name is the caller's only tool of the name;
// the others keep their full names. For a server fronting one MCP server
// as if it were that server (the conformance suite runs so).
func WithBareInstanceToolNames() Option { return func(s *Service) { s.bareToolNames = true } }

// bare gives each tool its operation's name without the type's namespace,
// where no other tool of the list would have that name.
func bare(tools []InstanceTool) {
	count := map[string]int{}
	short := func(t InstanceTool) string {
		_, rest, _ := strings.Cut(t.Op.Name, ".")
		return rest
	}
	for _, t := range tools {
		count[short(t)]++
	}
	for _, t := range tools {
		count[t.Name]++ // a full name a bare one would shadow
	}
	for i, t := range tools {
		if b := short(t); count[b] == 1 {
			tools[i].Name = b
		}
	}
}

// Call is what a call of t with args (and the idempotency key the caller
// gave in _meta, as sent: invoke's input schema judges it) runs as: the
// catalog entry (connector.op.invoke) and its input, t's instance and
// operation with args.
func (t InstanceTool) Call(args, idempotencyKey json.RawMessage) (entry string, input json.RawMessage) {
	in := map[string]any{"instance_id": t.InstanceID, "operation": t.Op.Name, "arguments": args}
	if len(idempotencyKey) > 0 {
		in["idempotency_key"] = idempotencyKey
	}
	input, _ = json.Marshal(in)
	return ToolOpInvoke, input
}

// IdempotencyMetaKey is the key under an instance tool call's _meta that
// carries its idempotency key (connector.op.invoke's idempotency_key): the
// arguments are the operation's own.
const IdempotencyMetaKey = "connec.dev/idempotency_key"

// ownedInstance is an enabled instance and its owner's name.
type ownedInstance struct {
	Instance
	ownerName string
}

// listEnabledWithOwners reads every enabled instance (with one of handles,
// unless nil) with its owner's name.
func listEnabledWithOwners(ctx context.Context, q db.Querier, handles []string) ([]ownedInstance, error) {
	rows, err := q.Query(ctx, `SELECT `+instanceCols+`, owner_name FROM (
  SELECT i.*, COALESCE(u.name, g.name, '') AS owner_name
  FROM connector_instances i
    LEFT JOIN users u ON i.owner = 'user:' || u.id::text
    LEFT JOIN groups g ON i.owner = 'group:' || g.id::text
  WHERE i.state = 'enabled' AND ($1::text[] IS NULL OR i.handle = ANY($1))) x
ORDER BY owner, handle`, handles)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (ownedInstance, error) {
		var o ownedInstance
		var err error
		o.Instance, err = scanInstance(row, &o.ownerName)
		return o, err
	})
}

// InstanceToolNamed returns the caller's instance tool called name.
func (s *Service) InstanceToolNamed(ctx context.Context, name string) (InstanceTool, bool, error) {
	var tools []InstanceTool
	var err error
	if l, ok := s.cachedTools(ctx); ok {
		tools = l
	} else {
		tools, err = s.InstanceToolsWithHandles(ctx, HandlesIn(name, "."))
	}
	if err != nil {
		return InstanceTool{}, false, err
	}
	i, ok := slices.BinarySearchFunc(tools, name, func(t InstanceTool, n string) int { return strings.Compare(t.Name, n) })
	if !ok {
		return InstanceTool{}, false, nil
	}
	return tools[i], true, nil
}

type progressKey struct{}

// WithProgress asks for the progress of the operation ctx's call invokes:
// fn receives what its driver reports (messages redacted).
func WithProgress(ctx context.Context, fn func(progress, total float64, message string)) context.Context {
	return context.WithValue(ctx, progressKey{}, connectors.Progress(fn))
}

type logKey struct{}

// WithLog passes the log messages the operation ctx's call invokes sends
// to fn (redacted).
func WithLog(ctx context.Context, fn func(level, logger string, data json.RawMessage)) context.Context {
	return context.WithValue(ctx, logKey{}, connectors.Log(fn))
}

type elicitKey struct{}

// WithElicit lets the operation ctx's call invokes ask the caller's user:
// fn takes an elicitation/create request's params (redacted) and returns
// the user's answer.
func WithElicit(ctx context.Context, fn func(ctx context.Context, request json.RawMessage) (json.RawMessage, error)) context.Context {
	return context.WithValue(ctx, elicitKey{}, connectors.Elicit(fn))
}

type inputRoundKey struct{}

// WithInputRound makes the operation ctx's call invokes a round of a
// multi round-trip call (2026-07-28): the caller's answers (an
// inputResponses object) to what the operation asked before, with the
// operation's state, and whether the caller takes questions back
// (passthrough) rather than being asked within the call.
func WithInputRound(ctx context.Context, answers json.RawMessage, state string, passthrough bool) context.Context {
	return context.WithValue(ctx, inputRoundKey{}, &connectors.InputRound{Responses: answers, State: state, Passthrough: passthrough})
}

type watchKey struct{}

// WithWatch makes ctx's call of a watch operation (connectors.WatchRole)
// report to w while it watches: only such a call may run one.
func WithWatch(ctx context.Context, w *connectors.Watch) context.Context {
	return context.WithValue(ctx, watchKey{}, w)
}

// ElicitOf is the asking function WithElicit put on ctx, if any.
func ElicitOf(ctx context.Context) (connectors.Elicit, bool) {
	e, ok := ctx.Value(elicitKey{}).(connectors.Elicit)
	return e, ok
}

type instanceToolKey struct{}

// AsInstanceTool marks ctx as the call of instance tool t, which a
// transport translated into connector.op.invoke: the call's audit row
// names the tool.
func AsInstanceTool(ctx context.Context, t InstanceTool) context.Context {
	return context.WithValue(ctx, instanceToolKey{}, t)
}

// InstanceToolOf returns the instance tool ctx's call was made as, if any.
func InstanceToolOf(ctx context.Context) (InstanceTool, bool) {
	t, ok := ctx.Value(instanceToolKey{}).(InstanceTool)
	return t, ok
}
