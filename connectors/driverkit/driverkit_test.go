package driverkit_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/connectors/egress"
	"github.com/connec/connec/fault"
	"github.com/connec/connec/vault"
)

const canary = "cnry-7Qx/+v&<b>\"9z"

func redactor() *driverkit.Redactor {
	return driverkit.NewRedactor(vault.Fields{"token": vault.SecretString(canary)}, []byte("user:"+canary))
}

func TestRedactorForms(t *testing.T) {
	r := redactor()
	js, _ := json.Marshal(canary)
	for _, form := range []string{
		canary,
		url.QueryEscape(canary),
		url.PathEscape(canary),
		string(js[1 : len(js)-1]),
		base64.StdEncoding.EncodeToString([]byte(canary)),
		base64.RawURLEncoding.EncodeToString([]byte(canary)),
		"Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+canary)),
	} {
		in := "before " + form + " after"
		out := r.String(in)
		if strings.Contains(out, form) || !strings.Contains(out, driverkit.Redacted) {
			t.Errorf("String(%q) = %q", in, out)
		}
		if !r.Contains([]byte(in)) {
			t.Errorf("Contains(%q) = false", in)
		}
	}
	if got := r.String("nothing here"); got != "nothing here" {
		t.Errorf("clean text changed: %q", got)
	}
	var nilR *driverkit.Redactor
	if nilR.String("x") != "x" || nilR.MaxLen() != 0 || !nilR.Empty() {
		t.Error("nil redactor misbehaves")
	}
}

func TestRedactorValue(t *testing.T) {
	r := driverkit.NewRedactor(vault.Fields{"token": vault.SecretString("s3cr3t-123"), "pin": vault.SecretString("98765432")})
	dec := json.NewDecoder(strings.NewReader(`{"a":"x s3cr3t-123 y","s3cr3t-123":[1,98765432,"ok"],"n":{"m":"\u0073\u0033cr3t-123"}}`))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(r.Value(v))
	if bytes.Contains(out, []byte("s3cr3t")) || bytes.Contains(out, []byte("98765432")) {
		t.Fatalf("Value left a secret: %s", out)
	}
	if !bytes.Contains(out, []byte(`"ok"`)) || !bytes.Contains(out, []byte(`1`)) {
		t.Fatalf("Value lost data: %s", out)
	}
}

func TestRedactorCut(t *testing.T) {
	r := redactor()
	text := strings.Repeat("a", 10) + canary + strings.Repeat("b", 40)
	for n := 0; n < len(text); n++ {
		out := string(r.Cut([]byte(text), n))
		if len(out) > n && !strings.Contains(out, driverkit.Redacted) {
			t.Fatalf("Cut(%d) grew: %q", n, out)
		}
		for l := 3; l <= len(canary); l++ {
			if strings.Contains(out, canary[:l]) {
				t.Fatalf("Cut(%d) = %q keeps a %d-byte prefix of the secret", n, out, l)
			}
		}
	}
	if got := string(r.Cut([]byte("héllo"), 2)); got != "h" {
		t.Fatalf("Cut split a rune: %q", got)
	}
}

func TestRedactorError(t *testing.T) {
	r := redactor()
	base := fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	err := r.Error(fmt.Errorf("Get \"https://h/?k=%s\": %w", url.QueryEscape(canary), base))
	if strings.Contains(err.Error(), url.QueryEscape(canary)) {
		t.Fatalf("error text keeps the secret: %v", err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatal("redacted error lost its chain")
	}
	r.Wipe()
	if !r.Empty() || r.String(canary) != canary {
		t.Fatal("Wipe left values")
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestNetFault(t *testing.T) {
	r := redactor()
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	canceled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	bg := context.Background()
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		err    error
		typ    fault.Type
		reason string
	}{
		{"refused", bg, fmt.Errorf("x: %w", &egress.RefusedError{Host: "h:1", Reason: "no"}), fault.Permanent, driverkit.ReasonEgress},
		{"deadline ctx", expired, errors.New("use of closed network connection " + canary), fault.Timeout, ""},
		{"socket timeout", bg, &net.OpError{Op: "read", Err: timeoutErr{}}, fault.Timeout, ""},
		{"canceled", canceled, net.ErrClosed, fault.Transient, driverkit.ReasonCanceled},
		{"refused conn", bg, &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, fault.Transient, driverkit.ReasonConnection},
		{"reset", bg, fmt.Errorf("read: %w", syscall.ECONNRESET), fault.Transient, driverkit.ReasonConnection},
		{"eof", bg, io.ErrUnexpectedEOF, fault.Transient, driverkit.ReasonConnection},
		{"nxdomain", bg, &net.DNSError{Name: "x.test", IsNotFound: true}, fault.Permanent, driverkit.ReasonHostNotFound},
		{"budget", bg, fmt.Errorf("read: %w", driverkit.ErrReadBudget), fault.ResponseTooLarge, ""},
		{"fault passes", bg, fault.New(fault.Validation, "v"), fault.Validation, ""},
		{"other", bg, errors.New("weird " + canary), fault.Permanent, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fe := driverkit.NetFault(tc.ctx, tc.err, r)
			if fe.Type != tc.typ {
				t.Fatalf("type = %s, want %s (%v)", fe.Type, tc.typ, fe)
			}
			if tc.reason != "" && fe.Details["reason"] != tc.reason {
				t.Fatalf("reason = %v, want %s", fe.Details["reason"], tc.reason)
			}
			if strings.Contains(fe.Error(), canary) {
				t.Fatalf("error text keeps the secret: %v", fe)
			}
		})
	}
}

func TestConn(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	go func() { _, _ = b.Write(bytes.Repeat([]byte("x"), 100)) }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	c := driverkit.Bind(ctx, a, 10)
	buf := make([]byte, 64)
	n, err := io.ReadFull(c, buf)
	if n != 10 || !errors.Is(err, driverkit.ErrReadBudget) || !c.Exceeded() {
		t.Fatalf("read %d, %v, exceeded=%v", n, err, c.Exceeded())
	}
	// Cancelling the context closes the connection.
	done := make(chan error, 1)
	c2 := driverkit.Bind(ctx, b, 0)
	go func() { _, err := c2.Read(buf); done <- err }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not unblock a read")
	}
	_ = c.Close()
}

func TestConnDeadlineClamp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			time.Sleep(2 * time.Second)
			_ = c.Close()
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	c := driverkit.Bind(ctx, raw, 0)
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(time.Hour)) // a client asking for more
	start := time.Now()
	_, err = c.Read(make([]byte, 1))
	if err == nil || time.Since(start) > time.Second {
		t.Fatalf("read returned %v after %s", err, time.Since(start))
	}
	if fe := driverkit.NetFault(ctx, err, nil); fe.Type != fault.Timeout {
		t.Fatalf("mapped to %s, want timeout", fe.Type)
	}
}
