package nodejs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// NPM tunes Install.
type NPM struct {
	// Path is the npm executable (default "npm" on PATH).
	Path string
	// Registry is the npm registry URL (default: npm's configuration).
	Registry string
	// Output receives npm's output (default: discarded).
	Output io.Writer
}

// Install installs spec into dir's node_modules with npm, never running a
// package's scripts (--ignore-scripts), without dev or optional
// dependencies, the version saved exact.
func (n NPM) Install(ctx context.Context, dir, spec string) error {
	npm := n.Path
	if npm == "" {
		npm = "npm"
	}
	args := []string{"install", "--ignore-scripts", "--no-audit", "--no-fund", "--save-exact",
		"--omit=dev", "--omit=optional", "--legacy-peer-deps", "--no-update-notifier"}
	if n.Registry != "" {
		args = append(args, "--registry="+n.Registry)
	}
	args = append(args, spec)
	cmd := exec.CommandContext(ctx, npm, args...)
	cmd.Dir = dir
	out := n.Output
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("npm install %s: %w", spec, err)
	}
	return nil
}

// LockInfo reads a package's integrity and tarball URL from the lock npm
// wrote in dir.
func LockInfo(dir, pkg string) (integrity, resolved string) {
	b, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return "", ""
	}
	var lock struct {
		Packages map[string]struct {
			Integrity string `json:"integrity"`
			Resolved  string `json:"resolved"`
		} `json:"packages"`
	}
	if json.Unmarshal(b, &lock) != nil {
		return "", ""
	}
	p := lock.Packages["node_modules/"+pkg]
	return p.Integrity, p.Resolved
}

// ReadableByAll makes the files under dir readable (and directories
// enterable) by every uid and writable by their owner only: as root,
// sandboxes run as a uid of their own, whatever connec's umask was.
func ReadableByAll(dir string) error {
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.Type()&os.ModeSymlink != 0 {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		mode := fi.Mode().Perm()
		want := (mode | 0o444) &^ 0o022
		if d.IsDir() || mode&0o100 != 0 {
			want |= 0o111
		}
		if want == mode {
			return nil
		}
		return os.Chmod(p, want)
	})
}

// PackageDir is where package pkg lives inside install directory dir.
func PackageDir(dir, pkg string) string {
	return filepath.Join(dir, "node_modules", filepath.FromSlash(pkg))
}

var (
	npmNameRe = regexp.MustCompile(`^(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*$`)
	semverRe  = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)
)

// ParseSpec splits "<npm-package>@<version>" and insists on an exact
// version (no ranges, tags, URLs, files or git): what is reviewed is what
// runs. example is shown in the error.
func ParseSpec(spec, example string) (pkg, version string, err error) {
	i := strings.LastIndex(spec, "@")
	if i <= 0 {
		return "", "", fmt.Errorf("%q: want <npm-package>@<exact-version>, e.g. %s", spec, example)
	}
	pkg, version = spec[:i], spec[i+1:]
	if len(pkg) > 214 || !npmNameRe.MatchString(pkg) {
		return "", "", fmt.Errorf("%q is not an npm package name", pkg)
	}
	if !semverRe.MatchString(version) {
		return "", "", fmt.Errorf("version %q is not an exact version (x.y.z): pin the version to review", version)
	}
	return pkg, version, nil
}
