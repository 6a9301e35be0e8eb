//go:build !linux

package sandbox

import (
	"os"
	"os/exec"
)

// Features describes the boundary this machine gives (none here).
type Features struct {
	UserNamespace bool `json:"user_namespace"`
	Landlock      int  `json:"landlock_abi"`
	Seccomp       bool `json:"seccomp"`
}

func (Features) String() string { return "none" }

// Available reports that this platform cannot isolate a program.
func Available() (Features, error) { return Features{}, ErrUnsupported }

// Start refuses: there is no sandbox on this platform.
func Start(Spec, *os.File, *os.File, *os.File) (*exec.Cmd, error) { return nil, ErrUnsupported }

// LandlockABI is 0 off Linux.
func LandlockABI() int { return 0 }
