package openclaw

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/egress"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/internal/platform/metrics"
)

// Describe starts a host for the plugin (no instance, no credential, no
// network), asks it what the plugin registers and stops it.
func (d *Driver) Describe(ctx context.Context) (*Description, error) {
	return describe(ctx, d.opts, d.hostSpec("describe", d.opts.startTimeout))
}

// describe runs the plugin's register() in a host of its own, in the same
// sandbox as calls, and returns what it registered.
func describe(ctx context.Context, o *options, hs hostSpec) (*Description, error) {
	hs.budget = o.startTimeout
	h, err := startHost(ctx, hs)
	if err != nil {
		return nil, err
	}
	defer h.stop()
	s := h.proxy.Begin(ctx, nil)
	defer h.proxy.End(s)
	f, err := h.call(ctx, "describe", nil, o.cancelGrace)
	if err != nil {
		return nil, err
	}
	if f.Error != nil {
		return nil, rpcFault(f.Error, nil)
	}
	var desc Description
	if err := json.Unmarshal(f.Result, &desc); err != nil {
		return nil, fault.Wrap(fault.Validation, err, "the plugin host's description is not valid")
	}
	return &desc, nil
}

func (d *Driver) hostSpec(instance string, budget time.Duration) hostSpec {
	return hostSpec{
		opts: d.opts, typeName: d.spec.Name, instance: instance, installDir: d.installDir,
		pkgDir: d.pkgDir, entry: d.entry, tsRuntime: d.tsRuntime, pluginID: d.rec.Manifest.ID, budget: budget,
	}
}

// Close stops every host (calls in progress fail). The driver refuses
// calls afterwards.
func (d *Driver) Close() error {
	d.mu.Lock()
	d.closed = true
	hosts := d.hosts
	d.hosts = map[string]*instanceHost{}
	d.mu.Unlock()
	d.bg.Wait() // hosts being started ahead
	for _, ih := range hosts {
		ih.mu.Lock()
		h, w := ih.proc, ih.warm
		ih.warm = nil
		if ih.idle != nil {
			ih.idle.Stop()
		}
		ih.mu.Unlock()
		for _, x := range []*hostProc{h, w} {
			if x != nil {
				x.stop()
			}
		}
	}
	return nil
}

// HostPID returns the pid (as connec sees it) of the host running an
// instance's call now, or 0: for tests and diagnostics.
func (d *Driver) HostPID(instanceID string) int {
	d.mu.Lock()
	ih := d.hosts[instanceID]
	d.mu.Unlock()
	if ih == nil {
		return 0
	}
	ih.mu.Lock()
	defer ih.mu.Unlock()
	if ih.proc == nil || ih.proc.isDead() {
		return 0
	}
	return ih.proc.pid
}

// hostSocket returns the egress socket (as connec sees it) of the host
// running an instance's call now, or "": for tests.
func (d *Driver) hostSocket(instanceID string) string {
	d.mu.Lock()
	ih := d.hosts[instanceID]
	d.mu.Unlock()
	if ih == nil {
		return ""
	}
	ih.mu.Lock()
	defer ih.mu.Unlock()
	if ih.proc == nil {
		return ""
	}
	return ih.proc.proxy.Addr()
}

// lastHostPID returns the pid of the instance's most recent host.
func (d *Driver) lastHostPID(instanceID string) int {
	d.mu.Lock()
	ih := d.hosts[instanceID]
	d.mu.Unlock()
	if ih == nil {
		return 0
	}
	ih.mu.Lock()
	defer ih.mu.Unlock()
	return ih.lastPID
}

// HostHealth is what connec knows of an instance's plugin hosts: how many
// failed in a row (a start that failed, or a host that died or was killed
// during its call) and the last failure.
type HostHealth struct {
	Type         string    `json:"type"`
	Instance     string    `json:"instance"`
	Failures     int       `json:"consecutive_failures"`
	CrashLooping bool      `json:"crash_looping"`
	Last         string    `json:"last_failure,omitempty"`
	LastAt       time.Time `json:"last_failure_at,omitzero"`
}

// Health returns the instances whose last host failed, by instance.
func (d *Driver) Health() []HostHealth {
	d.mu.Lock()
	hosts := make([]*instanceHost, 0, len(d.hosts))
	for _, ih := range d.hosts {
		hosts = append(hosts, ih)
	}
	d.mu.Unlock()
	var out []HostHealth
	for _, ih := range hosts {
		if h := ih.health(); h.Failures > 0 {
			out = append(out, h)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Instance < out[j].Instance })
	return out
}

// InstanceHealth returns an instance's host health (ok false: it has not
// run here yet).
func (d *Driver) InstanceHealth(instanceID string) (HostHealth, bool) {
	d.mu.Lock()
	ih := d.hosts[instanceID]
	d.mu.Unlock()
	if ih == nil {
		return HostHealth{}, false
	}
	return ih.health(), true
}

func (d *Driver) instance(id string) *instanceHost {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	ih := d.hosts[id]
	if ih == nil {
		ih = &instanceHost{d: d, id: id, slot: make(chan struct{}, 1)}
		d.hosts[id] = ih
	}
	return ih
}

// instanceHost runs one instance's calls, one at a time, each in a host of
// its own: started for the call and killed as soon as it has answered, so
// nothing the plugin holds (a credential in memory, a timer, a file in its
// home) outlives the call and nothing runs between calls. Consecutive
// failures back off, and from crashLoopAfter on mark the instance
// crash-looping (logged, counted, shown by /readyz and the UI).
type instanceHost struct {
	d    *Driver
	id   string
	slot chan struct{}

	mu        sync.Mutex
	proc      *hostProc // the host of the call in progress
	warm      *hostProc // the next call's host: loaded, stopped (SIGSTOP), never given a call
	idle      *time.Timer
	lastPID   int
	failures  int
	lastStart time.Time
	last      string
	lastAt    time.Time
}

