//go:build goexperiment.runtimesecret

package keyring

import "runtime/secret"

// protect runs f under runtime/secret.Do, which erases the registers and
// stack f used when it returns, and its heap allocations once unreachable.
func protect(f func()) { secret.Do(f) }
