package core

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/connec/connec/internal/platform/jsonschema"
)

// Every entry is complete and its schemas compile; every REST route's path
// parameters and query parameters are fields of the entry's input.
func TestCatalogEntriesAreComplete(t *testing.T) {
	routes := map[string]string{}
	for _, e := range Catalog() {
		if e.Name == "" || e.Description == "" || e.Hints.Title == "" || len(e.Actions) == 0 || e.RefuseAs == "" || e.Checks == "" {
			t.Errorf("%s: incomplete entry %+v", e.Name, e)
		}
		for what, raw := range map[string]json.RawMessage{"input": e.InSchema, "output": e.OutSchema} {
			if _, err := jsonschema.Compile(raw); err != nil {
				t.Errorf("%s: %s schema: %v", e.Name, what, err)
			}
		}
		if e.On(OnREST) != (e.Route != nil) {
			t.Errorf("%s: served on REST without a route, or routed without REST", e.Name)
		}
		if e.Route == nil {
			continue
		}
		key := e.Route.Method + " " + e.Route.Path
		if other, dup := routes[key]; dup {
			t.Errorf("%s and %s share the route %s", e.Name, other, key)
		}
		routes[key] = e.Name
		if (e.Route.Body == NoBody) != (e.Route.Example == "") {
			t.Errorf("%s: a route with a body needs an example, one without none", e.Name)
		}
		var in struct {
			Properties map[string]json.RawMessage `json:"properties"`
		}
		_ = json.Unmarshal(e.InSchema, &in)
		names := append([]string{}, e.Route.Query...)
		for _, seg := range strings.Split(e.Route.Path, "/") {
			if strings.HasPrefix(seg, "{") {
				names = append(names, strings.Trim(seg, "{}"))
			}
		}
		for _, n := range names {
			if _, ok := in.Properties[n]; !ok {
				t.Errorf("%s: route parameter %s is not an input field", e.Name, n)
			}
		}
	}
}
