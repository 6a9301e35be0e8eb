package app

import (
	"os"
	"runtime/debug"
)

// DefaultGCPercent is the garbage collector's target connec runs with
// unless GOGC says otherwise: the heap may grow to three times what is live
// between collections (Go's default is twice). connec's live heap is small
// (a few MiB: caches, the policy snapshot, pools) while every call
// allocates short-lived request data, so collections dominate at the
// default; at 200 they cost half as much for a few MiB more peak memory
// (BENCHMARKS.md shows the peak RSS under load).
const DefaultGCPercent = 200

// tuneRuntime applies DefaultGCPercent when GOGC is not set.
func tuneRuntime() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(DefaultGCPercent)
	}
}
