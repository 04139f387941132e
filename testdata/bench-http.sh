#!/usr/bin/env bash
# Usage: testdata/bench-http.sh BIN
#
# The http sink's part of make bench: 1,000,000 NDJSON lines (72 bytes
# each) in batches of 1000 to a local server that discards bodies, with -j 1
# and -j 4, next to the same run by a minimal Go client (testdata/httpbench
# post: read lines, post bodies of 1000 over keep-alive; the practical
# limit) and by parallel --pipe -N 1000 -j 4 curl, which is slow enough to
# be run on 100,000 lines. The Go runs take the best of 3 rounds.
set -euo pipefail

bin=${1:?usage: bench-http.sh BIN}
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
srv=
cleanup() {
	[[ -n $srv ]] && kill "$srv" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

(cd "$root" && go build -o "$work/httpbench" ./testdata/httpbench)
awk 'BEGIN { for (i = 1; i <= 1000000; i++)
	printf "{\"ts\":\"2024-05-01T12:00:00Z\",\"level\":\"info\",\"msg\":\"served\",\"n\":%07d}\n", i }' >"$work/1m"
head -n 100000 "$work/1m" >"$work/100k"

exec 3< <(exec "$work/httpbench" serve)
srv=$!
read -r url <&3 # the readiness line
echo "http sink: 1,000,000 lines of $(awk '{ n += length($0) + 1 } END { printf "%.0f", n / NR }' "$work/1m") bytes, batches of 1000, to $url (discards bodies)"

now() { date +%s.%N; }

# timed CMD...: sets T to the seconds one run takes, stdin from $work/1m;
# a failed run stops the script rather than give a figure.
timed() {
	local t0 t1
	t0=$(now)
	"$@" <"$work/1m" >/dev/null || { echo "bench-http: $* failed" >&2; exit 1; }
	t1=$(now)
	T=$(awk -v a="$t0" -v z="$t1" 'BEGIN { print z - a }')
}

# min A B: the smaller, A if B is empty.
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a < b) ? a : b }'; }

# report NAME SECONDS RECORDS
report() {
	awk -v n="$1" -v s="$2" -v r="$3" 'BEGIN {
		printf "  %-34s %7.3fs %9.0f requests/s %11.0f records/s\n", n, s, r / 1000 / s, r / s }'
}

# Three rounds, each running every contender once, so that a busy moment
# on the machine does not favour one of them; the best of each counts.
bp1= bp4= go1= go4=
for _ in 1 2 3; do
	timed "$bin" -q -n 1000 -j 1 http "$url" && bp1=$(min "$T" "$bp1")
	timed "$work/httpbench" post -n 1000 -j 1 "$url" && go1=$(min "$T" "$go1")
	timed "$bin" -q -n 1000 -j 4 http "$url" && bp4=$(min "$T" "$bp4")
	timed "$work/httpbench" post -n 1000 -j 4 "$url" && go4=$(min "$T" "$go4")
done
report "batchpipe http -j 1" "$bp1" 1000000
report "batchpipe http -j 4" "$bp4" 1000000
report "minimal Go client, 1 in flight" "$go1" 1000000
report "minimal Go client, 4 in flight" "$go4" 1000000

if ! command -v parallel >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
	echo "  (installing GNU parallel with apt-get)"
	apt-get install -y -qq parallel >/dev/null 2>&1 ||
		{ apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq parallel >/dev/null 2>&1; } || true
fi
if ! command -v curl >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
	echo "  (installing curl with apt-get)"
	apt-get install -y -qq curl >/dev/null 2>&1 || true
fi
pc=
if command -v parallel >/dev/null && command -v curl >/dev/null; then
	t0=$(now)
	parallel --will-cite --pipe -N 1000 -j 4 curl -sS --fail -o /dev/null --data-binary @- "$url" <"$work/100k"
	t1=$(now)
	pc=$(awk -v a="$t0" -v z="$t1" 'BEGIN { print z - a }')
	report "parallel --pipe -N 1000 -j 4 curl" "$pc" 100000
	echo "  (parallel+curl ran on the first 100,000 lines; rates compare)"
else
	echo "  parallel --pipe … curl: skipped (GNU parallel or curl missing, and not root to install them)"
fi

awk -v bp1="$bp1" -v bp4="$bp4" -v go1="$go1" -v go4="$go4" -v pc="$pc" 'BEGIN {
	printf "  time vs the minimal Go client:   -j 1 %.2f×, -j 4 %.2f× (target ≤ 1.5×: %s)\n",
		bp1 / go1, bp4 / go4, (bp1 / go1 <= 1.5 && bp4 / go4 <= 1.5) ? "met" : "MISSED"
	best = (bp1 < bp4) ? bp1 : bp4
	printf "  records/s, best of -j 1 and -j 4: %.0f (target ≥ 1,000,000: %s)\n",
		1000000 / best, (1000000 / best >= 1000000) ? "met" : "MISSED"
	if (pc != "")
		printf "  records/s vs parallel+curl -j 4: %.0f×\n", (1000000 / bp4) / (100000 / pc)
}'
