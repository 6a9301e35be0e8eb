package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Command is how to start a program: the binary, arguments that come
// before the ones a measurement adds, and extra environment variables.
type Command struct {
	Path string
	Args []string
	Env  []string
}

// Self returns a Command that re-executes the running binary in role (see
// RunChildIfRequested).
func Self(role string) (Command, error) {
	exe, err := os.Executable()
	if err != nil {
		return Command{}, fmt.Errorf("locate own binary: %w", err)
	}
	// A race-enabled binary (the smoke test) otherwise sleeps a second at
	// every exit.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	return Command{Path: exe, Env: []string{childEnv + "=" + role, "GORACE=" + gorace}}, nil
}

func (c Command) command(ctx context.Context, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.Path, append(append([]string(nil), c.Args...), args...)...)
	cmd.Env = append(append(os.Environ(), c.Env...), env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// server is a server process listening on HTTP.
type proc struct {
	name string
	cmd  *exec.Cmd
	url  string // http://127.0.0.1:port
	logf *os.File
	done chan error
}

// startHTTPServer starts cmd with args (which contain "{addr}", replaced by
// a free loopback address) and waits until GET /healthz answers 200. It
// returns the server and how long that took from just before the process
// was started.
func startHTTPServer(ctx context.Context, name string, c Command, env []string, logPath string, args ...string) (*proc, time.Duration, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, 0, err
	}
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "{addr}", addr)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, 0, err
	}
	cmd := c.command(context.WithoutCancel(ctx), env, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	s := &proc{name: name, cmd: cmd, url: "http://" + addr, logf: logf, done: make(chan error, 1)}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, 0, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { s.done <- cmd.Wait() }()
	if err := s.waitHealthy(ctx, 60*time.Second); err != nil {
		s.stop()
		return nil, 0, fmt.Errorf("%s did not become ready: %w (log: %s)", name, err, tail(logPath))
	}
	return s, time.Since(start), nil
}

// waitHealthy polls /healthz every millisecond, a new connection each time.
func (s *proc) waitHealthy(ctx context.Context, limit time.Duration) error {
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for {
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("process exited: %v", err)
		default:
		}
		resp, err := hc.Get(s.url + "/healthz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no 200 from /healthz within %s (last error: %v)", limit, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(time.Millisecond)
	}
}

func (s *proc) pid() int { return s.cmd.Process.Pid }

// stop ends the process (SIGTERM, then SIGKILL after 10 s) and waits.
func (s *proc) stop() {
	start := time.Now()
	defer func() { debugLog.Debug("stopped", "server", s.name, "took", time.Since(start)) }()
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	s.logf.Close()
}

// debugLog receives process management details.
var debugLog = quiet

// freeAddr returns a loopback address with a port free at the time of the call.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// PeakRSS returns the peak resident set size (VmHWM) of process pid in bytes.
func PeakRSS(pid int) (int64, error) {
	return statusField(pid, "VmHWM:")
}

func statusField(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, field); ok {
			fs := strings.Fields(rest)
			if len(fs) == 2 && fs[1] == "kB" {
				kb, err := strconv.ParseInt(fs[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// clockTick is USER_HZ, 100 on every Linux platform Go supports.
const clockTick = 10 * time.Millisecond

// procStat returns a process's parent pid, CPU time it used, and CPU time
// its waited-for children used.
func procStat(pid int) (ppid int, self, children time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	// The command name (field 2) may hold spaces; fields after it are plain.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, errors.New("malformed stat")
	}
	fs := strings.Fields(string(b[i+1:]))
	// fs[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
	if len(fs) < 15 {
		return 0, 0, 0, errors.New("short stat")
	}
	num := func(k int) int64 { v, _ := strconv.ParseInt(fs[k-3], 10, 64); return v }
	return int(num(4)), time.Duration(num(14)+num(15)) * clockTick, time.Duration(num(16)+num(17)) * clockTick, nil
}

// treeCPU returns the CPU time used so far by process root and every
// descendant, living or already reaped by its parent.
func treeCPU(root int) time.Duration {
	if root <= 0 {
		return 0
	}
	parent := map[int]int{}
	cpu := map[int]time.Duration{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		pp, self, children, err := procStat(pid)
		if err != nil {
			continue
		}
		parent[pid] = pp
		cpu[pid] = self + children
	}
	var total time.Duration
	for pid, c := range cpu {
		for p := pid; p > 0; p = parent[p] {
			if p == root {
				total += c
				break
			}
		}
	}
	return total
}

// childCount returns how many processes (zombies too) have parent as
// their parent.
func childCount(parent int) int {
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, _, _, err := procStat(pid); err == nil && pp == parent {
			n++
		}
	}
	return n
}

// postmasterPID reads the PostgreSQL server's pid from its data directory.
func postmasterPID(dataDir string) int {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// machineBusy returns the CPU time every core of the machine has spent
// busy (not idle or waiting for I/O) since boot.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fs := strings.Fields(line)
	if len(fs) < 9 || fs[0] != "cpu" {
		return 0
	}
	var busy int64
	// user nice system idle iowait irq softirq steal
	for _, k := range []int{1, 2, 3, 6, 7, 8} {
		v, _ := strconv.ParseInt(fs[k], 10, 64)
		busy += v
	}
	return time.Duration(busy) * clockTick
}

// selfCPU returns the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
