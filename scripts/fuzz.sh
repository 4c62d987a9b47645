#!/usr/bin/env bash
# Runs every native fuzz target in the module for FUZZTIME each.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-60s}
grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r file; do
	pkg="./$(dirname "${file#./}")"
	for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | awk '{print $2}'); do
		echo "fuzz $pkg $target ($FUZZTIME)"
		if ! out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1); then
			# Say why: a crasher (saved under testdata/fuzz) or the fuzzer itself.
			echo "$out" | tail -30 >&2
			exit 1
		fi
	done
done
