#!/usr/bin/env bash
# bench-kafka-txn.sh BIN: the cost of --exactly-once from Kafka to Kafka.
# Copies a topic of 1,000,000 records of 100 bytes (4 partitions) to
# another, with batchpipe --group ... kafka and with batchpipe --group
# --exactly-once ... kafka (a transaction per batch, with the source
# offsets), against the same local kfake cluster in the same run, -n 1000
# -j 4 both. Prints records/s and the ratio of the times. Each runs ROUNDS
# times (default 3), alternating; the best time of each counts. The copies
# are counted with a read_committed reader (kcat, if there).
#
# BROKERS=host:port runs against that cluster instead, whose topics must
# exist: ${PREFIX}src holding the records (4 partitions), and
# ${PREFIX}plain1, ${PREFIX}txn1, ... (one of each per round) empty.
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh" "$@"

records=${RECORDS:-1000000}
size=${SIZE:-100}
rounds=${ROUNDS:-3}
pre=${PREFIX:-}

echo "== kafka -> kafka: $records records of $size bytes, without and with --exactly-once"
if [ -n "${BROKERS:-}" ]; then
	addr=$BROKERS
else
	topics=src
	for r in $(seq 1 "$rounds"); do topics="$topics,plain$r,txn$r"; done
	(cd "$root" && go build -o "$work/kafka-dev" ./tools/kafka-dev)
	"$work/kafka-dev" -addr 127.0.0.1:0 -topic "$topics" -partitions 4 -records "$records" -size "$size" 2>"$work/dev.log" &
	dev_pid=$!
	dev_ready 600
fi

check() {
	command -v kcat >/dev/null || return 0
	local n
	n=$(kcat -C -e -q -b "$addr" -t "$1" -X isolation.level=read_committed -f '\n' | wc -l)
	[ "$n" -eq "$records" ] || { echo "$1 holds $n records, want $records"; exit 1; }
}
# timed VAR CMD...: run CMD, keep the best time in VAR.
timed() {
	local var=$1 t0 t
	shift
	t0=$(now)
	"$@"
	t=$(sub "$(now)" "$t0")
	if [ -z "${!var}" ] || lt "$t" "${!var}"; then printf -v "$var" %s "$t"; fi
}
plain= txn=
for r in $(seq 1 "$rounds"); do
	timed plain "$bin" -q --kafka-brokers "$addr" --topic "${pre}src" --group "${pre}plain$r" --until-end -n 1000 -j 4 kafka "${pre}plain$r"
	check "${pre}plain$r"
	timed txn "$bin" -q --kafka-brokers "$addr" --topic "${pre}src" --group "${pre}txn$r" --exactly-once --until-end -n 1000 -j 4 kafka "${pre}txn$r"
	check "${pre}txn$r"
done

rate() { awk -v n="$records" -v t="$1" 'BEGIN { printf "%d", n / t }'; }
printf "   without --exactly-once %6.3f s %8d records/s\n" "$plain" "$(rate "$plain")"
printf "   with --exactly-once    %6.3f s %8d records/s | ratio %s x the time without\n" "$txn" "$(rate "$txn")" "$(ratio "$txn" "$plain")"
exit 0
