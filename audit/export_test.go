package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/connec/connec/internal/testkit/pgtest"
)

// Export writes every row of the window as one JSON line with stable field
// names; decoded, the lines equal the stored rows and re-verify as a chain.
func TestExportRoundTrip(t *testing.T) {
	pool := pgtest.Pool(t)
	ctx := context.Background()
	w := newChain(t, pool)
	base := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
	const n = 12
	for i := range n {
		ev := event(i)
		ev.At = base.Add(time.Duration(i)*time.Hour + 123456*time.Microsecond)
		if i == 3 {
			ev.Reason = "quote \" backslash \\ <html> & ünïcödé \u2028 \x01"
		}
		if err := w.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	stored := readRows(t, pool)

	cases := []struct {
		name         string
		since, until time.Time
		want         []Row
	}{
		{"all", time.Time{}, time.Time{}, stored},
		{"since", base.Add(10 * time.Hour), time.Time{}, stored[10:]},
		{"window", base.Add(2 * time.Hour), base.Add(5*time.Hour + 123456*time.Microsecond), stored[2:5]},
		{"empty", base.Add(100 * time.Hour), time.Time{}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Export(ctx, pool, c.since, c.until, &buf); err != nil {
				t.Fatal(err)
			}
			var got []Row
			sc := bufio.NewScanner(&buf)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var r Row
				dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&r); err != nil {
					t.Fatalf("line %q: %v", sc.Text(), err)
				}
				got = append(got, r)
			}
			if len(got) != len(c.want) {
				t.Fatalf("%d lines, want %d", len(got), len(c.want))
			}
			for i := range got {
				if !reflect.DeepEqual(got[i], c.want[i]) {
					t.Fatalf("line %d:\n got %+v\nwant %+v", i, got[i], c.want[i])
				}
			}
			if c.name == "all" {
				ch := newChecker()
				ch.id, ch.headSeq = 1, int64(len(got))
				for i := range got {
					if b := ch.add(&got[i]); b != nil {
						t.Fatalf("exported chain broken: %v", b)
					}
				}
			}
		})
	}

	// Field names are stable: every line has exactly these.
	var buf bytes.Buffer
	if err := Export(ctx, pool, time.Time{}, time.Time{}, &buf); err != nil {
		t.Fatal(err)
	}
	first, _, _ := bytes.Cut(buf.Bytes(), []byte("\n"))
	var m map[string]any
	if err := json.Unmarshal(first, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := []string{"action", "agent_id", "at", "chain", "chain_seq", "connector_type", "count", "decision", "duration_us", "error_type", "hash",
		"hash_version", "instance_id", "job_id", "operation", "policy_version", "prev_hash", "project_id", "reason",
		"request_id", "resource", "run_id", "seq", "status", "subject", "subject_groups", "task_bound", "task_id", "tool", "transport"}
	if !slices.Equal(keys, want) {
		t.Fatalf("fields %v\nwant   %v", keys, want)
	}
	if m["at"] != "2030-06-01T00:00:00.123456Z" || m["prev_hash"] != "0000000000000000000000000000000000000000000000000000000000000000" {
		t.Fatalf("first line %s", first)
	}
}
