package openclaw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Isolation says whether plugin hosts get their own user and network
// namespaces (Linux).
type Isolation int

// Isolation modes.
const (
	// IsolationAuto uses namespaces when the kernel allows them and
	// otherwise warns once and relies on the runtime's egress patching.
	IsolationAuto Isolation = iota
	// IsolationRequire refuses to start a host without namespaces.
	IsolationRequire
	// IsolationOff never uses namespaces.
	IsolationOff
)

// Defaults.
const (
	DefaultMaxOldSpaceMB  = 256
	DefaultMaxFrameBytes  = 4 << 20
	DefaultMaxResultBytes = 1 << 20
	DefaultOpTimeout      = 30 * time.Second
	MaxOpTimeout          = 5 * time.Minute
	DefaultStartTimeout   = 20 * time.Second
	DefaultCancelGrace    = time.Second
	DefaultIdleTimeout    = 10 * time.Minute
	maxBackoff            = 10 * time.Second
)

// Option configures the drivers LoadDrivers (or NewDriver, Inspect) makes.
type Option func(*options)

type options struct {
	log            *slog.Logger
	nodePath       string
	stateRoot      string
	maxOldSpaceMB  int
	maxFrameBytes  int
	maxResultBytes int
	startTimeout   time.Duration
	cancelGrace    time.Duration
	idleTimeout    time.Duration
	isolation      Isolation

	noNamespaces atomic.Bool // IsolationAuto found namespaces unavailable

	rtOnce sync.Once
	rt     *nodeRuntime
	rtErr  error
}

// WithLogger sets the logger (egress decisions, host lifecycle, plugin
// stderr at debug level).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithNode sets the node executable (default: "node" on connec's PATH).
func WithNode(path string) Option { return func(o *options) { o.nodePath = path } }

// WithStateDir sets where hosts' private state directories are made
// (default: a connec-openclaw directory in the system temp directory).
func WithStateDir(dir string) Option { return func(o *options) { o.stateRoot = dir } }

// WithMaxOldSpaceMB caps each host's V8 heap (--max-old-space-size).
func WithMaxOldSpaceMB(mb int) Option { return func(o *options) { o.maxOldSpaceMB = mb } }

// WithMaxFrameBytes bounds one protocol frame from a host.
func WithMaxFrameBytes(n int) Option { return func(o *options) { o.maxFrameBytes = n } }

// WithMaxResultBytes caps one normalized result.
func WithMaxResultBytes(n int) Option { return func(o *options) { o.maxResultBytes = n } }

// WithStartTimeout bounds a host's start (loading the plugin included).
func WithStartTimeout(d time.Duration) Option { return func(o *options) { o.startTimeout = d } }

// WithCancelGrace is how long a canceled call's host may take to answer
// $/cancel before it is killed.
func WithCancelGrace(d time.Duration) Option { return func(o *options) { o.cancelGrace = d } }

// WithIdleTimeout stops an instance's host after this long without calls.
func WithIdleTimeout(d time.Duration) Option { return func(o *options) { o.idleTimeout = d } }

// WithIsolation sets the namespace policy (default IsolationAuto).
func WithIsolation(i Isolation) Option { return func(o *options) { o.isolation = i } }

func newOptions(opts []Option) *options {
	o := &options{
		log:            slog.Default(),
		maxOldSpaceMB:  DefaultMaxOldSpaceMB,
		maxFrameBytes:  DefaultMaxFrameBytes,
		maxResultBytes: DefaultMaxResultBytes,
		startTimeout:   DefaultStartTimeout,
		cancelGrace:    DefaultCancelGrace,
		idleTimeout:    DefaultIdleTimeout,
	}
	for _, f := range opts {
		f(o)
	}
	if o.stateRoot == "" {
		o.stateRoot = filepath.Join(os.TempDir(), "connec-openclaw-"+strconv.Itoa(os.Getuid()))
	}
	o.maxOldSpaceMB = max(o.maxOldSpaceMB, 32)
	o.maxFrameBytes = max(o.maxFrameBytes, 64<<10)
	o.maxResultBytes = min(max(o.maxResultBytes, 4<<10), o.maxFrameBytes)
	return o
}

// nodeRuntime is the node executable and the flags its version needs.
type nodeRuntime struct {
	path           string
	version        string
	major, minor   int
	permissionFlag string
}

// runtime finds node once and checks its version: 20 or newer, whose
// permission model restricts file system, child processes, workers and
// addons.
func (o *options) runtime() (*nodeRuntime, error) {
	o.rtOnce.Do(func() { o.rt, o.rtErr = findNode(o.nodePath) })
	return o.rt, o.rtErr
}

// ErrNoNode is returned when no usable node executable is found.
var ErrNoNode = errors.New("openclaw: node (Node.js 20 or newer) was not found")

func findNode(path string) (*nodeRuntime, error) {
	if path == "" {
		path = "node"
	}
	p, err := exec.LookPath(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoNode, err)
	}
	if p, err = filepath.Abs(p); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, p, "--version")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%w: %s --version: %v", ErrNoNode, p, err)
	}
	v := strings.TrimSpace(string(out))
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return nil, fmt.Errorf("%w: unrecognised version %q", ErrNoNode, v)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%w: unrecognised version %q", ErrNoNode, v)
	}
	if major < 20 {
		return nil, fmt.Errorf("%w: %s is %s; the permission model needs 20 or newer", ErrNoNode, p, v)
	}
	rt := &nodeRuntime{path: p, version: v, major: major, minor: minor, permissionFlag: "--experimental-permission"}
	if major > 23 || major == 23 && minor >= 5 || major == 22 && minor >= 13 {
		rt.permissionFlag = "--permission"
	}
	return rt, nil
}
