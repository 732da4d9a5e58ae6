#!/usr/bin/env bash
# fs_formatter decode throughput vs CSV and binary COPY parsing, inside PostgreSQL.
#
# Builds N rows of (id int, big bigint, name text /*20 chars*/, ts timestamp,
# score double precision) once, in three encodings of the same rows:
#   - fs_formatter rows (extension/FORMAT.md) in one bytea,
#   - a CSV file and a binary COPY file, written by the server.
# Then times, server-side (clock_timestamp() around EXECUTE), median of 3 runs
# after one warm-up run:
#   (a) SELECT count(*) FROM fs_formatter.decode(<bytea>) AS t(...)
#       INSERT INTO <unlogged> SELECT * FROM fs_formatter.decode(...)
#   (b) CSV: parse only (file_fdw count(*)) and COPY <unlogged> FROM (FORMAT csv)
#   (c) binary COPY: parse only (file_fdw) and COPY <unlogged> FROM (FORMAT binary)
# and prints a markdown table with rows/s and MB/s (MB = 10^6 bytes of each
# case's own input).
#
# The bar: decode must be at least as fast as CSV parsing of the same rows
# (decode count(*) vs CSV parse only, decode+INSERT vs COPY csv); the script
# exits 1 if it is not.
#
# Needs: the fs_formatter extension installed (scripts/extension-test), a
# superuser connection to a server on this host (it reads and writes files in
# FS_PERF_DIR as the server), file_fdw (postgresql-contrib) for the parse-only
# rows (skipped without it).
#
# Environment: PGHOST (127.0.0.1), PGUSER (postgres), PGDATABASE (test),
#              ROWS (1000000), FS_PERF_DIR (/tmp).
set -euo pipefail

export PGHOST=${PGHOST:-127.0.0.1}
export PGUSER=${PGUSER:-postgres}
export PGDATABASE=${PGDATABASE:-test}
ROWS=${ROWS:-1000000}
DIR=${FS_PERF_DIR:-/tmp}
CSV="$DIR/fs_perf_decode.csv"
BIN="$DIR/fs_perf_decode.bin"

psql_q() { psql -X -v ON_ERROR_STOP=1 -qAt "$@"; }

COLS="id int, big bigint, name text, ts timestamp, score double precision"

echo "== setup: $ROWS rows" >&2
psql_q <<SQL
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS fs_formatter;
DROP SCHEMA IF EXISTS fs_perf CASCADE;
CREATE SCHEMA fs_perf;

CREATE UNLOGGED TABLE fs_perf.src AS
SELECT i AS id,
       i::bigint * 1000003 AS big,
       left(md5(i::text), 20) AS name,
       timestamp '2024-01-01' + i * interval '1 second' AS ts,
       i / 7.0::float8 AS score
  FROM generate_series(1, $ROWS) i;

-- All rows as one bytea; EXTERNAL storage: stored uncompressed, as shipped.
CREATE UNLOGGED TABLE fs_perf.blob (b bytea);
ALTER TABLE fs_perf.blob ALTER b SET STORAGE EXTERNAL;
INSERT INTO fs_perf.blob
SELECT string_agg(fs_formatter.encode_row(id, big, name, ts, score), ''::bytea ORDER BY id)
  FROM fs_perf.src;

COPY fs_perf.src TO '$CSV' (FORMAT csv);
COPY fs_perf.src TO '$BIN' (FORMAT binary);

CREATE UNLOGGED TABLE fs_perf.dst ($COLS);

-- Milliseconds one statement takes, measured in the server.
CREATE FUNCTION fs_perf.time_ms(stmt text, setup text) RETURNS float8
LANGUAGE plpgsql AS \$\$
DECLARE
  t0 timestamptz;
BEGIN
  IF setup IS NOT NULL THEN
    EXECUTE setup;
  END IF;
  t0 := clock_timestamp();
  EXECUTE stmt;
  RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END
\$\$;
SQL

HAVE_FILE_FDW=$(psql_q -c "SELECT count(*) FROM pg_available_extensions WHERE name = 'file_fdw'")
if [ "$HAVE_FILE_FDW" = "1" ]; then
  psql_q <<SQL
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS file_fdw;
CREATE SERVER fs_perf_files FOREIGN DATA WRAPPER file_fdw;
CREATE FOREIGN TABLE fs_perf.csv_file ($COLS) SERVER fs_perf_files
  OPTIONS (filename '$CSV', format 'csv');
CREATE FOREIGN TABLE fs_perf.bin_file ($COLS) SERVER fs_perf_files
  OPTIONS (filename '$BIN', format 'binary');
SQL
fi

