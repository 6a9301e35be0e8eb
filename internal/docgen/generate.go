package docgen

//go:generate sh -c "cd ../.. && go run ./internal/docgen/gen"
