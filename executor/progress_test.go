package executor

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/connec/connec/connectors"
)

// reporter reports progress during its call and keeps the invocation, so
// a test can try to report after the call has ended.
type reporter struct{ inv connectors.Invocation }

func (r *reporter) Spec() connectors.TypeSpec {
	obj := json.RawMessage(`{"type":"object"}`)
	return connectors.TypeSpec{Name: "reporter", Version: "1.0.0", EgressHosts: []string{},
		Operations: []connectors.Operation{{Name: "reporter.read", Kind: connectors.KindRead, Input: obj, Output: obj, Timeout: 10 * time.Second}}}
}

func (r *reporter) Invoke(_ context.Context, inv connectors.Invocation) (json.RawMessage, error) {
	r.inv = inv
	inv.Progress(1, 2, "during")
	return json.RawMessage(`{}`), nil
}

// Progress and elicitation reach the caller only while the execution runs:
// once it has ended (and the credential it would redact by is wiped), a
// driver that still reports is not heard.
func TestNothingReachesTheCallerAfterTheExecution(t *testing.T) {
	ex, err := New()
	if err != nil {
		t.Fatal(err)
	}
	d := &reporter{}
	reg, err := connectors.NewRegistry(d)
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := reg.Type("reporter")
	op, _ := ct.Op("reporter.read")
	var mu sync.Mutex
	var heard []string
	asked := 0
	if _, err := ex.Execute(context.Background(), connectors.ExecRequest{Type: ct, Op: op, InstanceID: "i", Config: json.RawMessage(`{}`),
		Args:     json.RawMessage(`{}`),
		Progress: func(_, _ float64, m string) { mu.Lock(); heard = append(heard, m); mu.Unlock() },
		Elicit: func(context.Context, json.RawMessage) (json.RawMessage, error) {
			asked++
			return json.RawMessage(`{}`), nil
		}}); err != nil {
		t.Fatal(err)
	}
	d.inv.Progress(2, 2, "after")
	if _, err := d.inv.Elicit(context.Background(), json.RawMessage(`{"message":"late"}`)); err == nil {
		t.Error("an elicitation after the execution was let through")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(heard) != 1 || heard[0] != "during" || asked != 0 {
		t.Fatalf("heard %q and asked %d times, want only the progress made during the call", heard, asked)
	}
}
