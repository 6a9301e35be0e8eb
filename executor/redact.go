package executor

import (
	"encoding/json"
	"errors"

	"github.com/connec/connec/connectors/driverkit"
	"github.com/connec/connec/fault"
)

// Redact replaces credential material, in every encoding red matches,
// inside the strings, object keys and numbers of a JSON document, and
// reports whether it replaced anything. This is the final pass over every
// result, whatever the driver did: a result is returned, and stored
// (connector_runs.result, for idempotent and async runs), only after it.
func Redact(doc json.RawMessage, red *driverkit.Redactor) (json.RawMessage, bool, error) {
	out, changed, err := red.JSON(doc)
	return json.RawMessage(out), changed, err
}

// markRedacted sets a result's top-level "redacted" to true: a driver
// that says false may have missed what the final pass found.
func markRedacted(doc json.RawMessage) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		return nil, err
	}
	m["redacted"] = json.RawMessage("true")
	return json.Marshal(m)
}

// redactCause keeps a driver's raw error (a URL with a query credential, a
// server's echo) from carrying credential material into logs.
func redactCause(err error, red *driverkit.Redactor) error {
	if err == nil || red.Empty() {
		return err
	}
	if msg := red.String(err.Error()); msg != err.Error() {
		return errors.New(msg)
	}
	return err
}

// redactError keeps a driver's error (message, details, cause) from
// carrying credential material to the caller, the run row or the logs.
func redactError(fe *fault.Error, red *driverkit.Redactor) error {
	if red.Empty() {
		return fe
	}
	c := *fe
	c.Message, c.Cause = red.String(fe.Message), redactCause(fe.Cause, red)
	if len(fe.Details) > 0 {
		c.Details, _ = red.Value(map[string]any(fe.Details)).(map[string]any)
	}
	return &c
}
