//go:build linux && !amd64 && !arm64

package sandbox

// No filter is written for this architecture: the sandbox is unavailable
// (Available says so) rather than weaker.
const (
	auditArch = 0
	x32Bit    = 0
)

var archDenied []uintptr
