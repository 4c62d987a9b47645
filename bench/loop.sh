#!/usr/bin/env bash
# Where forward http's latency tail comes from (issue 2's p99 target). Each
# round runs wrk against, in turn:
#   nginx       nginx as a keep-alive reverse proxy (as bench/http.sh)
#   proxyctl    proxyctl forward http (--capture=false, memory store; its default: one event loop)
#   epoll       bench/looptwin -model epoll: a bare relay, one thread, one epoll set
#   gor-2P      bench/looptwin -model goroutine: the same relay, a goroutine per connection
#   gor-1P      the same with GOMAXPROCS=1
# The looptwin relays burn SPIN of CPU per request (default 10us), which puts
# their throughput where proxyctl's is, so that their tails compare at the
# same load. Prints req/s and p50/p90/p99 per run and the median p99 ratios
# to nginx.
#
# Needs nginx and wrk (bench/setup.sh). Environment: ROUNDS (3),
# DURATION (3s), CONNS (32), SPIN (10us).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3s}
CONNS=${CONNS:-32}
SPIN=${SPIN:-10us}

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
UP=$(free_port); NGX=$(free_port); PXC=$(free_port); EP=$(free_port); G2=$(free_port); G1=$(free_port)

static_nginx "$UP" "$NGX"

(cd "$root" && go build -o "$work/proxyctl" ./cmd/proxyctl && go build -o "$work/looptwin" ./bench/looptwin)
"$work/proxyctl" forward http --target "http://127.0.0.1:$UP" --listen "127.0.0.1:$PXC" \
	--admin-listen off --log-level warn --store memory --capture=false 2>"$work/logs/proxyctl.log" &
pids+=($!)
twin() { # PORT MODEL [env...]
	local port=$1 model=$2
	shift 2
	env "$@" "$work/looptwin" -listen "127.0.0.1:$port" -upstream "127.0.0.1:$UP" -model "$model" \
		-spin "$SPIN" -for 30m 2>"$work/logs/twin-$port.log" &
	pids+=($!)
}
twin "$EP" epoll
twin "$G2" goroutine
twin "$G1" goroutine GOMAXPROCS=1

wait_http "$UP" "$NGX" "$PXC" "$EP" "$G2" "$G1"

# run_wrk PORT -> "req/s p50_ms p90_ms p99_ms non2xx"
run_wrk() {
	local out
	out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$1/1k.txt")
	awk '
		function ms(v) { if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 } if (v ~ /ms$/) { sub(/ms$/, "", v); return v } sub(/s$/, "", v); return v * 1000 }
		/^Requests\/sec:/ { rps = $2 }
		$1 == "50%" { p50 = ms($2) } $1 == "90%" { p90 = ms($2) } $1 == "99%" { p99 = ms($2) }
		/Non-2xx/ { bad = $5 }
		END { printf "%s %s %s %s %d\n", rps + 0, p50 + 0, p90 + 0, p99 + 0, bad + 0 }' <<<"$out"
}

echo "# wrk -t1 -c$CONNS -d$DURATION, 1 KB static file, looptwin spin $SPIN, $(nproc) cores, $(date -u +%FT%TZ)"
printf '%-5s %-9s %9s %8s %8s %8s %7s\n' round server req/s p50_ms p90_ms p99_ms p99x
declare -A ratios
for r in $(seq "$ROUNDS"); do
	n_p99=
	for s in nginx:$NGX proxyctl:$PXC epoll:$EP gor-2P:$G2 gor-1P:$G1; do
		name=${s%%:*} port=${s##*:}
		read -r rps p50 p90 p99 bad < <(run_wrk "$port")
		if [[ "$bad" != 0 ]]; then
			echo "bench: $name answered $bad non-2xx responses: numbers are not valid" >&2
			exit 1
		fi
		[[ $name == nginx ]] && n_p99=$p99
		x=$(awk -v a="$p99" -v b="$n_p99" 'BEGIN {printf "%.2f", a/b}')
		ratios[$name]+="$x "
		printf '%-5s %-9s %9.0f %8.2f %8.2f %8.2f %6sx\n' "$r" "$name" "$rps" "$p50" "$p90" "$p99" "$x"
	done
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for name in proxyctl epoll gor-2P gor-1P; do
	# shellcheck disable=SC2086
	echo "median p99 vs nginx, $name: $(median ${ratios[$name]})x"
done
