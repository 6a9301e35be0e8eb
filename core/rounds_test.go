package core_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/pgnotify"
)

// A round relayed by one server reaches the server whose holder holds its
// call, through PostgreSQL, and comes back with the call's answer; a
// round its issuer refuses, or that nobody holds, is ErrRoundNotHeld; a
// caller that goes away has the holder's answer told (its context ends);
// no row outlives its round.
func TestRoundsAreRelayedBetweenServers(t *testing.T) {
	f := newFixture(t, liveHub)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := pgnotify.New(f.other.Config().ConnConfig, pgnotify.WithLogger(quiet))
	b := core.NewService(f.other, f.reg, f.az, f.aw, f.runner, core.WithNotify(hub), core.WithLogger(quiet))
	t.Cleanup(b.Wait)
	hctx, stop := context.WithCancel(context.Background())
	t.Cleanup(func() { stop(); <-hub.Done() })
	if err := hub.Start(hctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both hubs to listen", func() bool { return hub.Live() && f.hub.Live() })
	core.SetRoundClaimWait(b, 300*time.Millisecond)

	gone := make(chan struct{})
	f.svc.HoldRounds(func(r core.Round) (func(context.Context) json.RawMessage, core.RoundVerdict) {
		var p struct{ RequestState string }
		_ = json.Unmarshal(r.Params, &p)
		switch p.RequestState {
		case "held":
			if r.Owner != "user:alice" || r.Tool != "mail.send" {
				t.Errorf("round as held: %+v", r)
			}
			return func(context.Context) json.RawMessage {
				return json.RawMessage(`{"content":[],"answered":"` + p.RequestState + `"}`)
			}, core.RoundHeld
		case "slow":
			return func(ctx context.Context) json.RawMessage {
				<-ctx.Done()
				close(gone)
				return json.RawMessage(`{}`)
			}, core.RoundHeld
		case "refused":
			return nil, core.RoundRefused
		}
		return nil, core.RoundNotMine
	})
	round := func(state string) core.Round {
		return core.Round{Owner: "user:alice", Tool: "mail.send", Params: json.RawMessage(`{"requestState":"` + state + `"}`)}
	}
	ctx := context.Background()
	out, err := b.RelayRound(ctx, round("held"))
	if err != nil || string(out) != `{"content":[],"answered":"held"}` {
		t.Fatalf("held: %s %v", out, err)
	}
	for _, state := range []string{"refused", "nobody's"} {
		if out, err := b.RelayRound(ctx, round(state)); !errors.Is(err, core.ErrRoundNotHeld) {
			t.Fatalf("%s: %s %v", state, out, err)
		}
	}
	// The caller goes away once the holder has claimed the round.
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := b.RelayRound(cctx, round("slow")); done <- err }()
	waitFor(t, "the slow round to be claimed", func() bool {
		var n int
		_ = f.other.QueryRow(ctx, `SELECT count(*) FROM input_rounds WHERE claimed_by IS NOT NULL`).Scan(&n)
		return n == 1
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the relaying caller went away: %v", err)
	}
	select {
	case <-gone:
	case <-time.After(30 * time.Second):
		t.Fatal("the holder's answer was not told its caller went away")
	}
	// The server holding a claimed round stops (its lease runs out): the
	// relaying server gives up rather than wait for an answer that will
	// not come, and says so.
	lctx, endLease := context.WithCancel(ctx)
	t.Cleanup(endLease)
	if err := f.svc.StartLease(lctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	gone = make(chan struct{})
	done = make(chan error, 1)
	go func() { _, err := b.RelayRound(ctx, round("slow")); done <- err }()
	waitFor(t, "the slow round to be claimed under the lease", func() bool {
		var n int
		_ = f.other.QueryRow(ctx, `SELECT count(*) FROM input_rounds WHERE claim_lease IS NOT NULL`).Scan(&n)
		return n == 1
	})
	if _, err := f.other.Exec(ctx, `DELETE FROM connec_servers`); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if fault.As(err).Type != fault.Unavailable || !strings.Contains(err.Error(), "stopped") {
			t.Fatalf("relayed to a stopped server: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the relaying server still waits on a stopped one")
	}
	<-gone
	// A round announced while the server holding its call was not
	// listening is found by that server once it listens again.
	var down atomic.Bool
	cfg := f.other.Config().ConnConfig.Copy()
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if down.Load() {
			return nil, errors.New("test: the listener is held down")
		}
		return dial(ctx, network, addr)
	}
	lateHub := pgnotify.New(cfg, pgnotify.WithLogger(quiet), pgnotify.WithBackoff(10*time.Millisecond, 100*time.Millisecond),
		pgnotify.WithApplicationName("connec-late-hub"))
	c := core.NewService(f.other, f.reg, f.az, f.aw, f.runner, core.WithNotify(lateHub), core.WithLogger(quiet))
	t.Cleanup(c.Wait)
	c.HoldRounds(func(r core.Round) (func(context.Context) json.RawMessage, core.RoundVerdict) {
		if !strings.Contains(string(r.Params), `"late"`) {
			return nil, core.RoundNotMine
		}
		return func(context.Context) json.RawMessage { return json.RawMessage(`{"content":[],"answered":"late"}`) }, core.RoundHeld
	})
	lctx2, stopLate := context.WithCancel(ctx)
	t.Cleanup(func() { stopLate(); <-lateHub.Done() })
	if err := lateHub.Start(lctx2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the late server to listen", lateHub.Live)
	down.Store(true)
	if _, err := f.other.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'connec-late-hub'`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the late server to stop listening", func() bool { return !lateHub.Live() })
	core.SetRoundClaimWait(b, 30*time.Second)
	late := make(chan []byte, 1)
	go func() {
		out, err := b.RelayRound(ctx, round("late"))
		if err != nil {
			t.Errorf("late: %v", err)
		}
		late <- out
	}()
	waitFor(t, "the late round to be written", func() bool {
		var n int
		_ = f.other.QueryRow(ctx, `SELECT count(*) FROM input_rounds`).Scan(&n)
		return n == 1
	})
	down.Store(false)
	if out := <-late; string(out) != `{"content":[],"answered":"late"}` {
		t.Fatalf("late: %s", out)
	}
	waitFor(t, "no round left", func() bool {
		var n int
		_ = f.other.QueryRow(ctx, `SELECT count(*) FROM input_rounds`).Scan(&n)
		return n == 0
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
