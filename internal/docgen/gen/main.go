// Command gen writes the documents derived from the operation catalog
// (docgen.Write), from the module root: `go generate ./...`.
package main

import (
	"fmt"
	"os"

	"github.com/connec/connec/internal/docgen"
)

func main() {
	if err := docgen.Write("."); err != nil {
		fmt.Fprintln(os.Stderr, "docgen:", err)
		os.Exit(1)
	}
}
