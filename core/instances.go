package core

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/callctx"
	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/egress"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/jsonschema"
	"github.com/connec/connec/vault"
)

// Tool names, as the MCP surface exposes them and audit rows record them.
const (
	ToolCatalogList       = "connector.catalog.list"
	ToolInstanceInstall   = "connector.instance.install"
	ToolInstanceRename    = "connector.instance.rename"
	ToolInstanceEnable    = "connector.instance.enable"
	ToolInstanceDisable   = "connector.instance.disable"
	ToolInstanceUninstall = "connector.instance.uninstall"
	ToolInstanceList      = "connector.instance.list"
	ToolInstanceGet       = "connector.instance.get"
	ToolOpInvoke          = "connector.op.invoke"
)

func parseInstanceID(raw string) (InstanceID, error) {
	u, err := uuid.Parse(raw)
	if err != nil || len(raw) != 36 {
		return "", fault.Invalid("instance_id", "instance_id must be a uuid")
	}
	return InstanceID(u.String()), nil
}

// ListCatalog returns the connector types and their operations.
func (s *Service) ListCatalog(ctx context.Context) ([]connectors.TypeSpec, error) {
	c, err := s.begin(ctx, ToolCatalogList, authz.ActionCatalogRead)
	if err != nil {
		return nil, err
	}
	if err := c.decide(ctx, authz.ResourceCatalog); err != nil {
		return nil, err
	}
	if err := c.ok(ctx); err != nil {
		return nil, err
	}
	return s.reg.Specs(), nil
}

// Install creates a connector instance, disabled unless in.Enable is set.
// Installing for oneself or for a group needs connector.admin on the owner.
func (s *Service) Install(ctx context.Context, in InstallInput) (Instance, error) {
	c, err := s.begin(ctx, ToolInstanceInstall, authz.ActionAdmin)
	if err != nil {
		return Instance{}, err
	}
	owner := c.p.Subject
	if in.Owner != "" {
		if owner, err = callctx.ParseSubject(in.Owner); err != nil {
			return Instance{}, c.invalid(ctx, fault.Invalid("owner", "owner must be user:<uuid> or group:<uuid>"))
		}
	}
	if err := validateInstall(&in); err != nil {
		return Instance{}, c.invalid(ctx, err)
	}
	ct, ok := s.reg.Type(in.Type)
	if !ok {
		return Instance{}, c.invalid(ctx, fault.Invalid("type", "unknown connector type %q (see connector.catalog.list)", in.Type))
	}
	c.ev.ConnectorType = in.Type
	if err := validateAgainst(ct.Config, in.Config, "config"); err != nil {
		return Instance{}, c.invalid(ctx, withoutConfigValues(err, in.Config, ct.Config.Raw()))
	}
	// Reaching private networks is the operator's to grant (checked first,
	// so the row of an allowed install cites the owner decision).
	if s, ok := ct.Driver.(egress.Scoped); ok {
		scope, err := s.EgressScope(in.Config)
		if err != nil {
			return Instance{}, c.invalid(ctx, withoutConfigValues(fault.Invalid("config", "%s", fault.PublicOf(err).Message), in.Config, ct.Config.Raw()))
		}
		if scope.AllowPrivate {
			if err := c.decide(ctx, authz.ResourcePrivateNetwork); err != nil {
				return Instance{}, err
			}
		}
	}
	if err := c.decide(ctx, authz.OwnerResource(owner)); err != nil {
		return Instance{}, err
	}
	state := StateDisabled
	if in.Enable {
		state = StateEnabled
	}
	var out Instance
	err = c.change(ctx, func(tx pgx.Tx) error {
		var err error
		var limits Limits
		if in.Limits != nil {
			limits = *in.Limits
		}
		handle := in.Handle
		if handle == "" {
			handle = handleFrom(in.DisplayName)
		}
		out, err = insertWithHandle(ctx, tx, in.Handle, Instance{Type: in.Type, Handle: handle,
			DisplayName: in.DisplayName, Owner: owner, ProjectID: in.ProjectID, Config: in.Config, Limits: limits, State: state,
			CreatedBy: c.p.Subject})
		if errors.Is(err, fault.ErrNotFound) {
			return fault.Invalid("owner", "owner %s does not exist", owner)
		}
		if err != nil {
			return err
		}
		c.target(out)
		return nil
	})
	s.forget(out.ID)
	return out, err
}

