# proxyctl — see README.md. `make demo` and `make test` are the two
# commands a newcomer needs.
GO ?= go
BIN ?= bin/proxyctl

.PHONY: all build demo test test-deps lint fuzz bench bench-http bench-go tidy clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/proxyctl

demo:
	$(GO) run ./cmd/proxyctl demo

# Everything CI runs: installs test dependencies, vets, runs every test
# with the race detector, and a short fuzz smoke of every fuzz target.
test:
	scripts/test.sh

test-deps:
	scripts/test-deps.sh

lint:
	scripts/lint.sh

# Every fuzz target for FUZZTIME (default 60s) each.
fuzz:
	FUZZTIME=$${FUZZTIME:-60s} scripts/fuzz.sh

bench: bench-go bench-http

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

bench-http:
	bench/setup.sh
	bench/http.sh

tidy:
	$(GO) mod tidy

clean:
	rm -rf bin
