//go:build !race

package authz

// raceEnabled: see race_on_test.go.
const raceEnabled = false
