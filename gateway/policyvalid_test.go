package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/gateway"
)

// REST refuses, as MCP and the CLI do, a rule that can match nothing: 400
// invalid_argument naming the field, nothing written; explain takes
// subjects by name.
func TestRESTRefusesRulesThatMatchNothing(t *testing.T) {
	e := newEnv(t)
	_, adminTok := e.admin("root")
	alice, _ := e.user("alice", false)
	bob, _ := e.user("bob", true)
	before := e.count(`SELECT count(*) FROM casbin_rule`)
	for _, tc := range []struct{ resource, action, field string }{
		{"connectors/user:" + strings.ToUpper(alice.ID().String()) + "/**", authz.ActionSend, "resource"},
		{"connectors/user:alice/**", authz.ActionSend, "resource"},
		{"Connectors/**", authz.ActionSend, "resource"},
		{"connectors/*/echo/*/echo.reed", authz.ActionRead, "resource"},
		{"x", authz.ActionRead, "resource"},
		{"connectors/*/echo/*/echo.send", authz.ActionRead, "action"},
	} {
		rule := map[string]any{"subject": string(bob), "resource": tc.resource, "action": tc.action}
		for _, eft := range []string{"allow", "deny"} {
			rule["effect"] = eft
			p := problem(t, e.do("POST", "/v1/policies", adminTok, rule), http.StatusBadRequest, "invalid_argument")
			if len(p.Errors) != 1 || p.Errors[0].Field != tc.field {
				t.Errorf("POST %s %s: errors %+v, want field %s", tc.action, tc.resource, p.Errors, tc.field)
			}
		}
		q := url.Values{"subject": {string(bob)}, "resource": {tc.resource}, "action": {tc.action}}
		p := problem(t, e.do("DELETE", "/v1/policies?"+q.Encode(), adminTok, nil), http.StatusBadRequest, "invalid_argument")
		if len(p.Errors) != 1 || p.Errors[0].Field != tc.field {
			t.Errorf("DELETE %s %s: errors %+v, want field %s", tc.action, tc.resource, p.Errors, tc.field)
		}
	}
	if after := e.count(`SELECT count(*) FROM casbin_rule`); after != before {
		t.Fatalf("refused rules changed the policy: %d -> %d rows", before, after)
	}
	ex := e.must(http.StatusOK, "POST", "/v1/policies/explain", adminTok, map[string]any{
		"subject": "user:alice", "action": "connector.admin", "resource": "connectors/user:alice"})
	if !strings.Contains(ex.String(), `"allowed":true`) {
		t.Fatalf("explain by name: %s", ex.Body)
	}
}

// The documented action enums are exactly the actions authz knows.
func TestOpenAPIActionsAreAuthzActions(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties struct {
					Action struct {
						Enum []string `json:"enum"`
					} `json:"action"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(gateway.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]string{
		"PolicyAddRequest":     append([]string{authz.AnyAction}, authz.Actions...),
		"PolicyExplainRequest": authz.Actions,
	} {
		got := doc.Components.Schemas[name].Properties.Action.Enum
		if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
			t.Errorf("%s action enum %v, want %v", name, got, want)
		}
	}
}
