#!/usr/bin/env bash
# make bench: batchpipe against cat on the same 1 GB input, in the same run.
# Usage: testdata/bench.sh [BIN]   (default bin/batchpipe)
# BENCH_SIZE (bytes, default 1000000000) and BENCH_RUNS (default 3) scale it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-bin/batchpipe}
SIZE=${BENCH_SIZE:-1000000000}
RUNS=${BENCH_RUNS:-3}
dir=bench
mkdir -p "$dir"

if [ ! -x /usr/bin/time ]; then
	if [ "$(id -u)" = 0 ]; then
		echo "installing GNU time (for peak RSS)"
		(apt-get update -qq && apt-get install -y -qq time) >/dev/null
	else
		echo "GNU time is missing and this is not root: peak RSS is skipped"
	fi
fi

in=$dir/lines-$SIZE.txt
if [ ! -f "$in" ] || [ "$(stat -c %s "$in")" != "$SIZE" ]; then
	echo "generating $in: $SIZE bytes of 100-byte lines"
	# Not yes | head: under pipefail, yes's SIGPIPE would end the script.
	head -c "$SIZE" < <(yes "$(printf '%099d' 0)") >"$in"
fi
cat "$in" >/dev/null # into the page cache, so both read from memory
# The practical limit: a minimal Go program that reads, finds the lines
# and writes batches of 1000 (cat copies inside the kernel, which no
# program that looks at the lines can do).
go build -o "$dir/filebench" ./testdata/filebench

# seconds CMD...: wall time of one run of CMD (stdin from $in, stdout to $out).
now() { date +%s.%N; }
best() { sort -g | head -1; }

cat_times=() dd_times=() go_times=() bp_times=()
rss=
for _ in $(seq "$RUNS"); do
	rm -f "$dir/out"
	t0=$(now); cat "$in" >"$dir/out"; t1=$(now)
	cat_times+=("$(echo "$t1 - $t0" | bc -l)")
	# A copy through user space in writes the size of batchpipe's batches.
	rm -f "$dir/out"
	t0=$(now); dd if="$in" of="$dir/out" bs=100000 status=none; t1=$(now)
	dd_times+=("$(echo "$t1 - $t0" | bc -l)")
	rm -f "$dir/out"
	t0=$(now); "$dir/filebench" -n 1000 "$dir/out" <"$in"; t1=$(now)
	go_times+=("$(echo "$t1 - $t0" | bc -l)")
	cmp -s "$in" "$dir/out" || { echo "FAIL: filebench output differs from input"; exit 1; }
	rm -f "$dir/out"
	t0=$(now)
	if [ -x /usr/bin/time ]; then
		/usr/bin/time -f %M -o "$dir/rss" "$BIN" -q -n 1000 file "$dir/out" <"$in"
	else
		"$BIN" -q -n 1000 file "$dir/out" <"$in"
	fi
	t1=$(now)
	bp_times+=("$(echo "$t1 - $t0" | bc -l)")
	[ -f "$dir/rss" ] && rss=$(cat "$dir/rss")
	cmp -s "$in" "$dir/out" || { echo "FAIL: output differs from input"; exit 1; }
done
rm -f "$dir/out" "$dir/rss" "$dir/filebench"

c=$(printf '%s\n' "${cat_times[@]}" | best)
d=$(printf '%s\n' "${dd_times[@]}" | best)
g=$(printf '%s\n' "${go_times[@]}" | best)
b=$(printf '%s\n' "${bp_times[@]}" | best)
mb=$(echo "$SIZE / 1000000" | bc)
printf 'file sink, %s MB of 100-byte lines, -n 1000 (best of %s)\n' "$mb" "$RUNS"
printf '  cat        %6.3f s  %7.0f MB/s\n' "$c" "$(echo "$mb / $c" | bc -l)"
printf '  dd bs=100k %6.3f s  %7.0f MB/s\n' "$d" "$(echo "$mb / $d" | bc -l)"
printf '  minimal Go %6.3f s  %7.0f MB/s\n' "$g" "$(echo "$mb / $g" | bc -l)"
printf '  batchpipe  %6.3f s  %7.0f MB/s  %8.0f records/s\n' "$b" "$(echo "$mb / $b" | bc -l)" "$(echo "$SIZE / 100 / $b" | bc -l)"
printf '  ratio      %6.2f x cat (target <= 1.5), %.2f x dd, %.2f x minimal Go\n' \
	"$(echo "$b / $c" | bc -l)" "$(echo "$b / $d" | bc -l)" "$(echo "$b / $g" | bc -l)"
[ -n "$rss" ] && printf '  peak RSS   %6.1f MB (target <= 32)\n' "$(echo "$rss / 1024" | bc -l)"

for extra in testdata/bench-*.sh; do
	[ -f "$extra" ] && bash "$extra" "$BIN"
done
exit 0
