package engine

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/bmatcuk/doublestar/v4"
	"github.com/google/uuid"

	"github.com/connec/connec/callctx"
)

// Catalog is what rule validation knows of connector types; the server's
// connector registry implements it. With a catalog, a rule may name only
// types that exist and operations those types have, and an operation only
// under the action its invocations are decided with.
type Catalog interface {
	// ConnectorTypes returns the name of every connector type.
	ConnectorTypes() []string
	// Operations maps each operation of a connector type to the action an
	// invocation of it is decided under; nil for an unknown type.
	Operations(connectorType string) map[string]string
}

// The actions each kind of resource is decided under (see the resource
// names in model.go). A rule whose action is none of those of the resources
// its pattern matches can never match a request.
var (
	fixedActions = map[string][]string{
		ResourceCatalog: {ActionCatalogRead, ActionAdmin}, // reading it; adding MCP servers to it
		ResourcePolicy:  {ActionPolicyAdmin},
		ResourceAudit:   {ActionAuditRead},
	}
	privateNetworkActions = []string{ActionAdmin}
	ownerActions          = []string{ActionAdmin}                                          // installing
	instanceActions       = []string{ActionRead, ActionSend, ActionAdmin, ActionAuditRead} // seeing, managing, its audit rows
	operationActions      = []string{ActionRead, ActionSend, ActionAdmin}                  // by the operation's kind
)

// uuidTemplate is the shape of a canonical uuid for globFits: '#' stands
// for one lower-case hex digit.
const uuidTemplate = "########-####-####-####-############"