// background runs fn in a goroutine Close waits for (none once closed).
func (d *Driver) background(fn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		fn()
	}()
}

// closed reports whether the driver was closed.
func (d *Driver) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// backoff is the wait before the next start after n consecutive failures:
// none for the first restart, then 250 ms doubling up to 10 s.
func backoff(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := 250 * time.Millisecond << min(n-2, 10)
	return min(d, maxBackoff)
}

func (ih *instanceHost) health() HostHealth {
	ih.mu.Lock()
	defer ih.mu.Unlock()
	return HostHealth{Type: ih.d.spec.Name, Instance: ih.id, Failures: ih.failures, CrashLooping: ih.failures >= crashLoopAfter,
		Last: ih.last, LastAt: ih.lastAt}
}

// run makes one call: it waits for the instance's slot, starts a host
// (after the backoff), opens the proxy's scope for the call's egress, and
// returns the host's answer (result or JSON-RPC error) and any egress
// refusals; then it kills the host. The host keeps hostRed (for its
// stderr) until it has exited, so the caller must not use it.
func (ih *instanceHost) run(ctx context.Context, eg connectors.Egress, method string, params []byte, hostRed *driverkit.Redactor, budget time.Duration) (rpcFrame, []egress.Refusal, error) {
	select {
	case ih.slot <- struct{}{}:
	case <-ctx.Done():
		hostRed.Wipe()
		return rpcFrame{}, nil, ctxFault(ctx, "waiting for the instance's previous call")
	}
	h := ih.takeWarm()
	if h == nil {
		var err error
		if h, err = ih.start(ctx, budget); err != nil {
			<-ih.slot
			hostRed.Wipe()
			return rpcFrame{}, nil, err
		}
	}
	h.setRedactor(hostRed)
	scope := h.proxy.Begin(ctx, eg)
	f, err := h.call(ctx, method, params, ih.d.opts.cancelGrace)
	h.proxy.End(scope)
	refused := scope.Refusals()
	died := h.isDead()
	h.stop()
	ih.mu.Lock()
	ih.proc = nil
	ih.mu.Unlock()
	switch {
	case died:
		ih.failed(failureReason(h.deathErr), h.describeDeath())
	case err == nil:
		ih.succeeded()
	}
	<-ih.slot
	ih.d.background(ih.prewarm)
	return f, refused, err
}

// start starts the call's host, after the backoff its instance's failures
// call for. Called holding the slot.
func (ih *instanceHost) start(ctx context.Context, budget time.Duration) (*hostProc, error) {
	ih.mu.Lock()
	wait := time.Until(ih.lastStart.Add(backoff(ih.failures)))
	failures := ih.failures
	ih.mu.Unlock()
	if wait > 0 {
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return nil, fault.New(fault.Unavailable, "the plugin host failed %d times in a row and restarts in %s; try again then", failures, wait.Round(time.Millisecond)).
				WithDetails(map[string]any{"reason": ReasonHostBackoff})
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctxFault(ctx, "waiting to restart the plugin host")
		}
	}
	ih.mu.Lock()
	ih.lastStart = time.Now()
	ih.mu.Unlock()
	h, err := startHost(ctx, ih.d.hostSpec(ih.id, budget))
	if err != nil {
		if ctx.Err() == nil {
			ih.failed("start_failed", fault.PublicOf(err).Message)
		}
		return nil, err
	}
	ih.mu.Lock()
	ih.proc, ih.lastPID = h, h.pid
	ih.mu.Unlock()
	return h, nil
}

// describeDeath says why a host died during its call.
func (h *hostProc) describeDeath() string {
	<-h.exited
	var fe *fault.Error
	if errors.As(h.deathErr, &fe) && fe.Details["reason"] != ReasonHostExited {
		return fe.Message
	}
	return "exited: " + h.status
}

// failureReason names a host's death for the metric (a fixed vocabulary).
func failureReason(err error) string {
	var fe *fault.Error
	if !errors.As(err, &fe) {
		return "exited"
	}
	switch {
	case fe.Type == fault.Timeout:
		return "timeout"
	case fe.Type == fault.ResponseTooLarge:
		return "frame_too_large"
	case fe.Details["reason"] == driverkit.ReasonProtocol:
		return "protocol"
	default:
		return "exited"
	}
}

// failed records a failure: logged, counted, and from crashLoopAfter in a
// row the instance is crash-looping.
func (ih *instanceHost) failed(reason, what string) {
	ih.mu.Lock()
	ih.failures++
	ih.last, ih.lastAt = what, time.Now().UTC()
	n := ih.failures
	ih.mu.Unlock()
	metrics.OpenClawHostFailure(ih.d.spec.Name, reason)
	log := ih.d.opts.log
	log.Warn("openclaw plugin host failed", "type", ih.d.spec.Name, "instance", ih.id, "reason", reason, "failure", what, "consecutive", n)
	if n == crashLoopAfter {
		metrics.OpenClawCrashLooping(ih.d.spec.Name, true)
		log.Error("openclaw plugin host is crash-looping: its calls back off until one succeeds", "type", ih.d.spec.Name, "instance", ih.id,
			"consecutive", n, "last_failure", what)
	}
}

func (ih *instanceHost) succeeded() {
	ih.mu.Lock()
	was := ih.failures
	ih.failures = 0
	ih.mu.Unlock()
	if was >= crashLoopAfter {
		metrics.OpenClawCrashLooping(ih.d.spec.Name, false)
		ih.d.opts.log.Info("openclaw plugin host recovered", "type", ih.d.spec.Name, "instance", ih.id, "after_failures", was)
	}
}
