package callctx

import (
	"encoding/json"
	"testing"
)

// FuzzTaskContext parses task contexts from arbitrary JSON objects: no
// panic, and an accepted one is canonical (validating it again changes
// nothing).
func FuzzTaskContext(f *testing.F) {
	for _, s := range []string{
		`{"task_id":"1B4E28BA-2FA1-11D2-883F-0016D3CCA427","agent_id":"planner-1"}`,
		`{"run_id":"1b4e28ba-2fa1-11d2-883f-0016d3cca427"}`, `{"agent_id":""}`, `{"project_id":"x"}`, `{"other":1}`,
		`{"task_id":"{1b4e28ba-2fa1-11d2-883f-0016d3cca427}"}`, `{"agent_id":"a/b@c:d"}`,
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, raw []byte, allowOther bool) {
		var m map[string]any
		if json.Unmarshal(raw, &m) != nil {
			return
		}
		tc, err := FromMap(m, allowOther)
		if err != nil {
			return
		}
		again, err := tc.Validate()
		if err != nil || again != tc {
			t.Fatalf("%+v is not canonical: %+v %v", tc, again, err)
		}
	})
}

// FuzzParseSubject: accepted subjects are canonical.
func FuzzParseSubject(f *testing.F) {
	for _, s := range []string{"user:1b4e28ba-2fa1-11d2-883f-0016d3cca427", "group:1B4E28BA-2FA1-11D2-883F-0016D3CCA427", "user:", "root", "user:{1b4e28ba-2fa1-11d2-883f-0016d3cca427}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sub, err := ParseSubject(s)
		if err != nil {
			return
		}
		again, err := ParseSubject(string(sub))
		if err != nil || again != sub {
			t.Fatalf("%q → %q is not canonical (%v)", s, sub, err)
		}
	})
}
