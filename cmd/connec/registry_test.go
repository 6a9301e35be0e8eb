package main

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
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// npmRegistry serves one package directory as version 1.0.0 of its
// package.json name, the way the npm registry does (packument and
// tarball), on loopback: the real npm installs from it, so `connec openclaw
// add` runs end to end without leaving the machine. It returns the
// environment that points npm at it.
func npmRegistry(t *testing.T, pkgDir string) []string {
	t.Helper()
	var manifest map[string]any
	b, err := os.ReadFile(filepath.Join(pkgDir, "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &manifest); err != nil {
		t.Fatal(err)
	}
	name, version := manifest["name"].(string), manifest["version"].(string)
	tgz := packTarball(t, pkgDir)
	sha := sha1.Sum(tgz)
	sum := sha512.Sum512(tgz)
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/"+name:
			v := map[string]any{}
			for k, x := range manifest {
				v[k] = x
			}
			v["dist"] = map[string]any{
				"tarball":   srv.URL + "/" + name + "/-/" + name + "-" + version + ".tgz",
				"shasum":    hex.EncodeToString(sha[:]),
				"integrity": "sha512-" + base64.StdEncoding.EncodeToString(sum[:]),
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"name": name, "dist-tags": map[string]string{"latest": version},
				"versions": map[string]any{version: v}})
		case strings.HasSuffix(r.URL.Path, ".tgz"):
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write(tgz)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return []string{"npm_config_registry=" + srv.URL + "/", "npm_config_cache=" + t.TempDir(),
		"npm_config_update_notifier=false", "npm_config_audit=false", "npm_config_fund=false"}
}

// packTarball packs dir as npm packs a package: a gzipped tar whose entries
// sit under package/.
func packTarball(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			t.Fatalf("packTarball: %s: subdirectories are not needed here", e.Name())
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: "package/" + e.Name(), Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
