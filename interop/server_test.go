package interop_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// server is one `connec serve --http 127.0.0.1:0` process.
type server struct {
	name string
	url  string // http://127.0.0.1:port
	cmd  *exec.Cmd
	log  *tail
	done chan struct{}
}

// startServer starts connec serve on a free loopback port and waits until
// it logs the address it listens on.
func startServer(ctx context.Context, f *fixture, name string, args ...string) (*server, error) {
	dataDir := filepath.Join(f.dir, "data-"+name)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	cmd := exec.Command(f.bin, append([]string{"serve", "--http", "127.0.0.1:0"}, args...)...)
	cmd.Env = f.connecEnv("CONNEC_DATA_DIR=" + dataDir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	s := &server{name: name, cmd: cmd, log: newTail(64 << 10), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start connec serve (%s): %w", name, err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			s.log.Write(append(line, '\n'))
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "serving over HTTP" && rec.Addr != "" {
				select {
				case addr <- rec.Addr:
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(s.done)
	}()
	select {
	case a := <-addr:
		s.url = "http://" + a
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("connec serve --http %v (%s) exited before listening: %v\n%s", args, name, cmd.ProcessState, s.log)
	case <-ctx.Done():
		s.stop()
		return nil, fmt.Errorf("connec serve (%s) did not report its address: %w\n%s", name, ctx.Err(), s.log)
	}
}

// stop asks the server to shut down and kills it if it does not.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// tail keeps the last bytes written to it (a subprocess's log, for
// failure messages).
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func newTail(max int) *tail { return &tail{max: max} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// bearer is an HTTP client that authenticates every request with token, as
// a host configured with an Authorization header does.
func bearer(token string) *http.Client {
	return &http.Client{Transport: bearerTransport{token: token, base: http.DefaultTransport}}
}

type bearerTransport struct {
	token string
	base  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// tokenProxy fronts target with a reverse proxy that adds the bearer token
// to every request: the conformance suite sends no Authorization header,
// and connec has (and must have) no unauthenticated mode. Host and Origin
// pass through unchanged, so connec's own checks of them are what the suite
// sees. The proxy's errors go to errs.
func tokenProxy(target, token string, errs io.Writer) (*httptest.Server, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // SetURL would put the target's
			r.Out.Header.Set("Authorization", "Bearer "+token)
		},
		// Stream SSE responses as they come.
		FlushInterval: -1,
		ErrorLog:      log.New(errs, "proxy: ", 0),
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the request body before forwarding it. Streamed, the
		// outbound transport's last read of it (looking for bytes past
		// Content-Length) can come after connec has answered and the proxy
		// has flushed the answer's headers — after which Go's server no
		// longer lets the body be read: the transport then drops the
		// backend connection mid-answer and the suite sees "terminated".
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 8<<20))
		if err != nil {
			http.Error(w, "proxy: read request body: "+err.Error(), http.StatusBadRequest)
			return
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		p.ServeHTTP(w, r)
	})
	return httptest.NewServer(h), nil
}

// The proxy in front of connec for the conformance suite adds the token and
// changes nothing else the suite checks connec by: Host and Origin arrive as
// sent, and a request body arrives whole.
func TestTokenProxyAddsOnlyTheToken(t *testing.T) {
	type seen struct{ host, origin, auth, body string }
	got := make(chan seen, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Host, r.Header.Get("Origin"), r.Header.Get("Authorization"), string(b)}
	}))
	defer backend.Close()
	proxy, err := tokenProxy(backend.URL, "cnc_test", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	req, _ := http.NewRequest("POST", proxy.URL+"/mcp", bytes.NewReader([]byte(`{"jsonrpc":"2.0"}`)))
	req.Host = "evil.example.com"
	req.Header.Set("Origin", "http://evil.example.com")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := seen{"evil.example.com", "http://evil.example.com", "Bearer cnc_test", `{"jsonrpc":"2.0"}`}
	if s := <-got; s != want {
		t.Fatalf("connec would see %+v, want %+v", s, want)
	}
}
