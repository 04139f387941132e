#!/usr/bin/env bash
# Usage: testdata/bench-s3.sh BIN
#
# The s3 sink's part of make bench, against moto's S3 server (PyPI's
# moto[server]) on a free port: 1,000,000 lines of 100 bytes in objects of
# 10,000 lines, -j 4, uncompressed and with zstd, next to a minimal Go
# program that reads stdin and PUTs the same objects as it cuts them, with
# the same SDK at the same concurrency (testdata/s3bench): create-only with
# their SHA-256 in the checksum header and the metadata, as batchpipe does,
# and plain (the SDK's defaults); and next to the exec -- aws s3 cp -
# recipe on 100,000 lines. Both sides are timed end to end, from process
# start to exit, stdin from the same file; batchpipe's time includes its
# HeadBucket and its create-only probe at start. Six rounds, each running
# every contender once, in turn first, second and last; the best of each
# counts, and the ratio of each round too. Peak RSS from GNU time.
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh" "$@"

if ! command -v moto_server >/dev/null; then
	echo "s3 sink: skipped (moto_server missing: pip install 'moto[server]')"
	exit 0
fi
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
moto_server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null; wait $moto 2>/dev/null; cleanup' EXIT
for _ in $(seq 1 300); do
	curl -s -o /dev/null "$url/moto-api/" && break
	kill -0 $moto 2>/dev/null || { cat "$work/moto.log"; exit 1; }
	sleep 0.1
done

(cd "$root" && go build -o "$work/s3bench" ./testdata/s3bench)
"$work/s3bench" mkbucket -endpoint "$url" bench
awk 'BEGIN { for (i = 1; i <= 1000000; i++) printf "%099d\n", i }' >"$work/1m"
head -n 100000 "$work/1m" >"$work/100k"
echo "s3 sink: 1,000,000 lines of 100 bytes, objects of 10,000 lines, -j 4, to moto_server at $url"

# timed CMD...: sets T to the seconds one run takes, stdin from $work/1m,
# and, where GNU time is there, RSS to its peak in KiB and CPU to its
# seconds of CPU (user and system): on a shared machine the steadier figure.
timed() {
	local t0 t1
	t0=$(now)
	if [ -x /usr/bin/time ]; then
		/usr/bin/time -f '%M %U %S' -o "$work/rss" "$@" <"$work/1m" >/dev/null || { echo "bench-s3: $* failed" >&2; exit 1; }
		read -r RSS user sys <"$work/rss"
		CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')
	else
		"$@" <"$work/1m" >/dev/null || { echo "bench-s3: $* failed" >&2; exit 1; }
		RSS= CPU=
	fi
	t1=$(now)
	T=$(sub "$t1" "$t0")
}
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a < b) ? a : b }'; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a > b) ? a : b }'; }
report() {
	awk -v n="$1" -v s="$2" -v r="$3" 'BEGIN { printf "  %-36s %7.3fs %9.0f records/s\n", n, s, r / s }'
}

bp= bz= gp= gplain= rss= rssz= tbp= tgo= ratios= cbp= cgo=
run_bp() {
	timed "$bin" -q -n 10000 -j 4 s3 --endpoint "$url" --path-style "s3://bench/bp/$round/{seq}"
	bp=$(min "$T" "$bp") rss=$(max "$RSS" "$rss") tbp=$T cbp=$(min "$CPU" "$cbp")
}
run_go() {
	timed "$work/s3bench" put -endpoint "$url" -n 10000 -j 4 bench "go/$round/"
	gp=$(min "$T" "$gp") tgo=$T cgo=$(min "$CPU" "$cgo")
	timed "$work/s3bench" put -plain -endpoint "$url" -n 10000 -j 4 bench "plain/$round/"
	gplain=$(min "$T" "$gplain")
}
run_zstd() {
	timed "$bin" -q -n 10000 -j 4 s3 --compress zstd --endpoint "$url" --path-style "s3://bench/zstd/$round/{seq}.zst"
	bz=$(min "$T" "$bz") rssz=$(max "$RSS" "$rssz")
}
# Each contender goes first, second and last in turn: the store slows as
# it fills, and the machine may be busy for a moment.
for round in 1 2 3 4 5 6; do
	case $((round % 3)) in
	1) run_bp; run_go; run_zstd ;;
	2) run_go; run_zstd; run_bp ;;
	0) run_zstd; run_bp; run_go ;;
	esac
	ratios="$ratios $(ratio "$tgo" "$tbp")"
done
report "batchpipe s3 -j 4" "$bp" 1000000
report "batchpipe s3 -j 4 --compress zstd" "$bz" 1000000
report "minimal Go program, create-only" "$gp" 1000000
report "minimal Go program, plain PUTs" "$gplain" 1000000
echo "  throughput vs the minimal Go program, create-only, round by round:$ratios (geometric mean $(echo $ratios | awk '{ for (i = 1; i <= NF; i++) s += log($i); printf "%.2f", exp(s / NF) }'))"
[ -z "$cbp" ] || echo "  CPU seconds (user + system, best): batchpipe $cbp, minimal Go program, create-only $cgo"

ac=
if command -v aws >/dev/null; then
	t0=$(now)
	"$bin" -q -n 10000 -j 4 exec -- sh -c \
		"aws --endpoint-url $url s3 cp - \"s3://bench/aws/\$BATCHPIPE_RUN-\$BATCHPIPE_SEQ.log\"" <"$work/100k"
	ac=$(sub "$(now)" "$t0")
	report "exec -- aws s3 cp - (100,000 lines)" "$ac" 100000
	echo "  (the AWS CLI $(aws --version 2>&1 | cut -d' ' -f1), a process per batch, ran on the first 100,000 lines; rates compare)"
else
	echo "  exec -- aws s3 cp -: skipped (no AWS CLI: pip install awscli)"
fi

awk -v bp="$bp" -v bz="$bz" -v gp="$gp" -v gplain="$gplain" -v ac="$ac" -v rss="$rss" -v rssz="$rssz" 'BEGIN {
	printf "  throughput vs the minimal Go program, create-only: %.2f× (target ≥ 0.9: %s); vs plain PUTs %.2f×\n",
		gp / bp, (gp / bp >= 0.9) ? "met" : "MISSED", gplain / bp
	printf "  zstd time vs none: %.2f× (target ≤ 1.3: %s)\n", bz / bp, (bz / bp <= 1.3) ? "met" : "MISSED"
	if (ac != "")
		printf "  throughput vs exec -- aws s3 cp: %.0f× (target ≥ 10: %s)\n", (1000000 / bp) / (100000 / ac), ((1000000 / bp) / (100000 / ac) >= 10) ? "met" : "MISSED"
	# The README bound: 26 MiB + 2 × (-j + 2) × --max-bytes (1 MiB), and
	# with compression each of the -j uploads holds its compressed body too.
	if (rss != "")
		printf "  peak RSS: %.1f MiB, with zstd %.1f MiB (bound 38 MiB, 42 MiB with zstd: %s)\n", rss / 1024, rssz / 1024,
			(rss / 1024 <= 38 && rssz / 1024 <= 42) ? "met" : "MISSED"
}'
