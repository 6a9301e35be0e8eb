package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/connec/connec/callctx"
)

// HashVersion is the version of the canonical row encoding new rows are
// hashed with. A row stores the version it was hashed with, so the encoding
// can change later without breaking the verification of older rows.
// Version 2 added the count; version 3 places the row by its chain and its
// position there instead of by seq.
const HashVersion = 3

// HashSize is the length of a row hash (SHA-256).
const HashSize = sha256.Size

// genesis is the prev_hash of the first row: HashSize zero bytes.
var genesis = make(Hash, HashSize)

// Hash is a row hash; it prints and marshals as lower-case hex.
type Hash []byte

// MarshalText renders h as hex.
func (h Hash) MarshalText() ([]byte, error) {
	out := make([]byte, hex.EncodedLen(len(h)))
	hex.Encode(out, h)
	return out, nil
}

// UnmarshalText parses hex.
func (h *Hash) UnmarshalText(b []byte) error {
	out := make([]byte, hex.DecodedLen(len(b)))
	if _, err := hex.Decode(out, b); err != nil {
		return fmt.Errorf("hash: %w", err)
	}
	*h = out
	return nil
}

// String renders h as hex.
func (h Hash) String() string { return hex.EncodeToString(h) }

// Row is one stored audit row: the event as stored (optional fields nil when
// absent, never empty) plus its place in the trail. Export writes it as one
// JSON object with these field names, which are stable.
type Row struct {
	// Seq orders the whole trail: rows are listed and paged by it. From
	// hash version 3 on it is drawn from a sequence as the row is inserted
	// and the hash does not cover it; a row's place is Chain and ChainSeq.
	// Before, there was one chain, and Seq was the place in it.
	Seq int64 `json:"seq"`
	// Chain is the chain the row belongs to (1 for every row of hash
	// version 1 and 2) and ChainSeq its position there: 1, 2, … without
	// gaps (Seq, for rows of version 1 and 2).
	Chain         int64     `json:"chain"`
	ChainSeq      int64     `json:"chain_seq"`
	At            time.Time `json:"at"`
	RequestID     string    `json:"request_id"`
	Transport     string    `json:"transport"`
	Subject       string    `json:"subject"`
	Groups        []string  `json:"subject_groups"`
	Action        string    `json:"action"`
	Tool          string    `json:"tool"`
	ConnectorType *string   `json:"connector_type"`
	InstanceID    *string   `json:"instance_id"`
	Operation     *string   `json:"operation"`
	Resource      *string   `json:"resource"`
	Decision      string    `json:"decision"`
	Reason        string    `json:"reason"`
	PolicyVersion *int64    `json:"policy_version"`
	TaskID        *string   `json:"task_id"`
	ProjectID     *string   `json:"project_id"`
	RunID         *string   `json:"run_id"`
	JobID         *string   `json:"job_id"`
	AgentID       *string   `json:"agent_id"`
	Status        string    `json:"status"`
	ErrorType     *string   `json:"error_type"`
	DurationUS    int64     `json:"duration_us"`
	// Count is how many calls the row stands for: 1, except for the
	// aggregated rows of failed authentications (see Event.Count).
	Count int64 `json:"count"`
	// TaskBound names the task context fields that came from the caller's
	// credentials (a task-bound token), not from the call; the others are
	// the caller's own claim. Empty on version 1 rows.
	TaskBound   []string `json:"task_bound"`
	HashVersion int16    `json:"hash_version"`
	PrevHash    Hash     `json:"prev_hash"`
	Hash        Hash     `json:"hash"`
}

// ComputeHash recomputes r's hash from its fields and PrevHash with the
// encoding r.HashVersion names. Anyone holding an export can check a row
// (and, row by row, the chain) with it.
func (r *Row) ComputeHash() (Hash, error) {
	var e encoder
	if err := e.row(r); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(e.buf)
	return sum[:], nil
}

