package openclaw

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// npmRegistry is a loopback npm registry: packuments and tarballs of the
// packages a test publishes, so that plugins are installed through the
// real path (`connec openclaw add` → Stage → npm install) without the
// network.
type npmRegistry struct {
	srv  *httptest.Server
	mu   sync.Mutex
	pkgs map[string]map[string][]byte // name → version → .tgz
}

func newNPMRegistry(t *testing.T) *npmRegistry {
	t.Helper()
	r := &npmRegistry{pkgs: map[string]map[string][]byte{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *npmRegistry) URL() string { return r.srv.URL + "/" }

// publish packs files (paths relative to the package root) as name@version.
func (r *npmRegistry) publish(t *testing.T, name, version string, files map[string][]byte) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
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

func (r *npmRegistry) serve(w http.ResponseWriter, req *http.Request) {
	p, err := url.PathUnescape(strings.TrimPrefix(req.URL.EscapedPath(), "/"))
	if err != nil {
		http.NotFound(w, req)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
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
		doc["versions"].(map[string]any)[v] = map[string]any{
			"name": p, "version": v,
			"dist": map[string]any{
				"tarball":   r.srv.URL + "/" + url.PathEscape(p) + "/-/" + tarballName(p, v),
				"integrity": "sha512-" + base64.StdEncoding.EncodeToString(s512[:]),
				"shasum":    hex.EncodeToString(s1[:]),
			},
		}
		doc["dist-tags"].(map[string]string)["latest"] = v
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(doc)
}

func tarballName(name, version string) string {
	return filepath.Base(name) + "-" + version + ".tgz"
}

// needNPM skips t without npm.
func needNPM(t *testing.T) {
	t.Helper()
	needNode(t)
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm is not installed: plugins cannot be installed through the real path")
	}
}

// readTestdata reads a testdata package's files.
func readTestdata(t *testing.T, dir string) map[string][]byte {
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
