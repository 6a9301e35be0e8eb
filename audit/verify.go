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

// Reason says how the trail is broken.
type Reason string

// Reasons a link breaks.
const (
	// ReasonEdited: the row's hash does not match its fields (row edited).
	ReasonEdited Reason = "hash_mismatch"
	// ReasonLink: the row's prev_hash is not the previous row's hash (a row
	// inserted, deleted and renumbered, or reordered).
	ReasonLink Reason = "prev_hash_mismatch"
	// ReasonMissing: a chain skips positions (rows deleted).
	ReasonMissing Reason = "missing_rows"
	// ReasonDuplicate: a second row at a chain's position (row inserted, or
	// rows reordered).
	ReasonDuplicate Reason = "duplicate_seq"
	// ReasonAfterHead: a row beyond its chain's head (row inserted).
	ReasonAfterHead Reason = "after_head"
	// ReasonHead: a chain's last row is not the one its head names (rows
	// deleted from its end, or the head edited).
	ReasonHead Reason = "head_mismatch"
	// ReasonMalformed: the row cannot be encoded (a field edited into
	// something connec never writes).
	ReasonMalformed Reason = "malformed_row"
	// ReasonUnknownChain: a row of a chain the trail has no record of (row
	// inserted, or the chain's record deleted).
	ReasonUnknownChain Reason = "unknown_chain"
	// ReasonChainMissing: chains are numbered without gaps, and one is
	// missing (a whole chain deleted with its record).
	ReasonChainMissing Reason = "chain_missing"
	// ReasonCheckpointMissing: a chain ends before the position of a kept
	// checkpoint (its newest rows deleted together with its head), or is
	// gone.
	ReasonCheckpointMissing Reason = "checkpoint_missing"
	// ReasonCheckpointMismatch: the row at a kept checkpoint's position has
	// another hash (the chain rewritten from that row or before, every later
	// hash and the head recomputed).
	ReasonCheckpointMismatch Reason = "checkpoint_mismatch"
)

// Break is the first broken link: the chain and the position in it at
// which the trail stops verifying, why, and a human-readable detail.
type Break struct {
	// Chain and Seq are the chain and the position in it.
	Chain int64 `json:"chain"`
	Seq   int64 `json:"seq"`
	// Row is the seq of the row found broken (0 when the break is rows
	// missing).
	Row    int64  `json:"row,omitempty"`
	Reason Reason `json:"reason"`
	Detail string `json:"detail"`
}

func (b *Break) String() string {
	return fmt.Sprintf("chain %d seq %d: %s: %s", b.Chain, b.Seq, b.Reason, b.Detail)
}

// ChainReport is what Verify found in one chain.
type ChainReport struct {
	Chain int64 `json:"chain"`
	// Rows verified; LastSeq and LastHash are the position and hash of the
	// last one.
	Rows     int64 `json:"rows"`
	LastSeq  int64 `json:"last_seq"`
	LastHash Hash  `json:"last_hash"`
	// HeadSeq and HeadHash are where audit_chains says the chain ends.
	HeadSeq  int64 `json:"head_seq"`
	HeadHash Hash  `json:"head_hash"`
}

// Report is what Verify found.
type Report struct {
	// Rows is how many rows verified before the walk ended.
	Rows int64 `json:"rows"`
	// LastSeq and LastHash are the seq and hash of the last row that
	// verified, in the order the trail was walked (seq).
	LastSeq  int64 `json:"last_seq"`
	LastHash Hash  `json:"last_hash"`
	// HeadSeq and HeadHash name the newest row of the trail when it
	// verified whole (the same as LastSeq and LastHash then), else what
	// the walk reached.
	HeadSeq  int64 `json:"head_seq"`
	HeadHash Hash  `json:"head_hash"`
	// Chains reports each chain, in order of their numbers.
	Chains []ChainReport `json:"chains"`
	// Broken is the first broken link, nil if the trail verifies.
	Broken *Break `json:"broken,omitempty"`
}

