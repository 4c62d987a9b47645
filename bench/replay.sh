#!/usr/bin/env bash
# Throughput and latency of `proxyctl replay`, on one machine, loopback
# only. wrk (-t1 -c32 by default) runs bench/replay/paths.lua, which sends
# GET /item/0 .. /item/N-1 round-robin; every answer is a distinct 1 KB JSON
# body. The data come from bench/replay/gen.go (one list of exchanges
# written as HAR files, WireMock mappings and a mountebank imposter).
#
#   scale  proxyctl replay of a HAR with 1 exchange (wrk asks for its one
#          path) vs a HAR with 10,000 (wrk walks all 10,000 paths); ratio
#          10k/1 per round.
#   peers  the same 1,000 exchanges served by proxyctl replay (HAR),
#          WireMock standalone (one stub mapping per path, loaded from its
#          mappings dir) and mountebank (one imposter with 1,000 stubs,
#          "equals": {"path"}, created through its REST API); ratio of
#          proxyctl to each per round.
#
# proxyctl always runs with --admin-listen off --log-level warn, once with
# --capture=false ("off") and once with capture on (the default, what users
# run: every exchange goes to the store and the live stream). Every server
# listens on 127.0.0.1 only and is stopped on exit. Each server gets WARMUP
# of the same load before the first round (the JVM's JIT); after every run
# the script waits until the server is idle again (a capture backlog still
# being written must not slow the next server down) and reports how long
# that took; rounds alternate the order of the servers; the machine is
# noisy, so compare ratios within a round and read the medians.
#
# Needs bench/replay/setup.sh (wrk, java, the pinned npm packages).
# Environment: ROUNDS (3), DURATION (5s), CONNS (32), THREADS (1),
# WARMUP (20s, per server), PARTS ("scale peers"),
# STORE (bolt, proxyctl's default: each proxyctl its own file in the work
# dir; or memory),
# WIREMOCK_JAVA_OPTS ("-Xms1g -Xmx1g -XX:+UseParallelGC").
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-20s}
PARTS=${PARTS:-scale peers}
STORE=${STORE:-bolt}
WIREMOCK_JAVA_OPTS=${WIREMOCK_JAVA_OPTS:--Xms1g -Xmx1g -XX:+UseParallelGC}

bench_tools="wrk go node java curl python3 ss"
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
rdir=$root/bench/replay
if [[ ! -d $rdir/node_modules/wiremock || ! -d $rdir/node_modules/mountebank ]]; then
	echo "bench: bench/replay/node_modules missing (run bench/replay/setup.sh)" >&2
	exit 1
fi
has_part() { [[ " $PARTS " == *" $1 "* ]]; }

MB=$(free_port); MBI=$(free_port); WM=$(free_port)
(cd "$root" && go build -o "$work/proxyctl" ./cmd/proxyctl)
(cd "$root" && go run ./bench/replay -out "$work/data" -har 1,10000,1000 -stubs 1000 -mb-port "$MBI")

declare -A port_of pid_of count_of
# start_replay NAME HAR_COUNT [FLAGS...]: proxyctl replay of items-N.har,
# on its own store (never a default file in the user's home: XDG_DATA_HOME
# points into the work dir too).
start_replay() {
	local name=$1 n=$2 store=$STORE
	shift 2
	port_of[$name]=$(free_port)
	count_of[$name]=$n
	if [[ $store == bolt ]]; then store=bolt:$work/$name.db; fi
	XDG_DATA_HOME=$work/xdg "$work/proxyctl" replay "$work/data/items-$n.har" \
		--listen "127.0.0.1:${port_of[$name]}" --store "$store" \
		--admin-listen off --log-level warn "$@" 2>"$work/logs/$name.log" &
	pid_of[$name]=$!
	pids+=($!)
}

# wait_url URL SECONDS: until URL answers 200.
wait_url() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "bench: $1 not ready after $2 s" >&2
	return 1
}

