package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/connec/connec/internal/platform/db"
)

// Filter selects audit rows for List. Empty fields do not filter.
type Filter struct {
	Subject    string
	InstanceID string
	// InstanceIDs, when not nil, keeps only rows of these instances (none
	// at all when empty): what an instance admin may read.
	InstanceIDs []string
	TaskID      string
	Tool        string
	Decision    string
	Status      string
	// Since <= at < Until; zero times are unbounded.
	Since, Until time.Time
	// AfterSeq and BeforeSeq page: rows with seq greater than AfterSeq and,
	// when BeforeSeq is set, less than it.
	AfterSeq, BeforeSeq int64
	// Newest lists the newest rows first (seq descending), as people read
	// a trail; otherwise in chain order.
	Newest bool
	// Limit caps the page (1..1000).
	Limit int
}

// List returns audit rows matching f in seq order (descending when
// f.Newest).
func List(ctx context.Context, q db.Querier, f Filter) ([]Row, error) {
	if f.Limit < 1 || f.Limit > 1000 {
		return nil, fmt.Errorf("audit list: limit %d out of 1..1000", f.Limit)
	}
	var until, before, instances any
	if !f.Until.IsZero() {
		until = f.Until
	}
	if f.BeforeSeq > 0 {
		before = f.BeforeSeq
	}
	if f.InstanceIDs != nil {
		instances = f.InstanceIDs
	}
	order := "seq"
	if f.Newest {
		order = "seq DESC"
	}
	rows, err := q.Query(ctx, `SELECT `+columns+` FROM audit_events
WHERE seq > $1 AND ($11::bigint IS NULL OR seq < $11) AND ($2 = '' OR subject = $2)
  AND ($3 = '' OR instance_id = NULLIF($3,'')::uuid) AND ($12::uuid[] IS NULL OR instance_id = ANY($12::uuid[]))
  AND ($4 = '' OR task_id = NULLIF($4,'')::uuid) AND ($5 = '' OR tool = $5) AND ($6 = '' OR decision = $6)
  AND ($7 = '' OR status = $7) AND at >= $8 AND ($9::timestamptz IS NULL OR at < $9)
ORDER BY `+order+` LIMIT $10`, f.AfterSeq, f.Subject, f.InstanceID, f.TaskID, f.Tool, f.Decision, f.Status, f.Since, until, f.Limit,
		before, instances)
	if err != nil {
		return nil, fmt.Errorf("list audit rows: %w", db.Map(err))
	}
	defer rows.Close()
	out := []Row{}
	for rows.Next() {
		var r Row
		if err := scanRow(rows, &r); err != nil {
			if !errors.Is(err, ErrMalformedRow) {
				err = db.Map(err)
			}
			return nil, fmt.Errorf("list audit rows: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit rows: %w", db.Map(err))
	}
	return out, nil
}
