package audit

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Stmt is a statement Record runs in the same transaction as the audit row,
// so the change it makes and the row commit together or not at all.
//
// A group commit runs every request's statements in one transaction, and
// two kinds are shared between requests there:
//   - a Check (it changes nothing, and its answer depends only on its
//     arguments): identical checks (same SQL and arguments) run once, and
//     if that fails every request that queued it fails with its error;
//   - a row of a RowInsert: the rows of every request for the same
//     RowInsert are inserted by one multi-row INSERT.
//
// A shared statement runs where its first request put it, so it may run
// before statements a later request queued ahead of it; everything a
// request queued otherwise runs in its order.
type Stmt struct {
	SQL   string
	Args  []any
	Check bool

	row *RowInsert
}

// RowInsert is a one-row INSERT, `INSERT INTO <into> VALUES (<values>)`,
// whose rows a group commit may merge with other requests' rows of the
// same RowInsert into one multi-row INSERT. Build it once (NewRowInsert)
// and make each row's statement with Row.
type RowInsert struct {
	into  string
	sql   string
	parts []string // len(param)+1 literal parts of values
	param []int    // 1-based parameter numbers, in order of appearance
	nargs int      // the highest parameter number
}

// NewRowInsert prepares a one-row INSERT whose values refer to the row's
// arguments as $1…$n. values may hold no '$' followed by digits other than
// its parameters (no such string literals or dollar quoting).
func NewRowInsert(into, values string) *RowInsert {
	f := &RowInsert{into: into, sql: "INSERT INTO " + into + " VALUES (" + values + ")"}
	var cur strings.Builder
	for i := 0; i < len(values); {
		if values[i] == '$' {
			j := i + 1
			for j < len(values) && values[j] >= '0' && values[j] <= '9' {
				j++
			}
			if j > i+1 {
				n, _ := strconv.Atoi(values[i+1 : j])
				f.parts = append(f.parts, cur.String())
				f.param = append(f.param, n)
				f.nargs = max(f.nargs, n)
				cur.Reset()
				i = j
				continue
			}
		}
		cur.WriteByte(values[i])
		i++
	}
	f.parts = append(f.parts, cur.String())
	return f
}

// Row returns the statement inserting one row. It panics unless args
// has one value per parameter (a programming error).
func (f *RowInsert) Row(args ...any) Stmt {
	if len(args) != f.nargs {
		panic(fmt.Sprintf("audit: %s: %d arguments for %d parameters", f.sql, len(args), f.nargs))
	}
	return Stmt{SQL: f.sql, Args: args, row: f}
}

// unit is one statement of a group commit and the requests it serves.
type unit struct {
	sql    string
	args   []any
	reqs   []int  // indexes in the batch
	merged bool   // rows of several requests in one insert
	rows   []Stmt // a RowInsert's rows, merged into sql and args once planned
	check  bool
	stmt   int // for a plain statement: its number in its request
}

// planStmts turns a batch's statements into the statements to run: checks
// deduplicated, row inserts of the same form merged, in order of first
// appearance.
func planStmts(batch []*request) []*unit {
	var (
		units  []*unit
		checks map[string]*unit
		forms  map[*RowInsert]*unit
	)
	for i, r := range batch {
		for j, st := range r.stmts {
			switch {
			case st.Check:
				k := checkKey(st)
				if u, ok := checks[k]; ok {
					if u.reqs[len(u.reqs)-1] != i {
						u.reqs = append(u.reqs, i)
					}
					continue
				}
				u := &unit{sql: st.SQL, args: st.Args, reqs: []int{i}, check: true, stmt: j + 1}
				if checks == nil {
					checks = map[string]*unit{}
				}
				checks[k] = u
				units = append(units, u)
			case st.row != nil:
				u, ok := forms[st.row]
				if !ok {
					u = &unit{}
					if forms == nil {
						forms = map[*RowInsert]*unit{}
					}
					forms[st.row] = u
					units = append(units, u)
				}
				u.reqs = append(u.reqs, i)
				u.rows = append(u.rows, st)
			default:
				units = append(units, &unit{sql: st.SQL, args: st.Args, reqs: []int{i}, stmt: j + 1})
			}
		}
	}
	for _, u := range forms {
		u.sql, u.args = mergeRows(u.rows)
		u.merged, u.rows = len(u.rows) > 1, nil
	}
	return units
}

// mergeRows returns one statement inserting the rows (of one RowInsert):
// the row's own statement if there is one, else a multi-row INSERT.
func mergeRows(sts []Stmt) (string, []any) {
	if len(sts) == 1 {
		return sts[0].SQL, sts[0].Args
	}
	f := sts[0].row
	var b strings.Builder
	b.Grow(len(f.into) + len(sts)*(len(f.sql)-len(f.into)))
	b.WriteString("INSERT INTO ")
	b.WriteString(f.into)
	b.WriteString(" VALUES ")
	args := make([]any, 0, len(sts)*f.nargs)
	for k, st := range sts {
		if k > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for p, part := range f.parts {
			b.WriteString(part)
			if p < len(f.param) {
				b.WriteByte('$')
				b.WriteString(strconv.Itoa(f.param[p] + k*f.nargs))
			}
		}
		b.WriteByte(')')
		args = append(args, st.Args...)
	}
	return b.String(), args
}

// checkKey names a check by its SQL and argument values (pointers
// followed), so equal checks share one run.
func checkKey(st Stmt) string {
	b := make([]byte, 0, len(st.SQL)+16*len(st.Args))
	b = append(b, st.SQL...)
	for _, a := range st.Args {
		b = append(b, 0)
		switch v := a.(type) {
		case nil:
			b = append(b, 'N')
		case string:
			b = append(b, 's')
			b = append(b, v...)
		case *string:
			if v == nil {
				b = append(b, 'N')
			} else {
				b = append(b, 's')
				b = append(b, *v...)
			}
		case int:
			b = strconv.AppendInt(append(b, 'i'), int64(v), 10)
		case *int:
			if v == nil {
				b = append(b, 'N')
			} else {
				b = strconv.AppendInt(append(b, 'i'), int64(*v), 10)
			}
		case int64:
			b = strconv.AppendInt(append(b, 'i'), v, 10)
		default:
			rv := reflect.ValueOf(a)
			for rv.Kind() == reflect.Pointer && !rv.IsNil() {
				rv = rv.Elem()
			}
			if !rv.IsValid() || rv.Kind() == reflect.Pointer {
				b = append(b, 'N')
				continue
			}
			b = fmt.Appendf(b, "%s:%v", rv.Type(), rv.Interface())
		}
	}
	return string(b)
}

func queueUnits(b *pgx.Batch, units []*unit) {
	for _, u := range units {
		b.Queue(u.sql, u.args...)
	}
}

// execUnits reads the results of queueUnits; a failing statement is
// reported as a *stmtError naming the requests it served.
func execUnits(br pgx.BatchResults, units []*unit) error {
	for _, u := range units {
		if _, err := br.Exec(); err != nil {
			var pe *pgconn.PgError
			if !errors.As(err, &pe) { // the connection's fault, not the statement's
				return err
			}
			what := "statement " + strconv.Itoa(u.stmt)
			switch {
			case u.merged:
				what = "merged insert"
			case u.check:
				what = "check"
			}
			return &stmtError{reqs: u.reqs, ambiguous: u.merged, err: fmt.Errorf("%s: %w", what, err)}
		}
	}
	return nil
}
