# Shared by the bench scripts (sourced): tools check, work dir with cleanup,
# free loopback ports, the 1 KB static file, wait_http.
for tool in nginx wrk go; do
	command -v "$tool" >/dev/null || { echo "bench: $tool not found (run bench/setup.sh)" >&2; exit 1; }
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
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
