package engine

import (
	"errors"
	"strings"
	"testing"

	"github.com/casbin/casbin/v2/util"
	"github.com/google/uuid"

	"github.com/connec/connec/callctx"
)

// TestGlobMatchDoubleStar pins down what Casbin's globMatch (doublestar v4)
// does with the patterns rules use. In particular a trailing "/**" matches
// zero segments too, so "connectors/user:X/**" alone covers the owner
// resource "connectors/user:X" and everything beneath it.
func TestGlobMatchDoubleStar(t *testing.T) {
	const x = "connectors/user:X"
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{x + "/**", x, true}, // ** matches zero segments
		{x + "/**", x + "/echo", true},
		{x + "/**", x + "/echo/I", true},
		{x + "/**", x + "/echo/I/send", true},
		{x + "/**", "connectors/user:XY", false}, // no prefix leak to another owner
		{x + "/**", "connectors/user:XY/echo/I", false},
		{x + "**", x + "/echo", false}, // ** not a whole segment acts as *
		{x + "*", "connectors/user:XY", true},
		{x, x + "/echo", false},
		{x + "/*", x, false},
		{x + "/*", x + "/echo", true},
		{x + "/*", x + "/echo/I", false},
		{x + "/echo/I/*", x + "/echo/I", false},
		{x + "/echo/I/*", x + "/echo/I/send", true},
		{"connectors/*/echo/*/send", x + "/echo/I/send", true},
		{"connectors/*/echo/*/send", x + "/web/I/send", false},
		{x + "/**/send", x + "/echo/I/send", true},
		{x + "/{echo,web}/**", x + "/web/I/send", true},
		{"**", "catalog", true},
		{"**", x + "/echo/I/send", true},
		{"catalog", "catalog", true},
		{"catalog", "policy", false},
	} {
		t.Run(tc.pattern+"~"+tc.name, func(t *testing.T) {
			got, err := util.GlobMatch(tc.name, tc.pattern)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("globMatch(%q, %q) = %v, want %v", tc.name, tc.pattern, got, tc.want)
			}
		})
	}
}

func TestResourceNames(t *testing.T) {
	owner := callctx.UserSubject(uuid.MustParse("6f1c1d4e-0a4b-4f7e-9c7d-1a2b3c4d5e6f"))
	inst := uuid.MustParse("0d9e8f7a-6b5c-4d3e-8f1a-2b3c4d5e6f70")
	for _, tc := range []struct{ got, want string }{
		{OwnerResource(owner), "connectors/user:6f1c1d4e-0a4b-4f7e-9c7d-1a2b3c4d5e6f"},
		{InstanceResource(owner, "echo", inst), "connectors/user:6f1c1d4e-0a4b-4f7e-9c7d-1a2b3c4d5e6f/echo/0d9e8f7a-6b5c-4d3e-8f1a-2b3c4d5e6f70"},
		{OperationResource(owner, "echo", inst, "send"), "connectors/user:6f1c1d4e-0a4b-4f7e-9c7d-1a2b3c4d5e6f/echo/0d9e8f7a-6b5c-4d3e-8f1a-2b3c4d5e6f70/send"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
		if err := checkResourceName(tc.got); err != nil {
			t.Errorf("checkResourceName(%q): %v", tc.got, err)
		}
	}
	for _, bad := range []string{"", "connectors//x", "connectors/x/", "connectors/../policy", "connectors/./x", "connectors/*", "a b", "a\tb", "catalog\n", `a\b`, "a{b}"} {
		if err := checkResourceName(bad); err == nil {
			t.Errorf("checkResourceName(%q) = nil, want error", bad)
		}
	}
}

func TestParseCond(t *testing.T) {
	const p = "7b0e6a52-3f0c-4d8e-9a1b-2c3d4e5f6a7b"
	for _, tc := range []struct {
		in      string
		want    string // canonical form
		wantErr string
	}{
		{in: "", want: ""},
		{in: "project=" + p, want: "project=" + p},
		{in: "project=" + strings.ToUpper(p), want: "project=" + p},
		{in: "agent=planner", want: "agent=planner"},
		{in: "agent=planner|coder@x/y:1", want: "agent=planner|coder@x/y:1"},
		{in: "agent=a|a", want: "agent=a"},
		{in: "task=required", want: "task=required"},
		{in: "task=required;agent=a;project=" + p, want: "project=" + p + ";agent=a;task=required"},
		{in: ";", wantErr: "empty clause"},
		{in: "task=required;", wantErr: "empty clause"},
		{in: "project", wantErr: "want key=value"},
		{in: "project=nope", wantErr: "project must be a uuid"},
		{in: "project=" + p + "0", wantErr: "project must be a uuid"},
		{in: "agent=", wantErr: "at least one agent id"},
		{in: "agent=a||b", wantErr: `agent id ""`},
		{in: "agent=-a", wantErr: `agent id "-a"`},
		{in: "task=optional", wantErr: "task=required"},
		{in: "user=x", wantErr: `unknown key "user"`},
		{in: "agent=a;agent=b", wantErr: "agent given more than once"},
		{in: "agent=a; task=required", wantErr: "whitespace"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			c, err := ParseCond(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalidCond) {
					t.Fatalf("ParseCond(%q) = %v, want error containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCond(%q): %v", tc.in, err)
			}
			if c.String() != tc.want {
				t.Errorf("String() = %q, want %q", c.String(), tc.want)
			}
		})
	}
}

func TestCondMatch(t *testing.T) {
	const p, q = "7b0e6a52-3f0c-4d8e-9a1b-2c3d4e5f6a7b", "11111111-2222-4333-8444-555555555555"
	const task = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
	for _, tc := range []struct {
		name string
		cond string
		tctx callctx.TaskContext
		want bool
	}{
		{"empty holds without context", "", callctx.TaskContext{}, true},
		{"empty holds with context", "", callctx.TaskContext{ProjectID: p, AgentID: "a"}, true},
		{"project equal", "project=" + p, callctx.TaskContext{ProjectID: p}, true},
		{"project case-insensitive", "project=" + p, callctx.TaskContext{ProjectID: strings.ToUpper(p)}, true},
		{"project other", "project=" + p, callctx.TaskContext{ProjectID: q}, false},
		{"project missing", "project=" + p, callctx.TaskContext{}, false},
		{"agent listed", "agent=a|b", callctx.TaskContext{AgentID: "b"}, true},
		{"agent not listed", "agent=a|b", callctx.TaskContext{AgentID: "c"}, false},
		{"agent missing", "agent=a|b", callctx.TaskContext{}, false},
		{"agent case-sensitive", "agent=a", callctx.TaskContext{AgentID: "A"}, false},
		{"task present", "task=required", callctx.TaskContext{TaskID: task}, true},
		{"task missing", "task=required", callctx.TaskContext{ProjectID: p}, false},
		{"all hold", "project=" + p + ";agent=a;task=required", callctx.TaskContext{ProjectID: p, AgentID: "a", TaskID: task}, true},
		{"one fails", "project=" + p + ";agent=a;task=required", callctx.TaskContext{ProjectID: p, AgentID: "a"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCond(tc.cond)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Match(tc.tctx); got != tc.want {
				t.Errorf("ParseCond(%q).Match(%+v) = %v, want %v", tc.cond, tc.tctx, got, tc.want)
			}
		})
	}
}
