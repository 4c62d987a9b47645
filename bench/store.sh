#!/usr/bin/env bash
# forward http (capture on, auto sessions: what users run) with each store,
# alternating wrk runs in each round (1 KB static file behind nginx,
# loopback only):
#   memory   --store memory
#   bolt     --store bolt:FILE (the default kind)
#   dynamo   --store dynamodb://?endpoint=dynalite (needs test/dynalite: make test-deps)
# and prints req/s and the ratios bolt/memory and dynamo/memory per round.
#
# Environment: ROUNDS (5), DURATION (5s), CONNS (32), THREADS (1).
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}

bench_tools="nginx wrk go node"
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
UP=$(free_port); MEM=$(free_port); BOLT=$(free_port); DYN=$(free_port); DDB=$(free_port)

static_nginx "$UP"

dynalite="$root/test/dynalite/node_modules/dynalite/cli.js"
[[ -f $dynalite ]] || { echo "bench: dynalite not installed (make test-deps)" >&2; exit 1; }
node --require "$root/test/dynalite/survive-aborted.cjs" "$dynalite" --port "$DDB" --host 127.0.0.1 --createTableMs 5 --deleteTableMs 5 --updateTableMs 5 >"$work/logs/dynalite.log" 2>&1 &
pids+=($!)
dynalite_pid=$!
for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/"$DDB") 2>/dev/null && break; sleep 0.1; done

(cd "$root" && go build -o "$work/proxyctl" ./cmd/proxyctl)
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
ddb="dynamodb://?endpoint=http://127.0.0.1:$DDB&table-prefix=bench-"
"$work/proxyctl" store init --store "$ddb" >/dev/null
common=(--target "http://127.0.0.1:$UP" --admin-listen off --log-level warn)
"$work/proxyctl" forward http "${common[@]}" --listen "127.0.0.1:$MEM" --store memory 2>"$work/logs/mem.log" &
pids+=($!)
mem_pid=$!
"$work/proxyctl" forward http "${common[@]}" --listen "127.0.0.1:$BOLT" --store "bolt:$work/bench.db" 2>"$work/logs/bolt.log" &
pids+=($!)
bolt_pid=$!
"$work/proxyctl" forward http "${common[@]}" --listen "127.0.0.1:$DYN" --store "$ddb" 2>"$work/logs/dyn.log" &
pids+=($!)
dyn_pid=$!
wait_http "$UP" "$MEM" "$BOLT" "$DYN"

# run_wrk PORT -> "reqs/s non2xx requests"
run_wrk() {
	local out
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$1/1k.txt")
	local rps non2xx total
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
	total=$(awk '/requests in/ {print $1}' <<<"$out")
	echo "${rps:-0} ${non2xx:-0} ${total:-0}"
}

echo "# wrk -t$THREADS -c$CONNS -d$DURATION, 1 KB static file, forward http with capture, $(nproc) cores, $(date -u +%FT%TZ)"
printf '%-5s %9s %9s %9s | %6s %6s\n' round memory bolt dynamo bolt/m dyn/m
rb=(); rd=()
m_n=0; b_n=0; d_n=0
for r in $(seq "$ROUNDS"); do
	read -r m_rps m_bad m_req < <(run_wrk "$MEM")
	read -r b_rps b_bad b_req < <(run_wrk "$BOLT")
	read -r d_rps d_bad d_req < <(run_wrk "$DYN")
	m_n=$((m_n + m_req)); b_n=$((b_n + b_req)); d_n=$((d_n + d_req))
	if [[ "$m_bad$b_bad$d_bad" != "000" ]]; then
		echo "bench: non-2xx responses (memory $m_bad, bolt $b_bad, dynamo $d_bad): numbers are not valid" >&2
		exit 1
	fi
	b=$(awk -v a="$b_rps" -v m="$m_rps" 'BEGIN {printf "%.2f", a/m}')
	d=$(awk -v a="$d_rps" -v m="$m_rps" 'BEGIN {printf "%.2f", a/m}')
	rb+=("$b"); rd+=("$d")
	printf '%-5s %9.0f %9.0f %9.0f | %5sx %5sx\n' "$r" "$m_rps" "$b_rps" "$d_rps" "$b" "$d"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median vs memory: bolt $(median "${rb[@]}")x, dynamo $(median "${rd[@]}")x"
# CPU (user+system) since start: how much of the 2 cores the DynamoDB
# emulator took next to the proxy that used it, and what each proxy spent
# per exchange once its capture backlog is written (a store that fell
# behind keeps writing after wrk stops): the figure that decides
# throughput against a DynamoDB that is not on this machine.
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# wait_idle PID: until it uses under 1% of a core for a second (120 s at most).
wait_idle() {
	local a b
	for _ in $(seq 120); do
		a=$(ticks "$1"); sleep 1; b=$(ticks "$1")
		(((b - a) * 100 < $(getconf CLK_TCK))) && return
	done
	echo "bench: pid $1 still busy after 120 s" >&2
}
wait_idle "$dyn_pid"
hz=$(getconf CLK_TCK)
cpu_s() { awk -v hz="$hz" -v t="$(ticks "$1")" 'BEGIN {printf "%.1f", t/hz}'; }
per_req() { awk -v hz="$hz" -v t="$(ticks "$1")" -v n="$2" 'BEGIN {printf "%.1f", n ? t/hz/n*1e6 : 0}'; }
echo "CPU seconds over the whole run: dynalite $(cpu_s "$dynalite_pid"), proxyctl on dynamo $(cpu_s "$dyn_pid")"
echo "proxy CPU per exchange, backlog included: memory $(per_req "$mem_pid" "$m_n") us, bolt $(per_req "$bolt_pid" "$b_n") us, dynamo $(per_req "$dyn_pid" "$d_n") us (dynalite $(per_req "$dynalite_pid" "$d_n") us)"
