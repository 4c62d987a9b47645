#!/usr/bin/env bash
# Installs what bench/replay.sh needs: wrk (bench/setup.sh), a Java runtime
# for WireMock (Debian's default-jre-headless, when java is missing) and the
# pinned npm packages of this directory (wiremock with its bundled
# standalone jar, mountebank) from package-lock.json.
#
# package-lock.json carries no "resolved" URLs (only "integrity" hashes), so
# the repository names no package registry host. After changing
# package.json: npm install --prefix bench/replay, then
# node scripts/strip-resolved.mjs bench/replay.
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)

"$dir/../setup.sh"
if ! command -v java >/dev/null; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null
fi
command -v npm >/dev/null || { echo "bench/replay/setup.sh: node and npm are required" >&2; exit 1; }
if [[ ! -d $dir/node_modules ]] || [[ $dir/package-lock.json -nt $dir/node_modules ]]; then
	npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
fi
echo "replay bench ready: $(java -version 2>&1 | head -1), node $(node --version)," \
	"wiremock $(node -p "require('$dir/node_modules/wiremock/package.json').version")," \
	"mountebank $(node -p "require('$dir/node_modules/mountebank/package.json').version")"