scale=(); peers=()
if has_part scale; then
	start_replay r1-off 1 --capture=false
	start_replay r10k-off 10000 --capture=false
	start_replay r1-on 1
	start_replay r10k-on 10000
	scale=(r1-off r10k-off r1-on r10k-on)
fi
if has_part peers; then
	start_replay p-off 1000 --capture=false
	start_replay p-on 1000
	count_of[wiremock]=1000; port_of[wiremock]=$WM
	count_of[mountebank]=1000; port_of[mountebank]=$MBI
	jar=$(echo "$rdir"/node_modules/wiremock/build/wiremock-standalone-*.jar)
	# shellcheck disable=SC2086
	java $WIREMOCK_JAVA_OPTS -jar "$jar" --port "$WM" --bind-address 127.0.0.1 \
		--root-dir "$work/data/wiremock" --disable-banner --no-request-journal \
		--disable-request-logging --use-chunked-encoding never >"$work/logs/wiremock.log" 2>&1 &
	pid_of[wiremock]=$!
	pids+=($!)
	"$rdir/node_modules/.bin/mb" start --host 127.0.0.1 --port "$MB" --localOnly \
		--pidfile "$work/mb.pid" --logfile "$work/logs/mb.log" --loglevel warn >/dev/null 2>&1 &
	pid_of[mountebank]=$!
	pids+=($!)
	peers=(p-off p-on wiremock mountebank)
	wait_url "http://127.0.0.1:$MB/imposters" 30
	curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' \
		--data-binary @"$work/data/imposter.json" "http://127.0.0.1:$MB/imposters"
	wait_url "http://127.0.0.1:$WM/__admin/health" 60
	stubs=$(curl -fsS "http://127.0.0.1:$WM/__admin/mappings?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["meta"]["total"])')
	[[ $stubs == 1000 ]] || { echo "bench: WireMock loaded $stubs mappings, want 1000" >&2; exit 1; }
fi
servers=("${scale[@]}" "${peers[@]}")

# Every server answers the last and a middle path with the generated body,
# and a path it does not have with 404 (wrk counts non-2xx, checked below).
for s in "${servers[@]}"; do
	base="http://127.0.0.1:${port_of[$s]}"
	wait_url "$base/item/0" 30
	curl -fsS -o /dev/null "$base/item/$((count_of[$s] - 1))"
	if ((count_of[$s] > 7)); then
		curl -fsS "$base/item/7" | cmp -s - "$work/data/item-7.json" ||
			{ echo "bench: $s: /item/7 is not the generated body" >&2; exit 1; }
	fi
	code=$(curl -sS -o /dev/null -w '%{http_code}' "$base/item/99999999")
	[[ $code == 404 ]] || { echo "bench: $s: a path it does not have got $code, want 404" >&2; exit 1; }
done
# Loopback only: no process of ours listens anywhere else.
ours=$(IFS='|'; echo "${pids[*]}")
if bad=$(ss -Hltnp | grep -E "pid=($ours)," | awk '$4 !~ /^(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]):/' | grep .); then
	echo "bench: listening beyond loopback:" >&2
	echo "$bad" >&2
	exit 1
fi

# run_wrk SERVER DURATION -> "req/s p99_ms non2xx socket_errors"
run_wrk() {
	local out rps p99 non2xx errs
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$2" --latency -s "$rdir/paths.lua" \
		"http://127.0.0.1:${port_of[$1]}" -- "${count_of[$1]}")
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' <<<"$out")
	non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
	errs=$(awk '/Socket errors/ {gsub(",", ""); print $4+$6+$8+$10}' <<<"$out")
	echo "${rps:-0} ${p99:-0} ${non2xx:-0} ${errs:-0}"
}
# cpu_ticks PID: the process's user+system CPU time, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
declare -A busy_after
# settle SERVER: wait (60 s at most) until SERVER's process uses under 10%
# of a core over half a second; keep the longest wait per server.
settle() {
	local pid=${pid_of[$1]} a b i t0 dt
	t0=$(date +%s.%N)
	a=$(cpu_ticks "$pid")
	for ((i = 0; i < 120; i++)); do
		sleep 0.5
		b=$(cpu_ticks "$pid")
		((b - a < $(getconf CLK_TCK) / 20)) && break
		a=$b
	done
	dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
	busy_after[$1]=$(awk -v a="${busy_after[$1]:-0}" -v b="$dt" 'BEGIN {print (b > a ? b : a)}')
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }

echo "# replay bench: wrk -t$THREADS -c$CONNS -d$DURATION (warm-up $WARMUP per server), 1 KB JSON bodies, $(nproc) cores, $(date -u +%FT%TZ)"
echo "# proxyctl $(cd "$root" && git describe --always --dirty 2>/dev/null || echo '?') --store $STORE; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $(java -version 2>&1 | head -1), WireMock JVM: $WIREMOCK_JAVA_OPTS; node $(node --version)"
for s in "${servers[@]}"; do
	run_wrk "$s" "$WARMUP" >/dev/null
	settle "$s"
done

declare -A rps_all p99_all
# measure ROUND SERVERS...: one wrk run each (reversed in even rounds),
# recorded in rps_all/p99_all as "ROUND:SERVER".
measure() {
	local r=$1 s order rps p99 bad errs
	shift
	order=("$@")
	if ((r % 2 == 0)); then
		order=()
		for ((i = $#; i >= 1; i--)); do order+=("${!i}"); done
	fi
	for s in "${order[@]}"; do
		read -r rps p99 bad errs < <(run_wrk "$s" "$DURATION")
		if [[ $bad != 0 ]]; then
			echo "bench: $s answered $bad non-2xx responses in round $r: numbers are not valid" >&2
			exit 1
		fi
		((errs == 0)) || echo "bench: $s: $errs socket errors (timeouts included) in round $r" >&2
		rps_all[$r:$s]=$rps
		p99_all[$r:$s]=$p99
		settle "$s"
	done
}
# medcol ARRAY SERVER: the median over the rounds of ARRAY (rps_all or
# p99_all) for SERVER.
medcol() {
	local -n arr=$1
	local r vals=()
	for r in $(seq "$ROUNDS"); do vals+=("${arr[$r:$2]}"); done
	median "${vals[@]}"
}
verdict() { awk -v v="$1" -v t="$2" -v dir="$3" 'BEGIN {ok = (dir == "ge" ? v >= t : v < t); print (ok ? "met" : "NOT met")}'; }

if ((${#scale[@]})); then
	echo
	echo "## scale: 1 exchange vs 10,000 (req/s, p99 ms)"
	printf '%-5s | %9s %9s %6s | %9s %9s %6s | %7s %7s %7s %7s\n' round 1-off 10k-off 10k/1 1-on 10k-on 10k/1 p99-1o p99-10o p99-1n p99-10n
	for r in $(seq "$ROUNDS"); do
		measure "$r" "${scale[@]}"
		printf '%-5s | %9.0f %9.0f %5sx | %9.0f %9.0f %5sx | %7.2f %7.2f %7.2f %7.2f\n' "$r" \
			"${rps_all[$r:r1-off]}" "${rps_all[$r:r10k-off]}" "$(ratio "${rps_all[$r:r10k-off]}" "${rps_all[$r:r1-off]}")" \
			"${rps_all[$r:r1-on]}" "${rps_all[$r:r10k-on]}" "$(ratio "${rps_all[$r:r10k-on]}" "${rps_all[$r:r1-on]}")" \
			"${p99_all[$r:r1-off]}" "${p99_all[$r:r10k-off]}" "${p99_all[$r:r1-on]}" "${p99_all[$r:r10k-on]}"
	done
	for c in off on; do
		rs=()
		for r in $(seq "$ROUNDS"); do rs+=("$(ratio "${rps_all[$r:r10k-$c]}" "${rps_all[$r:r1-$c]}")"); done
		m=$(median "${rs[@]}")
		printf 'capture %-3s median: 1 exchange %.0f req/s p99 %.2f ms, 10,000 exchanges %.0f req/s p99 %.2f ms; 10k/1 %sx (target >= 0.9x: %s)\n' "$c" \
			"$(medcol rps_all r1-$c)" "$(medcol p99_all r1-$c)" \
			"$(medcol rps_all r10k-$c)" "$(medcol p99_all r10k-$c)" "$m" "$(verdict "$m" 0.9 ge)"
	done
	echo "# load after scale: $(cut -d' ' -f1-3 /proc/loadavg)"
fi

if ((${#peers[@]})); then
	echo
	echo "## peers: the same 1,000 exchanges (req/s, p99 ms)"
	printf '%-5s | %9s %9s %9s %9s | %7s %7s %7s %7s\n' round pxc-off pxc-on wiremock mountebnk p99-off p99-on p99-wm p99-mb
	for r in $(seq "$ROUNDS"); do
		measure "$r" "${peers[@]}"
		printf '%-5s | %9.0f %9.0f %9.0f %9.0f | %7.2f %7.2f %7.2f %7.2f\n' "$r" \
			"${rps_all[$r:p-off]}" "${rps_all[$r:p-on]}" "${rps_all[$r:wiremock]}" "${rps_all[$r:mountebank]}" \
			"${p99_all[$r:p-off]}" "${p99_all[$r:p-on]}" "${p99_all[$r:wiremock]}" "${p99_all[$r:mountebank]}"
	done
	for s in "${peers[@]}"; do
		printf 'median %-10s %8.0f req/s, p99 %8.2f ms\n' "$s" "$(medcol rps_all "$s")" "$(medcol p99_all "$s")"
	done
	for c in off on; do
		for peer in wiremock:3 mountebank:10; do
			name=${peer%:*} target=${peer#*:}
			rs=(); ps99=()
			for r in $(seq "$ROUNDS"); do
				rs+=("$(ratio "${rps_all[$r:p-$c]}" "${rps_all[$r:$name]}")")
				ps99+=("$(ratio "${p99_all[$r:p-$c]}" "${p99_all[$r:$name]}")")
			done
			m=$(median "${rs[@]}"); mp=$(median "${ps99[@]}")
			printf 'proxyctl (capture %-3s) / %-10s median: req/s %6sx (target >= %sx: %s), p99 %sx (target < 1x: %s)\n' \
				"$c" "$name" "$m" "$target" "$(verdict "$m" "$target" ge)" "$mp" "$(verdict "$mp" 1 lt)"
		done
	done
	echo "# load after peers: $(cut -d' ' -f1-3 /proc/loadavg)"
fi

# How long each server stayed busy after a run (the longest; 0.5 s means
# at once), resident memory, then a clean stop of each proxyctl, which
# prints its hits, misses and exchanges never used (all paths were asked
# for: 0) and whatever capture could not store.
echo
for s in "${servers[@]}"; do
	printf '%-10s busy after a run up to %5s s, RSS %7s KiB\n' "$s" "${busy_after[$s]}" \
		"$(awk '/^VmRSS:/ {print $2}' "/proc/${pid_of[$s]}/status")"
done
for s in "${servers[@]}"; do
	[[ $s == wiremock || $s == mountebank ]] && continue
	kill "${pid_of[$s]}"
	for _ in $(seq 50); do alive "${pid_of[$s]}" || break; sleep 0.1; done
	echo "$s: $(grep -h 'proxyctl: replay:' "$work/logs/$s.log" || echo 'no stats line')"
	grep -h 'proxyctl: capture:' "$work/logs/$s.log" | sed "s/^/$s: /" || true
done
