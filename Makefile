# proxyctl — see README.md. `make demo` and `make test` are the two
# commands a newcomer needs.
GO ?= go
BIN ?= bin/proxyctl

.PHONY: all build demo test test-deps lint fuzz soak bench bench-http bench-go tidy clean

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

# The load and soak suite: 1,000 clients for SOAK_DURATION (default 60s)
# through record http on bolt and DynamoDB, and record stdio with 100
# requests in flight; the books must balance (docs/reliability.md).
soak:
	scripts/soak.sh

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
