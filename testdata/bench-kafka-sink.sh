#!/usr/bin/env bash
# bench-kafka-sink.sh BIN: produce 1,000,000 records of 100 bytes to one
# broker, from stdin with batchpipe ... kafka and with kcat -P, and copy
# them topic to topic with batchpipe --topic ... kafka and with
# kcat -C -e | kcat -P, against the same broker in the same run. Both
# producers use acks=all, idempotence, batches of 1000 records and their
# default requests in flight (five each); batchpipe -j 1, one, is shown
# too. Prints records/s, the ratios of the times (targets: <= 1.0 from
# stdin, <= 1.2 topic to topic) and batchpipe's peak RSS (target <= 128
# MB). Each runs ROUNDS times (default 3), alternating; the best time of
# each counts.
#
# The broker: a real Apache Kafka (KAFKA_VERSION, default 4.1.1, single
# node on loopback) when Java is there, started around the script by
# tools/kafka-real, which fetches it with Maven once; the one of the env
# file BATCHPIPE_TEST_KAFKA names, if set; else, or with KAFKA_BENCH=kfake,
# kfake in tools/kafka-dev. The output says which.
#
# kcat comes from Debian's package (apt-get install kcat); as root the
# script installs it.
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh" "$@"

records=${RECORDS:-1000000}
size=${SIZE:-100}
rounds=${ROUNDS:-3}

# A real broker when Java can run one: this script again, under kafka-real.
if [ -z "${BATCHPIPE_TEST_KAFKA:-}" ] && [ "${KAFKA_BENCH:-}" != kfake ] && command -v java >/dev/null; then
	version=${KAFKA_VERSION:-4.1.1}
	(cd "$root" && go build -o "$work/kafka-real" ./tools/kafka-real)
	if "$work/kafka-real" -version "$version" -fetch >/dev/null 2>"$work/fetch.log"; then
		status=0
		# Its progress lines are left out; its errors are not.
		"$work/kafka-real" -version "$version" -env "$work/kafka-real.env" -- bash "$root/testdata/$(basename "$0")" "$bin" \
			2> >(grep -Ev '^kafka-real: (kafka [^ ]+ in |ready |stopped$)' >&2) || status=$?
		exit "$status"
	fi
	echo "kafka sink: could not fetch Kafka $version, so kfake stands in:"
	tail -3 "$work/fetch.log"
fi
if [ -n "${BATCHPIPE_TEST_KAFKA:-}" ]; then
	broker=$(sed -n 's/^KAFKA_REAL_PLAINTEXT=//p' "$BATCHPIPE_TEST_KAFKA")
	where="a real Apache Kafka $(sed -n 's/^KAFKA_REAL_VERSION=//p' "$BATCHPIPE_TEST_KAFKA") at $broker"
elif command -v java >/dev/null; then
	broker= where="kfake (in-process, tools/kafka-dev)"
else
	broker= where="kfake (in-process, tools/kafka-dev; no Java for a real broker)"
fi

echo "== kafka sink: $records records of $size bytes (batchpipe kafka vs kcat -P), against $where"
if ! command -v kcat >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "kcat missing: installing it with apt-get"
		apt-get install -y kcat >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y kcat >/dev/null 2>&1; } || true
	fi
	command -v kcat >/dev/null || { echo "kcat not available: the Kafka sink benchmark needs it; skipped"; exit 0; }
fi
timer=
[ -x /usr/bin/time ] && timer=/usr/bin/time
[ -n "$timer" ] || echo "GNU time not available: peak RSS not measured"

# The input: $records lines of $size bytes, newline included.
head -n "$records" < <(yes "$(printf "%0$((size - 1))d" 0)") >"$work/in.txt"

# One cluster: src seeded for the copies, a topic per tool and round.
topics=src
for r in $(seq 1 "$rounds"); do topics="$topics,bp$r,bpj$r,kcat$r,bpcopy$r,kcatcopy$r"; done
(cd "$root" && go build -o "$work/kafka-dev" ./tools/kafka-dev)
dev=(-addr 127.0.0.1:0)
[ -n "$broker" ] && dev=(-brokers "$broker")
"$work/kafka-dev" "${dev[@]}" -topic "$topics" -partitions 4 -records "$records" -size "$size" 2>"$work/dev.log" &
dev_pid=$!
dev_ready 1200

# count TOPIC: the records in TOPIC.
count() { kcat -C -e -q -b "$addr" -t "$1" -f '\n' | wc -l; }
check() { local n; n=$(count "$1"); [ "$n" -eq "$records" ] || { echo "$1 holds $n records, want $records"; exit 1; }; }
kcat_p=(kcat -P -b "$addr" -X acks=all -X enable.idempotence=true -X batch.num.messages=1000)
rss=0
# timed VAR CMD...: run CMD, keep the best time in VAR, batchpipe's RSS.
timed() {
	local var=$1 t0 t
	shift
	t0=$(now)
	if [ -n "$timer" ] && [ "$1" = "$bin" ]; then
		$timer -f "%M" -o "$work/rss" "$@"
		local r
		r=$(tail -1 "$work/rss")
		[ "$r" -gt "$rss" ] && rss=$r
	else
		"$@"
	fi
	t=$(sub "$(now)" "$t0")
	if [ -z "${!var}" ] || lt "$t" "${!var}"; then printf -v "$var" %s "$t"; fi
}
bp= bpj= kc= bpc= kcc=
for r in $(seq 1 "$rounds"); do
	timed bp "$bin" -q -n 1000 kafka --brokers "$addr" "bp$r" <"$work/in.txt"
	check "bp$r"
	# One batch in flight: each waits for its acknowledgement (the
	# default keeps five in flight, as kcat does).
	timed bpj "$bin" -q -n 1000 -j 1 kafka --brokers "$addr" "bpj$r" <"$work/in.txt"
	check "bpj$r"
	timed kc "${kcat_p[@]}" -t "kcat$r" <"$work/in.txt"
	check "kcat$r"
	timed bpc "$bin" -q --kafka-brokers "$addr" --topic src --until-end -n 1000 kafka "bpcopy$r"
	check "bpcopy$r"
	timed kcc bash -c 'kcat -C -e -q -b "$1" -t src -o beginning | "${@:3}" -t "$2"' _ "$addr" "kcatcopy$r" "${kcat_p[@]}"
	check "kcatcopy$r"
done

rate() { awk -v n="$records" -v t="$1" 'BEGIN { printf "%d", n / t }'; }
printf "   stdin -> kafka   batchpipe %6.3f s %8d records/s | kcat -P %6.3f s %8d records/s | ratio %s (target <= 1.0)\n" \
	"$bp" "$(rate "$bp")" "$kc" "$(rate "$kc")" "$(ratio "$bp" "$kc")"
printf "   stdin -> kafka   batchpipe -j 1 %6.3f s %8d records/s | ratio %s\n" "$bpj" "$(rate "$bpj")" "$(ratio "$bpj" "$kc")"
printf "   kafka -> kafka   batchpipe %6.3f s %8d records/s | kcat|kcat %6.3f s %8d records/s | ratio %s (target <= 1.2)\n" \
	"$bpc" "$(rate "$bpc")" "$kcc" "$(rate "$kcc")" "$(ratio "$bpc" "$kcc")"
[ -n "$timer" ] && printf "   batchpipe peak RSS: %d MB (target <= 128 MB)\n" "$((rss / 1024))"
exit 0
