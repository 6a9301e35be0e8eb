package bench

import (
	"slices"
	"time"
)

// Summary describes a set of timed operations.
type Summary struct {
	// Count is the number of operations that succeeded and were timed.
	Count int `json:"count"`
	// Errors counts operations that failed (not included in the latencies).
	Errors int `json:"errors"`
	// Elapsed is the wall time of the measured window.
	Elapsed time.Duration `json:"elapsed_ns"`
	P50     time.Duration `json:"p50_ns"`
	P90     time.Duration `json:"p90_ns"`
	P99     time.Duration `json:"p99_ns"`
	Max     time.Duration `json:"max_ns"`
	Mean    time.Duration `json:"mean_ns"`
	// PerSec is Count / Elapsed.
	PerSec float64 `json:"per_sec"`
}

// Summarize sorts samples in place and summarizes them; elapsed is the
// measured window (0: the sum of the samples, for sequential loops).
func Summarize(samples []time.Duration, elapsed time.Duration, errors int) Summary {
	s := Summary{Count: len(samples), Errors: errors, Elapsed: elapsed}
	if len(samples) == 0 {
		return s
	}
	slices.Sort(samples)
	var sum time.Duration
	for _, d := range samples {
		sum += d
	}
	if s.Elapsed <= 0 {
		s.Elapsed = sum
	}
	s.P50 = Percentile(samples, 50)
	s.P90 = Percentile(samples, 90)
	s.P99 = Percentile(samples, 99)
	s.Max = samples[len(samples)-1]
	s.Mean = sum / time.Duration(len(samples))
	if s.Elapsed > 0 {
		s.PerSec = float64(len(samples)) / s.Elapsed.Seconds()
	}
	return s
}

// Percentile returns the nearest-rank p-th percentile of sorted samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// Ratio returns a/b, or 0 when b is 0.
func Ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// durRatio returns a/b for durations.
func durRatio(a, b time.Duration) float64 { return Ratio(float64(a), float64(b)) }

// timeLoop runs op until n samples are taken or budget is spent (at least
// one sample), timing each call. It returns the samples and the error count.
func timeLoop(n int, budget time.Duration, op func(i int) error) ([]time.Duration, int) {
	samples := make([]time.Duration, 0, min(n, 1<<14))
	errs := 0
	deadline := time.Now().Add(budget)
	for i := 0; i < n; i++ {
		start := time.Now()
		err := op(i)
		d := time.Since(start)
		if err != nil {
			errs++
		} else {
			samples = append(samples, d)
		}
		if budget > 0 && time.Now().After(deadline) {
			break
		}
	}
	return samples, errs
}
