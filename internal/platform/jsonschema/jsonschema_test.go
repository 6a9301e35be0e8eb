package jsonschema

import (
	"errors"
	"strings"
	"testing"
)

// A violation says what is wrong in the schema's terms and never repeats
// the value: documents carry configuration values and secrets, and
// violations reach callers and audit rows.
func TestViolationsDoNotRepeatTheValue(t *testing.T) {
	s := MustCompile(`{"type":"object","properties":{
  "p": {"type":"string","pattern":"^[a-z]+$"},
  "e": {"enum":["a","b"]},
  "c": {"const":"x"}}}`)
	const canary = "Secret-Value-42"
	for field, want := range map[string]string{"p": "does not match pattern", "e": "value must be one of", "c": "value must be"} {
		err := s.Validate([]byte(`{"` + field + `":"` + canary + `!"}`))
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("%s: %v", field, err)
		}
		if strings.Contains(ve.Error(), canary) || !strings.Contains(ve.Error(), want) || ve.Violations[0].Path != "/"+field {
			t.Errorf("%s: %q", field, ve.Error())
		}
	}
}
