# MediaNest Hub — the two commands a newcomer needs are `make run` and `make test`.

GO        ?= go
BIN       := bin/medianest-hub
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
E2E_DEPS  := tests/e2e/node_modules/.package-lock.json

.PHONY: run build test test-short e2e-deps vet fmt fuzz bench conformance clean

## run: the hub on the embedded default (NATS + SQLite in ./data), with a dev token and a client snippet
run:
	$(GO) run ./cmd/medianest-hub serve --dev

## build: a static binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/medianest-hub

$(E2E_DEPS): tests/e2e/package.json tests/e2e/package-lock.json
	npm ci --prefix tests/e2e --no-audit --no-fund
	@touch $@

e2e-deps: $(E2E_DEPS)

## test: every test, with the race detector (PostgreSQL runs when MEDIANEST_TEST_POSTGRES_DSN is set)
test: e2e-deps vet
	$(GO) test -race -count=1 -timeout 8m ./...

## test-short: the unit tests only
test-short:
	$(GO) test -short -count=1 ./...

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './tests/e2e/node_modules/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

## fuzz: a short run of every fuzz target
fuzz:
	$(GO) test -run XXX -fuzz FuzzDecode -fuzztime 30s ./hub/protocol
	$(GO) test -run XXX -fuzz FuzzEscapeToken -fuzztime 30s ./events

## bench: the Go benchmarks
bench:
	$(GO) test -run XXX -bench . -benchmem ./...

## conformance: the protocol conformance server on :3000
conformance:
	$(GO) run ./tests/conformance -addr 127.0.0.1:3000

clean:
	rm -rf bin data
