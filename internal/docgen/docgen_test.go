package docgen

import (
	"bytes"
	"testing"
)

// The checked-in OpenAPI document and README tables are what the catalog
// generates: a change to an operation shows up in them, or this fails.
func TestGeneratedFilesAreFresh(t *testing.T) {
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		current, want, err := Render("../..", f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(current, want) {
			t.Errorf("%s %s is stale: run go generate ./... (it runs go run ./internal/docgen/gen)", f.Path, f.Section)
		}
	}
}
