package executor

import "github.com/connec/connec/internal/platform/pgnotify"

// CredentialChannel is the notification channel the database announces
// credential row changes on (see migrations: connec_credential_changed).
const CredentialChannel = "connec_credential"

// Follow registers the executor with hub so cached data keys are dropped as
// soon as the database announces that a credential changed (rotate, revoke,
// disable, key rotation), on every server sharing the database, and all of
// them whenever notifications may have been missed. Call before hub.Start.
func (e *Executor) Follow(hub *pgnotify.Hub) error {
	if err := hub.Handle(CredentialChannel, e.Forget); err != nil {
		return err
	}
	return hub.OnReset(e.ForgetAll)
}
