// Package jsontext answers questions about JSON documents as text that
// every boundary asks the same way, such as where a NUL character hides.
package jsontext

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// NULAt returns the dotted path of the first string or key in the JSON
// document raw that holds a NUL character (PostgreSQL cannot store one in
// text, and no name, key, filter or secret needs one). The empty path is the
// document itself.
func NULAt(raw []byte) (string, bool) {
	// JSON can carry NUL only as the escape \u0000: most documents are
	// answered without decoding.
	if !bytes.Contains(raw, []byte(`\u0000`)) {
		return "", false
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", false
	}
	return find(v, "")
}

// HasNUL reports whether s holds a NUL character.
func HasNUL(s string) bool { return strings.IndexByte(s, 0) >= 0 }

func find(v any, path string) (string, bool) {
	switch x := v.(type) {
	case string:
		return path, HasNUL(x)
	case map[string]any:
		for k, e := range x {
			if HasNUL(k) {
				return Join(path, strings.ReplaceAll(k, "\x00", `\u0000`)), true
			}
			if p, ok := find(e, Join(path, k)); ok {
				return p, true
			}
		}
	case []any:
		for i, e := range x {
			if p, ok := find(e, fmt.Sprintf("%s[%d]", path, i)); ok {
				return p, true
			}
		}
	}
	return "", false
}

// Join joins a parent path and a property name with a dot.
func Join(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}