// Checkpoints are the last row of every chain that holds any, to keep
// outside the database and pass to a later Verify.
func (r Report) Checkpoints() []Checkpoint {
	var out []Checkpoint
	for _, c := range r.Chains {
		if c.LastSeq > 0 {
			out = append(out, Checkpoint{Chain: c.Chain, Seq: c.LastSeq, Hash: c.LastHash})
		}
	}
	return out
}

// OK reports whether the whole trail verified.
func (r Report) OK() bool { return r.Broken == nil }

// Err returns nil if the trail verified, else an error wrapping
// ErrChainBroken that names the first broken link.
func (r Report) Err() error {
	if r.Broken == nil {
		return nil
	}
	return fmt.Errorf("%w at %s", ErrChainBroken, r.Broken)
}

// Verify walks the whole trail — every chain, together, in seq order —
// streaming (memory grows with the number of chains, not rows), and
// reports the first broken link: a row whose hash does not match its
// fields (edited), a chain that skips a position (deleted), a position
// twice (inserted, or reordered), a prev_hash that is not the previous
// row's hash in its chain (inserted, reordered), rows beyond a chain's
// head or missing before it, a row of a chain the trail has no record of,
// a gap in the chains' numbers. It returns an error only if it could not
// read the trail.
//
// The chains' heads and the rows must be read from one snapshot: given a
// pool or a connection, Verify reads in a read-only repeatable-read
// transaction of its own; given a transaction, it should be a
// repeatable-read one.
//
// A hash chain shows tampering by anyone who does not rewrite every later
// row and the head as well. To catch that too, keep Report.Checkpoints of a
// verified trail somewhere outside the database and pass them back as
// expect: each chain must still reach its checkpoint's position
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
		return rep, fmt.Errorf("verify audit trail: %w", db.Map(err))
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
	w := &walk{chains: map[int64]*checker{}}
	rows, err := q.Query(ctx, `SELECT id, head_seq, head_hash FROM audit_chains ORDER BY id`)
	if err != nil {
		return rep, fmt.Errorf("read audit chains: %w", err)
	}
	for rows.Next() {
		c := newChecker()
		if err := rows.Scan(&c.id, &c.headSeq, (*[]byte)(&c.headHash)); err != nil {
			rows.Close()
			return rep, fmt.Errorf("read audit chains: %w", err)
		}
		w.chains[c.id] = c
		w.order = append(w.order, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("read audit chains: %w", err)
	}
	for _, cp := range slices.SortedFunc(slices.Values(expect), func(a, b Checkpoint) int {
		return cmp.Or(cmp.Compare(a.Chain, b.Chain), cmp.Compare(a.Seq, b.Seq))
	}) {
		if c := w.chains[cp.Chain]; c != nil {
			c.keep(cp)
		} else if w.broken == nil {
			w.broken = &Break{Chain: cp.Chain, Seq: 1, Reason: ReasonCheckpointMissing,
				Detail: fmt.Sprintf("chain %d, which the kept checkpoint %s is in, is gone: deleted", cp.Chain, cp)}
		}
	}
	for i, c := range w.order {
		if c.id != int64(i+1) && w.broken == nil {
			w.broken = &Break{Chain: int64(i + 1), Seq: 1, Reason: ReasonChainMissing,
				Detail: fmt.Sprintf("chains are numbered without gaps and chain %d is missing: deleted with its rows", i+1)}
		}
	}
	var r Row
	// Keyset pages in (seq, at) order: each page an index walk of bounded
	// size, so neither side ever holds or sorts the whole table.
	for first, more := true, w.broken == nil; more && w.broken == nil; first = false {
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
					return rep, fmt.Errorf("read audit row after seq %d: %w", w.lastSeq, err)
				}
				w.broken = &Break{Chain: r.Chain, Seq: r.ChainSeq, Row: r.Seq, Reason: ReasonMalformed, Detail: err.Error()}
				break
			}
			if !w.add(&r) {
				break
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return rep, fmt.Errorf("read audit rows: %w", err)
		}
		more = n == verifyPage
	}
	for _, c := range w.order {
		if w.broken == nil {
			w.broken = c.end()
		}
		rep.Chains = append(rep.Chains, ChainReport{Chain: c.id, Rows: c.rows, LastSeq: c.lastSeq, LastHash: c.lastHash,
			HeadSeq: c.headSeq, HeadHash: c.headHash})
	}
	rep.Rows, rep.LastSeq, rep.LastHash, rep.Broken = w.rows, w.lastSeq, w.lastHash, w.broken
	rep.HeadSeq, rep.HeadHash = w.lastSeq, w.lastHash
	return rep, nil
}

