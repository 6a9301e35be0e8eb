package openclaw

import (
	"sync"
	"time"
)

// A host's stderr reaches connec's log at most this fast: a burst, then a
// steady rate. Lines over it are dropped and counted; the count is logged
// when the host ends. The host's writes are never blocked by this (the
// lines are read and discarded), so a flood costs the plugin its own CPU
// time, which the kernel limits.
const (
	stderrBurst     = 200
	stderrPerSecond = 20
)

// lineLimiter is a token bucket over lines.
type lineLimiter struct {
	mu      sync.Mutex
	burst   float64
	rate    float64
	tokens  float64
	last    time.Time
	dropped int64
}

func newLineLimiter(burst, perSecond int) lineLimiter {
	return lineLimiter{burst: float64(burst), rate: float64(perSecond), tokens: float64(burst)}
}

// allow takes a token for one line at now, or counts the line as dropped.
func (l *lineLimiter) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return true
	}
	l.dropped++
	return false
}

// droppedLines returns how many lines were dropped.
func (l *lineLimiter) droppedLines() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped
}

// logDropped logs, once the host has ended, how many of its stderr lines
// were not logged.
func (h *hostProc) logDropped() {
	if n := h.stderr.droppedLines(); n > 0 {
		h.log.Warn("openclaw plugin host stderr was over its rate; lines were dropped", "pid", h.pid, "dropped", n,
			"burst", stderrBurst, "per_second", stderrPerSecond)
	}
}
