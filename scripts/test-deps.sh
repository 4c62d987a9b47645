#!/usr/bin/env bash
# Installs what the tests need beyond Go, from the project's own lock
# files. Tests that need a missing tool skip with a reason; in CI
# (CI=true) a missing tool is an error instead, so nothing is skipped
# silently.
set -euo pipefail
cd "$(dirname "$0")/.."

# missing WHAT FOR: fail in CI, else warn that the tests FOR will skip.
missing() {
	if [[ "${CI:-}" == "true" ]]; then
		echo "test-deps: $1 is required in CI for the $2" >&2
		exit 1
	fi
	echo "test-deps: $1 not found; the $2 will be skipped" >&2
}

# npm_ci DIR FOR: npm ci in DIR when its node_modules is missing or older
# than its lock file.
npm_ci() {
	[[ -f $1/package-lock.json ]] || return 0
	if ! command -v npm >/dev/null; then
		missing npm "$2"
		return 0
	fi
	if [[ ! -d $1/node_modules ]] || [[ $1/package-lock.json -nt $1/node_modules ]]; then
		echo "== npm ci ($1)"
		npm ci --prefix "$1" --no-audit --no-fund --loglevel=error
	fi
}

npm_ci test/mcp "MCP end-to-end tests"
npm_ci test/dynalite "DynamoDB store tests (dynalite)"
# The web UI's browser tests: playwright-core from npm driving Debian's
# chromium (playwright cannot download browsers here).
npm_ci test/ui "web UI browser tests"
if [[ -f test/ui/package-lock.json ]] && [[ ! -x /usr/bin/chromium ]]; then
	if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null; then
		echo "== apt-get install chromium"
		if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/tmp/proxyctl-chromium-install.log 2>&1; then
			tail -20 /tmp/proxyctl-chromium-install.log >&2
			missing "chromium (apt-get install failed)" "web UI browser tests"
		fi
	else
		missing "/usr/bin/chromium (apt-get install chromium as root)" "web UI browser tests"
	fi
fi
