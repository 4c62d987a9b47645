#!/usr/bin/env bash
# The load and soak suite (docs/reliability.md): 1,000 concurrent clients
# for SOAK_DURATION (default 60s) through `record http` on the bolt store
# and on DynamoDB (dynalite), and `record stdio` with 100 requests in
# flight on both. Every run must end with zero errors and the same set of
# exchanges served, taped and stored. Prints the figures ("soak:" lines).
# Loopback only; each run stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/test-deps.sh
export PROXYCTL_SOAK_DURATION=${SOAK_DURATION:-60s}
echo "== soak: $PROXYCTL_SOAK_DURATION per run ($(nproc) cores, $(go version | cut -d' ' -f3))"
# grep filters the SDK's and the servers' chatter; the verdict is go test's.
set +e
go test -run '^TestSoak' -count=1 -v -timeout 60m ./cmd/proxyctl/ 2>&1 |
	grep --line-buffered -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|soak_test.go'
status=${PIPESTATUS[0]}
exit "$status"
