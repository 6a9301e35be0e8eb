// Package app wires connec together: configuration, logging, the database
// (an external one or the embedded local cluster), the core service and the
// transports. cmd/connec only parses flags and calls into it.
package app

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lmittmann/tint"
)

// Config is connec's configuration; every field has an environment variable.
type Config struct {
	// DatabaseURL points at PostgreSQL; empty means the embedded local cluster.
	DatabaseURL string
	// DataDir holds the embedded cluster and the generated key file.
	DataDir string
	// KeyFile is the age identity file holding the key-encryption keys.
	KeyFile string
	// Subject is who a stdio session acts as (user:<uuid> or a user name).
	Subject string
	// Token authenticates a stdio session instead of Subject.
	Token string
	// LogFormat is text (colored, for people) or json (for machines).
	LogFormat string
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// ServerLease is how long a serving process's lease lasts unless
	// renewed: once it runs out, other servers fail the open runs it left
	// (0: core.DefaultLeaseTTL; negative: the setting was invalid).
	ServerLease time.Duration
	// ToolNames is how MCP tool names are spelled: dotted (default) or
	// underscore (for hosts that accept only [a-zA-Z0-9_-] in names).
	ToolNames string
	// Toolsets are the tools the MCP server serves: all (default),
	// management (the connector.* tools) or instances (one tool per
	// instance operation).
	Toolsets string
	// InstanceToolNames is how instance tools are named: qualified
	// (<handle>.<operation>, the default) or bare (the operation without its
	// type's namespace where that is unique).
	InstanceToolNames string
	// AllowedOrigins are the browser origins allowed to call the HTTP MCP
	// endpoints (comma-separated scheme://host[:port]); loopback origins
	// are allowed on a loopback listener.
	AllowedOrigins []string
	// TrustedProxies are the reverse proxies (addresses or CIDR prefixes)
	// whose X-Forwarded-For names a request's source; by default none, and
	// the source is the peer's address.
	TrustedProxies []string
	// AuthFailureInterval is how long failed authentications from one
	// source are counted into one audit row, and the window
	// AuthFailureLimit applies to (0: 10s; negative: invalid).
	AuthFailureInterval time.Duration
	// AuthFailureLimit is how many failed authentications a source may
	// have per interval before its requests are refused with 429 without a
	// check (0: 20; negative: invalid).
	AuthFailureLimit int
	// MetricsAddr is where /metrics (Prometheus) is served; empty serves
	// no metrics. Keep it on a private interface.
	MetricsAddr string

	// NoKeyCreate keeps Open from creating the key file in the embedded
	// default when there is none (`connec key init` creates it itself).
	NoKeyCreate bool

	// policyMaxStale overrides the authorizer's allowed staleness (tests).
	policyMaxStale time.Duration
	// installRetry overrides the first wait before a failed MCP server
	// package install is tried again (tests).
	installRetry time.Duration
}

// FromEnv reads the configuration from the environment.
func FromEnv() Config {
	return Config{
		DatabaseURL:       os.Getenv("DATABASE_URL"),
		DataDir:           envOr("CONNEC_DATA_DIR", defaultDataDir()),
		KeyFile:           os.Getenv("CONNEC_KEY_FILE"),
		Subject:           os.Getenv("CONNEC_SUBJECT"),
		Token:             os.Getenv("CONNEC_TOKEN"),
		LogFormat:         envOr("CONNEC_LOG_FORMAT", "text"),
		LogLevel:          envOr("CONNEC_LOG_LEVEL", "info"),
		ServerLease:       envDuration("CONNEC_SERVER_LEASE"),
		ToolNames:         envOr("CONNEC_TOOL_NAMES", "dotted"),
		Toolsets:          envOr("CONNEC_TOOLSETS", "all"),
		InstanceToolNames: envOr("CONNEC_INSTANCE_TOOL_NAMES", "qualified"),
		AllowedOrigins:    splitList(os.Getenv("CONNEC_ALLOWED_ORIGINS")),
		MetricsAddr:       os.Getenv("CONNEC_METRICS_ADDR"),
		TrustedProxies:    splitList(os.Getenv("CONNEC_TRUSTED_PROXIES")),

		AuthFailureInterval: envDuration("CONNEC_AUTH_FAILURE_INTERVAL"),
		AuthFailureLimit:    envInt("CONNEC_AUTH_FAILURE_LIMIT"),
	}
}

// envInt parses k as a positive integer: 0 if unset, -1 if not one (the
// command that uses it says so).
func envInt(k string) int {
	v := os.Getenv(k)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return -1
	}
	return n
}

// envDuration parses k as a duration: 0 if unset, -1 if not a positive
// duration (the command that uses it says so).
func envDuration(k string) time.Duration {
	v := os.Getenv(k)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return -1
	}
	return d
}

// splitList splits a comma-separated setting, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func defaultDataDir() string {
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "connec")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "connec")
	}
	return ".connec"
}

// Embedded reports whether connec manages its own PostgreSQL.
func (c Config) Embedded() bool { return c.DatabaseURL == "" }

// KeyPath returns the key file path, defaulting into the data dir.
func (c Config) KeyPath() string {
	if c.KeyFile != "" {
		return c.KeyFile
	}
	return filepath.Join(c.DataDir, "connec.key")
}

// NewLogger builds the process logger writing to w (stderr: stdout is the
// stdio protocol stream).
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("CONNEC_LOG_LEVEL %q: want debug, info, warn or error", level)
	}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv})), nil
	case "text", "":
		noColor := true
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				noColor = os.Getenv("NO_COLOR") != ""
			}
		}
		return slog.New(tint.NewTextHandler(w, &tint.Options{Level: lv, TimeFormat: time.TimeOnly, NoColor: noColor})), nil
	default:
		return nil, fmt.Errorf("CONNEC_LOG_FORMAT %q: want text or json", format)
	}
}
