#!/usr/bin/env bash
# bench-kafka-sink.sh BIN: produce 1,000,000 records of 100 bytes to a
# local kfake cluster, from stdin with batchpipe ... kafka and with kcat -P,
# and copy them topic to topic with batchpipe --topic ... kafka and with
# kcat -C -e | kcat -P, against the same cluster in the same run. Both
# producers use acks=all, idempotence and batches of 1000 records. Prints
# records/s, the ratios of the times (targets: <= 1.0 from stdin, <= 1.2
# topic to topic) and batchpipe's peak RSS (target <= 128 MB). Each runs
# ROUNDS times (default 3), alternating; the best time of each counts.
#
# kcat comes from Debian's package (apt-get install kcat); as root the
# script installs it.
set -euo pipefail

bin=${1:?usage: bench-kafka-sink.sh BIN}
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
records=${RECORDS:-1000000}
size=${SIZE:-100}
rounds=${ROUNDS:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
dev_pid=
cleanup() {
	if [ -n "$dev_pid" ]; then kill "$dev_pid" 2>/dev/null || true; wait "$dev_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

echo "== kafka sink: $records records of $size bytes (batchpipe kafka vs kcat -P)"
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
"$work/kafka-dev" -addr 127.0.0.1:0 -topic "$topics" -partitions 4 -records "$records" -size "$size" 2>"$work/dev.log" &
dev_pid=$!
for _ in $(seq 1 600); do
	grep -q "kafka-dev: ready" "$work/dev.log" && break
	kill -0 "$dev_pid" 2>/dev/null || { cat "$work/dev.log"; exit 1; }
	sleep 0.1
done
grep -q "kafka-dev: ready" "$work/dev.log" || { echo "kafka-dev did not get ready"; cat "$work/dev.log"; exit 1; }
addr=$(grep -o 'listening on [0-9.:]*' "$work/dev.log" | awk '{print $3}')

now() { date +%s.%N; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
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
	# Two batches in flight: each waits for its acknowledgement no more.
	timed bpj "$bin" -q -n 1000 -j 2 kafka --brokers "$addr" "bpj$r" <"$work/in.txt"
	check "bpj$r"
	timed kc "${kcat_p[@]}" -t "kcat$r" <"$work/in.txt"
	check "kcat$r"
	timed bpc "$bin" -q --kafka-brokers "$addr" --topic src --until-end -n 1000 kafka "bpcopy$r"
	check "bpcopy$r"
	timed kcc bash -c 'kcat -C -e -q -b "$1" -t src -o beginning | "${@:3}" -t "$2"' _ "$addr" "kcatcopy$r" "${kcat_p[@]}"
	check "kcatcopy$r"
done

rate() { awk -v n="$records" -v t="$1" 'BEGIN { printf "%d", n / t }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
printf "   stdin -> kafka   batchpipe %6.3f s %8d records/s | kcat -P %6.3f s %8d records/s | ratio %s (target <= 1.0)\n" \
	"$bp" "$(rate "$bp")" "$kc" "$(rate "$kc")" "$(ratio "$bp" "$kc")"
printf "   stdin -> kafka   batchpipe -j 2 %6.3f s %8d records/s | ratio %s\n" "$bpj" "$(rate "$bpj")" "$(ratio "$bpj" "$kc")"
printf "   kafka -> kafka   batchpipe %6.3f s %8d records/s | kcat|kcat %6.3f s %8d records/s | ratio %s (target <= 1.2)\n" \
	"$bpc" "$(rate "$bpc")" "$kcc" "$(rate "$kcc")" "$(ratio "$bpc" "$kcc")"
[ -n "$timer" ] && printf "   batchpipe peak RSS: %d MB (target <= 128 MB)\n" "$((rss / 1024))"
exit 0