// patternActions checks p against the resource grammar (catalog | policy |
// audit | network/private | connectors/<owner>[/<type>/<instance-id>[/<op>]],
// with * within a segment and a trailing /**) and returns the actions, in
// the order of Actions, that the resources p can match are decided under.
// It fails when p can match no resource name; cat, if not nil, also makes
// it fail on connector types and operations that do not exist.
func patternActions(p string, cat Catalog) ([]string, error) {
	if err := checkPattern(p); err != nil {
		return nil, err
	}
	if !utf8.ValidString(p) || strings.ContainsRune(p, utf8.RuneError) {
		return nil, fmt.Errorf("resource pattern %q is not valid UTF-8", p)
	}
	if i := strings.IndexAny(p, `?[]{}\`); i >= 0 {
		return nil, fmt.Errorf("resource pattern %q uses %q: patterns have only * (within a segment) and a trailing /**", p, p[i:i+1])
	}
	segs := strings.Split(p, "/")
	w := walk{cat: cat}
	if segs[len(segs)-1] == "**" {
		w.tail, segs = true, segs[:len(segs)-1]
	}
	for _, s := range segs {
		if strings.Contains(s, "**") {
			return nil, fmt.Errorf("resource pattern %q: ** may only be the whole last segment (a trailing /** matches what precedes it and everything below)", p)
		}
	}
	if len(segs) == 0 { // "**"
		return slices.Clone(Actions), nil
	}
	w.root(segs)
	if len(w.acts) == 0 {
		return nil, fmt.Errorf("resource pattern %q matches no resource: %s", p, w.why)
	}
	out := make([]string, 0, len(w.acts))
	for _, a := range Actions {
		if slices.Contains(w.acts, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

// walk follows a pattern's segments through the grammar, collecting the
// actions of every kind of resource it reaches, and the reason of the
// branch that got furthest when it reaches none.
type walk struct {
	cat      Catalog
	tail     bool // the pattern ended in /**
	acts     []string
	why      string
	whyDepth int
}

func (w *walk) reach(acts ...string) {
	for _, a := range acts {
		if !slices.Contains(w.acts, a) {
			w.acts = append(w.acts, a)
		}
	}
}

func (w *walk) miss(depth int, format string, args ...any) {
	if w.why == "" || depth > w.whyDepth {
		w.why, w.whyDepth = fmt.Sprintf(format, args...), depth
	}
}

func (w *walk) root(segs []string) {
	matched := false
	for _, head := range []string{ResourceCatalog, ResourcePolicy, ResourceAudit, "network", resourceConnectors, resourceTokens} {
		if !segMatch(segs[0], head) {
			continue
		}
		matched = true
		rest := segs[1:]
		switch head {
		case "network":
			w.network(rest)
		case resourceConnectors:
			w.connectors(rest)
		case resourceTokens:
			w.tokens(rest)
		default:
			if len(rest) > 0 {
				w.miss(1, "%s has nothing below it", head)
				continue
			}
			w.reach(fixedActions[head]...)
		}
	}
	if !matched {
		w.miss(0, "a resource is catalog, policy, audit, network/private, tokens/… or connectors/… (lower case), and %q is none of them", segs[0])
	}
}

func (w *walk) network(rest []string) {
	switch {
	case len(rest) == 0 && w.tail:
		w.reach(privateNetworkActions...)
	case len(rest) == 0:
		w.miss(1, "network alone is no resource; the resource is network/private")
	case !segMatch(rest[0], "private"):
		w.miss(2, "the only network resource is network/private")
	case len(rest) > 1:
		w.miss(2, "network/private has nothing below it")
	default:
		w.reach(privateNetworkActions...)
	}
}

// tokens is tokens/user:<uuid>: minting task-bound tokens for that user.
func (w *walk) tokens(rest []string) {
	switch {
	case len(rest) == 0 && w.tail:
		w.reach(ActionTokenMint)
	case len(rest) == 0:
		w.miss(1, "tokens alone is no resource: want tokens/user:<uuid> (or tokens/**)")
	case len(rest) > 1:
		w.miss(2, "tokens/<user> has nothing below it")
	case strings.HasPrefix(rest[0], callctx.KindGroup+":"):
		w.miss(2, "tokens are minted for users; %q is a group", rest[0])
	default:
		if why := ownerProblem(rest[0]); why != "" {
			w.miss(2, "%s", why)
			return
		}
		w.reach(ActionTokenMint)
	}
}

func (w *walk) connectors(rest []string) {
	if len(rest) == 0 {
		if !w.tail {
			w.miss(1, "connectors alone is no resource: want connectors/<owner>[/<type>/<instance-id>[/<operation>]], or connectors/**")
			return
		}
		w.reach(ownerActions...)
		w.reach(instanceActions...)
		return
	}
	if why := ownerProblem(rest[0]); why != "" {
		w.miss(2, "%s", why)
		return
	}
	if len(rest) == 1 {
		w.reach(ownerActions...)
		if w.tail {
			w.reach(instanceActions...)
		}
		return
	}
	types, why := w.types(rest[1])
	if why != "" {
		w.miss(3, "%s", why)
		return
	}
	if len(rest) == 2 {
		if !w.tail {
			w.miss(3, "connectors/<owner>/<type> is no resource: add /<instance-id> (or /*), or end with /**")
			return
		}
		w.reach(instanceActions...)
		return
	}
	if why := idProblem("instance id", rest[2], uuidTemplate); why != "" {
		w.miss(4, "%s", why)
		return
	}
	if len(rest) == 3 {
		w.reach(instanceActions...) // with /**: its operations' actions are among them
		return
	}
	acts, why := w.operations(rest[1], types, rest[3])
	if why != "" {
		w.miss(5, "%s", why)
		return
	}
	if len(rest) > 4 {
		w.miss(5, "an operation has nothing below it")
		return
	}
	w.reach(acts...)
}

// types returns the connector types seg matches (nil without a catalog).
func (w *walk) types(seg string) ([]string, string) {
	if w.cat == nil {
		return nil, ""
	}
	if !strings.Contains(seg, "*") {
		if w.cat.Operations(seg) == nil {
			return nil, fmt.Sprintf("there is no connector type %q (see connector.catalog.list)", seg)
		}
		return []string{seg}, ""
	}
	var out []string
	for _, t := range w.cat.ConnectorTypes() {
		if segMatch(seg, t) {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Sprintf("no connector type matches %q (see connector.catalog.list)", seg)
	}
	return out, ""
}

// operations returns the actions the operations seg matches (among those
// of types) are decided under.
func (w *walk) operations(typeSeg string, types []string, seg string) ([]string, string) {
	if w.cat == nil {
		return operationActions, ""
	}
	var acts []string
	for _, t := range types {
		for op, act := range w.cat.Operations(t) {
			if segMatch(seg, op) && !slices.Contains(acts, act) {
				acts = append(acts, act)
			}
		}
	}
	if len(acts) > 0 {
		return acts, ""
	}
	if len(types) == 1 && !strings.Contains(seg, "*") {
		return nil, fmt.Sprintf("connector type %s has no operation %q (see connector.catalog.list)", types[0], seg)
	}
	return nil, fmt.Sprintf("no operation of a connector type matching %q matches %q (see connector.catalog.list)", typeSeg, seg)
}

// ownerProblem says why seg cannot match an owner, user:<uuid> or
// group:<uuid> in canonical form; "" if it can.
func ownerProblem(seg string) string {
	if strings.Contains(seg, "*") {
		if globFits(seg, callctx.KindUser+":"+uuidTemplate) || globFits(seg, callctx.KindGroup+":"+uuidTemplate) {
			return ""
		}
		return fmt.Sprintf("the owner pattern %q matches no user:<uuid> or group:<uuid> (ids are lower case)", seg)
	}
	kind, id, ok := strings.Cut(seg, ":")
	switch {
	case !ok || (kind != callctx.KindUser && kind != callctx.KindGroup):
		return fmt.Sprintf("the owner %q is not user:<uuid> or group:<uuid>", seg)
	case isCanonicalUUID(id):
		return ""
	}
	if u, err := uuid.Parse(id); err == nil && len(id) == 36 {
		return fmt.Sprintf("the owner %q is not in canonical form: write %s:%s (ids are lower case)", seg, kind, u)
	}
	return fmt.Sprintf("the owner %q is not %s:<uuid>: a rule names an owner by id (a name never matches)", seg, kind)
}

// idProblem says why seg cannot match a canonical uuid; "" if it can.
func idProblem(what, seg, tmpl string) string {
	if strings.Contains(seg, "*") {
		if globFits(seg, tmpl) {
			return ""
		}
		return fmt.Sprintf("the %s pattern %q matches no uuid (ids are lower case)", what, seg)
	}
	if isCanonicalUUID(seg) {
		return ""
	}
	if u, err := uuid.Parse(seg); err == nil && len(seg) == 36 {
		return fmt.Sprintf("the %s %q is not in canonical form: write %s (ids are lower case)", what, seg, u)
	}
	return fmt.Sprintf("the %s %q is not a uuid: a rule names it by id (a name never matches)", what, seg)
}

// segMatch reports whether the one-segment pattern p (only * as a
// metacharacter) matches name.
func segMatch(p, name string) bool {
	if !strings.Contains(p, "*") {
		return p == name
	}
	ok, err := doublestar.Match(p, name)
	return err == nil && ok
}

// globFits reports whether the glob g, whose only metacharacter is *, can
// match some string shaped like tmpl, in which '#' stands for any
// lower-case hex digit and every other byte for itself.
func globFits(g, tmpl string) bool {
	// can[j]: the part of g read so far can match tmpl[:j].
	can := make([]bool, len(tmpl)+1)
	next := make([]bool, len(tmpl)+1)
	can[0] = true
	for i := range len(g) {
		clear(next)
		if g[i] == '*' {
			seen := false
			for j := range can {
				seen = seen || can[j]
				next[j] = seen
			}
		} else {
			for j := range len(tmpl) {
				next[j+1] = can[j] && fitsTemplate(g[i], tmpl[j])
			}
		}
		can, next = next, can
	}
	return can[len(tmpl)]
}

func fitsTemplate(c, t byte) bool {
	if t == '#' {
		return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
	}
	return c == t
}

// ResolveNames rewrites what a person may write by name, or in another
// case, in a resource name or pattern: the owner of connectors/<owner>/…
// (without a glob, and not already a canonical subject) through resolve,
// the same resolver subjects go through, and an instance id that is a uuid
// into its canonical form. The rest is returned unchanged, for validation
// to judge.
func ResolveNames(resource string, resolve func(ref string) (callctx.Subject, error)) (string, error) {
	segs := strings.Split(resource, "/")
	if len(segs) < 2 || segs[0] != resourceConnectors {
		return resource, nil
	}
	if owner := segs[1]; owner != "" && !strings.ContainsAny(owner, globMeta) && ownerProblem(owner) != "" {
		s, err := resolve(owner)
		if err != nil {
			return "", err
		}
		segs[1] = string(s)
	}
	if len(segs) > 3 && len(segs[3]) == 36 && !strings.ContainsAny(segs[3], globMeta) {
		if u, err := uuid.Parse(segs[3]); err == nil {
			segs[3] = u.String()
		}
	}
	return strings.Join(segs, "/"), nil
}
