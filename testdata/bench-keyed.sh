#!/usr/bin/env bash
# bench-keyed.sh BIN: batches per key and exactly once, each against the
# same run without, in one run:
#   1. stdin, KEY_RECORDS (3,000,000) records of 100 bytes over 10 keys,
#      -n 1000, to a file, at -j 1 and at -j 4: --partition-by '{field:1}'
#      against no key (target >= 0.7x the throughput), each key's records
#      checked to be in input order (and the output without a key to be
#      the input);
#   2. 100,000 distinct keys with --max-open-keys 100: peak RSS against
#      the bound the README states;
#   3. Kafka (local kfake), drain 1,000,000 records over 4 partitions as a
#      group, -n 1000: --exactly-once against without (target >= 0.8x),
#      with the offset commits each made.
# Each contender runs ROUNDS times (default 3; KEY_ROUNDS, default 9, for
# the first), alternating; the best counts.
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh" "$@"

records=${RECORDS:-1000000}
key_records=${KEY_RECORDS:-3000000}
rounds=${ROUNDS:-3}
key_rounds=${KEY_ROUNDS:-9}

rate() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / t }'; }
timer=
[ -x /usr/bin/time ] && timer=/usr/bin/time

# time_run OUTVAR CMD...: runs CMD, sets OUTVAR to its wall time and
# $peak to its peak RSS in KB (0 without GNU time).
peak=0
time_run() {
	local var=$1
	shift
	local t0
	t0=$(now)
	if [ -n "$timer" ]; then
		$timer -f "%M" -o "$work/rss" "$@"
		peak=$(tail -1 "$work/rss")
	else
		"$@"
	fi
	printf -v "$var" '%s' "$(sub "$(now)" "$t0")"
}

# in_key_order FILE: each key's records (KEY<TAB>NUMBER) in increasing order.
in_key_order() { awk -F'\t' '{ if (($2 "") <= (last[$1] "")) exit 1; last[$1] = $2 }' "$1"; }

echo "== keys: $key_records records of 100 bytes over 10 keys, -n 1000, to a file"
awk -v n="$key_records" 'BEGIN { for (i = 0; i < n; i++) printf "k%d\t%090d\n", i % 10, i }' >"$work/keys10.txt"
awk 'BEGIN { pad = sprintf("%085d", 0); for (i = 0; i < 100000; i++) printf "key%06d\t%s\n", i, pad }' >"$work/keys100k.txt"
for j in 1 4; do
	best_plain= best_keyed=
	for _ in $(seq 1 "$key_rounds"); do
		rm -f "$work/out"
		time_run t "$bin" -q -n 1000 -j "$j" file "$work/out" <"$work/keys10.txt"
		cmp -s "$work/out" "$work/keys10.txt" || { echo "FAIL: -j $j: output differs from input"; exit 1; }
		if [ -z "$best_plain" ] || lt "$t" "$best_plain"; then best_plain=$t; fi
		rm -f "$work/out"
		time_run t "$bin" -q -n 1000 -j "$j" --partition-by '{field:1}' file "$work/out" <"$work/keys10.txt"
		[ "$(sort "$work/out" | cksum)" = "$(sort "$work/keys10.txt" | cksum)" ] || { echo "FAIL: -j $j: keyed output is not the input"; exit 1; }
		in_key_order "$work/out" || { echo "FAIL: -j $j: a key's records out of order"; exit 1; }
		if [ -z "$best_keyed" ] || lt "$t" "$best_keyed"; then best_keyed=$t; fi
	done
	printf '  -j %d no key           %6.3f s  %9s records/s\n' "$j" "$best_plain" "$(rate "$key_records" "$best_plain")"
	printf '  -j %d --partition-by   %6.3f s  %9s records/s  %sx the throughput (target >= 0.7), in order\n' \
		"$j" "$best_keyed" "$(rate "$key_records" "$best_keyed")" "$(ratio "$best_plain" "$best_keyed")"
done

echo "== 100,000 distinct keys, --max-open-keys 100, -n 1000 (default -b 1MiB, -j 1, --max-buffered-bytes 64MiB)"
rm -f "$work/out"
time_run t "$bin" -q -n 1000 --partition-by '{field:1}' --max-open-keys 100 file "$work/out" <"$work/keys100k.txt"
[ "$(wc -l <"$work/out")" -eq 100000 ] || { echo "FAIL: records lost"; exit 1; }
if [ -n "$timer" ]; then
	# README: open batches hold at most 3x --max-buffered-bytes of buffers,
	# the recycled ones at most 2x, the queue and deliveries (-j+1) x 2 x -b:
	# 20 MiB + 5 x 64 MiB + 4 x 3 x 1 MiB.
	printf '  %6.3f s, peak RSS %.1f MB (bound stated in the README: 352 MB)\n' "$t" "$(awk -v k="$peak" 'BEGIN { print k / 1024 }')"
else
	printf '  %6.3f s (GNU time missing: peak RSS not measured)\n' "$t"
fi

echo "== exactly once: drain $records records of 100 bytes over 4 partitions as a group, -n 1000"
(cd "$root" && go build -o "$work/kafka-dev" ./tools/kafka-dev)
"$work/kafka-dev" -addr 127.0.0.1:0 -topic bench -partitions 4 -records "$records" -size 100 2>"$work/dev.log" &
dev_pid=$!
dev_ready 600
best_plain= best_eo= commits=
for round in $(seq 1 "$rounds"); do
	for mode in plain eo; do
		rm -f "$work/out"
		flags=()
		[ "$mode" = eo ] && flags=(--exactly-once)
		time_run t "$bin" -q --kafka-brokers "$addr" --topic bench --group "bench-$mode-$round" --until-end -n 1000 -t 0 "${flags[@]}" \
			--stats-file "$work/stats.json" file "$work/out" 2>"$work/bp.log"
		[ "$(wc -l <"$work/out")" -eq "$records" ] || { echo "FAIL: $mode wrote $(wc -l <"$work/out") records"; tail "$work/bp.log"; exit 1; }
		if [ "$mode" = eo ]; then
			commits=$(grep -o '"batches": *[0-9]*' "$work/stats.json" | grep -o '[0-9]*$')
			if [ -z "$best_eo" ] || lt "$t" "$best_eo"; then best_eo=$t; fi
		elif [ -z "$best_plain" ] || lt "$t" "$best_plain"; then best_plain=$t; fi
	done
done
printf '  group drain      %6.3f s  %9s records/s\n' "$best_plain" "$(rate "$records" "$best_plain")"
printf '  --exactly-once   %6.3f s  %9s records/s  %sx the throughput (target >= 0.8); %s batches, one offset commit each before delivery\n' \
	"$best_eo" "$(rate "$records" "$best_eo")" "$(ratio "$best_plain" "$best_eo")" "$commits"
