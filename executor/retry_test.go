package executor

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/fault"
)

// scripted is a driver whose nth call (from 1) does what script says.
type scripted struct {
	calls  atomic.Int64
	script func(ctx context.Context, n int64) (json.RawMessage, error)
}

func (s *scripted) Spec() connectors.TypeSpec {
	obj := json.RawMessage(`{"type":"object"}`)
	return connectors.TypeSpec{Name: "scripted", Version: "1.0.0", EgressHosts: []string{},
		Operations: []connectors.Operation{
			{Name: "scripted.read", Kind: connectors.KindRead, Input: obj, Output: obj, Timeout: 10 * time.Second},
			{Name: "scripted.send", Kind: connectors.KindSend, Input: obj, Output: obj, Timeout: 10 * time.Second},
		}}
}

func (s *scripted) Invoke(ctx context.Context, _ connectors.Invocation) (json.RawMessage, error) {
	return s.script(ctx, s.calls.Add(1))
}

func transient() error { return fault.New(fault.Transient, "connection reset") }

// run executes op on a scripted driver with timeout.
func run(t *testing.T, ctx context.Context, d *scripted, op string, timeout time.Duration) (connectors.ExecResult, error) {
	t.Helper()
	ex, err := New()
	if err != nil {
		t.Fatal(err)
	}
	reg, err := connectors.NewRegistry(d)
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := reg.Type("scripted")
	cop, _ := ct.Op(op)
	return ex.Execute(ctx, connectors.ExecRequest{Type: ct, Op: cop, InstanceID: "i", Config: json.RawMessage(`{}`),
		Args: json.RawMessage(`{}`), Timeout: timeout})
}

// A read that fails transiently is retried with backoff while its timeout
// allows; a send never is; other failures are not retried; when the
// deadline cuts retrying short, the service's failure is the answer, not a
// timeout.
func TestReadRetries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	wantType := func(t *testing.T, err error, want fault.Type) {
		t.Helper()
		if got := fault.As(err).Type; err == nil || got != want {
			t.Fatalf("error %v (type %q), want type %q", err, got, want)
		}
	}

	t.Run("a read succeeds after transient failures", func(t *testing.T) {
		t.Parallel()
		d := &scripted{script: func(_ context.Context, n int64) (json.RawMessage, error) {
			if n < 3 {
				return nil, transient()
			}
			return json.RawMessage(`{"ok":true}`), nil
		}}
		res, err := run(t, ctx, d, "scripted.read", 0)
		if err != nil {
			t.Fatal(err)
		}
		if res.Attempts != 3 || string(res.Output) != `{"ok":true}` {
			t.Fatalf("attempts %d, output %s; want 3 and the third call's output", res.Attempts, res.Output)
		}
	})

	t.Run("a send is never retried", func(t *testing.T) {
		t.Parallel()
		d := &scripted{script: func(context.Context, int64) (json.RawMessage, error) { return nil, transient() }}
		res, err := run(t, ctx, d, "scripted.send", 0)
		wantType(t, err, fault.Transient)
		if res.Attempts != 1 || d.calls.Load() != 1 {
			t.Fatalf("attempts %d, calls %d; want 1", res.Attempts, d.calls.Load())
		}
	})

	t.Run("a permanent failure is not retried", func(t *testing.T) {
		t.Parallel()
		d := &scripted{script: func(context.Context, int64) (json.RawMessage, error) {
			return nil, fault.New(fault.Permanent, "no such thing")
		}}
		res, err := run(t, ctx, d, "scripted.read", 0)
		wantType(t, err, fault.Permanent)
		if res.Attempts != 1 || d.calls.Load() != 1 {
			t.Fatalf("attempts %d, calls %d; want 1", res.Attempts, d.calls.Load())
		}
	})

	t.Run("a service that keeps failing is its failure, not a timeout", func(t *testing.T) {
		t.Parallel()
		d := &scripted{script: func(context.Context, int64) (json.RawMessage, error) { return nil, transient() }}
		res, err := run(t, ctx, d, "scripted.read", 400*time.Millisecond)
		wantType(t, err, fault.Transient)
		if res.Attempts < 2 || int64(res.Attempts) != d.calls.Load() {
			t.Fatalf("attempts %d, calls %d; want at least 2, equal", res.Attempts, d.calls.Load())
		}
	})

	t.Run("a retry cut by the deadline answers with the earlier failure", func(t *testing.T) {
		t.Parallel()
		d := &scripted{script: func(ctx context.Context, n int64) (json.RawMessage, error) {
			if n == 1 {
				return nil, transient()
			}
			<-ctx.Done() // the retry hangs until the timeout
			return nil, fault.Wrap(fault.Transient, ctx.Err(), "canceled")
		}}
		res, err := run(t, ctx, d, "scripted.read", time.Second)
		wantType(t, err, fault.Transient)
		if !errors.Is(err, fault.ErrTransient) || res.Attempts != 2 {
			t.Fatalf("attempts %d (%v); want 2", res.Attempts, err)
		}
		if msg := fault.PublicOf(err).Message; msg != "connection reset" {
			t.Fatalf("answer %q, want the first call's failure", msg)
		}
	})

	t.Run("no wait when the deadline comes first", func(t *testing.T) {
		t.Parallel()
		d := &scripted{script: func(context.Context, int64) (json.RawMessage, error) { return nil, transient() }}
		// Shorter than any first wait: no retry, and the answer is the
		// failure, not a timeout.
		res, err := run(t, ctx, d, "scripted.read", 20*time.Millisecond)
		wantType(t, err, fault.Transient)
		if res.Attempts != 1 || d.calls.Load() != 1 {
			t.Fatalf("attempts %d, calls %d; want 1", res.Attempts, d.calls.Load())
		}
	})

	t.Run("the caller's cancellation stops retrying", func(t *testing.T) {
		t.Parallel()
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		d := &scripted{script: func(context.Context, int64) (json.RawMessage, error) {
			cancel() // the caller goes away while the first failure is handled
			return nil, transient()
		}}
		res, err := run(t, cctx, d, "scripted.read", 0)
		wantType(t, err, fault.Transient)
		if res.Attempts != 1 || d.calls.Load() != 1 {
			t.Fatalf("attempts %d, calls %d; want 1", res.Attempts, d.calls.Load())
		}
	})
}
