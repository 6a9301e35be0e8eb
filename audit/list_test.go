package audit

import (
	"context"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/connec/connec/internal/testkit/pgtest"
)

// List pages the trail in chain order or newest first without skipping or
// repeating a row, and keeps only the rows of the instances asked for.
func TestListOrderPagingAndInstances(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	w := newChain(t, pool)
	a, b := uuid.NewString(), uuid.NewString()
	for i := range 12 {
		ev := event(i)
		ev.InstanceID = []string{a, b, ""}[i%3]
		if err := w.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	seqs := func(rows []Row) []int64 {
		var out []int64
		for _, r := range rows {
			out = append(out, r.Seq)
		}
		return out
	}
	walk := func(f Filter) []int64 {
		t.Helper()
		var all []int64
		for range 20 {
			rows, err := List(ctx, pool, f)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) == 0 {
				return all
			}
			all = append(all, seqs(rows)...)
			last := rows[len(rows)-1].Seq
			if f.Newest {
				f.BeforeSeq = last
			} else {
				f.AfterSeq = last
			}
		}
		t.Fatal("paging never ends")
		return nil
	}
	oldest := walk(Filter{Limit: 5})
	if want := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}; !slices.Equal(oldest, want) {
		t.Fatalf("oldest first: %v", oldest)
	}
	newest := walk(Filter{Limit: 5, Newest: true})
	if want := []int64{12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}; !slices.Equal(newest, want) {
		t.Fatalf("newest first: %v", newest)
	}
	if got := walk(Filter{Limit: 3, Newest: true, InstanceIDs: []string{a, b}}); !slices.Equal(got, []int64{11, 10, 8, 7, 5, 4, 2, 1}) {
		t.Fatalf("rows of two instances, newest first: %v", got)
	}
	if got := walk(Filter{Limit: 3, InstanceIDs: []string{b}}); !slices.Equal(got, []int64{2, 5, 8, 11}) {
		t.Fatalf("rows of one instance: %v", got)
	}
	if got := walk(Filter{Limit: 3, InstanceIDs: []string{}}); len(got) != 0 {
		t.Fatalf("an empty instance list keeps no row: %v", got)
	}
	rows, err := List(ctx, pool, Filter{Limit: 100, Newest: true, AfterSeq: 3, BeforeSeq: 7})
	if err != nil || !slices.Equal(seqs(rows), []int64{6, 5, 4}) {
		t.Fatalf("between 3 and 7: %v %v", seqs(rows), err)
	}
}
