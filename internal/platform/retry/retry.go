// Package retry paces attempts to reach something that failed: exponential
// backoff with jitter, capped, and a sleep that ends with its context.
//
//	b := retry.Backoff{Min: 50 * time.Millisecond, Max: 5 * time.Second}
//	for {
//		err := try()
//		if err == nil {
//			break
//		}
//		if retry.Sleep(ctx, b.Next()) != nil {
//			return err // ctx ended while waiting
//		}
//	}
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff yields the waits between attempts. The nominal wait starts at Min
// and doubles after each wait up to Max; each wait is drawn uniformly from
// [nominal/2, nominal), so it never exceeds Max and callers that failed
// together do not retry together. The zero value's waits are all zero.
// A Backoff is not safe for concurrent use; give each loop its own.
type Backoff struct {
	Min, Max time.Duration

	nominal time.Duration // the next wait's nominal; 0 before the first
}

// Next returns the wait before the next attempt and advances.
func (b *Backoff) Next() time.Duration {
	if b.Min <= 0 {
		return 0
	}
	top := max(b.Max, b.Min)
	switch {
	case b.nominal <= 0:
		b.nominal = b.Min
	case b.nominal >= top/2:
		b.nominal = top
	default:
		b.nominal *= 2
	}
	d := b.nominal
	if d < 2 {
		return d
	}
	return d/2 + rand.N(d-d/2)
}

// Reset starts over from Min, after a success.
func (b *Backoff) Reset() { b.nominal = 0 }

// Sleep waits d, or until ctx ends: then it returns ctx's error at once.
func Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
