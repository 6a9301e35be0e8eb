package retry

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

// Each wait lies in [nominal/2, nominal), the nominal doubling from Min to
// Max and staying there; Reset starts over; the waits vary.
func TestBackoffWaits(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	nominals := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000}
	for round := range 2 {
		for i, n := range nominals {
			n *= time.Millisecond
			d := b.Next()
			if d < n/2 || d >= n {
				t.Fatalf("round %d, wait %d: %s, want in [%s, %s)", round, i+1, d, n/2, n)
			}
		}
		b.Reset()
	}
	seen := map[time.Duration]bool{}
	for range 100 {
		b.Reset()
		seen[b.Next()] = true
	}
	if len(seen) < 50 {
		t.Fatalf("100 first waits took only %d values: no jitter", len(seen))
	}
}

func TestBackoffEdges(t *testing.T) {
	var zero Backoff
	for range 3 {
		if d := zero.Next(); d != 0 {
			t.Fatalf("zero Backoff waits %s", d)
		}
	}
	low := Backoff{Min: time.Second, Max: time.Millisecond} // Max below Min: Min is the cap
	for range 5 {
		if d := low.Next(); d < time.Second/2 || d >= time.Second {
			t.Fatalf("Max below Min: wait %s", d)
		}
	}
	tiny := Backoff{Min: 1, Max: 1}
	if d := tiny.Next(); d != 1 {
		t.Fatalf("1ns backoff waits %s", d)
	}
	huge := Backoff{Min: time.Nanosecond, Max: math.MaxInt64}
	for i := range 200 {
		if d := huge.Next(); d < 0 {
			t.Fatalf("wait %d overflowed: %s", i, d)
		}
	}
}

func TestSleep(t *testing.T) {
	ctx := context.Background()
	if err := Sleep(ctx, time.Millisecond); err != nil {
		t.Fatalf("Sleep: %v", err)
	}
	if err := Sleep(ctx, 0); err != nil {
		t.Fatalf("Sleep(0): %v", err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := Sleep(done, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on an ended context: %v", err)
	}
	if err := Sleep(done, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep(0) on an ended context: %v", err)
	}
	// Ending the context ends a long sleep.
	live, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- Sleep(live, time.Hour) }()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep when its context ends: %v", err)
	}
}
