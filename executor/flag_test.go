package executor

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/vault"
)

// leaky returns what it is told, saying it redacted nothing: its own
// pass missed the credential, so only the executor's final pass finds it.
type leaky struct{ out string }

const leakyOut = `{"type":"object","properties":{"text":{"type":"string"},"redacted":{"type":"boolean"}},"required":["text"],"additionalProperties":false}`

func (l leaky) Spec() connectors.TypeSpec {
	return connectors.TypeSpec{Name: "leaky", Version: "1.0.0", CredentialKinds: []string{"bearer"}, EgressHosts: []string{},
		Operations: []connectors.Operation{
			{Name: "leaky.read", Kind: connectors.KindRead, Input: json.RawMessage(`{"type":"object"}`), Output: json.RawMessage(leakyOut), Timeout: 5 * time.Second},
			{Name: "leaky.plain", Kind: connectors.KindRead, Input: json.RawMessage(`{"type":"object"}`), Output: json.RawMessage(`{"type":"object"}`), Timeout: 5 * time.Second},
		}}
}

func (l leaky) Invoke(context.Context, connectors.Invocation) (json.RawMessage, error) {
	return json.RawMessage(l.out), nil
}

// A result whose schema carries a "redacted" flag says true whenever any
// pass redacted, so the caller's result and the run row agree.
func TestRedactedFlagAgreesWithTheRunRow(t *testing.T) {
	key := filepath.Join(t.TempDir(), "connec.key")
	if _, err := vault.GenerateKeyFile(key, false); err != nil {
		t.Fatal(err)
	}
	ex, err := New(WithKeyFile(key))
	if err != nil {
		t.Fatal(err)
	}
	recipient, _ := ex.Recipient()
	sealer, err := vault.NewSealer(recipient)
	if err != nil {
		t.Fatal(err)
	}
	const tok = "tok_9ZxQvLr2WmT4kP7s"
	cred := connectors.SealedCredential{ID: uuid.NewString(), InstanceID: uuid.NewString(), Kind: "bearer", Version: 1}
	if cred.Sealed, err = sealer.Seal(vault.Fields{"token": vault.SecretString(tok)}, cred.AD()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, op, out string
		redacted      bool
		flag          any // the result's "redacted" member; nil when absent
	}{
		{"executor pass only", "leaky.read", `{"text":"sent Bearer ` + tok + `","redacted":false}`, true, true},
		{"flag absent", "leaky.read", `{"text":"sent ` + tok + `"}`, true, true},
		{"clean result keeps false", "leaky.read", `{"text":"fine","redacted":false}`, false, false},
		{"schema without the flag", "leaky.plain", `{"text":"sent ` + tok + `"}`, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, err := connectors.NewRegistry(leaky{out: tc.out})
			if err != nil {
				t.Fatal(err)
			}
			ct, _ := reg.Type("leaky")
			op, _ := ct.Op(tc.op)
			res, err := ex.Execute(context.Background(), connectors.ExecRequest{Type: ct, Op: op,
				InstanceID: cred.InstanceID, Config: json.RawMessage(`{}`),
				Args: json.RawMessage(`{}`), Credential: &cred})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(res.Output), tok) {
				t.Fatalf("credential in the result: %s", res.Output)
			}
			if res.Redacted != tc.redacted {
				t.Errorf("run row redacted = %v, want %v", res.Redacted, tc.redacted)
			}
			var got map[string]any
			if err := json.Unmarshal(res.Output, &got); err != nil {
				t.Fatal(err)
			}
			if got["redacted"] != tc.flag {
				t.Errorf("result says redacted = %v, want %v (%s)", got["redacted"], tc.flag, res.Output)
			}
		})
	}
}
