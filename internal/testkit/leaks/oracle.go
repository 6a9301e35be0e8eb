package leaks

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"html"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// Oracle finds credential material in text by decoding, not by encoding:
// it undoes percent, JSON and HTML escapes (chained), then base64 (either
// alphabet, every offset) and hex runs, three levels deep, and looks for
// any window of window bytes of a secret in every view. It shares no code
// with connec's redaction, so it cannot be blind in the same way.
//
// An Oracle remembers the texts it found clean (by a 64-bit hash, with
// the depth they were searched to), so the same item scanned again in a
// run row, a log line or a dump costs nothing. It is safe for concurrent
// use.
type Oracle struct {
	windows map[uint64]string    // 8-byte window -> the secret's name
	first   [1 << 16 / 64]uint64 // the windows' first two bytes, a cheap filter
	depth   int

	mu    sync.Mutex
	clean map[uint64]int
	seed  maphash.Seed
}

// window is how many consecutive bytes of a secret count as a leak.
const window = 8

func NewOracle(secrets map[string]string) *Oracle {
	o := &Oracle{windows: map[uint64]string{}, depth: 3, clean: map[uint64]int{}, seed: maphash.MakeSeed()}
	for name, s := range secrets {
		if len(s) < window {
			panic("secret " + name + " is shorter than the window")
		}
		for i := 0; i+window <= len(s); i++ {
			o.windows[key(s, i)] = name
			f := uint16(s[i]) | uint16(s[i+1])<<8
			o.first[f/64] |= 1 << (f % 64)
		}
	}
	return o
}

// Find returns a description of the first secret material in text, or "".
func (o *Oracle) Find(text string) string {
	seen := map[string]bool{}
	var found string
	o.walk(text, o.depth, "", seen, &found)
	return found
}

func (o *Oracle) walk(t string, depth int, path string, seen map[string]bool, found *string) {
	if *found != "" || seen[t] || len(seen) > 20000 {
		return
	}
	seen[t] = true
	h := maphash.String(o.seed, t)
	o.mu.Lock()
	d, ok := o.clean[h]
	o.mu.Unlock()
	if ok && d >= depth {
		return
	}
	defer func() {
		if *found == "" {
			o.mu.Lock()
			o.clean[h] = max(o.clean[h], depth)
			o.mu.Unlock()
		}
	}()
	for i := 0; i+window <= len(t); i++ {
		if f := uint16(t[i]) | uint16(t[i+1])<<8; o.first[f/64]&(1<<(f%64)) == 0 {
			continue
		}
		if name, ok := o.windows[key(t, i)]; ok {
			*found = fmt.Sprintf("%s (via %s) at %q", name, strings.TrimPrefix(path, " "), excerpt(t, i, window))
			return
		}
	}
	for _, d := range []struct {
		name string
		f    func(string) string
	}{{"percent", unpercent}, {"json", unjson}, {"html", html.UnescapeString}} {
		if e := d.f(t); e != t {
			o.walk(e, depth, path+" "+d.name, seen, found)
		}
	}
	if depth == 0 {
		return
	}
	for _, run := range runs(t, isB64, 8) {
		run = urlToStd.Replace(run)
		for off := 0; off < 4 && off < len(run); off++ {
			r := run[off:]
			r = r[:len(r)/4*4]
			if b, err := base64.StdEncoding.DecodeString(r); err == nil && len(b) >= window {
				o.walk(string(b), depth-1, path+" base64", seen, found)
			}
		}
	}
	for _, run := range runs(t, isHex, 2*window) {
		for off := 0; off < 2; off++ {
			r := run[off:]
			r = r[:len(r)/2*2]
			if b, err := hex.DecodeString(r); err == nil {
				o.walk(string(b), depth-1, path+" hex", seen, found)
			}
		}
	}
}

// key packs the window of s at i into a map key.
func key(s string, i int) uint64 {
	var k uint64
	for j := range window {
		k |= uint64(s[i+j]) << (8 * j)
	}
	return k
}

var urlToStd = strings.NewReplacer("-", "+", "_", "/")

func excerpt(t string, i, n int) string {
	lo, hi := max(0, i-20), min(len(t), i+n+20)
	return t[lo:hi]
}

func isB64(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '-' || c == '_'
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// runs returns the maximal runs of bytes in class, at least min long.
func runs(t string, class func(byte) bool, min int) []string {
	var out []string
	start := -1
	for i := 0; i <= len(t); i++ {
		if i < len(t) && class(t[i]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 && i-start >= min {
			out = append(out, t[start:i])
		}
		start = -1
	}
	return out
}

// unpercent decodes every %XX (either case), leaving anything else.
func unpercent(t string) string {
	if !strings.Contains(t, "%") {
		return t
	}
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		if t[i] == '%' && i+2 < len(t) && isHex(t[i+1]) && isHex(t[i+2]) {
			v, _ := strconv.ParseUint(t[i+1:i+3], 16, 8)
			b.WriteByte(byte(v))
			i += 2
			continue
		}
		b.WriteByte(t[i])
	}
	return b.String()
}

// unjson decodes JSON string escapes (\uXXXX with surrogate pairs, \/,
// \", \\, \b \f \n \r \t), leaving anything else.
func unjson(t string) string {
	if !strings.Contains(t, `\`) {
		return t
	}
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		if t[i] != '\\' || i+1 >= len(t) {
			b.WriteByte(t[i])
			continue
		}
		switch c := t[i+1]; c {
		case '/', '"', '\\':
			b.WriteByte(c)
			i++
		case 'b', 'f', 'n', 'r', 't':
			b.WriteByte(map[byte]byte{'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}[c])
			i++
		case 'u':
			if i+6 > len(t) {
				b.WriteByte('\\')
				continue
			}
			v, err := strconv.ParseUint(t[i+2:i+6], 16, 16)
			if err != nil {
				b.WriteByte('\\')
				continue
			}
			r := rune(v)
			i += 5
			if utf16.IsSurrogate(r) && i+7 <= len(t) && t[i+1] == '\\' && t[i+2] == 'u' {
				if lo, err := strconv.ParseUint(t[i+3:i+7], 16, 16); err == nil {
					r = utf16.DecodeRune(r, rune(lo))
					i += 6
				}
			}
			b.WriteString(string(utf8.AppendRune(nil, r)))
		default:
			b.WriteByte('\\')
		}
	}
	return b.String()
}
