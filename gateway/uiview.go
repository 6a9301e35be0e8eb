package gateway

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/connec/connec/callctx"
)

// How pages show ids and subjects: ids people can tell apart, names with
// the ids at hand.

// idTail shortens a uuid to its last group, "…89ab12cd34ef": run ids are
// UUIDv7, whose leading groups are a timestamp shared by runs made close
// together, and the last group is random in every uuid version connec
// makes. Anything else is shown whole. Pages keep the full id in a title.
func idTail(v any) string {
	s := ""
	switch x := v.(type) {
	case *string:
		if x != nil {
			s = *x
		}
	case string:
		s = x
	default:
		s = fmt.Sprint(v)
	}
	if len(s) == 36 && strings.Count(s, "-") == 4 {
		return "…" + s[strings.LastIndex(s, "-")+1:]
	}
	return s
}

// subjectNames holds the names of the users and groups a page shows.
type subjectNames map[callctx.Subject]string

// subjectLabel is a subject as a page shows it: its name when it has one,
// its id at hand either way.
type subjectLabel struct {
	Subject string
	Name    string
	Group   bool
}

// Of labels a subject (a callctx.Subject or an audit row's string).
func (n subjectNames) Of(v any) subjectLabel {
	sub := callctx.Subject(fmt.Sprint(v))
	return subjectLabel{Subject: string(sub), Name: n[sub], Group: sub.Kind() == callctx.KindGroup}
}

// namesOf looks up, in one call, the names of the subjects a page is about
// to show; a failed lookup only costs the names.
func (g *Gateway) namesOf(ctx context.Context, subjects []callctx.Subject) subjectNames {
	if g.names == nil || len(subjects) == 0 {
		return nil
	}
	slices.Sort(subjects)
	names, err := g.names.Names(ctx, slices.Compact(subjects))
	if err != nil {
		g.log.WarnContext(ctx, "UI could not name subjects; showing ids", "err", err)
		return nil
	}
	return names
}
