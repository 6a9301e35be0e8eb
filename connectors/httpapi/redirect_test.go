package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/connec/connec/connectors/driverkit/drivertest"
	"github.com/connec/connec/connectors/httpapi"
)

// seen is one request the redirecting service received.
type seen struct{ path, auth, referer, query string }

// redirector serves /api/v1/... and /admin; /api/v1/go redirects to the
// "to" query parameter.
func redirector(t *testing.T) (*httptest.Server, func() []seen) {
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, seen{r.URL.Path, r.Header.Get("Authorization") + r.Header.Get("X-Api-Key"), r.Header.Get("Referer"), r.URL.RawQuery})
		mu.Unlock()
		if r.URL.Path == "/api/v1/go" {
			http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"at":"` + r.URL.Path + `"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []seen { mu.Lock(); defer mu.Unlock(); return append([]seen(nil), got...) }
}

// A redirect is followed only while it stays under the base URL's path;
// one that leaves it comes back as the 3xx it is, and nothing is sent
// there, least of all the credential. No Referer goes out on a redirect
// (with a query credential, the Referer is the URL that carries it).
func TestRedirectsStayUnderTheBasePath(t *testing.T) {
	secret := drivertest.Canary(t)
	h := drivertest.New(t, httpapi.New())
	for _, style := range []string{"bearer", "query", "header"} {
		t.Run(style, func(t *testing.T) {
			srv, got := redirector(t)
			a := &api{srv: srv, secret: secret, style: style, header: "X-Api-Key", param: "api_key"}
			for _, tc := range []struct {
				to         string
				wantStatus int
				wantPaths  []string
			}{
				{"/admin/keys", http.StatusFound, []string{"/api/v1/go"}},
				{"/api/v10/x", http.StatusFound, []string{"/api/v1/go"}},
				{"/api/v1/../admin", http.StatusFound, []string{"/api/v1/go"}},
				{"/api/v1/items/7", http.StatusOK, []string{"/api/v1/go", "/api/v1/items/7"}},
			} {
				before := len(got())
				out, err := h.Invoke(context.Background(), a.call(t, "http.get", map[string]any{"path": "go", "query": map[string]string{"to": tc.to}}, nil))
				if err != nil {
					t.Fatalf("to %s: %v", tc.to, err)
				}
				drivertest.NoLeak(t, out, err, secret)
				if o := decode(t, out); o.Status != tc.wantStatus {
					t.Errorf("to %s: status %d, want %d (%s)", tc.to, o.Status, tc.wantStatus, out)
				}
				reqs := got()[before:]
				var paths []string
				for _, r := range reqs {
					paths = append(paths, r.path)
					if r.referer != "" {
						t.Errorf("to %s: the request to %s carried Referer %q", tc.to, r.path, r.referer)
					}
				}
				if strings.Join(paths, " ") != strings.Join(tc.wantPaths, " ") {
					t.Errorf("to %s: the service saw %v, want %v", tc.to, paths, tc.wantPaths)
				}
			}
		})
	}
}