// insertWithHandle inserts in under the handle its caller chose, or — chose
// is empty — under the first of in.Handle (derived from the display name),
// in.Handle-2, in.Handle-3, … that its owner's live instances leave free.
// Each try runs in a savepoint, so a handle taken by a concurrent install
// moves on to the next rather than failing the call.
func insertWithHandle(ctx context.Context, tx pgx.Tx, chose string, in Instance) (Instance, error) {
	base := in.Handle
	for n := 1; ; n++ {
		if chose == "" {
			in.Handle = handleCandidate(base, n)
		}
		var out Instance
		err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
			var err error
			out, err = insertInstance(ctx, sp, in)
			return err
		})
		switch {
		case errors.Is(err, errHandleTaken) && chose != "":
			return Instance{}, fault.New(fault.Conflict, "the owner already has a connector instance with handle %q: choose another", chose)
		case errors.Is(err, errHandleTaken) && n < 100:
			continue
		case errors.Is(err, errHandleTaken):
			return Instance{}, fault.New(fault.Conflict, "the owner's instances take every handle from %q to %q: choose a handle", base, in.Handle)
		}
		return out, err
	}
}

// Rename changes an instance's display name. Its handle stays.
func (s *Service) Rename(ctx context.Context, in RenameInput) (Instance, error) {
	c, err := s.begin(ctx, ToolInstanceRename, authz.ActionAdmin)
	if err != nil {
		return Instance{}, err
	}
	name := strings.TrimSpace(in.DisplayName)
	if name == "" || utf8.RuneCountInString(name) > 200 {
		return Instance{}, c.invalid(ctx, fault.Invalid("display_name", "display_name must be 1 to 200 characters"))
	}
	inst, err := c.lookup(ctx, in.InstanceID, false, s.pool)
	if err != nil {
		return Instance{}, err
	}
	if err := c.decide(ctx, authz.InstanceResource(inst.Owner, inst.Type, inst.ID.UUID())); err != nil {
		return Instance{}, err
	}
	var out Instance
	err = c.change(ctx, func(tx pgx.Tx) error {
		cur, err := getInstance(ctx, tx, inst.ID, true)
		if err != nil {
			return err
		}
		if cur.State == StateUninstalled {
			return fault.New(fault.Conflict, "connector instance %s is uninstalled", inst.ID)
		}
		out, err = renameInstance(ctx, tx, inst.ID, name)
		return err
	})
	s.forget(inst.ID)
	return out, err
}

// withoutConfigValues keeps an instance configuration's values out of an
// error about it, which goes to the caller and into the append-only audit
// row: messages name fields and say what is wrong, and should a value (or
// the user info of a URL) still be in one, it is replaced. Values the
// type's configuration schema itself names (an enum's "header", a field
// name) are vocabulary, not configuration, and stay.
func withoutConfigValues(err error, config, schema json.RawMessage) error {
	var fe *fault.Error
	if !errors.As(err, &fe) {
		return err
	}
	var doc any
	if json.Unmarshal(config, &doc) != nil {
		return err
	}
	var values []string
	var collect func(v any)
	collect = func(v any) {
		switch x := v.(type) {
		case string:
			values = append(values, x)
			if u, err := url.Parse(x); err == nil && u.User != nil {
				p, _ := u.User.Password()
				values = append(values, u.User.String(), u.User.Username(), p)
				// And as written, escapes included.
				if _, rest, ok := strings.Cut(x, "//"); ok {
					if info, _, ok := strings.Cut(rest, "@"); ok {
						_, rawPass, _ := strings.Cut(info, ":")
						values = append(values, info, rawPass)
					}
				}
			}
		case []any:
			for _, e := range x {
				collect(e)
			}
		case map[string]any:
			for _, e := range x {
				collect(e)
			}
		}
	}
	collect(doc)
	// Longest first, so a value inside another goes with it; short values
	// ("tls", "none") are words of the messages themselves.
	slices.SortFunc(values, func(a, b string) int { return len(b) - len(a) })
	scrub := func(s string) string {
		for _, v := range values {
			if len(v) >= 4 && !bytes.Contains(schema, []byte(v)) {
				s = strings.ReplaceAll(s, v, vault.Redacted)
				if q := strconv.Quote(v); len(q) > len(v)+2 {
					s = strings.ReplaceAll(s, q[1:len(q)-1], vault.Redacted)
				}
			}
		}
		return s
	}
	out := *fe
	out.Message = scrub(fe.Message)
	if vs, ok := fe.Details["violations"].([]jsonschema.Violation); ok {
		clean := make([]jsonschema.Violation, len(vs))
		for i, v := range vs {
			clean[i] = jsonschema.Violation{Path: v.Path, Message: scrub(v.Message)}
		}
		out.Details = maps.Clone(fe.Details)
		out.Details["violations"] = clean
	}
	return &out
}

