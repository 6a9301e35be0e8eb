package leaks

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"net/url"
	"regexp"
	"strings"
)

// An Encoding is one way an upstream may hand back what it received.
type Encoding struct {
	Name   string
	Encode func(string) string
}

var (
	b64std    = base64.StdEncoding.EncodeToString
	b64stdRaw = base64.RawStdEncoding.EncodeToString
	b64url    = base64.URLEncoding.EncodeToString
	b64urlRaw = base64.RawURLEncoding.EncodeToString
)

func b(f func([]byte) string) func(string) string {
	return func(s string) string { return f([]byte(s)) }
}

var pctEscape = regexp.MustCompile(`%[0-9A-F]{2}`)

func lowerEscapes(s string) string { return pctEscape.ReplaceAllStringFunc(s, strings.ToLower) }

func eachByte(format string) func(string) string {
	return func(s string) string {
		var sb strings.Builder
		for i := 0; i < len(s); i++ {
			fmt.Fprintf(&sb, format, s[i])
		}
		return sb.String()
	}
}

func eachRune(format string) func(string) string {
	return func(s string) string {
		var sb strings.Builder
		for _, r := range s {
			fmt.Fprintf(&sb, format, r)
		}
		return sb.String()
	}
}

// jsonText is s as JSON string content, without the quotes.
func jsonText(s string) string {
	raw, _ := json.Marshal(s)
	return string(raw[1 : len(raw)-1])
}

// Encodings are the ways the corpus encodes what an upstream received:
// base64 in both alphabets, padded and raw, nested once; hex in both cases;
// percent-encoding of the reserved bytes or of every byte, in both cases;
// JSON \uXXXX and \/ escapes; HTML numeric and named references; and
// base64 whose special characters are escaped again.
var Encodings = []Encoding{
	{"raw", func(s string) string { return s }},
	{"b64-std", b(b64std)},
	{"b64-std-raw", b(b64stdRaw)},
	{"b64-url", b(b64url)},
	{"b64-url-raw", b(b64urlRaw)},
	{"b64-std-of-b64-std", func(s string) string { return b64std([]byte(b64std([]byte(s)))) }},
	{"b64-url-of-b64-std", func(s string) string { return b64url([]byte(b64std([]byte(s)))) }},
	{"b64-std-raw-of-b64-url-raw", func(s string) string { return b64stdRaw([]byte(b64urlRaw([]byte(s)))) }},
	{"b64-url-raw-of-b64-url", func(s string) string { return b64urlRaw([]byte(b64url([]byte(s)))) }},
	{"hex", b(hex.EncodeToString)},
	{"hex-upper", func(s string) string { return strings.ToUpper(hex.EncodeToString([]byte(s))) }},
	{"pct-query", url.QueryEscape},
	{"pct-query-lower", func(s string) string { return lowerEscapes(url.QueryEscape(s)) }},
	{"pct-path", url.PathEscape},
	{"pct-every-byte", eachByte("%%%02X")},
	{"pct-every-byte-lower", eachByte("%%%02x")},
	{"json-u-lower", eachRune(`\u%04x`)},
	{"json-u-upper", eachRune(`\u%04X`)},
	{"json-slash", func(s string) string { return strings.ReplaceAll(jsonText(s), "/", `\/`) }},
	{"b64-std-json-escaped", func(s string) string {
		return strings.NewReplacer("/", `\/`, "+", `\u002b`, "=", `\u003D`).Replace(b64std([]byte(s)))
	}},
	{"html-decimal", eachRune("&#%d;")},
	{"html-hex", eachRune("&#x%x;")},
	{"html-hex-upper", eachRune("&#X%X;")},
	{"html-named", func(s string) string {
		return strings.NewReplacer(":", "&colon;", "/", "&sol;", "=", "&equals;", "+", "&plus;").Replace(html.EscapeString(s))
	}},
	{"b64-std-html", func(s string) string {
		return strings.NewReplacer("+", "&#43;", "/", "&#x2F;", "=", "&#61;").Replace(b64std([]byte(s)))
	}},
	{"b64-std-pct", func(s string) string { return url.QueryEscape(b64std([]byte(s))) }},
	{"b64-std-pct-lower", func(s string) string { return lowerEscapes(url.QueryEscape(b64std([]byte(s)))) }},
}

func encodingNamed(name string) (Encoding, bool) {
	for _, e := range Encodings {
		if e.Name == name {
			return e, true
		}
	}
	return Encoding{}, false
}

// Fills shift a subject by 0, 1 and 2 bytes before it is encoded: the
// three base64 alignments.
var Fills = []string{"", "x", "xy"}
