// Package archtest holds connec's structural tests: the invariants of the
// architecture that no single package can check about itself (who may
// decrypt credentials, which packages may depend on transports). It has no
// code of its own; see archtest_test.go.
package archtest
