#!/usr/bin/env bash
# Installs the load tools the benchmarks use (Debian packages).
set -euo pipefail
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
if ((${#need[@]})); then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
echo "bench tools ready: $(nginx -v 2>&1), $(wrk --version 2>&1 | head -1)"
