#!/usr/bin/env bash
# bench-kafka.sh BIN: drain 1,000,000 records of 100 bytes from a local
# kfake cluster to a file, with batchpipe --until-end and with
# kcat -C -e -o beginning, from the same cluster in the same run. Prints
# records/s, the ratio of the times (batchpipe / kcat; target <= 1.0) and
# batchpipe's peak RSS (target <= 128 MB). Each tool runs ROUNDS times
# (default 5), alternating; the best time of each counts.
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh" "$@"

records=${RECORDS:-1000000}
size=${SIZE:-100}
rounds=${ROUNDS:-5}

echo "== kafka: drain $records records of $size bytes (batchpipe --until-end vs kcat -C -e)"

have_kcat=1
if ! command -v kcat >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "kcat missing: installing it with apt-get"
		apt-get install -y kcat >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y kcat >/dev/null 2>&1; } || true
	fi
	command -v kcat >/dev/null || { have_kcat=0; echo "kcat not available (not root, or no package): kcat comparison skipped"; }
fi
timer=
if [ -x /usr/bin/time ]; then
	timer=/usr/bin/time
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	echo "GNU time missing: installing it with apt-get"
	apt-get install -y time >/dev/null 2>&1 || true
	[ -x /usr/bin/time ] && timer=/usr/bin/time
fi
[ -n "$timer" ] || echo "GNU time not available: peak RSS not measured"

# The cluster, seeded by the dev helper, which says "ready" once seeded.
(cd "$root" && go build -o "$work/kafka-dev" ./tools/kafka-dev)
"$work/kafka-dev" -addr 127.0.0.1:0 -topic bench -partitions 4 -records "$records" -size "$size" 2>"$work/dev.log" &
dev_pid=$!
dev_ready 600
grep "produced" "$work/dev.log" | sed 's/^/   /'

# sub A B and lt A B: arithmetic on decimal seconds, with awk (bc may be
# missing).
best_bp= best_kcat= rss=0
for round in $(seq 1 "$rounds"); do
	rm -f "$work/bp.out"
	t0=$(now)
	if [ -n "$timer" ]; then
		$timer -f "%M" -o "$work/rss" "$bin" -q --kafka-brokers "$addr" --topic bench --until-end -n 10000 file "$work/bp.out"
		r=$(tail -1 "$work/rss")
		[ "$r" -gt "$rss" ] && rss=$r
	else
		"$bin" -q --kafka-brokers "$addr" --topic bench --until-end -n 10000 file "$work/bp.out"
	fi
	t=$(sub "$(now)" "$t0")
	n=$(wc -l <"$work/bp.out")
	[ "$n" -eq "$records" ] || { echo "batchpipe wrote $n records, want $records"; exit 1; }
	if [ -z "$best_bp" ] || lt "$t" "$best_bp"; then best_bp=$t; fi

	if [ "$have_kcat" = 1 ]; then
		rm -f "$work/kcat.out"
		t0=$(now)
		kcat -C -e -q -o beginning -b "$addr" -t bench >"$work/kcat.out"
		t=$(sub "$(now)" "$t0")
		n=$(wc -l <"$work/kcat.out")
		[ "$n" -eq "$records" ] || { echo "kcat wrote $n records, want $records"; exit 1; }
		if [ -z "$best_kcat" ] || lt "$t" "$best_kcat"; then best_kcat=$t; fi
	fi
done

rate() { awk -v n="$records" -v t="$1" 'BEGIN { printf "%d", n / t }'; }
printf "   batchpipe: %6.3f s  %8d records/s (best of %d)\n" "$best_bp" "$(rate "$best_bp")" "$rounds"
if [ "$have_kcat" = 1 ]; then
	printf "   kcat:      %6.3f s  %8d records/s\n" "$best_kcat" "$(rate "$best_kcat")"
	printf "   ratio batchpipe/kcat: %.2f (target <= 1.0)\n" "$(awk -v a="$best_bp" -v b="$best_kcat" 'BEGIN { print a / b }')"
fi
if [ -n "$timer" ]; then
	printf "   batchpipe peak RSS: %d MB (target <= 128 MB)\n" "$((rss / 1024))"
fi
