package engine

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"

	"github.com/connec/connec/fault"
)

// Policy is one version of the stored policy, as casbin_rule holds it.
type Policy struct {
	// Version is the policy version the rules belong to.
	Version int64
	// Rules are the p rules (sub, obj, act, cond, eft, the fields of
	// ModelConf's p) in storage order, which is the order Casbin evaluates
	// them in and so decides which rule a decision cites.
	Rules [][]string
	// Links are the g rows: member, group. A group may be a member of
	// another group.
	Links [][2]string
}

// Options tune a Snapshot.
type Options struct {
	// Catalog, if not nil, also checks the connector types and operations
	// rules name (see Rule.ValidateIn) for Snapshot.Invalid.
	Catalog Catalog
	// SubjectCache bounds the callers whose compiled rules are kept (0:
	// none, every decision compiles the caller's rules).
	SubjectCache int
}

// maxGroupDepth is how deep group membership is followed: Casbin's default
// role manager, which resolved groups before, stops at ten levels.
const maxGroupDepth = 10

// Snapshot is one immutable version of the policy, indexed for decisions.
// It is safe for concurrent use.
//
// A request is decided as Casbin decides it against the whole policy,
// which tests every rule in turn. A rule can only match a request if its
// subject is the caller or one of the caller's groups, so a request is
// evaluated against just those rules (in their original order, so the
// deciding rule reported is the same), compiled on first use per caller
// (rulesFor, evaluate). The answer is the one the full policy gives;
// evaluation cost grows with the caller's rules, not all rules.
type Snapshot struct {
	version   int64
	rules     [][]string                     // the p rules, in load order
	bySubject map[string][]int               // subject -> indexes into rules, ascending
	groups    map[string][]string            // member -> the groups it is directly in
	conds     map[string]Cond                // every condition in the policy that parses
	allow     map[string]map[string][]string // subject -> action -> resource patterns of its allow rules
	invalid   []string                       // the rules that fail validation, with why

	compiledMu  sync.RWMutex
	compiled    map[string][]compiledRule // caller -> its rules, compiled
	maxCompiled int
}

// NewSnapshot indexes p. It reads the policy as Casbin loaded it: of rules
// whose fields joined by "," are equal, only the first is kept; and, unlike
// Casbin, an effect other than allow and deny is read as deny (only
// "allow" grants, and a rule meant to refuse must not be ignored). p is not
// modified.
func NewSnapshot(p Policy, opts Options) *Snapshot {
	s := &Snapshot{
		version:     p.Version,
		rules:       make([][]string, 0, len(p.Rules)),
		bySubject:   make(map[string][]int),
		groups:      make(map[string][]string),
		conds:       make(map[string]Cond),
		allow:       make(map[string]map[string][]string),
		compiled:    make(map[string][]compiledRule),
		maxCompiled: opts.SubjectCache,
	}
	seen := newDedup(len(p.Rules))
	for i, v := range p.Rules {
		if !seen.first(p.Rules, i) {
			continue
		}
		r := ruleFromValues(v)
		if err := r.ValidateIn(opts.Catalog); err != nil {
			s.invalid = append(s.invalid, r.String()+": "+fault.PublicOf(err).Message)
		}
		if _, ok := s.conds[r.Cond]; !ok { // most rules share a few conditions
			if c, err := ParseCond(r.Cond); err == nil {
				s.conds[r.Cond] = c
			}
		}
		switch r.Effect {
		case EffectAllow:
			if s.allow[r.Subject] == nil {
				s.allow[r.Subject] = make(map[string][]string)
			}
			s.allow[r.Subject][r.Action] = append(s.allow[r.Subject][r.Action], r.Resource)
		case EffectDeny:
		default:
			if len(v) >= pFields {
				v = slices.Clone(v)
				v[4] = EffectDeny
			}
		}
		s.bySubject[r.Subject] = append(s.bySubject[r.Subject], len(s.rules))
		s.rules = append(s.rules, v)
	}
	for _, l := range p.Links {
		s.groups[l[0]] = append(s.groups[l[0]], l[1])
	}
	return s
}

// dedup keeps the first of the rules Casbin's loader took for one: it
// skipped a rule whose fields joined by "," equal an earlier one's. A rule
// is hashed as joined, and compared joined only when the hash was seen.
type dedup struct {
	seed  maphash.Seed
	seen  map[uint64]int32 // hash -> index of the first rule with it
	other map[uint64][]int32
}

func newDedup(n int) *dedup {
	return &dedup{seed: maphash.MakeSeed(), seen: make(map[uint64]int32, n)}
}

// first reports whether rules[next] differs, joined, from every rule before
// it that first reported new.
func (d *dedup) first(rules [][]string, next int) bool {
	v := rules[next]
	var h maphash.Hash
	h.SetSeed(d.seed)
	for i, f := range v {
		if i > 0 {
			_ = h.WriteByte(',')
		}
		_, _ = h.WriteString(f)
	}
	k := h.Sum64()
	i, ok := d.seen[k]
	if !ok {
		d.seen[k] = int32(next)
		return true
	}
	joined := strings.Join(v, ",")
	same := func(i int32) bool { return strings.Join(rules[i], ",") == joined }
	if same(i) || slices.ContainsFunc(d.other[k], same) {
		return false
	}
	if d.other == nil {
		d.other = make(map[uint64][]int32)
	}
	d.other[k] = append(d.other[k], int32(next)) // another rule, the same hash
	return true
}

// Version returns the policy version s holds.
func (s *Snapshot) Version() int64 { return s.version }

// Len returns the number of rules.
func (s *Snapshot) Len() int { return len(s.rules) }

// Invalid lists the rules that fail validation, each with why, in policy
// order. They stay in force as written (see Rule.ValidateIn).
func (s *Snapshot) Invalid() []string { return s.invalid }

// groupsOf returns the groups sub belongs to, directly or through other
// groups, up to maxGroupDepth levels, each once, sub itself excluded: what
// Casbin's GetImplicitRolesForUser returned (in another order; callers sort
// or test membership).
func (s *Snapshot) groupsOf(sub string) []string {
	direct := s.groups[sub]
	if len(direct) == 0 {
		return nil
	}
	seen := map[string]bool{sub: true}
	var out []string
	level := []string{sub}
	for depth := 0; depth < maxGroupDepth && len(level) > 0; depth++ {
		var next []string
		for _, m := range level {
			for _, g := range s.groups[m] {
				if !seen[g] {
					seen[g] = true
					out = append(out, g)
					next = append(next, g)
				}
			}
		}
		level = next
	}
	return out
}
