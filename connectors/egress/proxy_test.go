package egress_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connec/connec/connectors/egress"
)

// The proxy forwards plain HTTP and tunnels CONNECT for allowed hosts
// during a call, refuses everything between calls, and closes the
// connections made during calls when the last call in progress ends.
func TestProxy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("up " + r.URL.Path))
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	dir, err := os.MkdirTemp("", "px") // a Unix socket path must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "p.sock")
	p, err := egress.NewProxy(sock, slog.New(slog.DiscardHandler), "test egress", "instance", "i")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if p.Addr() != sock {
		t.Errorf("Addr = %q", p.Addr())
	}
	g, err := egress.New([]string{host}, egress.Options{AllowPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	dial := func() net.Conn {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		return c
	}
	ask := func(req string) string {
		c := dial()
		defer c.Close()
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.Status + " " + resp.Header.Get("X-Connec-Egress") + " " + string(b)
	}
	get := "GET " + srv.URL + "/p HTTP/1.1\r\nHost: " + host + "\r\nProxy-Authorization: x\r\n\r\n"
	if got := ask(get); !strings.HasPrefix(got, "403") || !strings.Contains(got, "no call is in progress") {
		t.Errorf("between calls: %s", got)
	}
	s := p.Begin(context.Background(), g)
	if got := ask(get); got != "200 OK  up /p" {
		t.Errorf("forward: %q", got)
	}
	if got := ask("GET http://127.0.0.1:1/x HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n"); !strings.HasPrefix(got, "403") || !strings.Contains(got, "allowlist") {
		t.Errorf("off the list: %s", got)
	}
	if got := ask("GET https://" + host + "/ HTTP/1.1\r\nHost: x\r\n\r\n"); !strings.HasPrefix(got, "403") {
		t.Errorf("https forward: %s", got)
	}

	// A tunnel opened during one call outlives it while another call is in
	// progress, and is closed when the last one ends.
	s2 := p.Begin(context.Background(), g)
	tun := dial()
	defer tun.Close()
	br := bufio.NewReader(tun)
	connect := func() {
		if _, err := io.WriteString(tun, "CONNECT "+host+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %v %v", resp, err)
		}
	}
	roundTrip := func() error {
		if _, err := io.WriteString(tun, "GET /t HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		return err
	}
	connect()
	p.End(s)
	if rs := s.Refusals(); len(rs) != 2 || rs[0].Host != "127.0.0.1:1" {
		t.Errorf("refusals = %+v", rs)
	}
	if summary := egress.RefusedSummary(s.Refusals()); !strings.Contains(summary, "127.0.0.1:1 (") {
		t.Errorf("summary = %q", summary)
	}
	if err := roundTrip(); err != nil {
		t.Errorf("tunnel closed while a call is still in progress: %v", err)
	}
	p.End(s2)
	if err := roundTrip(); err == nil {
		t.Error("the tunnel outlived the last call")
	}

	s3 := p.Begin(context.Background(), nil)
	defer p.End(s3)
	if got := ask(get); !strings.Contains(got, "no egress") {
		t.Errorf("nil egress: %s", got)
	}
}
