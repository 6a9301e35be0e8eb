package audit

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Rows travel to the database as arrays, one parameter per column, so that
// the statement inserting them is the same text whatever their number: it
// is prepared once per connection, not parsed and planned per batch.

// arrayCols are InsertColumns after chain: each column's array parameter
// type and the expression that turns unnest's element into the column.
// subject_groups and task_bound, arrays themselves, travel as JSON arrays.
var arrayCols = []struct{ name, param, expr string }{
	{"chain_seq", "bigint[]", ""}, {"at", "timestamptz[]", ""}, {"request_id", "text[]", ""},
	{"transport", "text[]", ""}, {"subject", "text[]", ""},
	{"subject_groups", "text[]", "ARRAY(SELECT jsonb_array_elements_text(e.subject_groups::jsonb))"},
	{"action", "text[]", ""}, {"tool", "text[]", ""}, {"connector_type", "text[]", ""},
	{"instance_id", "text[]", "e.instance_id::uuid"}, {"operation", "text[]", ""}, {"resource", "text[]", ""},
	{"decision", "text[]", ""}, {"reason", "text[]", ""}, {"policy_version", "bigint[]", ""},
	{"task_id", "text[]", "e.task_id::uuid"}, {"project_id", "text[]", "e.project_id::uuid"},
	{"run_id", "text[]", "e.run_id::uuid"}, {"job_id", "text[]", "e.job_id::uuid"}, {"agent_id", "text[]", ""},
	{"status", "text[]", ""}, {"error_type", "text[]", ""}, {"duration_us", "bigint[]", ""}, {"count", "bigint[]", ""},
	{"task_bound", "text[]", "ARRAY(SELECT jsonb_array_elements_text(e.task_bound::jsonb))"},
	{"hash_version", "smallint[]", ""}, {"prev_hash", "bytea[]", ""}, {"hash", "bytea[]", ""},
}

// InsertFromArrays returns the FROM item that unnests the array parameters
// numbered from *next on (advancing it) as e, and the select list of
// InsertColumns after chain read from it: the rows AppendArrays passes.
// With single, the parameters are one row's values instead of arrays (see
// Single): a one-row VALUES list costs the database less than unnest.
func InsertFromArrays(next *int, single bool) (from, sel string) {
	var f, s strings.Builder
	if single {
		f.WriteString("(VALUES (")
	} else {
		f.WriteString("unnest(")
	}
	for i, c := range arrayCols {
		if i > 0 {
			f.WriteString(", ")
			s.WriteString(", ")
		}
		if single {
			f.WriteString("$" + strconv.Itoa(*next) + "::" + strings.TrimSuffix(c.param, "[]"))
		} else {
			// Through a subquery: the planner does not see the array's
			// length, so the statement's cached generic plan is used (see
			// package commit's unnest).
			f.WriteString("(SELECT $" + strconv.Itoa(*next) + "::" + c.param + ")")
		}
		*next++
		if c.expr != "" {
			s.WriteString(c.expr)
		} else {
			s.WriteString("e." + c.name)
		}
	}
	if single {
		f.WriteString(")")
	}
	f.WriteString(") AS e(")
	for i, c := range arrayCols {
		if i > 0 {
			f.WriteString(", ")
		}
		f.WriteString(c.name)
	}
	f.WriteString(")")
	return f.String(), s.String()
}

// Single turns the arrays of one row that args holds from from on into
// that row's values, in place: the parameters of a statement built with
// single.
func Single(args []any, from int) []any {
	for i := from; i < len(args); i++ {
		if v := reflect.ValueOf(args[i]); v.Kind() == reflect.Slice && v.Type().Elem().Kind() != reflect.Uint8 {
			args[i] = v.Index(0).Interface()
		}
	}
	return args
}

// AppendArrays appends linked rows' values for InsertFromArrays to args:
// one array per column.
func AppendArrays(args []any, rows []*Row) []any {
	n := len(rows)
	var (
		chainSeq, pol, dur, count                = make([]int64, n), make([]*int64, n), make([]int64, n), make([]int64, n)
		at                                       = make([]time.Time, n)
		req, transport, subject, groups, action  = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		tool, decision, reason, status, bound    = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		ctype, inst, op, res, task, project, run = make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
		job, agent, etype                        = make([]*string, n), make([]*string, n), make([]*string, n)
		version                                  = make([]int16, n)
		prev, hash                               = make([][]byte, n), make([][]byte, n)
	)
	for i, r := range rows {
		chainSeq[i], at[i], req[i], transport[i], subject[i] = r.ChainSeq, r.At, r.RequestID, r.Transport, r.Subject
		groups[i], bound[i] = jsonList(r.Groups), jsonList(r.TaskBound)
		action[i], tool[i], ctype[i], inst[i], op[i], res[i] = r.Action, r.Tool, r.ConnectorType, r.InstanceID, r.Operation, r.Resource
		decision[i], reason[i], pol[i] = r.Decision, r.Reason, r.PolicyVersion
		task[i], project[i], run[i], job[i], agent[i] = r.TaskID, r.ProjectID, r.RunID, r.JobID, r.AgentID
		status[i], etype[i], dur[i], count[i] = r.Status, r.ErrorType, r.DurationUS, r.Count
		version[i], prev[i], hash[i] = r.HashVersion, r.PrevHash, r.Hash
	}
	return append(args, chainSeq, at, req, transport, subject, groups, action, tool, ctype, inst, op, res, decision, reason,
		pol, task, project, run, job, agent, status, etype, dur, count, bound, version, prev, hash)
}

// jsonList is l as a JSON array (never null: an empty list is []).
func jsonList(l []string) string {
	if len(l) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(l) // strings are valid UTF-8 (NewRow cleans them)
	return string(b)
}