// encoder builds the canonical encoding of a row. Version 1 is, in order:
//
//	"connec.audit\x00", uint16 version,
//	int64 seq, int64 at (Unix microseconds, UTC),
//	request_id, transport, subject, uint32 len(groups) then each group,
//	action, tool, ?connector_type, ?instance_id, ?operation, ?resource,
//	decision, reason, ?policy_version, ?task_id, ?project_id, ?run_id,
//	?job_id, ?agent_id, status, ?error_type, int64 duration_us,
//	prev_hash.
//
// Version 2 is version 1 with int64 count and then uint32 len(task_bound)
// and each of its strings between duration_us and prev_hash. A version 1
// row covers no count, so it must count one: any other count on it is
// refused as malformed (an edit of the count).
//
// Version 3 is version 2 with int64 chain, int64 chain_seq in place of
// seq. A row of version 1 or 2 belongs to chain 1 at position seq: any
// other chain or position on it is refused as malformed.
//
// Integers are big-endian. A string or byte field is uint32 length then its
// bytes; a uuid is its 16 bytes. A field marked ? is optional: 0x00 when
// absent (NULL), else 0x01 then the value. Every field has a fixed place and
// every variable-length one a length prefix, so no two rows encode alike.
type encoder struct{ buf []byte }

const encodingTag = "connec.audit\x00"

func (e *encoder) u8(v byte)    { e.buf = append(e.buf, v) }
func (e *encoder) u16(v uint16) { e.buf = binary.BigEndian.AppendUint16(e.buf, v) }
func (e *encoder) u32(v uint32) { e.buf = binary.BigEndian.AppendUint32(e.buf, v) }
func (e *encoder) i64(v int64)  { e.buf = binary.BigEndian.AppendUint64(e.buf, uint64(v)) }
func (e *encoder) bytes(b []byte) {
	e.u32(uint32(len(b)))
	e.buf = append(e.buf, b...)
}
func (e *encoder) str(s string) {
	e.u32(uint32(len(s)))
	e.buf = append(e.buf, s...)
}

func (e *encoder) optStr(s *string) {
	if s == nil {
		e.u8(0)
		return
	}
	e.u8(1)
	e.str(*s)
}

func (e *encoder) optInt(v *int64) {
	if v == nil {
		e.u8(0)
		return
	}
	e.u8(1)
	e.i64(*v)
}

func (e *encoder) optUUID(field string, s *string) error {
	if s == nil {
		e.u8(0)
		return nil
	}
	u, err := uuid.Parse(*s)
	if err != nil {
		return fmt.Errorf("%w: %s %q is not a uuid", ErrMalformedRow, field, *s)
	}
	e.u8(1)
	e.buf = append(e.buf, u[:]...)
	return nil
}

