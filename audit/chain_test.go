package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"testing"
	"time"
)

func goldenRow() Row {
	return Row{
		Seq: 42, At: time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC),
		RequestID: "req", Transport: "sse", Subject: "user:00000000-0000-0000-0000-000000000001",
		Groups: []string{"group:a", "group:b"}, Action: "connector.read", Tool: "connector_invoke",
		ConnectorType: ptr("echo"), InstanceID: ptr("00000000-0000-0000-0000-000000000002"), Operation: ptr("echo.read"),
		Decision: Allow, Reason: "rule", PolicyVersion: ptr(int64(3)), TaskID: ptr("00000000-0000-0000-0000-000000000003"),
		AgentID: ptr("planner"), Status: StatusOK, DurationUS: 1500, HashVersion: HashVersion, PrevHash: genesis,
	}
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

// Every field counts, and no two different rows encode alike — not even
// when bytes move between neighbouring fields or an optional field is
// empty rather than absent.
func TestHashCoversEveryFieldUnambiguously(t *testing.T) {
	base := goldenRow()
	baseHash, _ := base.ComputeHash()
	edits := map[string]func(r *Row){
		"seq":                 func(r *Row) { r.Seq++ },
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
		"prev_hash":           func(r *Row) { r.PrevHash = append(Hash{1}, genesis[1:]...) },
		"prev_hash truncated": func(r *Row) { r.PrevHash = genesis[1:] },
	}
	seen := map[string]string{hex.EncodeToString(baseHash): "base"}
	for name, edit := range edits {
		r := goldenRow()
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
	r := goldenRow()
	r.Hash = Hash{1, 2, 3}
	if h, _ := r.ComputeHash(); !h.equal(baseHash) {
		t.Error("hash depends on the stored hash")
	}
	r.HashVersion = 2
	if _, err := r.ComputeHash(); err == nil {
		t.Error("unknown hash version accepted")
	}
}
