package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"
	"time"
)

// goldenRow is a version 1 row; goldenRow2 the same row hashed with
// version 2, standing for 3 calls.
func goldenRow() Row {
	return Row{
		Seq: 42, Chain: 1, ChainSeq: 42, At: time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC),
		RequestID: "req", Transport: "sse", Subject: "user:00000000-0000-0000-0000-000000000001",
		Groups: []string{"group:a", "group:b"}, Action: "connector.read", Tool: "connector_invoke",
		ConnectorType: ptr("echo"), InstanceID: ptr("00000000-0000-0000-0000-000000000002"), Operation: ptr("echo.read"),
		Decision: Allow, Reason: "rule", PolicyVersion: ptr(int64(3)), TaskID: ptr("00000000-0000-0000-0000-000000000003"),
		AgentID: ptr("planner"), Status: StatusOK, DurationUS: 1500, Count: 1, HashVersion: 1, PrevHash: genesis,
	}
}

func goldenRow2() Row {
	r := goldenRow()
	r.HashVersion, r.Count = 2, 3
	r.TaskBound = []string{"project_id", "agent_id"}
	return r
}

// goldenRow3 is goldenRow2 hashed with version 3: position 7 of chain 2
// (its seq, 42, is not covered any more).
func goldenRow3() Row {
	r := goldenRow2()
	r.HashVersion, r.Chain, r.ChainSeq = 3, 2, 7
	return r
}

// The version 1 encoding never changes: rows hashed with it must verify
// forever. A change to the encoding needs a new HashVersion.
func TestHashVersion1IsFrozen(t *testing.T) {
	r := goldenRow()
	h, err := r.ComputeHash()
	if err != nil {
		t.Fatal(err)
	}
	const want = "f4e3205eb362dbdc4bf416f5008072407142dcb7baf46f5b87a818512aa7f157"
	if got := hex.EncodeToString(h); got != want {
		t.Fatalf("v1 hash of the golden row = %s, want %s", got, want)
	}
	// The same, spelled out byte by byte as the encoder's doc describes.
	var b []byte
	i64 := func(v int64) { b = binary.BigEndian.AppendUint64(b, uint64(v)) }
	str := func(s string) { b = binary.BigEndian.AppendUint32(b, uint32(len(s))); b = append(b, s...) }
	id := func(last byte) { b = append(b, 1); b = append(b, make([]byte, 15)...); b = append(b, last) }
	b = append(b, "connec.audit\x00"...)
	b = append(b, 0, 1)
	i64(42)
	i64(time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC).UnixMicro())
	str("req")
	str("sse")
	str("user:00000000-0000-0000-0000-000000000001")
	b = binary.BigEndian.AppendUint32(b, 2)
	str("group:a")
	str("group:b")
	str("connector.read")
	str("connector_invoke")
	b = append(b, 1)
	str("echo")
	id(2)
	b = append(b, 1)
	str("echo.read")
	b = append(b, 0) // resource
	str("allow")
	str("rule")
	b = append(b, 1)
	i64(3)
	id(3)                  // task_id
	b = append(b, 0, 0, 0) // project_id, run_id, job_id
	b = append(b, 1)
	str("planner")
	str("ok")
	b = append(b, 0) // error_type
	i64(1500)
	str(string(genesis))
	if sum := sha256.Sum256(b); !bytes.Equal(sum[:], h) {
		t.Fatalf("encoding differs from its specification: %x", sum)
	}
}

