package mcp

import (
	"encoding/json"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/connec/connec/callctx"
	"github.com/connec/connec/core"
	"github.com/connec/connec/fault"
)

// FuzzDecodeToolArguments feeds arbitrary bytes to the strict argument
// decoder and the task-context reader: they must never panic, and whatever
// they refuse is an invalid_argument error.
func FuzzDecodeToolArguments(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"type":"echo","display_name":"x"}`, `{"instance_id":"1b4e28ba-2fa1-11d2-883f-0016d3cca427","operation":"echo.read","arguments":{"message":"hi"}}`,
		`{"task_id":"1b4e28ba-2fa1-11d2-883f-0016d3cca427"}`, `{"task_id":5}`, `[]`, `null`, `{"a":1}{"b":2}`, `{"limits":{"per_subject":{"requests":1,"window_seconds":1}}}`,
		`{"secret":{"token":"x"},"kind":"bearer"}`, `{"display_name":"\u0000"}`, `{"arguments":"x"}`,
	} {
		f.Add([]byte(s), []byte(`{"task_id":"1b4e28ba-2fa1-11d2-883f-0016d3cca427","agent_id":"a"}`))
	}
	type target struct {
		schema argumentsSchema
		new    func() any
	}
	targets := []target{
		{compileArguments(mustSchema[installArgs]()), func() any { return &installArgs{} }},
		{compileArguments(mustSchema[invokeArgs]()), func() any { return &invokeArgs{} }},
		{compileArguments(mustSchema[createCredentialArgs]()), func() any { return &createCredentialArgs{} }},
		{compileArguments(mustSchema[core.RunFilter]()), func() any { return &core.RunFilter{} }},
		{compileArguments(mustSchema[instanceArgs]()), func() any { return &instanceArgs{} }},
		{compileArguments(mustSchema[removeRuleArgs]()), func() any { return &removeRuleArgs{} }},
	}
	f.Fuzz(func(t *testing.T, args, meta []byte) {
		for _, tg := range targets {
			if err := tg.schema.decode(args, tg.new()); err != nil && fault.As(err).Type != fault.InvalidArgument {
				t.Fatalf("decode refused with %v", err)
			}
		}
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
