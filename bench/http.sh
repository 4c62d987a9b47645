#!/usr/bin/env bash
# Throughput and latency of `proxyctl forward http` next to nginx, on one
# machine, loopback only. Each round runs wrk against:
#   direct   nginx serving a 1 KB static file
#   nginx    nginx as a keep-alive reverse proxy in front of it
#   proxyctl proxyctl forward http in front of it (its defaults: one event
#            loop, docs/architecture.md "Event loops")
#   pxc-h1   the same with --event-loops 0: h1 alone, a goroutine per
#            connection (the server before the loops), for comparison
# and prints req/s, p99 and the ratios to nginx for the round (the machine
# is noisy: compare the ratios of one round, not absolute numbers).
#
# Needs the Debian packages nginx and wrk (bench/setup.sh installs them).
# Environment: ROUNDS (3), DURATION (5s), CONNS (32), THREADS (1),
# COMPARE_ARGS (the second proxyctl's extra flags, default "--event-loops 0"),
# PROXYCTL_ARGS (flags for proxyctl; default "--store memory --capture=false",
# the proxy alone, as this benchmark measured before capture existed: see
# bench/record.sh and bench/store.sh for what capture and the stores cost).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
PROXYCTL_ARGS=${PROXYCTL_ARGS:---store memory --capture=false}

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
UP=$(free_port); NGX=$(free_port); PXC=$(free_port); PX1=$(free_port)
COMPARE_ARGS=${COMPARE_ARGS:---event-loops 0}

static_nginx "$UP" "$NGX"

(cd "$root" && go build -o "$work/proxyctl" ./cmd/proxyctl)
# shellcheck disable=SC2086
"$work/proxyctl" forward http --target "http://127.0.0.1:$UP" --listen "127.0.0.1:$PXC" \
	--admin-listen off --log-level warn $PROXYCTL_ARGS 2>"$work/logs/proxyctl.log" &
pids+=($!)
# shellcheck disable=SC2086
"$work/proxyctl" forward http --target "http://127.0.0.1:$UP" --listen "127.0.0.1:$PX1" \
	--admin-listen off --log-level warn $PROXYCTL_ARGS $COMPARE_ARGS 2>"$work/logs/proxyctl-1.log" &
pids+=($!)

wait_http "$UP" "$NGX" "$PXC" "$PX1"

# run_wrk PORT -> "reqs p99_ms non2xx"
run_wrk() {
	local out
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$1/1k.txt")
	local rps p99 non2xx
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' <<<"$out")
	non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
	echo "${rps:-0} ${p99:-0} ${non2xx:-0}"
}

echo "# wrk -t$THREADS -c$CONNS -d$DURATION, 1 KB static file, $(nproc) cores, $(date -u +%FT%TZ)"
printf '%-5s %9s %9s %9s %9s | %6s %6s | %8s %8s %8s %8s | %6s %6s\n' \
	round direct nginx proxyctl pxc-h1 ratio ratioh d_p99 n_p99 p_p99 ph_p99 p99x p99xh
ratios=(); ratios1=(); p99s=(); p99s1=()
for r in $(seq "$ROUNDS"); do
	read -r d_rps d_p99 d_bad < <(run_wrk "$UP")
	read -r n_rps n_p99 n_bad < <(run_wrk "$NGX")
	read -r p_rps p_p99 p_bad < <(run_wrk "$PXC")
	read -r q_rps q_p99 q_bad < <(run_wrk "$PX1")
	if [[ "$d_bad$n_bad$p_bad$q_bad" != "0000" ]]; then
		echo "bench: non-2xx responses (direct $d_bad, nginx $n_bad, proxyctl $p_bad/$q_bad): numbers are not valid" >&2
		exit 1
	fi
	ratio=$(awk -v a="$p_rps" -v b="$n_rps" 'BEGIN {printf "%.2f", a/b}')
	ratio1=$(awk -v a="$q_rps" -v b="$n_rps" 'BEGIN {printf "%.2f", a/b}')
	p99x=$(awk -v a="$p_p99" -v b="$n_p99" 'BEGIN {printf "%.2f", a/b}')
	p99x1=$(awk -v a="$q_p99" -v b="$n_p99" 'BEGIN {printf "%.2f", a/b}')
	ratios+=("$ratio"); ratios1+=("$ratio1"); p99s+=("$p99x"); p99s1+=("$p99x1")
	printf '%-5s %9.0f %9.0f %9.0f %9.0f | %5sx %5sx | %6.2fms %6.2fms %6.2fms %6.2fms | %5sx %5sx\n' \
		"$r" "$d_rps" "$n_rps" "$p_rps" "$q_rps" "$ratio" "$ratio1" "$d_p99" "$n_p99" "$p_p99" "$q_p99" "$p99x" "$p99x1"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median throughput vs nginx: proxyctl $(median "${ratios[@]}")x, proxyctl $COMPARE_ARGS $(median "${ratios1[@]}")x"
echo "median p99 vs nginx:        proxyctl $(median "${p99s[@]}")x, proxyctl $COMPARE_ARGS $(median "${p99s1[@]}")x"
