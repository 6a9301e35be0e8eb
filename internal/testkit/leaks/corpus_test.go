package leaks

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Content types the upstream answers in. Every answer also carries three
// items in response headers the http type returns (etag, location,
// last-modified), each a whole header value.
var contentTypes = []string{"json", "text", "html"}

// subjects are what the upstream received that carries the credential:
// the credential header's value as sent ("Bearer …", "Basic …", the
// header's value, or for a query credential the request URI), a JSON dump
// of the whole request, and the bare value the service decoded (the token,
// the username:password pair, the header or query value).
var subjectNames = []string{"sent", "dump", "value"}

func subjectOf(r *http.Request, style, name string) string {
	switch name {
	case "sent":
		switch style {
		case "bearer", "basic":
			return r.Header.Get("Authorization")
		case "header":
			return r.Header.Get("X-Api-Key")
		default:
			return r.URL.RequestURI()
		}
	case "dump":
		raw, _ := json.Marshal(map[string]any{"method": r.Method, "url": r.URL.String(), "headers": r.Header})
		return string(raw)
	default:
		switch style {
		case "bearer":
			return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		case "basic":
			u, p, _ := r.BasicAuth()
			return u + ":" + p
		case "header":
			return r.Header.Get("X-Api-Key")
		default:
			return r.URL.Query().Get("api_key")
		}
	}
}

// upstream is a real HTTP service under /api that echoes what it received
// in the encoding, content type and arrangement the request path names:
// /api/echo/<style>/<encoding>/<content type>/<rotation>.
func upstream(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/echo/"), "/")
	if len(parts) != 4 {
		http.NotFound(w, r)
		return
	}
	style, ct := parts[0], parts[2]
	enc, ok := encodingNamed(parts[1])
	rot := int(parts[3][0] - '0')
	if !ok || rot < 0 || rot > 2 {
		http.NotFound(w, r)
		return
	}
	// items[s][a]: subject s at alignment a.
	items := make([][]string, len(subjectNames))
	for s, name := range subjectNames {
		subj := subjectOf(r, style, name)
		for _, f := range Fills {
			items[s] = append(items[s], enc.Encode(f+subj))
		}
	}
	filler := " - seen at " + r.URL.Path + " by /api/echo; "
	w.Header().Set("ETag", items[0][rot])
	w.Header().Set("Location", items[2][(rot+1)%3])
	w.Header().Set("Last-Modified", items[1][(rot+2)%3])
	switch ct {
	case "json":
		// Every item at the start, in the middle and at the end of a
		// string, and one as an object key. (Whole values are the headers'.)
		m := map[string]any{"path": r.URL.Path}
		for s, name := range subjectNames {
			for a, it := range items[s] {
				k := fmt.Sprintf("%s-a%d", name, a)
				m[k+"-start"] = it + filler
				m[k+"-middle"] = filler + it + filler
				m[k+"-end"] = filler + it
			}
		}
		m[items[0][rot]] = "an item as a key"
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(m)
	case "text", "html":
		// One item at the very start, one at the very end, every item in
		// between.
		var sb strings.Builder
		open, close := "", ""
		if ct == "html" {
			open, close = "<p>", "</p>\n"
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
		} else {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		}
		sb.WriteString(items[0][rot])
		for s := range items {
			for _, it := range items[s] {
				sb.WriteString(open + filler + it + filler + close)
			}
		}
		sb.WriteString(filler + items[2][(rot+1)%3])
		_, _ = w.Write([]byte(sb.String()))
	default:
		http.NotFound(w, r)
	}
}

// TestOracleSeesEveryEncoding keeps the corpus honest: each item the
// upstream can produce, unredacted, is found by the oracle, so a clean
// scan means redacted, not unseen.
func TestOracleSeesEveryEncoding(t *testing.T) {
	token := secretOf("tok_", 32, false)
	value := secretOf("key_", 30, true)
	orc := NewOracle(map[string]string{"token": token, "value": value})
	subjects := []string{"Bearer " + token, "Basic " + b64std([]byte("api:"+token)), "/api/echo?api_key=" + url.QueryEscape(value),
		`{"headers":{"X-Api-Key":["` + value + `"]}}`, token, value}
	for _, enc := range Encodings {
		for _, f := range Fills {
			for _, s := range subjects {
				if orc.Find("text before "+enc.Encode(f+s)+" after") == "" {
					t.Errorf("oracle blind to %s of %q (fill %q)", enc.Name, s, f)
				}
			}
		}
	}
	if f := orc.Find("nothing here /api/echo " + b64std([]byte("api:other"))); f != "" {
		t.Errorf("oracle false positive: %s", f)
	}
}
