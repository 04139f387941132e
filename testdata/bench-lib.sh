# bench-lib.sh: what the bench-*.sh scripts share. Sourced with the
# script's arguments: . "$(dirname "$0")/bench-lib.sh" "$@"
# It sets $bin (the batchpipe to time, an absolute path), $root (the
# repository), $work (a directory removed at exit, with the kafka-dev
# started into $dev_pid killed).

bin=${1:?usage: $(basename "$0") BIN}
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
dev_pid=
cleanup() {
	if [ -n "$dev_pid" ]; then kill "$dev_pid" 2>/dev/null || true; wait "$dev_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# dev_ready TENTHS: waits up to TENTHS tenths of a second for the kafka-dev
# started in the background ($dev_pid, logging to $work/dev.log) to be
# ready, and sets $addr to where it listens; exits if it dies first.
dev_ready() {
	for _ in $(seq 1 "$1"); do
		grep -q "kafka-dev: ready" "$work/dev.log" && break
		kill -0 "$dev_pid" 2>/dev/null || { cat "$work/dev.log"; exit 1; }
		sleep 0.1
	done
	grep -q "kafka-dev: ready" "$work/dev.log" || { echo "kafka-dev did not get ready"; cat "$work/dev.log"; exit 1; }
	addr=$(grep -o 'listening on [0-9.:]*' "$work/dev.log" | awk '{print $3}')
}
