//go:build race

package engine

// raceEnabled: the race detector slows tests several times over; the
// randomized tests then run fewer cases.
const raceEnabled = true
