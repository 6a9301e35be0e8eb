package mcp

import (
	"encoding/json"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/fault"
)

// FuzzDecodeToolArguments feeds arbitrary bytes to the task-context reader
// (the arguments' own decoder is fuzzed in core): it must never panic, and
// whatever it refuses is an invalid_argument error.
func FuzzDecodeToolArguments(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"type":"echo","display_name":"x"}`, `{"instance_id":"1b4e28ba-2fa1-11d2-883f-0016d3cca427","operation":"echo.read","arguments":{"message":"hi"}}`,
		`{"task_id":"1b4e28ba-2fa1-11d2-883f-0016d3cca427"}`, `{"task_id":5}`, `[]`, `null`, `{"a":1}{"b":2}`, `{"limits":{"per_subject":{"requests":1,"window_seconds":1}}}`,
		`{"secret":{"token":"x"},"kind":"bearer"}`, `{"display_name":"\u0000"}`, `{"arguments":"x"}`,
	} {
		f.Add([]byte(s), []byte(`{"task_id":"1b4e28ba-2fa1-11d2-883f-0016d3cca427","agent_id":"a"}`))
	}
	f.Fuzz(func(t *testing.T, args, meta []byte) {
		var m map[string]any
		req := mcp.CallToolRequest{}
		if json.Unmarshal(meta, &m) == nil {
			req.Params.Meta = &mcp.Meta{AdditionalFields: map[string]any{callctx.MetaKey: m}}
		}
		tc, err := taskContext(req, args)
		if err != nil {
			if fault.As(err).Type != fault.InvalidArgument {
				t.Fatalf("task context refused with %v", err)
			}
			return
		}
		if again, err := tc.Validate(); err != nil || again != tc {
			t.Fatalf("accepted task context %+v does not validate again: %v", tc, err)
		}
	})
}
