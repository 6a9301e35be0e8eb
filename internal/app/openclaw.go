package app

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/connec/connec/connectors/openclaw"
	"github.com/connec/connec/core"
	"github.com/connec/connec/gateway"
)

// reportSandbox logs, at start, whether installed OpenClaw plugins can run:
// they never run without their OS sandbox.
func (a *App) reportSandbox() {
	if !a.pluginsFound {
		return
	}
	boundary, err := openclaw.SandboxStatus()
	if err != nil {
		a.Log.Error("OpenClaw plugins are installed but will not run: this machine cannot give them their sandbox", "err", err)
		return
	}
	a.Log.Info("OpenClaw plugin sandbox available", "boundary", boundary)
}

// openclawChecks are /readyz's checks for installed OpenClaw plugins: the
// sandbox must be available (plugins do not run without it), and
// crash-looping instances are a warning. Neither names an instance or
// repeats what a plugin said: /readyz needs no token.
func (a *App) openclawChecks() []gateway.Check {
	if !a.pluginsFound {
		return nil
	}
	return []gateway.Check{{
		Name: "openclaw_sandbox",
		Run: func(context.Context) error {
			if _, err := openclaw.SandboxStatus(); err != nil {
				return fmt.Errorf("OpenClaw plugins cannot run: %w", err)
			}
			return nil
		},
		Warn: func(context.Context) string {
			looping := map[string]int{}
			for _, d := range a.plugins {
				for _, h := range d.Health() {
					if h.CrashLooping {
						looping[h.Type]++
					}
				}
			}
			if len(looping) == 0 {
				return ""
			}
			var parts []string
			for typ, n := range looping {
				parts = append(parts, fmt.Sprintf("%s: %d instance(s) crash-looping", typ, n))
			}
			sort.Strings(parts)
			return "plugin hosts failing repeatedly (calls back off; see the instances in the UI and connec's log): " + strings.Join(parts, "; ")
		},
	}}
}

// instanceHealth says what is wrong with an OpenClaw instance's plugin
// host, for the UI ("" when nothing is, or it is no plugin instance).
func (a *App) instanceHealth(in core.Instance) string {
	for _, d := range a.plugins {
		if d.Spec().Name != in.Type {
			continue
		}
		if _, err := openclaw.SandboxStatus(); err != nil {
			return "OpenClaw plugins cannot run on this machine: " + err.Error()
		}
		h, ok := d.InstanceHealth(string(in.ID))
		if !ok || h.Failures == 0 {
			return ""
		}
		state := "failing"
		if h.CrashLooping {
			state = "crash-looping (calls back off until one succeeds)"
		}
		return fmt.Sprintf("Plugin host %s: %d failure(s) in a row, the last at %s: %s",
			state, h.Failures, h.LastAt.Format(time.RFC3339), h.Last)
	}
	return ""
}
