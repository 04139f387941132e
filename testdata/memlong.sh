#!/usr/bin/env bash
# make memlong: the memory bound over a long run (60 s each by default), for
# the exec sink and for the http sink with a slow server. A generator offers
# far more than the sink takes, so batchpipe runs with -j batches in
# delivery, one queued and one filling, for the whole run; its peak RSS
# must stay within the bound the README states:
#   15 MiB + 2 x (-j + 2) x --max-bytes (+ 4 x the largest record: 100 B here)
# Usage: testdata/memlong.sh [BIN] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-bin/batchpipe}
secs=${2:-60}
dir=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT
if [ ! -x /usr/bin/time ]; then
	echo "memlong: GNU time is needed for peak RSS"; exit 1
fi
go build -o "$dir/httpbench" ./testdata/httpbench

j=2 maxbytes=$((4 << 20))
bound_kb=$(( ((15 << 20) + 2 * ((j + 2) * maxbytes + 4 * 100)) / 1024 ))
fail=0

# measure NAME SINK...: feed 100-byte lines for $secs s, then SIGTERM.
measure() {
	local name=$1; shift
	mkfifo "$dir/in-$name"
	( yes "$(printf '%099d' 0)" >"$dir/in-$name" 2>/dev/null ) &
	local gen=$!
	pids+=("$gen")
	/usr/bin/time -f %M -o "$dir/rss-$name" "$BIN" -q -b 4MiB -n 1000000 -j $j "$@" \
		<"$dir/in-$name" 2>"$dir/err-$name" >/dev/null &
	local bp=$!
	sleep "$secs"
	kill -TERM "$(pgrep -P $bp -x batchpipe || echo $bp)"
	local code=0
	wait $bp || code=$?
	kill $gen 2>/dev/null || true
	wait $gen 2>/dev/null || true
	local rss_kb
	rss_kb=$(tail -n 1 "$dir/rss-$name")
	if [ "$rss_kb" -le "$bound_kb" ] && [ "$code" = 143 ]; then
		echo "  ok    $name: ${secs} s, peak RSS $((rss_kb / 1024)) MiB (bound $((bound_kb / 1024)) MiB), exit $code"
	else
		echo "  FAIL  $name: ${secs} s, peak RSS $((rss_kb / 1024)) MiB (bound $((bound_kb / 1024)) MiB), exit $code"
		cat "$dir/err-$name"
		fail=1
	fi
}

echo "memory over $secs s: -j $j, -b 4MiB, 100-byte lines, input always waiting"
measure exec exec -- sh -c 'cat >/dev/null; sleep 0.25'
"$dir/httpbench" serve -delay 250ms >"$dir/url" &
pids+=("$!")
until [ -s "$dir/url" ]; do sleep 0.1; done
measure http-slow http "$(cat "$dir/url")"
exit $fail
