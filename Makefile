# connec — one command to run, one to test.
GO      ?= go
BIN     := bin/connec
PKGS    := ./...
# Tests get a throwaway PostgreSQL unless CONNEC_TEST_DATABASE_URL is set.
TESTFLAGS ?= -race -count=1 -timeout 20m

.PHONY: all build run test bench lint deps clean

all: build

deps: ## install missing system packages (PostgreSQL server binaries)
	@scripts/ensure-deps.sh

build: ## build bin/connec
	$(GO) build -o $(BIN) ./cmd/connec

run: deps build ## stdio MCP server on the embedded default (local PostgreSQL + key in the data dir)
	./$(BIN) serve --stdio

test: deps lint ## every test, with the race detector
	$(GO) test $(TESTFLAGS) $(PKGS)

bench: deps ## benchmarks (figures are ratios against baselines measured in the same run)
	$(GO) test -run '^$$' -bench . -benchmem -count=1 $(PKGS)

lint: ## gofmt + go vet
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

clean:
	rm -rf bin
