package db

import (
	"strconv"
	"strings"
)

// Values returns n rows of cols parameters each, numbered on from $1, as a
// VALUES list: each row is first, then the parameters, then the
// expressions last returns for the row's first parameter number (nil:
// none).
func Values(n, cols int, first string, last func(p int) []string) string {
	var b strings.Builder
	p := 1
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(")
		if first != "" {
			b.WriteString(first + ", ")
		}
		base := p
		for j := range cols {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("$" + strconv.Itoa(p))
			p++
		}
		if last != nil {
			for _, e := range last(base) {
				b.WriteString(", " + e)
			}
		}
		b.WriteString(")")
	}
	return b.String()
}