func (e *encoder) row(r *Row) error {
	switch {
	case r.HashVersion < 1 || r.HashVersion > 3:
		return fmt.Errorf("%w: %d", ErrUnknownHashVersion, r.HashVersion)
	case r.HashVersion < 3 && (r.Chain != 1 || r.ChainSeq != r.Seq):
		return fmt.Errorf("%w: chain %d position %d on a version %d row, which has one chain and its seq as position",
			ErrMalformedRow, r.Chain, r.ChainSeq, r.HashVersion)
	case r.HashVersion >= 3 && (r.Chain < 1 || r.ChainSeq < 1):
		return fmt.Errorf("%w: chain %d position %d", ErrMalformedRow, r.Chain, r.ChainSeq)
	case r.Count < 1:
		return fmt.Errorf("%w: count %d", ErrMalformedRow, r.Count)
	case r.HashVersion == 1 && r.Count != 1:
		return fmt.Errorf("%w: count %d on a version 1 row, which stands for one call", ErrMalformedRow, r.Count)
	case r.HashVersion == 1 && len(r.TaskBound) > 0:
		return fmt.Errorf("%w: bound task fields on a version 1 row, which has none", ErrMalformedRow)
	}
	e.buf = append(e.buf[:0], encodingTag...)
	e.u16(uint16(r.HashVersion))
	if r.HashVersion >= 3 {
		e.i64(r.Chain)
		e.i64(r.ChainSeq)
	} else {
		e.i64(r.Seq)
	}
	e.i64(r.At.UnixMicro())
	e.str(r.RequestID)
	e.str(r.Transport)
	e.str(r.Subject)
	e.u32(uint32(len(r.Groups)))
	for _, g := range r.Groups {
		e.str(g)
	}
	e.str(r.Action)
	e.str(r.Tool)
	e.optStr(r.ConnectorType)
	if err := e.optUUID("instance_id", r.InstanceID); err != nil {
		return err
	}
	e.optStr(r.Operation)
	e.optStr(r.Resource)
	e.str(r.Decision)
	e.str(r.Reason)
	e.optInt(r.PolicyVersion)
	for _, f := range []struct {
		name string
		v    *string
	}{{"task_id", r.TaskID}, {"project_id", r.ProjectID}, {"run_id", r.RunID}, {"job_id", r.JobID}} {
		if err := e.optUUID(f.name, f.v); err != nil {
			return err
		}
	}
	e.optStr(r.AgentID)
	e.str(r.Status)
	e.optStr(r.ErrorType)
	e.i64(r.DurationUS)
	if r.HashVersion >= 2 {
		e.i64(r.Count)
		e.u32(uint32(len(r.TaskBound)))
		for _, f := range r.TaskBound {
			e.str(f)
		}
	}
	e.bytes(r.PrevHash)
	return nil
}

// Earliest and latest times a row may carry: PostgreSQL and Unix
// microseconds both hold them exactly.
var (
	minAt = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxAt = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
)

// NewRow turns ev into the row to store, less its place in the trail (see
// Link). It fills defaults (time now, status ok, subject anonymous), makes
// every string storable (valid UTF-8, no NUL), canonicalises uuids and
// rejects what the database would refuse (ErrInvalidEvent), so that one bad
// event can never fail a batch of others.
func NewRow(ev Event, now time.Time) (*Row, error) {
	if ev.Decision != Allow && ev.Decision != Deny {
		return nil, fmt.Errorf("%w: decision %q", ErrInvalidEvent, ev.Decision)
	}
	if ev.Status == "" {
		ev.Status = StatusOK
	}
	if ev.Status != StatusOK && ev.Status != StatusError {
		return nil, fmt.Errorf("%w: status %q", ErrInvalidEvent, ev.Status)
	}
	if ev.Subject == "" {
		ev.Subject = callctx.Anonymous
	}
	if ev.Count < 0 {
		return nil, fmt.Errorf("%w: count %d", ErrInvalidEvent, ev.Count)
	}
	at := ev.At
	if at.IsZero() {
		at = now
	}
	at = at.UTC().Truncate(time.Microsecond)
	if at.Before(minAt) || at.After(maxAt) {
		return nil, fmt.Errorf("%w: time %s out of range", ErrInvalidEvent, at)
	}
	r := &Row{
		At:          at,
		RequestID:   clean(ev.RequestID),
		Transport:   clean(ev.Transport),
		Subject:     clean(string(ev.Subject)),
		Groups:      make([]string, len(ev.Groups)),
		Action:      clean(ev.Action),
		Tool:        clean(ev.Tool),
		Decision:    ev.Decision,
		Reason:      clean(ev.Reason),
		Status:      ev.Status,
		DurationUS:  max(ev.Duration.Microseconds(), 0),
		Count:       max(ev.Count, 1),
		TaskBound:   ev.Task.Bound.Fields(),
		HashVersion: HashVersion,
	}
	if r.TaskBound == nil {
		r.TaskBound = []string{}
	}
	for i, g := range ev.Groups {
		r.Groups[i] = clean(string(g))
	}
	r.ConnectorType = optional(ev.ConnectorType)
	r.Operation = optional(ev.Operation)
	r.Resource = optional(ev.Resource)
	r.AgentID = optional(ev.Task.AgentID)
	r.ErrorType = optional(ev.ErrorType)
	if ev.PolicyVersion != 0 {
		v := ev.PolicyVersion
		r.PolicyVersion = &v
	}
	for _, f := range []struct {
		name string
		in   string
		out  **string
	}{
		{"instance_id", ev.InstanceID, &r.InstanceID},
		{"task_id", ev.Task.TaskID, &r.TaskID},
		{"project_id", ev.Task.ProjectID, &r.ProjectID},
		{"run_id", ev.Task.RunID, &r.RunID},
		{"job_id", ev.Task.JobID, &r.JobID},
	} {
		if f.in == "" {
			continue
		}
		u, err := uuid.Parse(f.in)
		if err != nil {
			return nil, fmt.Errorf("%w: %s %q is not a uuid", ErrInvalidEvent, f.name, f.in)
		}
		s := u.String()
		*f.out = &s
	}
	return r, nil
}