// checkPrivateNetwork refuses to run an instance whose configuration lets
// it reach private networks (allow_private_network) once the grant that
// allowed its install is gone: whoever installed it must still hold
// connector.admin on network/private, decided for this call's task context.
// Checking at install alone would let an instance keep reaching internal
// services after the operator withdrew the right, through disable/enable
// too. The decision is cached per policy version, so this costs a lookup.
func (s *Service) checkPrivateNetwork(ctx context.Context, c *call, ct *connectors.CompiledType, inst Instance) error {
	sc, ok := ct.Driver.(egress.Scoped)
	if !ok {
		return nil
	}
	scope, err := sc.EgressScope(inst.Config)
	if err != nil || !scope.AllowPrivate {
		return nil // an unreadable configuration is refused by the executor
	}
	d, err := s.authz.Decide(ctx, authz.Request{Subject: inst.CreatedBy, Action: authz.ActionAdmin,
		Resource: authz.ResourcePrivateNetwork, Task: c.ev.Task})
	if err != nil {
		return c.deny(ctx, fault.Wrap(fault.Unavailable, err, "policy could not be evaluated"), "policy evaluation failed")
	}
	if !d.Allowed {
		return c.deny(ctx, fault.New(fault.PolicyDenied, "connector instance may no longer reach private networks: "+
			"the %s grant it was installed under has been withdrawn", authz.ResourcePrivateNetwork),
			fmt.Sprintf("instance reaches private networks, and its installer %s no longer holds %s on %s: %s",
				inst.CreatedBy, authz.ActionAdmin, authz.ResourcePrivateNetwork, d.Reason))
	}
	return nil
}

func validateInstall(in *InstallInput) error {
	in.DisplayName = strings.TrimSpace(in.DisplayName)
	if in.Type == "" {
		return fault.Invalid("type", "type is required")
	}
	if in.DisplayName == "" || utf8.RuneCountInString(in.DisplayName) > 200 {
		return fault.Invalid("display_name", "display_name must be 1 to 200 characters")
	}
	if in.Handle != "" {
		if err := validHandle(in.Handle); err != nil {
			return err
		}
	}
	if in.ProjectID != "" {
		u, err := uuid.Parse(in.ProjectID)
		if err != nil || len(in.ProjectID) != 36 {
			return fault.Invalid("project_id", "project_id must be a uuid")
		}
		in.ProjectID = u.String()
	}
	if len(in.Config) == 0 || string(in.Config) == "null" {
		in.Config = json.RawMessage(`{}`)
	}
	if in.Limits != nil {
		for name, l := range map[string]*RateLimit{"per_subject": in.Limits.PerSubject, "per_instance": in.Limits.PerInstance} {
			if l == nil {
				continue
			}
			if l.Requests < 1 || l.Requests > 1_000_000 || l.WindowSeconds < 1 || l.WindowSeconds > 86400 {
				return fault.Invalid("limits."+name, "limits.%s needs requests 1..1000000 and window_seconds 1..86400", name)
			}
		}
	}
	return nil
}

func validateAgainst(schema *jsonschema.Schema, doc json.RawMessage, field string) error {
	err := schema.Validate(doc)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		return fault.Invalid(field, "%s does not match its schema: %s", field, ve.Error()).
			WithDetails(map[string]any{"field": field, "violations": ve.Violations})
	}
	return fault.Invalid(field, "%s is not valid JSON", field)
}

// Enable turns an instance on.
func (s *Service) Enable(ctx context.Context, id string) (Instance, error) {
	return s.setState(ctx, ToolInstanceEnable, id, StateEnabled)
}

// Disable turns an instance off; invocations are refused until it is enabled.
func (s *Service) Disable(ctx context.Context, id string) (Instance, error) {
	return s.setState(ctx, ToolInstanceDisable, id, StateDisabled)
}

// Uninstall retires an instance for good. Its row stays as a tombstone so
// audit rows keep pointing at it; its id is never reused.
func (s *Service) Uninstall(ctx context.Context, id string) (Instance, error) {
	return s.setState(ctx, ToolInstanceUninstall, id, StateUninstalled)
}

