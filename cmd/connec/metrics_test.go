package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connec/connec/internal/testkit/pgtest"
	"github.com/connec/connec/vault"
)

// Usage figures are not open to whoever reaches the API port: /metrics is
// served only on the listener CONNEC_METRICS_ADDR names, and not at all
// without it.
func TestMetricsOnlyOnTheirOwnListener(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "connec.key")
	if _, err := vault.GenerateKeyFile(key, true); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), "serve", "--http", "127.0.0.1:0", "--metrics-addr", metricsAddr)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+pgtest.URL(t), "CONNEC_KEY_FILE="+key, "CONNEC_LOG_FORMAT=json", "CONNEC_DATA_DIR="+dir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var api string
	sc := bufio.NewScanner(stderr)
	for api == "" && sc.Scan() {
		var line struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving over HTTP" {
			api = line.Addr
		}
	}
	if api == "" {
		t.Fatal("the server never said where it serves HTTP")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	get := func(url string) int {
		t.Helper()
		res, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if st := get("http://" + api + "/metrics"); st != http.StatusNotFound {
		t.Fatalf("/metrics on the API port: %d, want 404", st)
	}
	res, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body := new(strings.Builder)
	_, _ = bufio.NewReader(res.Body).WriteTo(body)
	if res.StatusCode != http.StatusOK || !strings.Contains(body.String(), "go_goroutines") {
		t.Fatalf("/metrics on the metrics listener: %d", res.StatusCode)
	}
}
