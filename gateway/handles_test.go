package gateway_test

import (
	"net/http"
	"strings"
	"testing"
)

// Over REST, an instance's handle is chosen or derived at install, a bad
// or taken one is a problem naming the field in the caller's terms and
// installs nothing, and PATCH renames an instance without moving its
// handle.
func TestInstanceHandlesOverREST(t *testing.T) {
	e := newEnv(t)
	_, tok := e.user("alice", false)
	inst := e.must(http.StatusCreated, "POST", "/v1/connector-instances", tok,
		map[string]any{"type": "echo", "display_name": "Work Mail"})
	var in struct {
		ID          string `json:"id"`
		Handle      string `json:"handle"`
		DisplayName string `json:"display_name"`
	}
	inst.json(t, &in)
	if in.Handle != "work-mail" {
		t.Fatalf("derived handle %q, want work-mail", in.Handle)
	}

	before := e.count(`SELECT count(*) FROM connector_instances`)
	for _, bad := range []string{"Work_Mail", "work-mail-", strings.Repeat("a", 41), "mail\x00"} {
		p := problem(t, e.do("POST", "/v1/connector-instances", tok, map[string]any{"type": "echo", "display_name": "x", "handle": bad}),
			http.StatusBadRequest, "invalid_argument")
		if len(p.Errors) == 0 || p.Errors[0].Field != "handle" {
			t.Errorf("handle %q: problem %+v does not name the field", bad, p)
		}
		t.Logf("handle %q: %s / %s", bad, p.Detail, p.Errors[0].Detail)
		for _, leak := range []string{"regexp", "core.", "jsonschema", "InstallInput", "Go "} {
			if strings.Contains(p.Detail+p.Errors[0].Detail, leak) {
				t.Errorf("handle %q: problem %+v speaks of %s", bad, p, leak)
			}
		}
	}
	problem(t, e.do("POST", "/v1/connector-instances", tok, map[string]any{"type": "echo", "display_name": "x", "handle": "work-mail"}),
		http.StatusConflict, "conflict")
	if n := e.count(`SELECT count(*) FROM connector_instances`); n != before {
		t.Fatalf("refused installs left %d instances, want %d", n, before)
	}

	e.must(http.StatusOK, "PATCH", "/v1/connector-instances/"+in.ID, tok, map[string]any{"display_name": "Work mail (EU)"}).json(t, &in)
	if in.Handle != "work-mail" || in.DisplayName != "Work mail (EU)" {
		t.Fatalf("renamed: %+v", in)
	}
	// Someone without rights on it is told 404, as on its other routes.
	_, other := e.user("mallory", false)
	problem(t, e.do("PATCH", "/v1/connector-instances/"+in.ID, other, map[string]any{"display_name": "mine"}), http.StatusNotFound, "policy_denied")
	if n := e.count(`SELECT count(*) FROM connector_instances WHERE display_name = 'mine'`); n != 0 {
		t.Fatal("a refused rename changed the instance")
	}
}
