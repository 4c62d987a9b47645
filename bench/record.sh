#!/usr/bin/env bash
# The cost of recording. Each round runs wrk (1 KB static file behind nginx,
# loopback only) against, alternately:
#   forward  proxyctl forward http --capture=false
#   record   proxyctl record http --tape FILE   (tape + store + live stream)
# and prints req/s and the ratio record/forward of the round (the machine is
# noisy: compare ratios within a round). Then, with RSS=1, it drives record
# to 100k and then 1M exchanges and prints its resident memory at both.
#
# Needs nginx and wrk (bench/setup.sh). Environment: ROUNDS (5),
# DURATION (5s), CONNS (32), THREADS (1), RSS (1), STORE (memory; "bolt"
# for a fresh bolt file, the default kind of store).
set -euo pipefail

ROUNDS=${ROUNDS:-5}
STORE=${STORE:-memory}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
RSS=${RSS:-1}

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
UP=$(free_port); FWD=$(free_port); REC=$(free_port)

static_nginx "$UP"

(cd "$root" && go build -o "$work/proxyctl" ./cmd/proxyctl)
"$work/proxyctl" forward http --store memory --target "http://127.0.0.1:$UP" --listen "127.0.0.1:$FWD" \
	--capture=false --admin-listen off --log-level warn 2>"$work/logs/forward.log" &
pids+=($!)
store_arg() { if [[ "$STORE" == bolt ]]; then echo "bolt:$work/$1.db"; else echo "$STORE"; fi; }
"$work/proxyctl" record http --store "$(store_arg rec)" --target "http://127.0.0.1:$UP" --listen "127.0.0.1:$REC" \
	--tape "$work/bench.tape" --admin-listen off --log-level warn 2>"$work/logs/record.log" &
rec_pid=$!
pids+=("$rec_pid")

wait_http "$UP" "$FWD" "$REC"

# run_wrk PORT DURATION -> "reqs/s requests non2xx"
run_wrk() {
	local out
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$2" "http://127.0.0.1:$1/1k.txt")
	local rps total non2xx
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	total=$(awk '/requests in/ {print $1}' <<<"$out")
	non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
	echo "${rps:-0} ${total:-0} ${non2xx:-0}"
}

echo "# wrk -t$THREADS -c$CONNS -d$DURATION, 1 KB static file, record --store $STORE, $(nproc) cores, $(date -u +%FT%TZ)"
printf '%-5s %10s %10s | %6s\n' round forward record ratio
ratios=()
for r in $(seq "$ROUNDS"); do
	read -r f_rps _ f_bad < <(run_wrk "$FWD" "$DURATION")
	read -r r_rps _ r_bad < <(run_wrk "$REC" "$DURATION")
	if [[ "$f_bad$r_bad" != "00" ]]; then
		echo "bench: non-2xx responses (forward $f_bad, record $r_bad): numbers are not valid" >&2
		exit 1
	fi
	ratio=$(awk -v a="$r_rps" -v b="$f_rps" 'BEGIN {printf "%.2f", a/b}')
	ratios+=("$ratio")
	printf '%-5s %10.0f %10.0f | %5sx\n' "$r" "$f_rps" "$r_rps" "$ratio"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median record/forward(--capture=false): $(median "${ratios[@]}")x"

if [[ "$RSS" == 1 ]]; then
	# A fresh recorder, driven to 100k and then 1M exchanges.
	kill "$rec_pid"
	RSSP=$(free_port)
	"$work/proxyctl" record http --store "$(store_arg rss)" --target "http://127.0.0.1:$UP" --listen "127.0.0.1:$RSSP" \
		--tape "$work/rss.tape" --admin-listen off --log-level warn 2>"$work/logs/rss.log" &
	rss_pid=$!
	pids+=("$rss_pid")
	wait_http "$RSSP"
	rss() { awk '/^VmRSS:/ {print $2}' "/proc/$rss_pid/status"; }
	sent=0
	drive_to() {
		while ((sent < $1)); do
			read -r _ total _ < <(run_wrk "$RSSP" 3s)
			sent=$((sent + total))
		done
	}
	drive_to 100000
	sleep 2
	at100k=$(rss); n100k=$sent
	drive_to 1000000
	sleep 2
	at1m=$(rss); n1m=$sent
	growth=$(awk -v a="$at1m" -v b="$at100k" 'BEGIN {printf "%+.1f%%", (a-b)*100/b}')
	echo "record RSS: ${at100k} KiB after $n100k exchanges, ${at1m} KiB after $n1m exchanges ($growth); tape $(du -h "$work/rss.tape" | cut -f1)"
fi
