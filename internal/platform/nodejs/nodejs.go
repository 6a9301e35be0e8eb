// Package nodejs finds Node.js for sandboxed JavaScript (OpenClaw plugin
// hosts, npm MCP servers) and installs pinned npm packages with their
// scripts disabled: what every driver that runs npm code shares.
package nodejs

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/connec/connec/internal/platform/sandbox"
)

// Runtime is a node executable and the flags its version needs.
type Runtime struct {
	Path         string
	Version      string
	Major, Minor int
	// PermissionFlag turns Node's permission model on (its name changed
	// in 22.13 / 23.5).
	PermissionFlag string

	progOnce   sync.Once
	progPath   string
	progMounts []sandbox.Mount
	progErr    error
}

// Program returns node's path inside a sandbox and the mounts it needs
// there (node and its shared libraries, read-only), worked out once.
func (rt *Runtime) Program() (string, []sandbox.Mount, error) {
	rt.progOnce.Do(func() {
		rt.progPath, rt.progMounts, rt.progErr = sandbox.Program(rt.Path)
		if rt.progErr != nil {
			rt.progErr = fmt.Errorf("the libraries %s needs: %w", rt.Path, rt.progErr)
		}
	})
	return rt.progPath, slices.Clone(rt.progMounts), rt.progErr
}

// ErrNoNode is returned when no usable node executable is found.
var ErrNoNode = errors.New("node (Node.js 20 or newer) was not found")

// Find finds node (path, or "node" on PATH) and checks its version: 20 or
// newer, whose permission model restricts file system, child processes,
// workers and addons.
func Find(path string) (*Runtime, error) {
	if path == "" {
		path = "node"
	}
	p, err := exec.LookPath(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoNode, err)
	}
	if p, err = filepath.Abs(p); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, p, "--version")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%w: %s --version: %v", ErrNoNode, p, err)
	}
	v := strings.TrimSpace(string(out))
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return nil, fmt.Errorf("%w: unrecognised version %q", ErrNoNode, v)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%w: unrecognised version %q", ErrNoNode, v)
	}
	if major < 20 {
		return nil, fmt.Errorf("%w: %s is %s; the permission model needs 20 or newer", ErrNoNode, p, v)
	}
	rt := &Runtime{Path: p, Version: v, Major: major, Minor: minor, PermissionFlag: "--experimental-permission"}
	if major > 23 || major == 23 && minor >= 5 || major == 22 && minor >= 13 {
		rt.PermissionFlag = "--permission"
	}
	return rt, nil
}
