package main

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

// `connec user disable` ends a user's rights everywhere at once: the next
// operation of each of its stdio sessions — one acting as the user by name,
// one with its token, each its own process — is refused, and every other
// call as soon as the session's process hears of the change. Enabling the
// user gives both back; neither the token nor the rules were touched.
func TestDisabledUserIsRefusedOnEveryStdioSession(t *testing.T) {
	env := keyedEnv(t)
	mustRun := cli(t, env)
	mustRun("user", "add", "bob")
	tok := strings.TrimSpace(mustRun("token", "create", "--subject", "bob"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	byName := startRaw(t, "by name", append(env, "CONNEC_SUBJECT=bob", "CONNEC_TOKEN="), binary(t), "serve", "--stdio")
	byToken := startRaw(t, "by token", append(env, "CONNEC_TOKEN="+tok, "CONNEC_SUBJECT="), binary(t), "serve", "--stdio")
	sessions := []*rawStdio{byName, byToken}
	var instance string
	for i, s := range sessions {
		s.initialize(ctx)
		if i == 0 {
			out, err := s.callTool(ctx, "connector.instance.install", map[string]any{"type": "echo", "display_name": "mine", "enable": true})
			if err != nil {
				t.Fatal(err)
			}
			instance = regexp.MustCompile(`"id":"([0-9a-f-]{36})"`).FindStringSubmatch(out)[1]
		}
	}
	invoke := func(s *rawStdio) error {
		_, err := s.callTool(ctx, "connector.op.invoke", map[string]any{"instance_id": instance, "operation": "echo.send",
			"arguments": map[string]any{"message": "x"}})
		return err
	}
	refused := func(err error) bool {
		var rerr *rpcError
		return err != nil && (errors.As(err, &rerr) || strings.Contains(err.Error(), "unauthenticated"))
	}
	for _, s := range sessions {
		if err := invoke(s); err != nil {
			t.Fatalf("%s: send before the user is disabled: %v", s.name, err)
		}
	}

	mustRun("user", "disable", "bob")
	for _, s := range sessions {
		// No waiting: the dispatch commit checks the user itself.
		if err := invoke(s); !refused(err) {
			t.Fatalf("%s: the first send after `connec user disable`: %v, want it refused", s.name, err)
		}
	}
	for _, s := range sessions {
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := s.callTool(ctx, "connector.instance.list", map[string]any{})
			if refused(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: calls still succeed 30s after the user was disabled (last: %v)", s.name, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if out := mustRun("user", "list"); !regexp.MustCompile(`(?m)^user:\S+\s+bob\s+disabled`).MatchString(out) {
		t.Fatalf("user list does not show bob disabled:\n%s", out)
	}

	mustRun("user", "enable", "bob")
	for _, s := range sessions {
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := invoke(s)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still refused 30s after the user was enabled again: %v", s.name, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