// walk follows every chain through the trail in seq order.
type walk struct {
	chains   map[int64]*checker
	order    []*checker // by number
	rows     int64
	lastSeq  int64 // of the last row that verified
	lastHash Hash
	broken   *Break
}

// add checks r as the next row of its chain; false means the trail broke
// at it (see w.broken).
func (w *walk) add(r *Row) bool {
	c := w.chains[r.Chain]
	if c == nil {
		w.broken = &Break{Chain: r.Chain, Seq: r.ChainSeq, Row: r.Seq, Reason: ReasonUnknownChain,
			Detail: fmt.Sprintf("row %d is of chain %d, of which the trail has no record: inserted, or the chain's record deleted", r.Seq, r.Chain)}
		return false
	}
	if w.broken = c.add(r); w.broken != nil {
		return false
	}
	w.rows++
	w.lastSeq, w.lastHash = r.Seq, c.lastHash
	return true
}

// checker follows one chain one row at a time.
type checker struct {
	id       int64
	headSeq  int64
	headHash Hash
	expect   int64 // position the next row must have
	prev     Hash  // hash the next row must name as prev_hash
	rows     int64 // rows verified
	lastSeq  int64 // position of the last row that verified
	lastHash Hash
	enc      encoder
	// kept holds the hashes of kept checkpoints by position; keptMax is
	// the furthest.
	kept    map[int64][]Hash
	keptMax *Checkpoint
}

func newChecker() *checker {
	return &checker{expect: 1, prev: genesis, lastHash: genesis}
}

func (c *checker) keep(cp Checkpoint) {
	if c.kept == nil {
		c.kept = map[int64][]Hash{}
	}
	c.kept[cp.Seq] = append(c.kept[cp.Seq], cp.Hash)
	if c.keptMax == nil || cp.Seq > c.keptMax.Seq {
		c.keptMax = &cp
	}
}

// add checks r as the chain's next row, returning the break if it is not.
func (c *checker) add(r *Row) *Break {
	at := func(reason Reason, detail string, args ...any) *Break {
		return &Break{Chain: c.id, Seq: r.ChainSeq, Row: r.Seq, Reason: reason, Detail: fmt.Sprintf(detail, args...)}
	}
	switch {
	case r.ChainSeq > c.headSeq && r.ChainSeq >= c.expect:
		if c.expect <= c.headSeq {
			return &Break{Chain: c.id, Seq: c.expect, Reason: ReasonMissing,
				Detail: fmt.Sprintf("chain %d: rows %d..%d missing: deleted", c.id, c.expect, c.headSeq)}
		}
		return at(ReasonAfterHead, "chain %d: row %d is beyond the chain's head (%d): inserted", c.id, r.Seq, c.headSeq)
	case r.ChainSeq < c.expect:
		return at(ReasonDuplicate, "chain %d: a second row at %d (row %d): inserted, or rows reordered", c.id, r.ChainSeq, r.Seq)
	case r.ChainSeq > c.expect:
		return &Break{Chain: c.id, Seq: c.expect, Reason: ReasonMissing,
			Detail: fmt.Sprintf("chain %d: rows %d..%d missing: deleted", c.id, c.expect, r.ChainSeq-1)}
	}
	if err := c.enc.row(r); err != nil {
		return at(ReasonMalformed, "%v", err)
	}
	if sum := sha256.Sum256(c.enc.buf); !bytes.Equal(sum[:], r.Hash) {
		return at(ReasonEdited, "chain %d: row %d's stored hash is %x, its fields hash to %x: row edited", c.id, r.Seq, []byte(r.Hash), sum[:])
	}
	if !bytes.Equal(r.PrevHash, c.prev) {
		return at(ReasonLink, "chain %d: row %d's prev_hash %x is not the hash %x of the row before it: rows inserted, deleted or reordered",
			c.id, r.Seq, []byte(r.PrevHash), []byte(c.prev))
	}
	for _, h := range c.kept[r.ChainSeq] {
		if !bytes.Equal(h, r.Hash) {
			return at(ReasonCheckpointMismatch, "chain %d: the row at %d has hash %x, the kept checkpoint %s says otherwise: the chain was rewritten from this row or before",
				c.id, r.ChainSeq, []byte(r.Hash), Checkpoint{Chain: c.id, Seq: r.ChainSeq, Hash: h})
		}
	}
	c.rows++
	c.expect++
	c.lastSeq = r.ChainSeq
	c.prev = append(c.prev[:0:0], r.Hash...)
	c.lastHash = c.prev
	return nil
}

