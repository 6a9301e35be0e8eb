package driverkit_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/internal/testkit/leaks"
	"github.com/connec/connec/vault"
)

func randomSecret(prefix string, specials bool) string {
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 28)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	s := prefix + string(b)
	if specials {
		s = s[:8] + "/" + s[8:16] + "+" + s[16:24] + "=" + s[24:]
	}
	return s
}

// dumpOf is what an upstream that echoes the whole request as JSON sends.
func dumpOf(header, value, uri string) string {
	raw, _ := json.Marshal(map[string]any{"method": "POST", "url": uri,
		"headers": map[string][]string{"Accept": {"application/json"}, header: {value}, "User-Agent": {"connec-http/1"}}})
	return string(raw)
}

// TestRedactorCorpus runs the redaction corpus (internal/testkit/leaks) through a
// redactor set up as the http type sets it up for each auth style: every
// encoding × base64 alignment × position in a string, for each thing an
// upstream may echo (the header or URI as sent, a JSON dump of the
// request, the bare value), through String, Bytes, Cut and Value. An
// independent decoder must find no 8-byte piece of any secret, and the
// unrelated text around it, including the path /api/echo next to a
// username "api", must come back whole.
func TestRedactorCorpus(t *testing.T) {
	tok := randomSecret("tok_", false)
	pw := randomSecret("pw_", false)
	val := randomSecret("key_", true)
	pair := "api:" + pw
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(pair))
	uri := "/api/echo?api_key=" + url.QueryEscape(val)
	orc := leaks.NewOracle(map[string]string{"token": tok, "password": pw, "value": val, "pair": pair})
	styles := []struct {
		name     string
		red      func() *driverkit.Redactor
		subjects []string
	}{
		{"bearer", func() *driverkit.Redactor {
			return driverkit.NewRedactor(vault.Fields{"token": vault.SecretString(tok)}, []byte("Bearer "+tok))
		}, []string{"Bearer " + tok, tok, dumpOf("Authorization", "Bearer "+tok, "/api/echo")}},
		{"basic", func() *driverkit.Redactor {
			return driverkit.NewRedactor(vault.Fields{"username": vault.SecretString("api"), "password": vault.SecretString(pw)}, []byte(pair), []byte(basic))
		}, []string{basic, pair, dumpOf("Authorization", basic, "/api/echo")}},
		{"header", func() *driverkit.Redactor {
			return driverkit.NewRedactor(vault.Fields{"value": vault.SecretString(val)})
		}, []string{val, dumpOf("X-Api-Key", val, "/api/echo")}},
		{"query", func() *driverkit.Redactor {
			return driverkit.NewRedactor(vault.Fields{"value": vault.SecretString(val)})
		}, []string{uri, val, dumpOf("Accept-Language", "en", uri)}},
	}
	const filler = " - seen at /api/echo by api; "
	failures := map[string]int{}
	examples := map[string]string{}
	total := 0
	fail := func(group, example string) {
		total++
		failures[group]++
		if _, ok := examples[group]; !ok {
			examples[group] = example
		}
	}
	cases := 0
	for _, st := range styles {
		r := st.red()
		for _, enc := range leaks.Encodings {
			for _, f := range leaks.Fills {
				for si, subj := range st.subjects {
					item := enc.Encode(f + subj)
					for pos, text := range map[string]string{"start": item + filler, "middle": filler + item + filler, "end": filler + item, "whole": item} {
						cases++
						group := fmt.Sprintf("%s %s", enc.Name, pos)
						outs := map[string]string{
							"String": r.String(text),
							"Bytes":  string(r.Bytes([]byte(text))),
							"Cut":    string(r.Cut([]byte(text+strings.Repeat(" ", r.MaxLen())), len(text))),
						}
						dec := json.NewDecoder(strings.NewReader(string(must(json.Marshal(map[string]any{"v": text, text: 1})))))
						dec.UseNumber()
						var v any
						_ = dec.Decode(&v)
						outs["Value"] = string(must(json.Marshal(r.Value(v))))
						for how, out := range outs {
							if found := orc.Find(out); found != "" {
								fail(group+" "+how, fmt.Sprintf("%s subject %d fill %q: %s", st.name, si, f, found))
							}
							if pos != "whole" && !strings.Contains(out, "/api/echo by api") {
								fail(group+" "+how+" shredded", fmt.Sprintf("%s: %.120s", st.name, out))
							}
						}
					}
				}
			}
		}
	}
	if len(failures) > 0 {
		groups := make([]string, 0, len(failures))
		for g := range failures {
			groups = append(groups, g)
		}
		sort.Strings(groups)
		var sb strings.Builder
		fmt.Fprintf(&sb, "%d findings over %d cases (4 ways each), in %d groups:\n", total, cases, len(groups))
		for _, g := range groups {
			fmt.Fprintf(&sb, "  %-45s %4d  e.g. %.150s\n", g, failures[g], examples[g])
		}
		t.Error(sb.String())
	}
	t.Logf("%d cases", cases)
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// A username is an identifier, not a secret: alone it is left in place
// (redacting "api" everywhere would turn /api/echo into /[REDACTED]/echo),
// but inside the pair it forms with the password, and any encoding of the
// pair, it goes with the pair.
func TestRedactorShortUsername(t *testing.T) {
	pw := randomSecret("pw_", false)
	pair := "api:" + pw
	r := driverkit.NewRedactor(vault.Fields{"username": vault.SecretString("api"), "password": vault.SecretString(pw)}, []byte(pair))
	if got := r.String("GET /api/echo as api"); got != "GET /api/echo as api" {
		t.Fatalf("the username shredded unrelated text: %q", got)
	}
	for _, text := range []string{pair, base64.StdEncoding.EncodeToString([]byte(pair)), "x" + base64.URLEncoding.EncodeToString([]byte("xy"+pair))} {
		out := r.String("auth " + text + " end")
		if strings.Contains(out, "api") || strings.Contains(out, base64.StdEncoding.EncodeToString([]byte("api:"))[:4]) {
			t.Errorf("the pair %q left its username behind: %q", text, out)
		}
	}
	// Without a pair declared, nothing but the password is redacted.
	r = driverkit.NewRedactor(vault.Fields{"username": vault.SecretString("api"), "password": vault.SecretString(pw)})
	if got := r.String("api " + pw); got != "api "+driverkit.Redacted {
		t.Fatalf("String = %q", got)
	}
}
