#!/usr/bin/env bash
# Installs what the tests need beyond Go, from the project's own lock
# files. Tests that need a missing tool skip with a reason; in CI
# (CI=true) a missing tool is an error instead, so nothing is skipped
# silently.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -f test/mcp/package-lock.json ]]; then
	if command -v npm >/dev/null; then
		if [[ ! -d test/mcp/node_modules ]] || [[ test/mcp/package-lock.json -nt test/mcp/node_modules ]]; then
			echo "== npm ci (test/mcp)"
			npm ci --prefix test/mcp --no-audit --no-fund --loglevel=error
		fi
	elif [[ "${CI:-}" == "true" ]]; then
		echo "test-deps: npm is required in CI for the MCP end-to-end tests" >&2
		exit 1
	else
		echo "test-deps: npm not found; MCP end-to-end tests will be skipped" >&2
	fi
fi

if [[ -f test/dynalite/package-lock.json ]]; then
	if command -v npm >/dev/null; then
		if [[ ! -d test/dynalite/node_modules ]] || [[ test/dynalite/package-lock.json -nt test/dynalite/node_modules ]]; then
			echo "== npm ci (test/dynalite)"
			npm ci --prefix test/dynalite --no-audit --no-fund --loglevel=error
		fi
	elif [[ "${CI:-}" == "true" ]]; then
		echo "test-deps: npm is required in CI for the DynamoDB store tests (dynalite)" >&2
		exit 1
	else
		echo "test-deps: npm not found; DynamoDB store tests (dynalite) will be skipped" >&2
	fi
fi

# The web UI's browser tests: playwright-core from npm driving Debian's
# chromium (playwright cannot download browsers here).
if [[ -f test/ui/package-lock.json ]]; then
	if command -v npm >/dev/null; then
		if [[ ! -d test/ui/node_modules ]] || [[ test/ui/package-lock.json -nt test/ui/node_modules ]]; then
			echo "== npm ci (test/ui)"
			npm ci --prefix test/ui --no-audit --no-fund --loglevel=error
		fi
	elif [[ "${CI:-}" == "true" ]]; then
		echo "test-deps: npm is required in CI for the web UI browser tests" >&2
		exit 1
	else
		echo "test-deps: npm not found; web UI browser tests will be skipped" >&2
	fi
	if [[ ! -x /usr/bin/chromium ]]; then
		if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null; then
			echo "== apt-get install chromium"
			if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/tmp/proxyctl-chromium-install.log 2>&1; then
				tail -20 /tmp/proxyctl-chromium-install.log >&2
				if [[ "${CI:-}" == "true" ]]; then
					echo "test-deps: could not install chromium, required in CI for the web UI browser tests" >&2
					exit 1
				fi
				echo "test-deps: could not install chromium; web UI browser tests will be skipped" >&2
			fi
		elif [[ "${CI:-}" == "true" ]]; then
			echo "test-deps: /usr/bin/chromium is required in CI for the web UI browser tests (apt-get install chromium as root)" >&2
			exit 1
		else
			echo "test-deps: /usr/bin/chromium not found (apt-get install chromium as root); web UI browser tests will be skipped" >&2
		fi
	fi
fi