// clean makes s storable as PostgreSQL text: valid UTF-8 without NUL.
func clean(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	c := clean(s)
	return &c
}

// Link places rows after head in chain and hashes them: each gets the next
// position and the previous row's hash. It returns the new head. Rows are
// hashed with HashVersion; their Seq is drawn when they are inserted.
func Link(rows []*Row, chain int64, head Head) (Head, error) {
	var e encoder
	seq, prev := head.Seq, head.Hash
	if len(prev) == 0 {
		prev = genesis
	}
	for _, r := range rows {
		seq++
		r.Chain, r.ChainSeq, r.PrevHash = chain, seq, prev
		if err := e.row(r); err != nil {
			return Head{}, err
		}
		sum := sha256.Sum256(e.buf)
		r.Hash = sum[:]
		prev = r.Hash
	}
	return Head{Seq: seq, Hash: prev}, nil
}

// columns lists audit_events' columns in Row order. A row of hash version
// 1 or 2 has no chain_seq stored: its position is its seq.
const columns = `seq, chain, COALESCE(chain_seq, seq), at, request_id, transport, subject, subject_groups, action, tool,
 connector_type, instance_id, operation, resource, decision, reason, policy_version, task_id, project_id, run_id, job_id,
 agent_id, status, error_type, duration_us, count, task_bound, hash_version, prev_hash, hash`

// InsertColumns are the columns a new row is inserted with (seq is drawn
// from audit_events_seq), in InsertArgs' order.
const InsertColumns = `chain, chain_seq, at, request_id, transport, subject, subject_groups, action, tool, connector_type,
 instance_id, operation, resource, decision, reason, policy_version, task_id, project_id, run_id, job_id, agent_id, status,
 error_type, duration_us, count, task_bound, hash_version, prev_hash, hash`

// scanRow reads one row selected as columns into r. r.Groups is reused.
func scanRow(rows pgx.Rows, r *Row) error {
	var groups []*string
	if err := rows.Scan(&r.Seq, &r.Chain, &r.ChainSeq, &r.At, &r.RequestID, &r.Transport, &r.Subject, &groups, &r.Action, &r.Tool,
		&r.ConnectorType, &r.InstanceID, &r.Operation, &r.Resource, &r.Decision, &r.Reason, &r.PolicyVersion,
		&r.TaskID, &r.ProjectID, &r.RunID, &r.JobID, &r.AgentID, &r.Status, &r.ErrorType, &r.DurationUS,
		&r.Count, &r.TaskBound, &r.HashVersion, (*[]byte)(&r.PrevHash), (*[]byte)(&r.Hash)); err != nil {
		return err
	}
	r.At = r.At.UTC()
	r.Groups = r.Groups[:0]
	if r.Groups == nil {
		r.Groups = []string{}
	}
	for _, g := range groups {
		if g == nil {
			return fmt.Errorf("%w: NULL in subject_groups", ErrMalformedRow)
		}
		r.Groups = append(r.Groups, *g)
	}
	return nil
}
