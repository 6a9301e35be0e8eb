package openclaw

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/connec/connec/internal/platform/nodejs"
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
	// DefaultMemoryMB caps a host's private memory (RLIMIT_DATA): the
	// V8 heap, array buffers, thread stacks and everything else anonymous.
	DefaultMemoryMB = 768
	// DefaultStateMB caps a host's writable home (a tmpfs of its own).
	DefaultStateMB = 64
	// DefaultThreads caps a host's threads (RLIMIT_NPROC).
	DefaultThreads = 128
	// cpuStartAllowance is the CPU time a host may use on top of its
	// call's time limit (loading the plugin, type stripping).
	cpuStartAllowance = 10 * time.Second
	maxBackoff        = 10 * time.Second
	// crashLoopAfter consecutive failures mark an instance's host as
	// crash-looping (logged, /readyz, the UI).
	crashLoopAfter = 3
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
	memoryMB       int
	stateMB        int
	threads        int
	cpuLimit       time.Duration // 0: the call's time limit plus cpuStartAllowance
	// noRuntimeGuards (tests only) runs hosts without Node's permission
	// model and without the host's refusing patches, to show that the
	// operating system alone holds.
	noRuntimeGuards bool

	stateOnce sync.Once
	state     *stateDir
	stateErr  error

	rtOnce sync.Once
	rt     *nodejs.Runtime
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

// WithIdleTimeout stops a host started ahead of an instance's next call
// when no call comes for this long (0: never start one ahead).
func WithIdleTimeout(d time.Duration) Option { return func(o *options) { o.idleTimeout = d } }

// WithMemoryMB caps each host's private memory (RLIMIT_DATA, enforced by
// the kernel; default DefaultMemoryMB). It must leave room for the heap
// cap (WithMaxOldSpaceMB) and Node's own threads.
func WithMemoryMB(mb int) Option { return func(o *options) { o.memoryMB = mb } }

// WithCPULimit caps each host's CPU time (RLIMIT_CPU; default: the call's
// time limit plus 10 s for loading the plugin).
func WithCPULimit(d time.Duration) Option { return func(o *options) { o.cpuLimit = d } }

// WithStateMB caps each host's writable home (default DefaultStateMB).
func WithStateMB(mb int) Option { return func(o *options) { o.stateMB = mb } }

// withoutRuntimeGuards is for tests: the OS boundary alone.
func withoutRuntimeGuards() Option { return func(o *options) { o.noRuntimeGuards = true } }

func newOptions(opts []Option) *options {
	o := &options{
		log:            slog.Default(),
		maxOldSpaceMB:  DefaultMaxOldSpaceMB,
		maxFrameBytes:  DefaultMaxFrameBytes,
		maxResultBytes: DefaultMaxResultBytes,
		startTimeout:   DefaultStartTimeout,
		cancelGrace:    DefaultCancelGrace,
		idleTimeout:    DefaultIdleTimeout,
		memoryMB:       DefaultMemoryMB,
		stateMB:        DefaultStateMB,
		threads:        DefaultThreads,
	}
	for _, f := range opts {
		f(o)
	}
	if o.stateRoot == "" {
		o.stateRoot = filepath.Join(os.TempDir(), "connec-openclaw-"+strconv.Itoa(os.Getuid()))
	}
	o.maxOldSpaceMB = max(o.maxOldSpaceMB, 32)
	o.memoryMB = max(o.memoryMB, 128)
	o.stateMB = max(o.stateMB, 1)
	o.threads = max(o.threads, 32)
	o.maxFrameBytes = max(o.maxFrameBytes, 64<<10)
	o.maxResultBytes = min(max(o.maxResultBytes, 4<<10), o.maxFrameBytes)
	return o
}

// runtime finds node once (nodejs.Find).
func (o *options) runtime() (*nodejs.Runtime, error) {
	o.rtOnce.Do(func() { o.rt, o.rtErr = nodejs.Find(o.nodePath) })
	return o.rt, o.rtErr
}

// ErrNoNode is returned when no usable node executable is found.
var ErrNoNode = nodejs.ErrNoNode
