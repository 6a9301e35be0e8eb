package vault_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/connec/connec/vault"
)

const plain = "hunter2-s3cr3t-VALUE"

// leaks reports which encodings of plain appear in out.
func leaks(out string) []string {
	var found []string
	for name, enc := range map[string]string{
		"raw":    plain,
		"hex":    hex.EncodeToString([]byte(plain)),
		"HEX":    strings.ToUpper(hex.EncodeToString([]byte(plain))),
		"base64": base64.StdEncoding.EncodeToString([]byte(plain)),
		"bytes":  fmt.Sprint([]byte(plain)[:4]), // "[104 117 110 116", as %v of a []byte prints
		"gobyte": "0x68, 0x75, 0x6e",            // as %#v of a []byte prints
	} {
		if strings.Contains(out, strings.Trim(enc, "[]")) {
			found = append(found, name)
		}
	}
	return found
}

func TestREQ_CONNEC_0119_SecretNeverPrints(t *testing.T) {
	s := vault.SecretString(plain)
	fields := vault.Fields{"token": s, "password": vault.NewSecret([]byte(plain))}
	type exported struct {
		Name   string
		Token  vault.Secret
		Fields vault.Fields
	}
	type unexported struct {
		name   string
		token  vault.Secret
		fields vault.Fields
		ptr    *vault.Secret
	}
	values := map[string]any{
		"Secret":            s,
		"*Secret":           &s,
		"Fields":            fields,
		"[]Secret":          []vault.Secret{s, s},
		"struct":            exported{Name: "n", Token: s, Fields: fields},
		"*struct":           &exported{Name: "n", Token: s, Fields: fields},
		"unexported struct": unexported{name: "n", token: s, fields: fields, ptr: &s},
		"map any":           map[string]any{"s": s},
	}
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s", "%-8v", "%T"}

	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			for _, verb := range verbs {
				out := fmt.Sprintf(verb, v)
				if l := leaks(out); l != nil {
					t.Errorf("fmt %s leaks %v: %s", verb, l, out)
				}
			}
			if out := fmt.Sprint(v) + fmt.Sprintln(v); leaks(out) != nil {
				t.Errorf("Sprint leaks: %s", out)
			}
			if out := fmt.Errorf("wrapped: %v", v).Error(); leaks(out) != nil {
				t.Errorf("Errorf leaks: %s", out)
			}
			js, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("json.Marshal: %v", err)
			}
			if l := leaks(string(js)); l != nil {
				t.Errorf("json.Marshal leaks %v: %s", l, js)
			}
			js, _ = json.MarshalIndent(v, "", " ")
			if l := leaks(string(js)); l != nil {
				t.Errorf("json.MarshalIndent leaks %v: %s", l, js)
			}
			for hname, newHandler := range map[string]func(*bytes.Buffer) slog.Handler{
				"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
				"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
			} {
				var buf bytes.Buffer
				log := slog.New(newHandler(&buf))
				log.Info("msg", "v", v)
				log.Info("msg", slog.Any("v", v), slog.Group("g", "v", v))
				log.With("v", v).Info("with")
				log.Info(fmt.Sprint(v))
				if l := leaks(buf.String()); l != nil {
					t.Errorf("slog %s handler leaks %v: %s", hname, l, buf.String())
				}
			}
		})
	}

	// The direct renderings are exactly [REDACTED].
	for name, got := range map[string]string{
		"String":   s.String(),
		"GoString": s.GoString(),
		"%v":       fmt.Sprintf("%v", s),
		"%#v":      fmt.Sprintf("%#v", s),
		"%q":       fmt.Sprintf("%q", s),
		"%x":       fmt.Sprintf("%x", s),
		"json":     mustJSON(t, s),
		"text":     mustText(t, s),
		"LogValue": s.LogValue().String(),
	} {
		want := vault.Redacted
		if name == "json" {
			want = `"` + vault.Redacted + `"`
		}
		if got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if got, want := mustJSON(t, fields), `{"password":"[REDACTED]","token":"[REDACTED]"}`; got != want {
		t.Errorf("json of Fields = %s, want %s", got, want)
	}

	// And yet the bytes are there for the one who asks by name.
	if got := string(s.Expose()); got != plain {
		t.Fatalf("Expose = %q, want the plaintext", got)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustText(t *testing.T, s vault.Secret) string {
	t.Helper()
	b, err := s.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSecretWipe(t *testing.T) {
	src := []byte(plain)
	s := vault.NewSecret(src)
	src[0] = 'X'
	if string(s.Expose()) != plain {
		t.Fatal("NewSecret did not copy its input")
	}
	exposed := s.Expose()
	copyOfHandle := s
	fields := vault.Fields{"a": s, "b": vault.SecretString("other")}
	b := fields["b"].Expose()

	fields.Wipe()
	if !bytes.Equal(exposed, make([]byte, len(plain))) || !bytes.Equal(b, make([]byte, 5)) {
		t.Fatalf("Wipe left bytes behind: %q %q", exposed, b)
	}
	if copyOfHandle.Expose() != nil || s.Len() != 0 {
		t.Fatal("a wiped Secret still exposes bytes")
	}
	var zero vault.Secret
	zero.Wipe()
	if zero.Expose() != nil || zero.String() != vault.Redacted {
		t.Fatal("zero Secret misbehaves")
	}
}

func TestFieldsNames(t *testing.T) {
	f := vault.Fields{"username": vault.SecretString("u"), "password": vault.SecretString("p"), "a": {}}
	if got := strings.Join(f.Names(), ","); got != "a,password,username" {
		t.Fatalf("Names = %s", got)
	}
}

func TestValidFieldName(t *testing.T) {
	for name, want := range map[string]bool{
		"token": true, "api_key": true, "client-secret": true, "a.b": true, "X9": true,
		strings.Repeat("a", 64): true, strings.Repeat("a", 65): false,
		"": false, "a b": false, `a"b`: false, "é": false, "a\\b": false, "a\n": false,
	} {
		if got := vault.ValidFieldName(name); got != want {
			t.Errorf("ValidFieldName(%q) = %v, want %v", name, got, want)
		}
	}
}
