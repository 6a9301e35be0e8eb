package authlimit

import (
	"context"
	"errors"
	"sync"
	"time"
)

// startSweeper starts the goroutine that writes what was counted, unless it
// runs. It stops by itself once no source is tracked. Call with g.mu held.
func (g *Guard) startSweeper() {
	if g.running || g.closed {
		return
	}
	g.running = true
	g.stop, g.stopped = make(chan struct{}), make(chan struct{})
	go g.sweeper(g.stop, g.stopped)
}

func (g *Guard) sweeper(stop, stopped chan struct{}) {
	defer close(stopped)
	t := time.NewTicker(max(g.cfg.Interval/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		_ = g.sweep(context.Background(), g.now(), false)
		g.mu.Lock()
		if len(g.sources) == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
	}
}

// Flush ends every source's interval now: what was counted is written (one
// row per source and transport), and each source's next failed
// authentication is written at once again and its limit starts afresh. It
// returns the first error of a row that could not be written; its count is
// kept for a later flush.
func (g *Guard) Flush(ctx context.Context) error {
	return g.sweep(ctx, g.now(), true)
}

// Tracked reports how many sources (per transport) the guard holds state
// for: at most Config.MaxSources, and one overflow per transport.
func (g *Guard) Tracked() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sources)
}

// Close stops the sweeper and writes what was counted (bounded by ctx).
// Later refusals are each written at once.
func (g *Guard) Close(ctx context.Context) error {
	g.mu.Lock()
	g.closed = true
	running, stop, stopped := g.running, g.stop, g.stopped
	g.running = false
	g.mu.Unlock()
	if running {
		close(stop)
		<-stopped
	}
	return g.Flush(ctx)
}

type due struct {
	k key
	r Refusal
}

// sweep writes the counts whose first refusal is an interval old (all of
// them if all), and forgets sources whose interval ended with nothing left
// to write (all of them if all).
func (g *Guard) sweep(ctx context.Context, now time.Time, all bool) error {
	g.flushMu.Lock()
	defer g.flushMu.Unlock()
	var todo []due
	g.mu.Lock()
	for k, e := range g.sources {
		if e.n > 0 && (all || now.Sub(e.first) >= g.cfg.Interval) {
			todo = append(todo, due{k, Refusal{Source: k.src, Transport: k.transport, Tool: e.tool,
				Count: e.n, Limited: e.limited, First: e.first, Last: e.last, Counted: true}})
			e.n, e.limited, e.tool = 0, 0, ""
		}
		if e.n == 0 && (all || now.Sub(e.start) >= g.cfg.Interval) {
			delete(g.sources, k)
		}
	}
	g.mu.Unlock()
	if len(todo) == 0 {
		return nil
	}
	var (
		wg    sync.WaitGroup
		sem   = make(chan struct{}, writers)
		errMu sync.Mutex
		first error
	)
	for _, d := range todo {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			wctx, cancel := context.WithTimeout(ctx, writeTimeout)
			defer cancel()
			err := g.rec(wctx, d.r)
			if err == nil {
				return
			}
			g.mu.Lock()
			g.add(d.k, g.now(), d.r.Tool, d.r.Count, d.r.Limited, d.r.First, d.r.Last)
			g.mu.Unlock()
			errMu.Lock()
			if first == nil {
				first = err
			}
			errMu.Unlock()
		})
	}
	wg.Wait()
	if first != nil && !errors.Is(first, context.Canceled) {
		g.log.Warn("failed authentications counted but not yet audited; kept for the next attempt", "rows", len(todo), "err", first)
	}
	return first
}
