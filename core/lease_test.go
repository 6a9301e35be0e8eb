package core_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
)

// A server that stops without finishing its open runs (here: its lease is
// no longer renewed while its async run would go on for a minute) has them
// failed by another server once its lease runs out — with an audit row
// each, once — while the other server's own open runs are left alone; the
// stopped server's late finish does not undo the failure; and a released
// lease leaves no server row behind.
func TestStoppedServersRunsFailed(t *testing.T) {
	f := newFixture(t, noHub)
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := core.NewService(f.other, f.reg, f.az, f.aw, f.runner, core.WithLogger(quiet))
	t.Cleanup(b.Wait)
	id, _ := f.instance(nil)
	later := func(svc *core.Service) string {
		t.Helper()
		res, err := svc.Invoke(f.ctx, core.InvokeInput{InstanceID: id, Operation: "echo.later",
			Arguments: json.RawMessage(`{"message":"m","delay_ms":60000}`)})
		if err != nil {
			t.Fatal(err)
		}
		return res.RunID
	}
	status := func(run string) (string, string) {
		t.Helper()
		var st, et string
		if err := f.other.QueryRow(ctx, `SELECT status, COALESCE(error_type, '') FROM connector_runs WHERE id = $1`, run).Scan(&st, &et); err != nil {
			t.Fatal(err)
		}
		return st, et
	}

	unleased := later(f.svc) // started before the lease: never failed this way
	aCtx, stopA := context.WithCancel(ctx)
	defer stopA()
	if err := f.svc.StartLease(aCtx, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.StartLease(aCtx, time.Second); err == nil {
		t.Fatal("a second lease for one server")
	}
	orphan := later(f.svc)
	bCtx, stopB := context.WithCancel(ctx)
	defer stopB()
	// B's lease is long enough that no stall of its renewals on a loaded
	// machine lets A's sweeps (A still runs for a moment) take B for dead.
	if err := b.StartLease(bCtx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	own := later(b)

	// Server A stops renewing (as if killed); B notices once A's lease ran out.
	stopA()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, _ := status(orphan); st == core.RunFailed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stopped server's run was not failed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r, err := f.svc.GetRun(f.ctx, orphan)
	if err != nil {
		t.Fatal(err)
	}
	if r.ErrorType != string(fault.Unavailable) || r.ErrorMessage == "" || r.FinishedAt == nil {
		t.Fatalf("failed run reads %+v", r)
	}
	if n := f.count(`SELECT count(*) FROM audit_events WHERE tool = $1 AND reason LIKE '%' || $2 || '%'`, core.ToolRunReap, orphan); n != 1 {
		t.Fatalf("%d audit rows for the failed run, want 1", n)
	}
	if n := f.count(`SELECT count(*) FROM connec_servers`); n != 1 {
		t.Fatalf("%d server rows after the stopped one was cleared, want 1 (B's)", n)
	}
	// A later sweep finds nothing more to fail: each run is failed once.
	if n, err := b.ReapExpired(ctx); err != nil || n != 0 {
		t.Fatalf("second sweep failed %d runs (%v)", n, err)
	}
	for _, run := range []string{own, unleased} {
		if st, _ := status(run); st != core.RunPending && st != core.RunRunning {
			t.Fatalf("run %s of a live or unleased server is %s", run, st)
		}
	}

	// A finishes late (here: its runs are canceled): the failure stands.
	f.svc.CancelAll()
	f.svc.Wait()
	if st, et := status(orphan); st != core.RunFailed || et != string(fault.Unavailable) {
		t.Fatalf("after the late finish the run is %s/%s", st, et)
	}
	if st, _ := status(unleased); st != core.RunCanceled {
		t.Fatalf("unleased run: %s", st)
	}

	// B ends its own runs, then gives its lease back.
	b.CancelAll()
	b.Wait()
	stopB()
	if err := b.ReleaseLease(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.count(`SELECT count(*) FROM connec_servers`); n != 0 {
		t.Fatalf("%d server rows after the release", n)
	}
}
