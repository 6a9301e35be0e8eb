// Package drivertest helps test connector drivers the way the executor runs
// them: schemas compiled by the registry, a real egress guard built from the
// type's hosts and the instance's scope, and checks that a credential never
// leaks into outputs or errors.
package drivertest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/connec/connec/connectors"
	"github.com/connec/connec/connectors/egress"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/vault"
)

// Canary returns a unique credential value to look for in outputs.
func Canary(t testing.TB) string {
	t.Helper()
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "canary-" + hex.EncodeToString(b)
}

// Fields builds credential fields from name/value pairs.
func Fields(kv ...string) vault.Fields {
	f := vault.Fields{}
	for i := 0; i+1 < len(kv); i += 2 {
		f[kv[i]] = vault.SecretString(kv[i+1])
	}
	return f
}

// NoLeak fails t if any secret (or its base64) appears in out, in err's
// text or in what a caller would see of err.
func NoLeak(t testing.TB, out []byte, err error, secrets ...string) {
	t.Helper()
	var texts []string
	texts = append(texts, string(out))
	if err != nil {
		texts = append(texts, err.Error())
		pub, _ := json.Marshal(fault.PublicOf(err))
		texts = append(texts, string(pub))
	}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		for _, form := range []string{s, base64.StdEncoding.EncodeToString([]byte(s)), base64.RawStdEncoding.EncodeToString([]byte(s))} {
			for _, text := range texts {
				if strings.Contains(text, form) {
					t.Fatalf("secret leaked: %q found in %q", form, text)
				}
			}
		}
	}
}

// WantFault fails t unless err is a *fault.Error of type typ and, when
// reason is not "", with details.reason reason.
func WantFault(t testing.TB, err error, typ fault.Type, reason string) *fault.Error {
	t.Helper()
	var fe *fault.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error = %v (%T), want a fault of type %s", err, err, typ)
	}
	if fe.Type != typ {
		t.Fatalf("error type = %s (%v), want %s", fe.Type, fe, typ)
	}
	if reason != "" {
		if got, _ := fe.Details["reason"].(string); got != reason {
			t.Fatalf("error reason = %q (%v), want %q", got, fe, reason)
		}
	}
	return fe
}

// Resolver maps names to addresses (tests point names at loopback).
type Resolver map[string]string

// LookupNetIP implements egress.Resolver.
func (r Resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	a, ok := r[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []netip.Addr{netip.MustParseAddr(a)}, nil
}

// Harness runs a driver as the executor would.
type Harness struct {
	T      testing.TB
	Driver connectors.Driver
	Type   *connectors.CompiledType
	// Resolver is given to the guards the harness builds (may be nil).
	Resolver egress.Resolver
}

// New compiles d's type (failing t if its spec is invalid).
func New(t testing.TB, d connectors.Driver) *Harness {
	t.Helper()
	reg, err := connectors.NewRegistry(d)
	if err != nil {
		t.Fatal(err)
	}
	ct, ok := reg.Type(d.Spec().Name)
	if !ok {
		t.Fatal("type not registered")
	}
	return &Harness{T: t, Driver: d, Type: ct}
}

// Guard builds the guard the executor would for config: the type's hosts
// narrowed by the driver's scope (egress.ForInstance).
func (h *Harness) Guard(config json.RawMessage) *egress.Guard {
	h.T.Helper()
	g, err := egress.ForInstance(h.Type.Spec.EgressHosts, h.Driver, config, egress.Options{Resolver: h.Resolver})
	if err != nil {
		h.T.Fatalf("guard: %v", err)
	}
	h.T.Cleanup(g.CloseIdleConnections)
	return g
}

// Call describes one invocation.
type Call struct {
	Config json.RawMessage
	Op     string
	Args   any
	Kind   string
	Cred   vault.Fields
	// Egress overrides the guard built from Config.
	Egress connectors.Egress
	// SkipArgsCheck lets args the input schema rejects reach the driver.
	SkipArgsCheck bool
}

// Invoke validates config and args against the type's schemas, runs the
// driver and, on success, checks the output against the output schema.
func (h *Harness) Invoke(ctx context.Context, c Call) (json.RawMessage, error) {
	h.T.Helper()
	if err := h.Type.Config.Validate(c.Config); err != nil {
		h.T.Fatalf("config %s does not match the config schema: %v", c.Config, err)
	}
	op, ok := h.Type.Op(c.Op)
	if !ok {
		h.T.Fatalf("no operation %s", c.Op)
	}
	args, err := json.Marshal(c.Args)
	if err != nil {
		h.T.Fatal(err)
	}
	if !c.SkipArgsCheck {
		if err := op.In.Validate(args); err != nil {
			h.T.Fatalf("args %s do not match %s's input schema: %v", args, c.Op, err)
		}
	}
	eg := c.Egress
	if eg == nil {
		eg = h.Guard(c.Config)
	}
	// The executor caps every call at the operation's timeout.
	ctx, cancel := context.WithTimeout(ctx, op.Timeout)
	defer cancel()
	out, err := h.Driver.Invoke(ctx, connectors.Invocation{
		InstanceID:     "test-instance",
		Config:         c.Config,
		Operation:      c.Op,
		Args:           args,
		CredentialKind: c.Kind,
		Credential:     c.Cred,
		Egress:         eg,
	})
	if err == nil {
		if verr := op.Out.Validate(out); verr != nil {
			h.T.Fatalf("%s output %s does not match its output schema: %v", c.Op, out, verr)
		}
	}
	return out, err
}

// JSON marshals v for a Config.
func JSON(t testing.TB, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
