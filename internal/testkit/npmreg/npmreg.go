// Package npmreg is a loopback npm registry for tests: packuments and
// tarballs of the packages a test publishes, so that the real npm installs
// them (connec's real install paths) without the network.
package npmreg

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Registry serves what was published to it.
type Registry struct {
	srv      *httptest.Server
	mu       sync.Mutex
	pkgs     map[string]map[string][]byte // name → version → .tgz
	failing  bool
	requests int
}

// New starts a registry that lives as long as t.
func New(t testing.TB) *Registry {
	t.Helper()
	r := &Registry{pkgs: map[string]map[string][]byte{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

// URL is the registry's address as npm's registry setting takes it.
func (r *Registry) URL() string { return r.srv.URL + "/" }

// Env is the environment that points npm at the registry (with a cache of
// its own, no retries of a failed fetch, nothing else asked of the network).
func (r *Registry) Env(t testing.TB) []string {
	return []string{"npm_config_registry=" + r.URL(), "npm_config_cache=" + t.TempDir(), "npm_config_fetch_retries=0",
		"npm_config_update_notifier=false", "npm_config_audit=false", "npm_config_fund=false"}
}

// SetFailing makes the registry answer every request 503 (an outage), or
// serve again.
func (r *Registry) SetFailing(failing bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failing = failing
}

// Requests is how many requests the registry has had.
func (r *Registry) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// Publish packs files (paths relative to the package root) as
// name@version.
func (r *Registry) Publish(t testing.TB, name, version string, files map[string][]byte) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, n := range slices.Sorted(maps.Keys(files)) {
		hdr := &tar.Header{Name: "package/" + n, Mode: 0o644, Size: int64(len(files[n])), ModTime: time.Unix(499162500, 0), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(files[n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pkgs[name] == nil {
		r.pkgs[name] = map[string][]byte{}
	}
	r.pkgs[name][version] = buf.Bytes()
}

// PublishDir publishes the package in dir as its package.json names it,
// and returns its name and version.
func (r *Registry) PublishDir(t testing.TB, dir string) (name, version string) {
	t.Helper()
	files := ReadDir(t, dir)
	var manifest struct{ Name, Version string }
	if err := json.Unmarshal(files["package.json"], &manifest); err != nil || manifest.Name == "" || manifest.Version == "" {
		t.Fatalf("%s: no package.json naming the package and its version (%v)", dir, err)
	}
	r.Publish(t, manifest.Name, manifest.Version, files)
	return manifest.Name, manifest.Version
}

// Integrity is npm's hash of name@version as published (what npm records
// in its lock file), "" if it was not.
func (r *Registry) Integrity(name, version string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	tgz, ok := r.pkgs[name][version]
	if !ok {
		return ""
	}
	sum := sha512.Sum512(tgz)
	return "sha512-" + base64.StdEncoding.EncodeToString(sum[:])
}

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	if r.failing {
		http.Error(w, "the registry is down", http.StatusServiceUnavailable)
		return
	}
	p, err := url.PathUnescape(strings.TrimPrefix(req.URL.EscapedPath(), "/"))
	if err != nil {
		http.NotFound(w, req)
		return
	}
	if name, file, ok := strings.Cut(p, "/-/"); ok {
		for v, tgz := range r.pkgs[name] {
			if file == tarballName(name, v) {
				w.Header().Set("Content-Type", "application/octet-stream")
				_, _ = w.Write(tgz)
				return
			}
		}
		http.NotFound(w, req)
		return
	}
	versions := r.pkgs[p]
	if versions == nil {
		http.NotFound(w, req)
		return
	}
	doc := map[string]any{"name": p, "dist-tags": map[string]string{}, "versions": map[string]any{}}
	for v, tgz := range versions {
		s512 := sha512.Sum512(tgz)
		s1 := sha1.Sum(tgz)
		// The version's document is its package.json (npm resolves
		// dependencies and programs from it) with where to fetch it.
		meta := map[string]any{}
		_ = json.Unmarshal(packageJSON(tgz), &meta)
		meta["name"], meta["version"] = p, v
		meta["dist"] = map[string]any{
			"tarball":   r.srv.URL + "/" + url.PathEscape(p) + "/-/" + tarballName(p, v),
			"integrity": "sha512-" + base64.StdEncoding.EncodeToString(s512[:]),
			"shasum":    hex.EncodeToString(s1[:]),
		}
		doc["versions"].(map[string]any)[v] = meta
		doc["dist-tags"].(map[string]string)["latest"] = v
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(doc)
}

// packageJSON reads package/package.json out of a tarball (nil if none).
func packageJSON(tgz []byte) []byte {
	gz, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		return nil
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err != nil {
			return nil
		}
		if h.Name == "package/package.json" {
			var b bytes.Buffer
			if _, err := b.ReadFrom(tr); err != nil {
				return nil
			}
			return b.Bytes()
		}
	}
}

func tarballName(name, version string) string {
	return filepath.Base(name) + "-" + version + ".tgz"
}

// ReadDir reads a package directory's files, by their paths relative to it.
func ReadDir(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