// end checks the chain ends where its head says and reaches every kept
// checkpoint.
func (c *checker) end() *Break {
	switch {
	case c.lastSeq < c.headSeq:
		return &Break{Chain: c.id, Seq: c.lastSeq + 1, Reason: ReasonMissing,
			Detail: fmt.Sprintf("chain %d: rows %d..%d missing: its head is at %d (rows deleted from its end)", c.id, c.lastSeq+1, c.headSeq, c.headSeq)}
	case !bytes.Equal(c.lastHash, c.headHash):
		return &Break{Chain: c.id, Seq: c.lastSeq, Reason: ReasonHead,
			Detail: fmt.Sprintf("chain %d: the last row's hash %x is not its head's %x", c.id, []byte(c.lastHash), []byte(c.headHash))}
	case c.keptMax != nil && c.keptMax.Seq > c.lastSeq:
		return &Break{Chain: c.id, Seq: c.lastSeq + 1, Reason: ReasonCheckpointMissing,
			Detail: fmt.Sprintf("chain %d ends at %d, before the kept checkpoint %s: rows from %d on were deleted, its head with them",
				c.id, c.lastSeq, c.keptMax, c.lastSeq+1)}
	}
	return nil
}

// Checkpoint is a row of a verified chain, kept outside the database: its
// chain, its position there and its hash. Written "chain:seq:hex-hash"
// (String, ParseCheckpoint).
type Checkpoint struct {
	Chain int64
	Seq   int64
	Hash  Hash
}

func (c Checkpoint) String() string { return fmt.Sprintf("%d:%d:%s", c.Chain, c.Seq, c.Hash) }

// ParseCheckpoint reads a checkpoint written as String writes it: a chain
// number and a position, each 1 or more, and the row's SHA-256 hash in hex,
// separated by colons. A checkpoint printed before the trail had several
// chains, "seq:hash", is one of chain 1.
func ParseCheckpoint(s string) (Checkpoint, error) {
	parts := strings.Split(s, ":")
	if len(parts) == 2 {
		parts = append([]string{"1"}, parts...)
	}
	if len(parts) != 3 {
		return Checkpoint{}, fmt.Errorf("checkpoint %q: want chain:seq:hash, e.g. 1:42:%s", s, strings.Repeat("0", 2*HashSize))
	}
	var cp Checkpoint
	for _, f := range []struct {
		name string
		s    string
		v    *int64
	}{{"chain", parts[0], &cp.Chain}, {"seq", parts[1], &cp.Seq}} {
		n, err := strconv.ParseInt(f.s, 10, 64)
		if err != nil || n < 1 {
			return Checkpoint{}, fmt.Errorf("checkpoint %q: the %s %q is not a number of 1 or more", s, f.name, f.s)
		}
		*f.v = n
	}
	h, err := hex.DecodeString(parts[2])
	if err != nil || len(h) != HashSize {
		return Checkpoint{}, fmt.Errorf("checkpoint %q: the hash is not %d hex digits", s, 2*HashSize)
	}
	cp.Hash = h
	return cp, nil
}
