// Package echo is connec's harmless built-in connector type: its operations
// return their input, so the whole governed path (policy, audit, schema
// validation, execution) can be exercised without any outside service.
package echo

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/connec/connec/connectors"
)

// Driver is the echo connector type.
type Driver struct{}

// New returns the echo driver.
func New() Driver { return Driver{} }

const inputSchema = `{
  "type": "object",
  "properties": {
    "message": {"type": "string", "maxLength": 4096, "description": "Text to echo back."},
    "data": {"type": "object", "description": "Any JSON object to echo back."},
    "delay_ms": {"type": "integer", "minimum": 0, "maximum": 60000, "description": "Wait this long before answering (to exercise timeouts)."}
  },
  "required": ["message"],
  "additionalProperties": false
}`

const outputSchema = `{
  "type": "object",
  "properties": {
    "message": {"type": "string"},
    "data": {"type": "object"},
    "operation": {"type": "string"},
    "credential_kind": {"type": "string", "description": "Kind of the credential the executor handed over, if any (never its value)."}
  },
  "required": ["message", "operation"],
  "additionalProperties": false
}`

const configSchema = `{
  "type": "object",
  "properties": {
    "prefix": {"type": "string", "maxLength": 64, "description": "Prepended to every echoed message."}
  },
  "additionalProperties": false
}`

// Spec declares the echo type.
func (Driver) Spec() connectors.TypeSpec {
	return connectors.TypeSpec{
		Name:        "echo",
		Version:     "1.0.0",
		Description: "Built-in harmless connector: echo.read and echo.send return their input.",
		Operations: []connectors.Operation{
			{Name: "echo.read", Kind: connectors.KindRead, Description: "Return the message (read-kind).", Input: json.RawMessage(inputSchema), Output: json.RawMessage(outputSchema), Timeout: 10 * time.Second},
			{Name: "echo.send", Kind: connectors.KindSend, Description: "Return the message (send-kind).", Input: json.RawMessage(inputSchema), Output: json.RawMessage(outputSchema), Timeout: 10 * time.Second},
			{Name: "echo.later", Kind: connectors.KindRead, Async: true, Description: "Return the message asynchronously: invoke answers with a run id; connector.run.get has the result.", Input: json.RawMessage(inputSchema), Output: json.RawMessage(outputSchema), Timeout: 60 * time.Second},
		},
		ConfigSchema: json.RawMessage(configSchema),
		// Echo needs no credential but accepts one, so the credential path
		// (seal, unseal, redaction) can be exercised without a real service.
		CredentialKinds: []string{"api_key", "basic", "bearer"},
		EgressHosts:     []string{},
	}
}

type args struct {
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
	DelayMS int64           `json:"delay_ms,omitempty"`
}

type config struct {
	Prefix string `json:"prefix"`
}

// Invoke echoes the arguments, after the requested delay.
func (Driver) Invoke(ctx context.Context, inv connectors.Invocation) (json.RawMessage, error) {
	var a args
	if err := json.Unmarshal(inv.Args, &a); err != nil {
		return nil, fmt.Errorf("echo: decode arguments: %w", err)
	}
	var c config
	if len(inv.Config) > 0 {
		if err := json.Unmarshal(inv.Config, &c); err != nil {
			return nil, fmt.Errorf("echo: decode config: %w", err)
		}
	}
	if a.DelayMS > 0 {
		t := time.NewTimer(time.Duration(a.DelayMS) * time.Millisecond)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	out := map[string]any{"message": c.Prefix + a.Message, "operation": inv.Operation}
	if len(a.Data) > 0 {
		out["data"] = a.Data
	}
	if inv.CredentialKind != "" {
		out["credential_kind"] = inv.CredentialKind
	}
	return json.Marshal(out)
}
