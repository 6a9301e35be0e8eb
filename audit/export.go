package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/connec/connec/internal/platform/db"
)

// Export writes the rows with since <= at < until (no upper bound when
// until is zero) to w as JSON Lines, in seq order, streaming: one Row object
// per line with stable field names, absent fields null, times RFC 3339 in
// UTC with microseconds, hashes hex. Each line carries what is needed to
// recompute its hash (Row.ComputeHash) and, with its neighbours, the chain.
func Export(ctx context.Context, q db.Querier, since, until time.Time, w io.Writer) error {
	sql := `SELECT ` + columns + ` FROM audit_events WHERE at >= $1`
	args := []any{since}
	if !until.IsZero() {
		sql += ` AND at < $2`
		args = append(args, until)
	}
	rows, err := q.Query(ctx, sql+` ORDER BY seq, at`, args...)
	if err != nil {
		return fmt.Errorf("export audit rows: %w", db.Map(err))
	}
	defer rows.Close()
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	var r Row
	for rows.Next() {
		if err := scanRow(rows, &r); err != nil {
			if !errors.Is(err, ErrMalformedRow) {
				err = db.Map(err)
			}
			return fmt.Errorf("export audit row after seq %d: %w", r.Seq, err)
		}
		if err := enc.Encode(&r); err != nil {
			return fmt.Errorf("export audit row %d: %w", r.Seq, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("export audit rows: %w", db.Map(err))
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export audit rows: %w", err)
	}
	return nil
}
