package openclaw

import (
	"context"
	"syscall"
	"time"
)

// Starting a host (the sandbox, Node, loading the plugin) takes about a
// tenth of a second, more for a large or TypeScript plugin. So that calls
// do not wait for it, each call's host is started ahead: after a call, the
// next host starts in the background, loads the plugin and is stopped
// (SIGSTOP) the moment it is ready. It never had a call, so never a
// credential; stopped, it uses no CPU; the call that takes it continues it
// (SIGCONT) and it is killed when that call ends, like any host. An
// instance whose hosts fail gets none (its calls back off instead), and a
// host nobody takes is killed after the idle timeout.

// takeWarm returns the instance's stopped host, continued, or nil. Called
// holding the slot.
func (ih *instanceHost) takeWarm() *hostProc {
	ih.mu.Lock()
	h := ih.warm
	ih.warm = nil
	if ih.idle != nil {
		ih.idle.Stop()
	}
	ih.mu.Unlock()
	if h == nil {
		return nil
	}
	if h.isDead() || syscall.Kill(h.pid, syscall.SIGCONT) != nil {
		h.stop()
		return nil
	}
	ih.mu.Lock()
	ih.proc, ih.lastPID = h, h.pid
	ih.mu.Unlock()
	return h
}

// prewarm starts the next call's host unless a call (which prewarms after
// itself) holds the slot, the instance's hosts are failing, or one is
// ready already.
func (ih *instanceHost) prewarm() {
	select {
	case ih.slot <- struct{}{}:
	default:
		return
	}
	defer func() { <-ih.slot }()
	ih.mu.Lock()
	skip := ih.warm != nil || ih.failures > 0 || ih.d.opts.idleTimeout <= 0
	ih.mu.Unlock()
	if skip || ih.d.isClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), ih.d.opts.startTimeout)
	defer cancel()
	h, err := startHost(ctx, ih.d.hostSpec(ih.id, ih.d.opTimeout()))
	if err != nil {
		// The next call starts its own host, and counts its failure.
		ih.d.opts.log.Debug("openclaw: could not start a host ahead of the next call", "type", ih.d.spec.Name, "instance", ih.id, "err", err)
		return
	}
	if err := syscall.Kill(h.pid, syscall.SIGSTOP); err != nil {
		h.stop()
		return
	}
	ih.mu.Lock()
	if ih.d.isClosed() {
		ih.mu.Unlock()
		h.stop()
		return
	}
	ih.warm = h
	ih.idle = time.AfterFunc(ih.d.opts.idleTimeout, ih.dropWarm)
	ih.mu.Unlock()
}

// dropWarm kills a host nobody took.
func (ih *instanceHost) dropWarm() {
	ih.mu.Lock()
	h := ih.warm
	ih.warm = nil
	ih.mu.Unlock()
	if h != nil {
		h.log.Debug("openclaw: no call came for the host started ahead; stopping it", "pid", h.pid)
		h.stop()
	}
}

// warmPID returns the pid of the instance's stopped host, or 0: for tests.
func (d *Driver) warmPID(instanceID string) int {
	d.mu.Lock()
	ih := d.hosts[instanceID]
	d.mu.Unlock()
	if ih == nil {
		return 0
	}
	ih.mu.Lock()
	defer ih.mu.Unlock()
	if ih.warm == nil {
		return 0
	}
	return ih.warm.pid
}

// opTimeout is the time limit of the type's operations (one for all).
func (d *Driver) opTimeout() time.Duration {
	t := DefaultOpTimeout
	for _, op := range d.spec.Operations {
		t = max(t, op.Timeout)
	}
	return t
}
