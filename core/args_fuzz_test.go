package core

import (
	"reflect"
	"testing"

	"github.com/connec/connec/fault"
)

// FuzzDecodeArguments feeds arbitrary bytes to every catalog entry's strict
// input decoder: it must never panic, and whatever it refuses is an
// invalid_argument error.
func FuzzDecodeArguments(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"type":"echo","display_name":"x"}`, `{"instance_id":"1b4e28ba-2fa1-11d2-883f-0016d3cca427","operation":"echo.read","arguments":{"message":"hi"}}`,
		`{"task_id":"1b4e28ba-2fa1-11d2-883f-0016d3cca427"}`, `{"task_id":5}`, `[]`, `null`, `{"a":1}{"b":2}`, `{"limits":{"per_subject":{"requests":1,"window_seconds":1}}}`,
		`{"secret":{"token":"x"},"kind":"bearer"}`, `{"display_name":"\u0000"}`, `{"arguments":"x"}`, `{"since":"2026-01-02T03:04:05Z","limit":3}`,
	} {
		f.Add([]byte(s))
	}
	entries := Catalog()
	f.Fuzz(func(t *testing.T, args []byte) {
		for _, e := range entries {
			if err := e.args.decode(args, reflect.New(e.In).Interface()); err != nil && fault.As(err).Type != fault.InvalidArgument {
				t.Fatalf("%s: decode refused with %v", e.Name, err)
			}
		}
	})
}