# The decoded rows must be the source rows before any timing means anything.
SAME=$(psql_q <<SQL
SELECT (SELECT count(*) || '/' || sum(id) || '/' || sum(big) || '/' || md5(string_agg(name, '' ORDER BY id))
               || '/' || max(ts) || '/' || sum(score)
          FROM fs_perf.blob, fs_formatter.decode(b) AS t($COLS))
     = (SELECT count(*) || '/' || sum(id) || '/' || sum(big) || '/' || md5(string_agg(name, '' ORDER BY id))
               || '/' || max(ts) || '/' || sum(score)
          FROM fs_perf.src);
SQL
)
if [ "$SAME" != "t" ]; then
  echo "fs_formatter_decode: decoded rows differ from the source rows" >&2
  exit 1
fi

FS_BYTES=$(psql_q -c "SELECT length(b) FROM fs_perf.blob")
CSV_BYTES=$(psql_q -c "SELECT size FROM pg_stat_file('$CSV')")
BIN_BYTES=$(psql_q -c "SELECT size FROM pg_stat_file('$BIN')")

# median_ms STATEMENT [SETUP]: one warm-up, then the median of 3 runs.
median_ms() {
  local stmt=$1 setup=${2:-}
  psql_q -v stmt="$stmt" -v setup="$setup" <<'SQL'
SELECT fs_perf.time_ms(:'stmt', nullif(:'setup', ''));
SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY ms)
  FROM (SELECT fs_perf.time_ms(:'stmt', nullif(:'setup', '')) AS ms
          FROM generate_series(1, 3)) runs;
SQL
}

declare -A MS
run() {
  local key=$1 stmt=$2 setup=${3:-}
  echo "== $key" >&2
  MS[$key]=$(median_ms "$stmt" "$setup" | tail -n 1)
}

DECODE="SELECT count(*) FROM fs_perf.blob, fs_formatter.decode(b) AS t($COLS)"
run decode_count "$DECODE"
run decode_insert "INSERT INTO fs_perf.dst SELECT t.* FROM fs_perf.blob, fs_formatter.decode(b) AS t($COLS)" \
  "TRUNCATE fs_perf.dst"
if [ "$HAVE_FILE_FDW" = "1" ]; then
  run csv_parse "SELECT count(*) FROM fs_perf.csv_file"
  run bin_parse "SELECT count(*) FROM fs_perf.bin_file"
fi
run csv_copy "COPY fs_perf.dst FROM '$CSV' (FORMAT csv)" "TRUNCATE fs_perf.dst"
run bin_copy "COPY fs_perf.dst FROM '$BIN' (FORMAT binary)" "TRUNCATE fs_perf.dst"

row() {
  local label=$1 key=$2 bytes=$3
  [ -n "${MS[$key]:-}" ] || return 0
  awk -v label="$label" -v ms="${MS[$key]}" -v rows="$ROWS" -v bytes="$bytes" 'BEGIN {
    printf "| %s | %d | %.1f | %.0f | %.0f | %.1f |\n", label, rows, bytes / 1e6, ms, rows / (ms / 1000), bytes / 1e6 / (ms / 1000)
  }'
}

echo
echo "PostgreSQL $(psql_q -c 'SHOW server_version'), $(nproc) CPUs, work_mem $(psql_q -c 'SHOW work_mem'), median of 3"
echo
echo "| case | rows | input MB | ms | rows/s | MB/s |"
echo "|---|---:|---:|---:|---:|---:|"
row "(a) fs_formatter.decode → count(*)" decode_count "$FS_BYTES"
row "(b) CSV parse (file_fdw) → count(*)" csv_parse "$CSV_BYTES"
row "(c) binary COPY parse (file_fdw) → count(*)" bin_parse "$BIN_BYTES"
row "(a) INSERT INTO unlogged SELECT FROM fs_formatter.decode" decode_insert "$FS_BYTES"
row "(b) COPY unlogged FROM csv" csv_copy "$CSV_BYTES"
row "(c) COPY unlogged FROM binary" bin_copy "$BIN_BYTES"
echo

psql_q -c "DROP SCHEMA fs_perf CASCADE" -c "DROP SERVER IF EXISTS fs_perf_files CASCADE" >/dev/null 2>&1 || true
# The server wrote them; this script runs on the same host (see above).
rm -f "$CSV" "$BIN" 2>/dev/null || true

# The bar: decoding is at least as fast as parsing CSV (parse-only vs
# parse-only, and with the same INSERT work on both sides).
fail=0
check() {
  local ours=$1 theirs=$2 what=$3
  [ -n "${MS[$ours]:-}" ] && [ -n "${MS[$theirs]:-}" ] || return 0
  if awk -v a="${MS[$ours]}" -v b="${MS[$theirs]}" 'BEGIN { exit !(a <= b) }'; then
    echo "ok: $what (${MS[$ours]} ms <= ${MS[$theirs]} ms)"
  else
    echo "FAIL: $what (${MS[$ours]} ms > ${MS[$theirs]} ms)"
    fail=1
  fi
}
check decode_count csv_parse "fs_formatter decode is at least as fast as CSV parsing"
check decode_insert csv_copy "decode + INSERT is at least as fast as COPY FROM csv"
exit $fail