func (s *Service) setState(ctx context.Context, tool, rawID, state string) (Instance, error) {
	c, err := s.begin(ctx, tool, authz.ActionAdmin)
	if err != nil {
		return Instance{}, err
	}
	in, err := c.lookup(ctx, rawID, false, s.pool)
	if err != nil {
		return Instance{}, err
	}
	if err := c.decide(ctx, authz.InstanceResource(in.Owner, in.Type, in.ID.UUID())); err != nil {
		return Instance{}, err
	}
	var out Instance
	err = c.change(ctx, func(tx pgx.Tx) error {
		cur, err := getInstance(ctx, tx, in.ID, true)
		if err != nil {
			return err
		}
		if cur.State == StateUninstalled {
			return fault.New(fault.Conflict, "connector instance %s is uninstalled", in.ID)
		}
		if state == StateUninstalled {
			if err := revokeAllCredentials(ctx, tx, in.ID); err != nil {
				return err
			}
		}
		out, err = setInstanceState(ctx, tx, in.ID, state)
		return err
	})
	s.forget(in.ID)
	return out, err
}

// Get returns one instance the caller may see.
func (s *Service) Get(ctx context.Context, id string) (Instance, error) {
	c, err := s.begin(ctx, ToolInstanceGet, authz.ActionRead)
	if err != nil {
		return Instance{}, err
	}
	in, err := c.lookup(ctx, id, false, s.pool)
	if err != nil {
		return Instance{}, err
	}
	if err := c.decideAny(ctx, authz.InstanceResource(in.Owner, in.Type, in.ID.UUID())); err != nil {
		return Instance{}, err
	}
	if err := c.ok(ctx); err != nil {
		return Instance{}, err
	}
	return in, nil
}

// List returns the instances the caller holds any right on.
func (s *Service) List(ctx context.Context, f ListInput) ([]Instance, error) {
	c, err := s.begin(ctx, ToolInstanceList, authz.ActionRead)
	if err != nil {
		return nil, err
	}
	if f.Owner != "" {
		o, err := callctx.ParseSubject(f.Owner)
		if err != nil {
			return nil, c.invalid(ctx, fault.Invalid("owner", "owner must be user:<uuid> or group:<uuid>"))
		}
		f.Owner = string(o)
	}
	if f.ProjectID != "" {
		u, err := uuid.Parse(f.ProjectID)
		if err != nil || len(f.ProjectID) != 36 {
			return nil, c.invalid(ctx, fault.Invalid("project_id", "project_id must be a uuid"))
		}
		f.ProjectID = u.String()
	}
	all, err := listInstances(ctx, s.pool, f)
	if err != nil {
		return nil, c.fail(ctx, err)
	}
	out := make([]Instance, 0, len(all))
	for _, in := range all {
		ok, err := s.mayActOn(ctx, c.p.Subject, in, c.ev.Task)
		if err != nil {
			return nil, c.deny(ctx, fault.Wrap(fault.Unavailable, err, "policy could not be evaluated"), "policy evaluation failed")
		}
		if ok {
			out = append(out, in)
		}
	}
	c.ev.Reason = "listed instances the subject holds rights on"
	if err := c.ok(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// readActions are the actions any of which lets a subject see an instance.
var readActions = []string{authz.ActionRead, authz.ActionSend, authz.ActionAdmin}

func (s *Service) mayActOn(ctx context.Context, sub callctx.Subject, in Instance, task callctx.TaskContext) (bool, error) {
	res := authz.InstanceResource(in.Owner, in.Type, in.ID.UUID())
	for _, a := range readActions {
		d, err := s.authz.Decide(ctx, authz.Request{Subject: sub, Action: a, Resource: res, Task: task})
		if err != nil {
			return false, err
		}
		if d.Allowed {
			return true, nil
		}
	}
	return false, nil
}

// decideAny allows the call if any of read, send or admin is allowed on
// resource (seeing an instance needs any right on it).
func (c *call) decideAny(ctx context.Context, resource string) error {
	c.ev.Resource = resource
	var last authz.Decision
	for _, a := range readActions {
		d, err := c.s.authz.Decide(ctx, authz.Request{Subject: c.p.Subject, Action: a, Resource: resource, Task: c.ev.Task})
		if err != nil {
			return c.deny(ctx, fault.Wrap(fault.Unavailable, err, "policy could not be evaluated"), "policy evaluation failed")
		}
		c.ev.PolicyVersion = d.PolicyVersion
		if d.Allowed {
			c.ev.Action = a
			c.ev.Decision = "allow"
			c.ev.Reason = d.Reason
			return nil
		}
		last = d
	}
	return c.deny(ctx, fault.New(fault.PolicyDenied, "denied by policy"), last.Reason)
}
