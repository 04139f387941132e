#!/usr/bin/env bash
# bench-parquet.sh BIN: --format parquet against DuckDB on the same input,
# in one run: 1,000,000 NDJSON records of about 100 bytes, batches of
# 10,000 at -j 4, zstd, into one file per batch; DuckDB converts the same
# file with COPY (SELECT * FROM read_json(...)) TO ... (FORMAT parquet,
# COMPRESSION zstd) on 2 threads. Targets: at most 1.5x DuckDB's time,
# output at most 1.3x its size, peak RSS at most 100 MB. Each runs ROUNDS
# times (default 3), alternating; the best counts. Skipped without the
# duckdb Python module.
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh" "$@"

records=${RECORDS:-1000000}
rounds=${ROUNDS:-3}

if ! python3 -c 'import duckdb' 2>/dev/null; then
	echo "== parquet: skipped (no duckdb Python module: pip install duckdb)"
	exit 0
fi
timer=
[ -x /usr/bin/time ] && timer=/usr/bin/time

echo "== parquet: $records NDJSON records of ~100 bytes, -n 10000 -b 2M -j 4, zstd, against DuckDB (2 threads)"
awk -v n="$records" 'BEGIN {
	split("info warn error debug", lv, " ")
	for (i = 0; i < n; i++)
		printf "{\"seq\":%d,\"ts\":\"2024-05-%02dT%02d:%02d:%02d.%03dZ\",\"level\":\"%s\",\"user\":\"u%05d\",\"ms\":%d.%d,\"ok\":%s,\"msg\":\"request %d handled\"}\n",
			i, 1 + i % 28, i % 24, i % 60, (i * 7) % 60, i % 1000, lv[1 + i % 4], (i * 7919) % 100000, i % 500, i % 10, (i % 3 ? "true" : "false"), i % 997
}' >"$work/in.ndjson"
cat >"$work/schema.json" <<'EOF'
[
  {"name": "seq", "type": "int64", "required": true},
  {"name": "ts", "type": "timestamp", "unit": "ms"},
  {"name": "level", "type": "string"},
  {"name": "user", "type": "string"},
  {"name": "ms", "type": "double"},
  {"name": "ok", "type": "boolean"},
  {"name": "msg", "type": "string"}
]
EOF
printf '  input: %s bytes\n' "$(stat -c %s "$work/in.ndjson")"

best_bp= best_dk= bp_rss=0 bp_size= dk_size=
for _ in $(seq 1 "$rounds"); do
	rm -rf "$work/pq"
	t0=$(now)
	if [ -n "$timer" ]; then
		$timer -f %M -o "$work/rss" "$bin" -q -n 10000 -b 2M -j 4 file --per-batch "$work/pq/{seq}.parquet" \
			--format parquet --parquet-schema "$work/schema.json" --compress zstd <"$work/in.ndjson"
	else
		"$bin" -q -n 10000 -b 2M -j 4 file --per-batch "$work/pq/{seq}.parquet" \
			--format parquet --parquet-schema "$work/schema.json" --compress zstd <"$work/in.ndjson"
	fi
	t=$(sub "$(now)" "$t0")
	if [ -z "$best_bp" ] || lt "$t" "$best_bp"; then best_bp=$t; fi
	if [ -n "$timer" ]; then
		r=$(tail -1 "$work/rss")
		[ "$r" -gt "$bp_rss" ] && bp_rss=$r
	fi
	bp_size=$(cat "$work"/pq/*.parquet | wc -c)

	rm -f "$work/duck.parquet"
	t0=$(now)
	python3 - "$work/in.ndjson" "$work/duck.parquet" <<'EOF'
import sys, duckdb
con = duckdb.connect()
con.execute("SET threads = 2")
con.execute(f"COPY (SELECT * FROM read_json('{sys.argv[1]}')) TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION zstd)")
EOF
	t=$(sub "$(now)" "$t0")
	if [ -z "$best_dk" ] || lt "$t" "$best_dk"; then best_dk=$t; fi
	dk_size=$(stat -c %s "$work/duck.parquet")
done
rows=$(python3 -c "import duckdb; print(duckdb.sql(\"SELECT count(*) FROM read_parquet('$work/pq/*.parquet')\").fetchall()[0][0])")
[ "$rows" = "$records" ] || { echo "FAIL: DuckDB reads $rows rows from batchpipe's files, want $records"; exit 1; }
printf '  duckdb COPY      %6.3f s  %10s bytes\n' "$best_dk" "$dk_size"
printf '  batchpipe        %6.3f s  %10s bytes  %sx the time (target <= 1.5), %sx the size (target <= 1.3)\n' \
	"$best_bp" "$bp_size" "$(ratio "$best_bp" "$best_dk")" "$(ratio "$bp_size" "$dk_size")"
if [ -n "$timer" ]; then
	printf '  batchpipe peak RSS %.1f MB (target <= 100)\n' "$(awk -v k="$bp_rss" 'BEGIN { print k / 1024 }')"
fi