// The version 2 encoding is version 1's with the count before prev_hash,
// and never changes either. A version 1 row stands for one call: one
// claiming more is malformed, since its hash does not cover the count.
func TestHashVersion2IsFrozen(t *testing.T) {
	r := goldenRow2()
	h, err := r.ComputeHash()
	if err != nil {
		t.Fatal(err)
	}
	const want = "7e1091e51b5a81a34118234f6f6429af955a8f79f34ce17bf312e13a88050385"
	if got := hex.EncodeToString(h); got != want {
		t.Fatalf("v2 hash of the golden row = %s, want %s", got, want)
	}
	var e1 encoder
	v1 := goldenRow()
	if err := e1.row(&v1); err != nil {
		t.Fatal(err)
	}
	b := bytes.Clone(e1.buf[:len(e1.buf)-4-HashSize]) // v1 less prev_hash
	b[len(encodingTag)+1] = 2                         // the version
	b = binary.BigEndian.AppendUint64(b, 3)
	b = binary.BigEndian.AppendUint32(b, 2) // task_bound: two fields
	for _, f := range []string{"project_id", "agent_id"} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	b = binary.BigEndian.AppendUint32(b, HashSize)
	b = append(b, genesis...)
	if sum := sha256.Sum256(b); !bytes.Equal(sum[:], h) {
		t.Fatalf("encoding differs from its specification: %x", sum)
	}
	for _, bad := range []struct {
		version int16
		count   int64
	}{{1, 2}, {1, 0}, {2, 0}, {2, -1}} {
		r := goldenRow()
		r.HashVersion, r.Count = bad.version, bad.count
		if _, err := r.ComputeHash(); !errors.Is(err, ErrMalformedRow) {
			t.Errorf("version %d with count %d: %v, want malformed", bad.version, bad.count, err)
		}
	}
}

// The version 3 encoding is version 2's with the chain and the position in
// it where the seq was, and never changes either. A row of an earlier
// version is in chain 1 at its seq: anything else on it is malformed.
func TestHashVersion3IsFrozen(t *testing.T) {
	r := goldenRow3()
	h, err := r.ComputeHash()
	if err != nil {
		t.Fatal(err)
	}
	const want = "78e255da4f87684f259b2edd2a962033d63adcca827e3bd45acf2fb235a999a3"
	if got := hex.EncodeToString(h); got != want {
		t.Fatalf("v3 hash of the golden row = %s, want %s", got, want)
	}
	var e2 encoder
	v2 := goldenRow2()
	if err := e2.row(&v2); err != nil {
		t.Fatal(err)
	}
	tag := len(encodingTag)
	b := bytes.Clone(e2.buf[:tag])
	b = append(b, 0, 3)
	b = binary.BigEndian.AppendUint64(b, 2) // chain
	b = binary.BigEndian.AppendUint64(b, 7) // position
	b = append(b, e2.buf[tag+2+8:]...)      // v2 from at on
	if sum := sha256.Sum256(b); !bytes.Equal(sum[:], h) {
		t.Fatalf("encoding differs from its specification: %x", sum)
	}
	r.Seq = 99 // not covered
	if h2, _ := r.ComputeHash(); !h2.equal(h) {
		t.Error("the v3 hash depends on seq")
	}
	for name, edit := range map[string]func(r *Row){
		"v2 in chain 2":       func(r *Row) { r.HashVersion, r.Chain = 2, 2 },
		"v2 off its seq":      func(r *Row) { r.HashVersion, r.Chain, r.ChainSeq = 2, 1, 43 },
		"v1 off its seq":      func(r *Row) { r.HashVersion, r.Count, r.TaskBound, r.Chain, r.ChainSeq = 1, 1, nil, 1, 7 },
		"v3 without a chain":  func(r *Row) { r.Chain = 0 },
		"v3 at position zero": func(r *Row) { r.ChainSeq = 0 },
	} {
		r := goldenRow3()
		edit(&r)
		if _, err := r.ComputeHash(); !errors.Is(err, ErrMalformedRow) {
			t.Errorf("%s: %v, want malformed", name, err)
		}
	}
}

