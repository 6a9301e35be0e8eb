# connec — one command to run, one to test.
GO      ?= go
BIN     := bin/connec
PKGS    := ./...
# Tests get a throwaway PostgreSQL unless CONNEC_TEST_DATABASE_URL is set.
TESTFLAGS ?= -race -count=1 -timeout 20m

# Fuzz targets: "package:Target". `make test` runs each briefly; found
# crashers land in the package's testdata/fuzz and become regression tests.
FUZZ_TARGETS := ./core:FuzzDecodeArguments ./mcp:FuzzDecodeToolArguments ./callctx:FuzzTaskContext ./callctx:FuzzParseSubject \
	./authz:FuzzParseCond ./authz:FuzzRuleValidate ./connectors/openclaw:FuzzReadFrame ./gateway:FuzzDecodeBody \
	./connectors/driverkit:FuzzRedactorText
FUZZTIME ?= 4s

# The interop tests' pinned npm packages (official MCP clients, the MCP
# Inspector, the conformance suite and a Node 22 for them): make test installs
# them, again only when interop/package-lock.json changes; make run never does.
INTEROP_NPM := interop/node_modules/.connec-npm-ci

.PHONY: all build run test bench bench-report lint deps clean fuzz soak test-openclaw-npm interop-deps test-interop generate

all: build

deps: ## install missing system packages for building and testing (PostgreSQL, Node.js + npm, Chromium + chromedriver)
	@scripts/ensure-deps.sh test

build: ## build bin/connec
	$(GO) build -o $(BIN) ./cmd/connec

# run's stdout is the MCP stream from its first byte: no prerequisites whose
# recipes make would echo there, everything before the server goes to
# stderr, and the server replaces the shell. (From another directory use
# `make -s -C DIR run`: -C alone makes make print "Entering directory" on
# stdout before it reads this file.)
run: ## stdio MCP server on the embedded default (installs only PostgreSQL, and Node.js if OpenClaw plugins are installed)
	@scripts/ensure-deps.sh run >&2
	@$(GO) build -o $(BIN) ./cmd/connec >&2
	@exec $(abspath $(BIN)) serve --stdio

test: deps lint $(INTEROP_NPM) ## every test, with the race detector, then each fuzz target briefly
	CONNEC_OPENCLAW_NPM=1 CONNEC_INTEROP_NPM=1 $(GO) test $(TESTFLAGS) $(PKGS)
	@$(MAKE) --no-print-directory fuzz

fuzz: ## run each fuzz target for FUZZTIME (default 4s)
	@GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh $(FUZZ_TARGETS)

test-openclaw-npm: ## just the npm plugin test (make test runs it too): install @ollama/openclaw-web-search, call it against a local fake
	CONNEC_OPENCLAW_NPM=1 $(GO) test -race -count=1 -run TestNPMRealPlugin -v ./connectors/openclaw/

interop-deps: $(INTEROP_NPM) ## install the interop tests' pinned npm packages (make test does)

$(INTEROP_NPM): interop/package-lock.json | deps
	cd interop && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

test-interop: $(INTEROP_NPM) ## just the interop tests (official MCP clients, Inspector, conformance suite), verbose
	CONNEC_INTEROP_NPM=1 $(GO) test -race -count=1 -v ./interop/

soak: deps ## the fault tests at full size (10,000 invocations, longer outages)
	CONNEC_SOAK=1 $(GO) test -race -count=1 -timeout 60m -v ./internal/faults/
	CONNEC_SOAK=1 $(GO) test -race -count=1 -timeout 60m -v -run 'SIGKILL' ./cmd/connec/

bench: deps ## benchmarks (figures are ratios against baselines measured in the same run)
	$(GO) test -run '^$$' -bench . -benchmem -count=1 $(PKGS)

bench-report: deps build ## measure connec against same-run baselines (PostgreSQL, fsync on) and rewrite BENCHMARKS.md (BEFORE=path: an earlier connec binary measured beside it)
	$(GO) build -o bin/connec-bench ./cmd/connec-bench
	./bin/connec-bench -connec $(BIN) $(if $(BEFORE),-connec-before $(BEFORE)) -out BENCHMARKS.md

generate: ## rewrite what the operation catalog generates: gateway/openapi.json and README's tables (a test fails when they are stale)
	$(GO) generate ./internal/docgen

lint: ## gofmt + go vet + staticcheck (pinned in go.mod as a tool)
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

clean:
	rm -rf bin
