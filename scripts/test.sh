#!/usr/bin/env bash
# The project's whole test suite (README's test command; .ci/run runs it).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/test-deps.sh
echo "== go vet"
go vet ./...
echo "== go test -race -shuffle=on"
go test -race -shuffle=on -timeout 9m -count=1 ./...
echo "== fuzz smoke"
FUZZTIME=${FUZZTIME:-3s} scripts/fuzz.sh
