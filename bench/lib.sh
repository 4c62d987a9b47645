# Shared by the bench scripts (sourced): tools check, work dir with cleanup,
# free loopback ports, the 1 KB static file, wait_http. A script that needs
# other tools sets bench_tools before sourcing it.
for tool in ${bench_tools:-nginx wrk go}; do
	command -v "$tool" >/dev/null || { echo "bench: $tool not found (run bench/setup.sh)" >&2; exit 1; }
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
pids=()
# alive PID: running (not gone, not a zombie waiting to be reaped).
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $s != Z* ]]; }
# cleanup stops every process in pids: SIGTERM, then SIGKILL for whatever
# still runs after 5 s, so the script always ends.
cleanup() {
	local p left
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for _ in $(seq 50); do
		left=0
		for p in "${pids[@]}"; do alive "$p" && left=1; done
		((left)) || break
		sleep 0.1
	done
	for p in "${pids[@]}"; do
		if alive "$p"; then kill -9 "$p" 2>/dev/null || true; fi
	done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

mkdir -p "$work/html" "$work/logs"
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 >"$work/html/1k.txt"

# wait_http PORT...: until each serves /1k.txt (5 s at most each).
wait_http() {
	for port in "$@"; do
		for _ in $(seq 50); do
			curl -fsS -o /dev/null "http://127.0.0.1:$port/1k.txt" 2>/dev/null && break
			sleep 0.1
		done
	done
}

# static_nginx PORT [PROXY_PORT]: nginx (one worker) serving the work dir's
# html on 127.0.0.1:PORT and, with PROXY_PORT, also a keep-alive reverse
# proxy in front of it on 127.0.0.1:PROXY_PORT (the same worker), stopped on
# exit.
static_nginx() {
	local proxy=""
	if [[ -n "${2:-}" ]]; then
		proxy="upstream static { server 127.0.0.1:$1; keepalive 64; }
	server {
		listen 127.0.0.1:$2;
		location / {
			proxy_pass http://static;
			proxy_http_version 1.1;
			proxy_set_header Connection \"\";
		}
	}"
	fi
	cat >"$work/nginx.conf" <<CONF
user root;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/logs/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	server { listen 127.0.0.1:$1; root $work/html; }
	$proxy
}
CONF
	nginx -p "$work" -c "$work/nginx.conf" -g 'daemon off;' &
	pids+=($!)
}