// Every field counts, and no two different rows encode alike — not even
// when bytes move between neighbouring fields or an optional field is
// empty rather than absent.
func TestHashCoversEveryFieldUnambiguously(t *testing.T) {
	base := goldenRow3()
	baseHash, _ := base.ComputeHash()
	edits := map[string]func(r *Row){
		"chain":               func(r *Row) { r.Chain++ },
		"chain_seq":           func(r *Row) { r.ChainSeq++ },
		"chain into position": func(r *Row) { r.Chain, r.ChainSeq = 7, 2 },
		"at +1us":             func(r *Row) { r.At = r.At.Add(time.Microsecond) },
		"request_id":          func(r *Row) { r.RequestID += "x" },
		"shift into next":     func(r *Row) { r.RequestID, r.Transport = "re", "qsse" },
		"transport":           func(r *Row) { r.Transport = "stdio" },
		"subject":             func(r *Row) { r.Subject += "x" },
		"groups order":        func(r *Row) { r.Groups = []string{"group:b", "group:a"} },
		"groups joined":       func(r *Row) { r.Groups = []string{"group:agroup:b"} },
		"groups one more":     func(r *Row) { r.Groups = append(r.Groups, "") },
		"action":              func(r *Row) { r.Action = "connector.send" },
		"tool":                func(r *Row) { r.Tool += "x" },
		"connector_type nil":  func(r *Row) { r.ConnectorType = nil },
		"connector_type ''":   func(r *Row) { r.ConnectorType = ptr("") },
		"instance_id":         func(r *Row) { r.InstanceID = ptr("00000000-0000-0000-0000-000000000009") },
		"instance_id nil":     func(r *Row) { r.InstanceID = nil },
		"operation":           func(r *Row) { r.Operation = ptr("echo.send") },
		"resource set":        func(r *Row) { r.Resource = ptr("") },
		"decision":            func(r *Row) { r.Decision = Deny },
		"reason":              func(r *Row) { r.Reason = "" },
		"policy_version":      func(r *Row) { r.PolicyVersion = ptr(int64(4)) },
		"policy_version nil":  func(r *Row) { r.PolicyVersion = nil },
		"task_id":             func(r *Row) { r.TaskID = nil },
		"project_id":          func(r *Row) { r.ProjectID = ptr("00000000-0000-0000-0000-000000000003") },
		"run_id":              func(r *Row) { r.RunID = ptr("00000000-0000-0000-0000-000000000003") },
		"job_id":              func(r *Row) { r.JobID = ptr("00000000-0000-0000-0000-000000000003") },
		"agent_id":            func(r *Row) { r.AgentID = ptr("planner2") },
		"status":              func(r *Row) { r.Status = StatusError },
		"error_type":          func(r *Row) { r.ErrorType = ptr("timeout") },
		"duration_us":         func(r *Row) { r.DurationUS++ },
		"count":               func(r *Row) { r.Count++ },
		"version 2":           func(r *Row) { r.HashVersion, r.Chain, r.ChainSeq = 2, 1, r.Seq },
		"version 1, count 1":  func(r *Row) { r.HashVersion, r.Count, r.TaskBound, r.Chain, r.ChainSeq = 1, 1, nil, 1, r.Seq },
		"task_bound order":    func(r *Row) { r.TaskBound = []string{"agent_id", "project_id"} },
		"task_bound fewer":    func(r *Row) { r.TaskBound = r.TaskBound[:1] },
		"task_bound none":     func(r *Row) { r.TaskBound = nil },
		"task_bound joined":   func(r *Row) { r.TaskBound = []string{"project_idagent_id"} },
		"prev_hash":           func(r *Row) { r.PrevHash = append(Hash{1}, genesis[1:]...) },
		"prev_hash truncated": func(r *Row) { r.PrevHash = genesis[1:] },
	}
	seen := map[string]string{hex.EncodeToString(baseHash): "base"}
	for name, edit := range edits {
		r := goldenRow3()
		edit(&r)
		h, err := r.ComputeHash()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if other, dup := seen[hex.EncodeToString(h)]; dup {
			t.Errorf("%s hashes like %s", name, other)
		}
		seen[hex.EncodeToString(h)] = name
	}
	// The stored hash itself is not an input.
	r := goldenRow3()
	r.Hash = Hash{1, 2, 3}
	if h, _ := r.ComputeHash(); !h.equal(baseHash) {
		t.Error("hash depends on the stored hash")
	}
	r.HashVersion = 4
	if _, err := r.ComputeHash(); !errors.Is(err, ErrUnknownHashVersion) {
		t.Error("unknown hash version accepted")
	}
}
