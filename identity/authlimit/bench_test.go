package authlimit_test

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// floodRate is the flood's pace, requests per second: about the review's
// (9,670 requests with a bad token in 10 s).
const floodRate = 1000

// BenchmarkInvokeUnderFlood measures a real caller's connector.op.invoke
// latency (streamable HTTP, echo.send — a send commits a decision row before
// it runs and an outcome row after — one call at a time) without and with
// a concurrent flood of requests carrying a bad bearer token from the same
// address (the worst case: a shared NAT, or a proxy connec does not trust),
// paced at floodRate, in the same run: turns with and without the flood
// alternate (ABBA), so a change in the machine's speed falls on both. The
// result is the ratio of the two: p50-x and p99-x (flood / no flood), with
// the flood's achieved rate and the audit rows it left per thousand
// requests. Run it with a fixed count, e.g.
//
//	go test -run '^$' -bench InvokeUnderFlood -benchtime 600x ./identity/authlimit/
func BenchmarkInvokeUnderFlood(b *testing.B) {
	e := newEnv(b, withUsers("alice"))
	k := newCaller(b, e, e.tokens["alice"])
	ctx := context.Background()
	measure := func(n int, into *[]time.Duration) {
		for range n {
			start := time.Now()
			if err := k.invoke(ctx); err != nil {
				b.Fatal(err)
			}
			*into = append(*into, time.Since(start))
		}
	}
	var warm, base, flood []time.Duration
	measure(20, &warm)
	rowsBefore := e.anonymousRows()
	var sent int64
	var floodTime time.Duration
	turn := max(b.N/4, 12)
	b.ResetTimer()
	for _, withFlood := range []bool{false, true, true, false, false, true, true, false} {
		if !withFlood {
			measure(turn/2, &base)
			continue
		}
		stop := startFlood(e)
		time.Sleep(100 * time.Millisecond) // let it get going
		start := time.Now()
		measure(turn/2, &flood)
		n := stop()
		sent += n
		floodTime += time.Since(start)
	}
	b.StopTimer()
	e.flush() // the counted rest, as the interval's end writes it
	rows := e.anonymousRows() - rowsBefore

	slices.Sort(base)
	slices.Sort(flood)
	pct := func(d []time.Duration, p float64) float64 {
		return float64(d[min(len(d)-1, int(p*float64(len(d))))].Microseconds())
	}
	b.ReportMetric(pct(base, 0.5), "base-p50-µs")
	b.ReportMetric(pct(flood, 0.5), "flood-p50-µs")
	b.ReportMetric(pct(flood, 0.5)/pct(base, 0.5), "p50-x")
	b.ReportMetric(pct(flood, 0.99)/pct(base, 0.99), "p99-x")
	b.ReportMetric(float64(sent)/(floodTime+time.Duration(4)*100*time.Millisecond).Seconds(), "flood-req/s")
	b.ReportMetric(1000*float64(rows)/float64(max(sent, 1)), "rows/kreq")
}

// startFlood sends requests with a bad token from 127.0.0.1 at floodRate
// (open loop: an attacker sends at its own pace; a closed loop would send
// faster the cheaper a refusal is, and measure the machine's CPU rather than
// connec) until the returned function is called, which returns how many
// were sent.
func startFlood(e *env) (stop func() int64) {
	done := make(chan struct{})
	var sent atomic.Int64
	var wg sync.WaitGroup
	tokens := make(chan struct{}, floodRate/10)
	wg.Go(func() {
		t := time.NewTicker(time.Second / floodRate)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				select {
				case tokens <- struct{}{}:
				default: // the server is not keeping up: the flood is what it takes
				}
			}
		}
	})
	for w := range 16 {
		wg.Go(func() {
			c := from("127.0.0.1")
			for i := w; ; i += 16 {
				select {
				case <-done:
					return
				case <-tokens:
				}
				e.badRequest(c, 2*i, http.Header{}) // the MCP endpoint
				sent.Add(1)
			}
		})
	}
	return func() int64 {
		close(done)
		wg.Wait()
		return sent.Load()
	}
}
