package engine

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/connec/connec/callctx"
)

// ErrInvalidCond: a condition does not follow the Cond grammar.
var ErrInvalidCond = errors.New("invalid condition")

// Cond is a parsed rule condition on the task context of a call.
//
// Grammar (no whitespace anywhere):
//
//	cond   = "" | clause *( ";" clause )
//	clause = "project=" uuid            the call's project_id is this project
//	       | "agent=" id *( "|" id )    the call's agent_id is one of these
//	       | "task=required"            the call names a task_id
//
// The empty condition always holds. Otherwise every clause must hold, and
// each key may appear at most once. A clause about a field the call does not
// carry does not hold: "project=P" never matches a call without project_id.
//
// A condition narrows its rule, whatever the effect: an allow rule with a
// condition allows only calls that satisfy it, and a deny rule with a
// condition denies only such calls.
type Cond struct {
	// Project is the required project id (canonical uuid), or "" for any.
	Project string
	// Agents is the set of allowed agent ids, or nil for any.
	Agents []string
	// TaskRequired requires a task id.
	TaskRequired bool
	// FromToken requires every field the other clauses test to come from
	// the caller's credentials (a task-bound token), not from the call: a
	// self-asserted project, agent or task id does not satisfy it.
	FromToken bool
}

// agentIDRe is callctx's agent id syntax; it excludes ";" and "|".
var agentIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$`)

// ParseCond parses and validates a condition. Errors wrap ErrInvalidCond and
// say which clause is wrong and why.
func ParseCond(s string) (Cond, error) {
	var c Cond
	if s == "" {
		return c, nil
	}
	if hasSpaceOrControl(s) {
		return Cond{}, fmt.Errorf("%w %q: whitespace is not allowed", ErrInvalidCond, s)
	}
	seen := map[string]bool{}
	for i, clause := range strings.Split(s, ";") {
		bad := func(format string, args ...any) (Cond, error) {
			return Cond{}, fmt.Errorf("%w: clause %d %q: %s", ErrInvalidCond, i+1, clause, fmt.Sprintf(format, args...))
		}
		if clause == "" {
			return bad("empty clause (stray \";\")")
		}
		key, val, ok := strings.Cut(clause, "=")
		if !ok {
			return bad("want key=value with key project, agent or task")
		}
		if seen[key] {
			return bad("%s given more than once", key)
		}
		seen[key] = true
		switch key {
		case "project":
			u, err := uuid.Parse(val)
			if err != nil || len(val) != 36 {
				return bad("project must be a uuid")
			}
			c.Project = u.String()
		case "agent":
			if val == "" {
				return bad("agent needs at least one agent id")
			}
			for id := range strings.SplitSeq(val, "|") {
				if !agentIDRe.MatchString(id) {
					return bad("agent id %q must be 1-128 characters of letters, digits and ._:@/- starting with a letter or digit", id)
				}
				if !slices.Contains(c.Agents, id) {
					c.Agents = append(c.Agents, id)
				}
			}
		case "task":
			if val != "required" {
				return bad("the only task condition is task=required")
			}
			c.TaskRequired = true
		case "from":
			if val != "token" {
				return bad("the only source condition is from=token")
			}
			c.FromToken = true
		default:
			return bad("unknown key %q (want project, agent, task or from)", key)
		}
	}
	if c.FromToken && c.Project == "" && c.Agents == nil && !c.TaskRequired {
		return Cond{}, fmt.Errorf("%w %q: from=token qualifies a project, agent or task clause; give at least one", ErrInvalidCond, s)
	}
	return c, nil
}

// String renders c in the canonical clause order project, agent, task.
func (c Cond) String() string {
	var parts []string
	if c.Project != "" {
		parts = append(parts, "project="+c.Project)
	}
	if len(c.Agents) > 0 {
		parts = append(parts, "agent="+strings.Join(c.Agents, "|"))
	}
	if c.TaskRequired {
		parts = append(parts, "task=required")
	}
	if c.FromToken {
		parts = append(parts, "from=token")
	}
	return strings.Join(parts, ";")
}

// Match reports whether the task context satisfies c.
func (c Cond) Match(t callctx.TaskContext) bool { return c.match(factsOf(t)) }

func (c Cond) match(f taskFacts) bool {
	if c.Project != "" && (!strings.EqualFold(f.Project, c.Project) || (c.FromToken && !f.ProjectBound)) {
		return false
	}
	if c.Agents != nil && (f.Agent == "" || !slices.Contains(c.Agents, f.Agent) || (c.FromToken && !f.AgentBound)) {
		return false
	}
	if c.TaskRequired && (!f.HasTask || (c.FromToken && !f.TaskBound)) {
		return false
	}
	return true
}

// taskFacts is everything about a task context that a condition can test.
// It is what evaluation sees as r.tctx and what decisions are cached by,
// so a decision can never depend on a field the cache key leaves out, and
// calls that differ only in task, run or job id share one cache entry.
type taskFacts struct {
	Project string
	Agent   string
	HasTask bool
	// Which of them came from the caller's credentials (from=token).
	ProjectBound, AgentBound, TaskBound bool
}

func factsOf(t callctx.TaskContext) taskFacts {
	return taskFacts{Project: strings.ToLower(t.ProjectID), Agent: t.AgentID, HasTask: t.TaskID != "",
		ProjectBound: t.Bound.Has(callctx.BoundProject), AgentBound: t.Bound.Has(callctx.BoundAgent), TaskBound: t.Bound.Has(callctx.BoundTask)}
}

// CondMatch is the model's condMatch(r.tctx, p.cond) for a plain Casbin
// enforcer over ModelConf (enforcer.AddFunction("condMatch",
// engine.CondMatch)), where r.tctx is a callctx.TaskContext: the baseline
// benchmarks and the differential tests use it. The engine itself
// evaluates conditions without Casbin (see evaluate).
func CondMatch(args ...any) (any, error) {
	if len(args) != 2 {
		return false, fmt.Errorf("condMatch: want 2 arguments, got %d", len(args))
	}
	var facts taskFacts
	switch t := args[0].(type) {
	case taskFacts:
		facts = t
	case callctx.TaskContext:
		facts = factsOf(t)
	default:
		return false, fmt.Errorf("condMatch: request task context is %T", args[0])
	}
	s, ok := args[1].(string)
	if !ok {
		return false, fmt.Errorf("condMatch: rule condition is %T", args[1])
	}
	c, err := ParseCond(s)
	if err != nil {
		return false, fmt.Errorf("condMatch: %w", err)
	}
	return c.match(facts), nil
}
