#!/usr/bin/env python3
"""Reads Parquet files with pyarrow and with DuckDB and compares their rows,
typed, with the rows expected.

usage: parquet_check.py [--codec NAME] [--meta KEY=VALUE]... EXPECTED.json FILE...

EXPECTED.json is a JSON list of rows: timestamps as ISO 8601 text in UTC
with microseconds, dates as YYYY-MM-DD, decimals as text, bytes as base64.
The rows of the files, in the order given, must equal them in both
readers. Every column chunk must carry statistics (min and max unless it is
all nulls) and, with --codec, be compressed with that codec (pyarrow's name:
ZSTD, GZIP, SNAPPY, UNCOMPRESSED). Each --meta must be in every file's
key-value metadata. Exit 0 and one line on success; 1 and the first
difference otherwise; 3 when pyarrow or duckdb is missing.
"""
import base64
import datetime
import decimal
import json
import sys

try:
    import duckdb
    import pyarrow.parquet as pq
except ImportError as e:
    print(f"parquet_check: {e}", file=sys.stderr)
    sys.exit(3)


def canon(v, where):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            raise SystemExit(f"parquet_check: {where}: a timestamp without a time zone: {v}")
        return v.astimezone(datetime.timezone.utc).isoformat(timespec="microseconds")
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(v)).decode()
    if isinstance(v, list):
        return [canon(x, where) for x in v]
    if isinstance(v, dict):
        return {k: canon(x, where) for k, x in v.items()}
    raise SystemExit(f"parquet_check: {where}: a value of type {type(v).__name__}: {v!r}")


def with_pyarrow(path):
    return [canon(r, f"pyarrow {path}") for r in pq.read_table(path).to_pylist()]


def with_duckdb(path):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    cur = con.execute("SELECT * FROM read_parquet(?)", [path])
    names = [d[0] for d in cur.description]
    rows = [canon(dict(zip(names, r)), f"duckdb {path}") for r in cur.fetchall()]
    con.close()
    return rows


def check_file(path, codec, meta):
    md = pq.ParquetFile(path).metadata
    kv = {k.decode(): v.decode() for k, v in (md.metadata or {}).items()}
    for k, v in meta.items():
        if kv.get(k) != v:
            raise SystemExit(f"parquet_check: {path}: metadata {k} = {kv.get(k)!r}, want {v!r}")
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        for c in range(rg.num_columns):
            col = rg.column(c)
            if codec and col.compression != codec:
                raise SystemExit(f"parquet_check: {path}: column {col.path_in_schema} compressed with {col.compression}, want {codec}")
            st = col.statistics
            if st is None:
                raise SystemExit(f"parquet_check: {path}: column {col.path_in_schema} has no statistics")
            if st.null_count != col.num_values and not st.has_min_max:
                raise SystemExit(f"parquet_check: {path}: column {col.path_in_schema} has no min and max")


def main(argv):
    codec, meta, args = None, {}, []
    i = 0
    while i < len(argv):
        if argv[i] == "--codec":
            codec = argv[i + 1]
            i += 2
        elif argv[i] == "--meta":
            k, _, v = argv[i + 1].partition("=")
            meta[k] = v
            i += 2
        else:
            args.append(argv[i])
            i += 1
    if len(args) < 2:
        raise SystemExit(__doc__)
    with open(args[0], encoding="utf-8") as f:
        want = json.load(f)
    files = args[1:]
    for reader in (with_pyarrow, with_duckdb):
        got = []
        for path in files:
            got += reader(path)
        name = reader.__name__[5:]
        if len(got) != len(want):
            raise SystemExit(f"parquet_check: {name} read {len(got)} rows, want {len(want)}")
        for n, (g, w) in enumerate(zip(got, want)):
            if g != w:
                raise SystemExit(f"parquet_check: {name}: row {n}:\n got  {json.dumps(g, ensure_ascii=False)}\n want {json.dumps(w, ensure_ascii=False)}")
    for path in files:
        check_file(path, codec, meta)
    print(f"parquet_check: {len(files)} files, {len(want)} rows equal in pyarrow {pq.__name__ and __import__('pyarrow').__version__} and duckdb {duckdb.__version__}")


if __name__ == "__main__":
    main(sys.argv[1:])
