#!/usr/bin/env bash
# make chaos: backpressure and memory under a slow sink, asserting.
# A command that takes 1 s per batch is fed 2 GB; batchpipe must stop
# reading rather than buffer, and its peak RSS must stay within the bound
# the README documents: 15 MiB for the program, runtime and read buffers, plus twice
# ((-j + 2) x --max-bytes + the largest record), twice for the garbage
# collector's headroom.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-bin/batchpipe}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

if [ ! -x /usr/bin/time ]; then
	if [ "$(id -u)" = 0 ]; then
		(apt-get update -qq && apt-get install -y -qq time) >/dev/null
	else
		echo "chaos: GNU time is needed for peak RSS"; exit 1
	fi
fi

fail=0
check() { # check DESCRIPTION CONDITION...
	local what=$1; shift
	if "$@"; then echo "  ok    $what"; else echo "  FAIL  $what"; fail=1; fi
}

j=2 maxbytes=$((4 << 20))
echo "slow sink: 2 GB offered, 1 s per batch of 4 MiB, -j $j, 8 s"
# The generator writes into a FIFO, so it blocks when batchpipe stops reading.
mkfifo "$dir/fifo-in"
( yes "$(printf '%099d' 0)" | head -c 2000000000 >"$dir/fifo-in" ) &
gen=$!
/usr/bin/time -f %M -o "$dir/rss" "$BIN" -b 4MiB -n 1000000 -j $j --stats-file "$dir/stats.json" \
	exec -- sh -c 'cat >/dev/null; sleep 1' <"$dir/fifo-in" 2>"$dir/stderr" &
bp=$!
sleep 8
pid=$(pgrep -P $bp -x batchpipe || echo $bp)
kill -USR2 "$pid"
sleep 0.5
field() { grep -o "\"$1\": [0-9]*" "$dir/stats.json" | grep -o '[0-9]*$'; }
read_bytes=$(field bytes_read)
delivered_bytes=$(field bytes_delivered)
kill -TERM "$pid"
wait $bp && code=0 || code=$?
kill $gen 2>/dev/null || true
wait $gen 2>/dev/null || true
rss_kb=$(tail -n 1 "$dir/rss")
bound_kb=$(( ((15 << 20) + 2 * ((j + 2) * maxbytes + 100)) / 1024 ))
held=$((read_bytes - delivered_bytes))
echo "  after 8 s: read $((read_bytes / 1000000)) MB of the 2000 MB offered, delivered $((delivered_bytes / 1000000)) MB"
echo "  read but not yet delivered: $((held / 1024)) KiB; peak RSS $((rss_kb / 1024)) MiB (bound $((bound_kb / 1024)) MiB)"
# What is read and not delivered sits in at most -j + 2 batches, plus the
# source's three 256 KiB read buffers (1 MiB is a generous margin).
check "reading paced by the sink: read - delivered <= (j+2) x max-bytes + 1 MiB" [ "$held" -le $(( (j + 2) * maxbytes + (1 << 20) )) ]
check "peak RSS <= 15 MiB + 2 x (j+2) x max-bytes" [ "$rss_kb" -le "$bound_kb" ]
check "exit 143 after SIGTERM, everything read delivered" [ "$code" = 143 ]
check "summary says 0 undelivered" grep -q ', 0 undelivered,' "$dir/stderr"

exit $fail
