package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
)

// Machine is what the figures were measured on.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	MemTotal  int64  `json:"mem_total_bytes"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	// PostgreSQL is the server's version() string.
	PostgreSQL string `json:"postgresql"`
	// DataFS is the file system the cluster's data directory is on (tmpfs
	// would make fsync free and the floor meaningless).
	DataFS string `json:"data_fs"`
	// MCPGo is the mcp-go module version both servers and the load
	// generator are built with.
	MCPGo string `json:"mcp_go"`
	// GoSDK is the official go-sdk's version (the engine comparison's
	// other server).
	GoSDK string `json:"go_sdk,omitempty"`
	// Revision is the connec source revision the bench binary was built
	// from ("+dirty" when the tree had changes).
	Revision string `json:"revision"`
}

func (s *suite) machine(ctx context.Context) error {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), CPUModel: cpuModel(), Kernel: kernel(), MemTotal: memTotal()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/mark3labs/mcp-go":
				m.MCPGo = d.Version
			case "github.com/modelcontextprotocol/go-sdk":
				m.GoSDK = d.Version
			}
		}
		var rev, dirty string
		for _, kv := range bi.Settings {
			switch kv.Key {
			case "vcs.revision":
				rev = kv.Value
			case "vcs.modified":
				if kv.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		m.Revision = rev + dirty
	}
	if m.Revision == "" {
		m.Revision = gitRevision()
	}
	if s.cfg.DB.DataDir != "" {
		m.DataFS = fsType(s.cfg.DB.DataDir)
	}
	conn, err := pgx.Connect(ctx, s.cfg.DB.BaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&m.PostgreSQL); err != nil {
		return err
	}
	s.report.Machine = m
	s.log.Info("machine", "cpus", m.CPUs, "cpu", m.CPUModel, "go", m.GoVersion, "postgresql", m.PostgreSQL, "data_fs", m.DataFS)
	return nil
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	fs := strings.Fields(string(b))
	if len(fs) < 3 {
		return "unknown"
	}
	return strings.Join(fs[:3], " ")
}

// gitRevision asks git when the binary carries no VCS stamp (-buildvcs=false).
func gitRevision() string {
	out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		rev += "+dirty"
	}
	return rev
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return runtime.GOOS
	}
	return "Linux " + strings.TrimSpace(string(b))
}

func memTotal() int64 {
	v, err := meminfo("MemTotal:")
	if err != nil {
		return 0
	}
	return v
}

func meminfo(field string) (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil {
				return kb << 10, nil
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/meminfo", field)
}

// fsType names the file system dir is on.
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown"
	}
	names := map[int64]string{
		0xEF53: "ext4", 0x01021994: "tmpfs", 0x58465342: "xfs", 0x9123683E: "btrfs",
		0x794C7630: "overlayfs", 0x6969: "nfs", 0x2FC12FC1: "zfs", 0xF2F52010: "f2fs",
	}
	if n, ok := names[int64(st.Type)]; ok {
		return n
	}
	return fmt.Sprintf("0x%X", st.Type)
}
