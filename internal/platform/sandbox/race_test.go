//go:build race

package sandbox

// raceEnabled: the race detector maps huge shadow memory, which no data
// limit leaves room for.
const raceEnabled = true
