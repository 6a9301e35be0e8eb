package driverkit

import (
	"bytes"
	"cmp"
	"html"
	"slices"
	"unicode/utf16"
	"unicode/utf8"
)

// matcher finds many needles (each at least 4 bytes) in one pass: a
// position is looked at closely only when a filter over its first four
// bytes says some needle starts with them; then the needles starting with
// those four bytes are found by binary search. add collects needles; build
// (after the last add, before any scan) sorts and deduplicates them.
type matcher struct {
	needles [][]byte
	index   []entry // sorted by key, then needle
	filter  [filterBits / 64]uint64
	max     int
}

type entry struct {
	key    uint32
	needle []byte
}

// minNeedle is the shortest needle the matcher takes.
const minNeedle = 4

// filterBits sizes the filter: with a few hundred needles about one
// position in a hundred passes it for a closer look.
const filterBits = 1 << 14

func key4(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func hash(k uint32) uint32 { return (k * 2654435761) >> (32 - 14) }

// add takes n (not copied), at least minNeedle long.
func (m *matcher) add(n []byte) {
	if m.needles == nil {
		m.needles = make([][]byte, 0, 128)
	}
	m.needles = append(m.needles, n)
}

// build indexes the needles added so far.
func (m *matcher) build() {
	m.index = slices.Grow(m.index[:0], len(m.needles))
	for _, n := range m.needles {
		m.index = append(m.index, entry{key4(n), n})
	}
	slices.SortFunc(m.index, func(a, b entry) int {
		if a.key != b.key {
			return cmp.Compare(a.key, b.key)
		}
		return bytes.Compare(a.needle, b.needle)
	})
	m.index = slices.CompactFunc(m.index, func(a, b entry) bool { return a.key == b.key && bytes.Equal(a.needle, b.needle) })
	m.filter = [filterBits / 64]uint64{}
	m.max = 0
	for _, e := range m.index {
		h := hash(e.key)
		m.filter[h/64] |= 1 << (h % 64)
		m.max = max(m.max, len(e.needle))
	}
}

// scan calls emit with the start and end of every needle occurrence in b.
func (m *matcher) scan(b []byte, emit func(start, end int)) {
	if len(m.index) == 0 {
		return
	}
	for i := 0; i+minNeedle <= len(b); i++ {
		k := key4(b[i:])
		h := hash(k)
		if m.filter[h/64]&(1<<(h%64)) == 0 {
			continue
		}
		j, _ := slices.BinarySearchFunc(m.index, k, func(e entry, k uint32) int { return cmp.Compare(e.key, k) })
		for ; j < len(m.index) && m.index[j].key == k; j++ {
			if nd := m.index[j].needle; bytes.HasPrefix(b[i:], nd) {
				emit(i, i+len(nd))
			}
		}
	}
}

// span is a byte range of the source text to replace.
type span struct{ start, end int }

// decoded is a text with one layer of escapes undone; src[i] is where in
// the source the escape (or byte) that produced decoded byte i starts.
type decoded struct {
	b   []byte
	src []int32
}

// source maps decoded bytes [i, j) back to the source bytes that hold
// them, whole escapes included. n is the source's length.
func (d *decoded) source(i, j, n int) span {
	k := j
	for k < len(d.b) && d.src[k] == d.src[j-1] {
		k++
	}
	end := n
	if k < len(d.b) {
		end = int(d.src[k])
	}
	return span{int(d.src[i]), end}
}

func (d *decoded) put(b []byte, at int) {
	for _, c := range b {
		d.b = append(d.b, c)
		d.src = append(d.src, int32(at))
	}
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unpercent undoes %XX escapes, upper or lower case ('+' stays '+').
func unpercent(s []byte) *decoded {
	d := &decoded{b: make([]byte, 0, len(s)), src: make([]int32, 0, len(s))}
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			hi, ok1 := hexVal(s[i+1])
			lo, ok2 := hexVal(s[i+2])
			if ok1 && ok2 {
				d.put([]byte{hi<<4 | lo}, i)
				i += 2
				continue
			}
		}
		d.put(s[i:i+1], i)
	}
	return d
}

func hex4(s []byte) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s[:4] {
		v, ok := hexVal(c)
		if !ok {
			return 0, false
		}
		r = r<<4 | rune(v)
	}
	return r, true
}

