package core

import (
	"testing"

	"github.com/connec/connec/authz"
	"github.com/connec/connec/connectors"
)

// The SPI names the action each kind is decided under without importing
// authz; they must be authz's actions.
func TestKindActionsArePolicyActions(t *testing.T) {
	for k, want := range map[connectors.Kind]string{connectors.KindRead: authz.ActionRead, connectors.KindSend: authz.ActionSend, connectors.KindAdmin: authz.ActionAdmin} {
		if got := k.Action(); got != want {
			t.Errorf("%s.Action() = %q, want %q", k, got, want)
		}
	}
}
