package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// engineHandlers are the two bare servers' HTTP handlers.
func engineHandlers() map[string]http.Handler {
	return map[string]http.Handler{
		"mcp-go": BareHandler(NewBareServer()),
		"go-sdk": BareSDKHandler(NewBareSDKServer()),
	}
}

var engineArgs = map[string]any{"instance_id": "0b7f4a52-3c1e-4d0a-9a6b-2f7c1e5d8a90", "operation": "echo.read",
	"arguments": map[string]any{"message": "hello"}}

// inProcess is an http.RoundTripper that hands each request straight to a
// handler: the raw client's requests, answered without a network, so that a
// benchmark or profile holds only the server's work (and the client's).
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	if r.Body == nil {
		r.Body = http.NoBody
	}
	t.h.ServeHTTP(rec, r)
	res := rec.Result()
	res.Request = r
	return res, nil
}

// TestEngines checks that both bare servers answer the raw client's tool
// call on both revisions (the engine comparison's premise).
func TestEngines(t *testing.T) {
	for name, h := range engineHandlers() {
		for _, rev := range []string{revModern, revLegacy} {
			t.Run(name+"/"+rev, func(t *testing.T) {
				hc := &http.Client{Transport: inProcess{h}}
				c, err := dialRawHTTP(context.Background(), hc, "http://127.0.0.1/mcp", rev, BareTool, engineArgs)
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				defer c.close()
				for range 3 {
					if err := c.call(context.Background()); err != nil {
						t.Fatalf("call: %v", err)
					}
				}
				if (rev == revLegacy) != (c.session != "") {
					t.Errorf("session %q on revision %s", c.session, rev)
				}
			})
		}
	}
}

// BenchmarkEngines is one tools/call per op through each bare server's
// HTTP handler, in process (no network): the engines' own cost per call.
func BenchmarkEngines(b *testing.B) {
	for name, h := range engineHandlers() {
		for _, rev := range []string{revModern, revLegacy} {
			b.Run(name+"/"+rev, func(b *testing.B) {
				hc := &http.Client{Transport: inProcess{h}}
				c, err := dialRawHTTP(context.Background(), hc, "http://127.0.0.1/mcp", rev, BareTool, engineArgs)
				if err != nil {
					b.Fatal(err)
				}
				defer c.close()
				b.ReportAllocs()
				for b.Loop() {
					if err := c.call(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
