package audit

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/internal/platform/db"
)

// Reason says how the chain is broken.
type Reason string

// Reasons a link breaks.
const (
	// ReasonEdited: the row's hash does not match its fields (row edited).
	ReasonEdited Reason = "hash_mismatch"
	// ReasonLink: the row's prev_hash is not the previous row's hash (a row
	// inserted, deleted and renumbered, or reordered).
	ReasonLink Reason = "prev_hash_mismatch"
	// ReasonMissing: seq skips a number (rows deleted).
	ReasonMissing Reason = "missing_rows"
	// ReasonDuplicate: a second row with the same seq (row inserted).
	ReasonDuplicate Reason = "duplicate_seq"
	// ReasonAfterHead: a row beyond the chain head (row inserted).
	ReasonAfterHead Reason = "after_head"
	// ReasonHead: the last row is not the one the chain head names (rows
	// deleted from the end, or the head edited).
	ReasonHead Reason = "head_mismatch"
	// ReasonMalformed: the row cannot be encoded (a field edited into
	// something connec never writes).
	ReasonMalformed Reason = "malformed_row"
	// ReasonCheckpointMissing: the chain ends before the seq of a kept
	// checkpoint (the newest rows deleted together with the head).
	ReasonCheckpointMissing Reason = "checkpoint_missing"
	// ReasonCheckpointMismatch: the row at a kept checkpoint's seq has
	// another hash (the chain rewritten from that row or before, every later
	// hash and the head recomputed).
	ReasonCheckpointMismatch Reason = "checkpoint_mismatch"
)

// Break is the first broken link: the seq at which the chain stops
// verifying, why, and a human-readable detail.
type Break struct {
	Seq    int64  `json:"seq"`
	Reason Reason `json:"reason"`
	Detail string `json:"detail"`
}

func (b *Break) String() string {
	return fmt.Sprintf("seq %d: %s: %s", b.Seq, b.Reason, b.Detail)
}

// Report is what Verify found.
type Report struct {
	// Rows is how many rows verified before the walk ended.
	Rows int64 `json:"rows"`
	// LastSeq and LastHash are those of the last row that verified.
	LastSeq  int64 `json:"last_seq"`
	LastHash Hash  `json:"last_hash"`
	// HeadSeq and HeadHash are what audit_chain_head records.
	HeadSeq  int64 `json:"head_seq"`
	HeadHash Hash  `json:"head_hash"`
	// Broken is the first broken link, nil if the chain verifies.
	Broken *Break `json:"broken,omitempty"`
}

// Checkpoint is the last row that verified, to keep outside the database
// and pass to a later Verify.
func (r Report) Checkpoint() Checkpoint { return Checkpoint{Seq: r.LastSeq, Hash: r.LastHash} }

// OK reports whether the whole chain verified.
func (r Report) OK() bool { return r.Broken == nil }

// Err returns nil if the chain verified, else an error wrapping
// ErrChainBroken that names the first broken link.
func (r Report) Err() error {
	if r.Broken == nil {
		return nil
	}
	return fmt.Errorf("%w at %s", ErrChainBroken, r.Broken)
}

// Verify walks the whole chain in seq order, streaming (constant memory),
// and reports the first broken link: a row whose hash does not match its
// fields (edited), a seq gap (deleted), a duplicate seq, a prev_hash that is
// not the previous row's hash (inserted, reordered), rows beyond the chain
// head or missing before it. It returns an error only if it could not read
// the chain.
//
// The chain head and the rows must be read from one snapshot: given a pool
// or a connection, Verify reads in a read-only repeatable-read transaction
// of its own; given a transaction, it should be a repeatable-read one.
//
// A hash chain shows tampering by anyone who does not rewrite every later
// row and the head as well. To catch that too, keep Report.Checkpoint of a
// verified chain somewhere outside the database and pass it back as expect:
// the chain must still reach each checkpoint's seq
// (ReasonCheckpointMissing) with the same hash there
// (ReasonCheckpointMismatch).
func Verify(ctx context.Context, q db.Querier, expect ...Checkpoint) (Report, error) {
	var rep Report
	run := func(tx db.Querier) error {
		var err error
		rep, err = verify(ctx, tx, expect)
		return err
	}
	var err error
	if b, ok := q.(txOptBeginner); ok {
		err = pgx.BeginTxFunc(ctx, b, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
			func(tx pgx.Tx) error { return run(tx) })
	} else {
		err = run(q)
	}
	if err != nil {
		return rep, fmt.Errorf("verify audit chain: %w", db.Map(err))
	}
	return rep, nil
}

type txOptBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// verifyPage is how many rows Verify reads per query.
var verifyPage = 5000

func verify(ctx context.Context, q db.Querier, expect []Checkpoint) (Report, error) {
	var rep Report
	var head []byte
	if err := q.QueryRow(ctx, `SELECT seq, hash FROM audit_chain_head`).Scan(&rep.HeadSeq, &head); err != nil {
		return rep, fmt.Errorf("read chain head: %w", err)
	}
	rep.HeadHash = head
	expect = slices.SortedFunc(slices.Values(expect), func(a, b Checkpoint) int { return cmp.Compare(a.Seq, b.Seq) })
	c := newChecker(expect...)
	var r Row
	// Keyset pages in (seq, at) order: each page an index walk of bounded
	// size, so neither side ever holds or sorts the whole table.
	for first, more := true, true; more && c.broken == nil; first = false {
		var rows pgx.Rows
		var err error
		if first {
			rows, err = q.Query(ctx, `SELECT `+columns+` FROM audit_events ORDER BY seq, at LIMIT $1`, verifyPage)
		} else {
			rows, err = q.Query(ctx, `SELECT `+columns+` FROM audit_events WHERE (seq, at) > ($1, $2) ORDER BY seq, at LIMIT $3`,
				r.Seq, r.At, verifyPage)
		}
		if err != nil {
			return rep, fmt.Errorf("read audit rows: %w", err)
		}
		n := 0
		for rows.Next() {
			n++
			if err := scanRow(rows, &r); err != nil {
				if !errors.Is(err, ErrMalformedRow) {
					rows.Close()
					return rep, fmt.Errorf("read audit row after seq %d: %w", c.lastSeq, err)
				}
				c.broken = &Break{Seq: r.Seq, Reason: ReasonMalformed, Detail: err.Error()}
				break
			}
			if r.Seq > rep.HeadSeq && r.Seq >= c.expect {
				if c.expect <= rep.HeadSeq {
					c.broken = &Break{Seq: c.expect, Reason: ReasonMissing,
						Detail: fmt.Sprintf("rows %d..%d missing: deleted", c.expect, rep.HeadSeq)}
				} else {
					c.broken = &Break{Seq: r.Seq, Reason: ReasonAfterHead,
						Detail: fmt.Sprintf("row beyond the chain head (seq %d): inserted", rep.HeadSeq)}
				}
				break
			}
			if !c.add(&r) {
				break
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return rep, fmt.Errorf("read audit rows: %w", err)
		}
		more = n == verifyPage
	}
	if c.broken == nil {
		switch {
		case c.lastSeq < rep.HeadSeq:
			c.broken = &Break{Seq: c.lastSeq + 1, Reason: ReasonMissing,
				Detail: fmt.Sprintf("rows %d..%d missing: the chain head is at %d (rows deleted from the end)", c.lastSeq+1, rep.HeadSeq, rep.HeadSeq)}
		case !bytes.Equal(c.lastHash, rep.HeadHash):
			c.broken = &Break{Seq: c.lastSeq, Reason: ReasonHead,
				Detail: fmt.Sprintf("last row's hash %x is not the chain head's %x", []byte(c.lastHash), head)}
		}
	}
	if c.broken == nil {
		for _, cp := range expect { // sorted by seq
			if cp.Seq > c.lastSeq {
				c.broken = &Break{Seq: c.lastSeq + 1, Reason: ReasonCheckpointMissing,
					Detail: fmt.Sprintf("the chain ends at seq %d, before the kept checkpoint %s: rows from %d on were deleted, the chain head with them",
						c.lastSeq, cp, c.lastSeq+1)}
				break
			}
		}
	}
	rep.Rows, rep.LastSeq, rep.LastHash, rep.Broken = c.rows, c.lastSeq, c.lastHash, c.broken
	return rep, nil
}

// checker follows the chain one row at a time.
type checker struct {
	expect   int64 // seq the next row must have
	prev     Hash  // hash the next row must name as prev_hash
	rows     int64 // rows verified
	lastSeq  int64
	lastHash Hash
	broken   *Break
	enc      encoder
	// kept holds the hashes of kept checkpoints by seq.
	kept map[int64][]Hash
}

func newChecker(expect ...Checkpoint) *checker {
	c := &checker{expect: 1, prev: genesis, lastHash: genesis}
	if len(expect) > 0 {
		c.kept = make(map[int64][]Hash, len(expect))
		for _, cp := range expect {
			c.kept[cp.Seq] = append(c.kept[cp.Seq], cp.Hash)
		}
	}
	return c
}

// add checks r as the next row; false means the chain broke at it (see
// c.broken).
func (c *checker) add(r *Row) bool {
	switch {
	case r.Seq < c.expect:
		c.broken = &Break{Seq: r.Seq, Reason: ReasonDuplicate, Detail: fmt.Sprintf("a second row with seq %d: inserted", r.Seq)}
		return false
	case r.Seq > c.expect:
		c.broken = &Break{Seq: c.expect, Reason: ReasonMissing,
			Detail: fmt.Sprintf("rows %d..%d missing: deleted", c.expect, r.Seq-1)}
		return false
	}
	if err := c.enc.row(r); err != nil {
		c.broken = &Break{Seq: r.Seq, Reason: ReasonMalformed, Detail: err.Error()}
		return false
	}
	if sum := sha256.Sum256(c.enc.buf); !bytes.Equal(sum[:], r.Hash) {
		c.broken = &Break{Seq: r.Seq, Reason: ReasonEdited,
			Detail: fmt.Sprintf("stored hash %x, fields hash to %x: row edited", []byte(r.Hash), sum[:])}
		return false
	}
	if !bytes.Equal(r.PrevHash, c.prev) {
		c.broken = &Break{Seq: r.Seq, Reason: ReasonLink,
			Detail: fmt.Sprintf("prev_hash %x is not row %d's hash %x: rows inserted, deleted or reordered", []byte(r.PrevHash), r.Seq-1, []byte(c.prev))}
		return false
	}
	for _, h := range c.kept[r.Seq] {
		if !bytes.Equal(h, r.Hash) {
			c.broken = &Break{Seq: r.Seq, Reason: ReasonCheckpointMismatch,
				Detail: fmt.Sprintf("row %d's hash is %x, the kept checkpoint %s says otherwise: the chain was rewritten from this row or before",
					r.Seq, []byte(r.Hash), Checkpoint{Seq: r.Seq, Hash: h})}
			return false
		}
	}
	c.rows++
	c.expect++
	c.lastSeq = r.Seq
	c.prev = append(c.prev[:0:0], r.Hash...)
	c.lastHash = c.prev
	return true
}

// Checkpoint is a row of a verified chain, kept outside the database: its
// seq and hash. Written "seq:hex-hash" (String, ParseCheckpoint).
type Checkpoint struct {
	Seq  int64
	Hash Hash
}

func (c Checkpoint) String() string { return fmt.Sprintf("%d:%s", c.Seq, c.Hash) }

// ParseCheckpoint reads a checkpoint written as String writes it: a seq of
// at least 1, a colon, and the row's SHA-256 hash in hex.
func ParseCheckpoint(s string) (Checkpoint, error) {
	seq, hx, ok := strings.Cut(s, ":")
	if !ok {
		return Checkpoint{}, fmt.Errorf("checkpoint %q: want seq:hash, e.g. 42:%s", s, strings.Repeat("0", 2*HashSize))
	}
	n, err := strconv.ParseInt(seq, 10, 64)
	if err != nil || n < 1 {
		return Checkpoint{}, fmt.Errorf("checkpoint %q: the seq %q is not a row number (1 or more)", s, seq)
	}
	h, err := hex.DecodeString(hx)
	if err != nil || len(h) != HashSize {
		return Checkpoint{}, fmt.Errorf("checkpoint %q: the hash is not %d hex digits", s, 2*HashSize)
	}
	return Checkpoint{Seq: n, Hash: h}, nil
}