// unjson undoes JSON string escapes: \uXXXX (either case, surrogate pairs
// joined), \/, \", \\, \b, \f, \n, \r, \t. They occur in text bodies too
// (a JSON document served as text/plain, a script in an HTML page).
func unjson(s []byte) *decoded {
	d := &decoded{b: make([]byte, 0, len(s)), src: make([]int32, 0, len(s))}
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			d.put(s[i:i+1], i)
			continue
		}
		switch c := s[i+1]; c {
		case '/', '"', '\\':
			d.put([]byte{c}, i)
			i++
		case 'b', 'f', 'n', 'r', 't':
			d.put([]byte{map[byte]byte{'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}[c]}, i)
			i++
		case 'u':
			r, ok := hex4(s[i+2:])
			if !ok {
				d.put(s[i:i+1], i)
				continue
			}
			at := i
			i += 5
			if utf16.IsSurrogate(r) {
				if i+2 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					if lo, ok := hex4(s[i+3:]); ok && utf16.DecodeRune(r, lo) != utf8.RuneError {
						r = utf16.DecodeRune(r, lo)
						i += 6
					}
				}
			}
			d.put(utf8.AppendRune(nil, r), at)
		default:
			d.put(s[i:i+1], i)
		}
	}
	return d
}

// maxEntity bounds the character references unhtml reads: numeric ones
// with up to 8 digits, named ones up to the longest HTML5 name.
const maxEntity = 34

// unhtml undoes HTML character references: &#NN;, &#xHH; (either case,
// the ';' optional) and named references (&amp;, &sol;, ...).
func unhtml(s []byte) *decoded {
	d := &decoded{b: make([]byte, 0, len(s)), src: make([]int32, 0, len(s))}
	for i := 0; i < len(s); i++ {
		if s[i] != '&' {
			d.put(s[i:i+1], i)
			continue
		}
		if n, r := numericRef(s[i:]); n > 0 {
			d.put(utf8.AppendRune(nil, r), i)
			i += n - 1
			continue
		}
		if j := bytes.IndexByte(s[i:min(len(s), i+maxEntity)], ';'); j > 1 {
			ref := string(s[i : i+j+1])
			if u := html.UnescapeString(ref); u != ref {
				d.put([]byte(u), i)
				i += j
				continue
			}
		}
		d.put(s[i:i+1], i)
	}
	return d
}

// numericRef reads &#NN; or &#xHH; at the start of s, returning its length
// and rune (0 if there is none).
func numericRef(s []byte) (int, rune) {
	if len(s) < 3 || s[1] != '#' {
		return 0, 0
	}
	i, base := 2, rune(10)
	if s[2] == 'x' || s[2] == 'X' {
		i, base = 3, 16
	}
	var r rune
	digits := 0
	for ; i < len(s) && digits < 8; i++ {
		v, ok := hexVal(s[i])
		if !ok || rune(v) >= base {
			break
		}
		r = r*base + rune(v)
		digits++
	}
	if digits == 0 {
		return 0, 0
	}
	if i < len(s) && s[i] == ';' {
		i++
	}
	if r > utf8.MaxRune || utf16.IsSurrogate(r) || r == 0 {
		r = utf8.RuneError
	}
	return i, r
}

// spans returns the merged source ranges holding a needle: in the text as
// it is, and in each of its percent-, JSON- and HTML-unescaped readings.
func (m *matcher) spans(s []byte) []span {
	if len(m.index) == 0 {
		return nil
	}
	var out []span
	m.scan(s, func(i, j int) { out = append(out, span{i, j}) })
	for _, l := range []struct {
		mark   byte
		decode func([]byte) *decoded
	}{{'%', unpercent}, {'\\', unjson}, {'&', unhtml}} {
		if bytes.IndexByte(s, l.mark) < 0 {
			continue
		}
		d := l.decode(s)
		m.scan(d.b, func(i, j int) { out = append(out, d.source(i, j, len(s))) })
	}
	if len(out) < 2 {
		return out
	}
	slices.SortFunc(out, func(a, b span) int { return a.start - b.start })
	merged := out[:1]
	for _, sp := range out[1:] {
		last := &merged[len(merged)-1]
		if sp.start <= last.end {
			last.end = max(last.end, sp.end)
			continue
		}
		merged = append(merged, sp)
	}
	return merged
}

// replace returns s with every span replaced by with.
func replace(s []byte, spans []span, with string) []byte {
	out := make([]byte, 0, len(s))
	at := 0
	for _, sp := range spans {
		out = append(out, s[at:sp.start]...)
		out = append(out, with...)
		at = sp.end
	}
	return append(out, s[at:]...)
}
