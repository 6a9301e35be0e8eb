package core

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/connec/connec/fault"
)

// An instance's handle is its short stable name among its owner's live
// instances: it names the instance's tools (<handle>.<operation>, see
// InstanceTools) and stays when the display name changes. Lowercase letters, digits and single hyphens, starting with a
// letter, at most MaxHandle characters: valid in an MCP tool name in both
// the dotted and the underscore spelling (migration 00015 checks the same).
const MaxHandle = 40

var handlePattern = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// validHandle checks a handle a caller chose.
func validHandle(h string) error {
	if len(h) > MaxHandle || !handlePattern.MatchString(h) {
		return fault.Invalid("handle", "handle must be 1 to %d lowercase letters, digits and single hyphens, starting with a letter (e.g. work-mail)", MaxHandle)
	}
	return nil
}

// handleFrom derives a handle from a display name, as migration 00015 did
// for the instances installed before handles: lowered, every run of other
// characters one hyphen, cut to 28 characters (room for a suffix), "i-" in
// front if it does not start with a letter.
func handleFrom(displayName string) string {
	var b strings.Builder
	hyphen := false
	for _, r := range strings.ToLower(displayName) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if hyphen && b.Len() > 0 {
				b.WriteByte('-')
			}
			hyphen = false
			b.WriteRune(r)
			continue
		}
		hyphen = true
	}
	s := b.String()
	if len(s) > 28 {
		s = strings.TrimRight(s[:28], "-")
	}
	switch {
	case s == "":
		return "instance"
	case s[0] < 'a' || s[0] > 'z':
		return "i-" + s
	}
	return s
}

// handleCandidate is the n-th handle to try for a derived base: the base,
// then base-2, base-3, …
func handleCandidate(base string, n int) string {
	if n == 1 {
		return base
	}
	return base + "-" + strconv.Itoa(n)
}
