package engine

import (
	"strings"
	"testing"

	"github.com/connec/connec/callctx"
)

// FuzzParseCond: conditions parse without panics, and an accepted one
// round-trips through its canonical string.
func FuzzParseCond(f *testing.F) {
	for _, s := range []string{"", "task=required", "project=1b4e28ba-2fa1-11d2-883f-0016d3cca427;agent=a|b", "agent=", "project=x", "task=required;task=required", ";", "agent=a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCond(s)
		if err != nil {
			return
		}
		again, err := ParseCond(c.String())
		if err != nil || again.String() != c.String() {
			t.Fatalf("%q → %q does not round-trip: %v", s, c.String(), err)
		}
		_ = c.Match(callctx.TaskContext{TaskID: "1b4e28ba-2fa1-11d2-883f-0016d3cca427", AgentID: "a"})
	})
}

// FuzzRuleValidate: rule validation never panics on any field values, and
// a rule it accepts without a glob names a resource a request can carry.
func FuzzRuleValidate(f *testing.F) {
	f.Add("user:1b4e28ba-2fa1-11d2-883f-0016d3cca427", "connectors/**", "*", "", "allow")
	f.Add("group:1b4e28ba-2fa1-11d2-883f-0016d3cca427", "connectors/*/echo/{a,b}/x", "connector.read", "task=required", "deny")
	f.Add("user:1b4e28ba-2fa1-11d2-883f-0016d3cca427", "connectors/user:1b4e28ba-2fa1-11d2-883f-0016d3cca427/echo/1b4e28ba-2fa1-11d2-883f-0016d3cca427/echo.read", "connector.read", "", "allow")
	f.Add("", "[", "x", ";", "maybe")
	f.Add("user:1b4e28ba-2fa1-11d2-883f-0016d3cca427", "connectors/*/x/*/\xff", "*", "", "deny")
	f.Fuzz(func(t *testing.T, sub, res, act, cond, eft string) {
		r := Rule{Subject: sub, Resource: res, Action: act, Cond: cond, Effect: eft}
		if err := r.Validate(); err != nil {
			return
		}
		if _, err := ParseCond(r.Cond); err != nil {
			t.Fatalf("valid rule with unparsable cond %q", r.Cond)
		}
		if !strings.Contains(r.Resource, "*") {
			if err := checkResourceName(r.Resource); err != nil {
				t.Fatalf("valid rule names no resource a request can carry: %v", err)
			}
		}
	})
}
