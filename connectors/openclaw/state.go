package openclaw

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// stateDir is this process's directory under the state root: a lock file
// held (flock) for the life of the process, and one directory per running
// host (its egress socket, the host program, the mount point of its root).
// Nothing a plugin writes is here: a host's home is a tmpfs in its own
// mount namespace, gone when the host exits.
type stateDir struct {
	dir  string
	lock *os.File
}

// processState returns this process's state directory, making it on first
// use after removing what processes that are gone left behind.
func (o *options) processState() (*stateDir, error) {
	o.stateOnce.Do(func() { o.state, o.stateErr = openState(o) })
	return o.state, o.stateErr
}

func openState(o *options) (*stateDir, error) {
	if err := privateDir(o.stateRoot); err != nil {
		return nil, fmt.Errorf("the plugin hosts' state directory is not usable: %w", err)
	}
	cleanStale(o)
	dir, err := os.MkdirTemp(o.stateRoot, "proc-")
	if err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, err
	}
	return &stateDir{dir: dir, lock: lock}, nil
}

// cleanStale removes the state of processes that are gone: a proc-*
// directory whose lock nobody holds, and host-* directories of earlier
// versions whose egress socket nobody listens on. Several connec processes
// may share the root; a live one's state is never touched.
func cleanStale(o *options) {
	entries, err := os.ReadDir(o.stateRoot)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(o.stateRoot, e.Name())
		switch {
		case strings.HasPrefix(e.Name(), "proc-"):
			f, err := os.Open(filepath.Join(p, ".lock"))
			if err != nil {
				if errors.Is(err, os.ErrNotExist) && olderThan(p, time.Minute) {
					// Made but never locked: its process died at once.
					_ = os.RemoveAll(p)
				}
				continue
			}
			if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
				f.Close()
				if err := os.RemoveAll(p); err == nil {
					o.log.Info("openclaw: removed the plugin host state of a connec process that is gone", "dir", p)
				}
				continue
			}
			f.Close()
		case strings.HasPrefix(e.Name(), "host-"):
			c, err := net.DialTimeout("unix", filepath.Join(p, "egress.sock"), time.Second)
			if err == nil {
				c.Close()
				continue
			}
			if err := os.RemoveAll(p); err == nil {
				o.log.Info("openclaw: removed a plugin host state directory left by an earlier connec", "dir", p)
			}
		}
	}
}

func olderThan(p string, d time.Duration) bool {
	fi, err := os.Stat(p)
	return err == nil && time.Since(fi.ModTime()) > d
}
