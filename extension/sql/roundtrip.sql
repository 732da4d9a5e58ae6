--
-- Round trips: values -> encode_row (send functions) -> decode (receive
-- functions) -> the same values.
--
CREATE TABLE rt_src (
  id    int,
  i2    int2,
  i4    int4,
  i8    int8,
  f4    float4,
  f8    float8,
  b     bool,
  t     text,
  vc    varchar(10),
  j     json,
  jb    jsonb,
  n     numeric,
  d     date,
  ts    timestamp,
  tstz  timestamptz,
  u     uuid,
  ba    bytea
);

INSERT INTO rt_src VALUES
  (1, 32767, 2147483647, 9223372036854775807, 1.5, 3.141592653589793, true,
   'hello', 'varchar', '{"a": [1, 2], "b": "c"}', '{"b": {"c": null}, "a": 1}',
   12345.6789, '2024-02-29', '2024-02-29 12:34:56.789012',
   '2024-02-29 12:34:56.789012+00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
   '\x00ff10'),
  (2, -32768, -2147483648, -9223372036854775808, '-Infinity', 'NaN', false,
   '', '', '[]', '[]', 'NaN', '-infinity', 'infinity', '-infinity',
   '00000000-0000-0000-0000-000000000000', ''),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL),
  (4, 0, 0, 0, '-0', 1e-300, true, 'ünïcödé ✓ "quoted" \ tab	end',
   'abcdefghij', '"x"', '"x"', -0.00000000000000000000000000000000000001,
   '4713-11-24 BC', '294276-12-31 23:59:59.999999', '1999-12-31 23:59:59.999999-08',
   'ffffffff-ffff-ffff-ffff-ffffffffffff', '\x00'),
  (5, 1, 1, 1, 'NaN', '-Infinity', false, repeat('x', 5000), 'a',
   '{"deep": {"deeper": [true, false, null, 1.5e10]}}', '{"n": 1.50}',
   123456789012345678901234567890.123456789012345678901234567890,
   '2000-01-01', '2000-01-01 00:00:00', '2000-01-01 00:00:00+00',
   '12345678-1234-5678-1234-567812345678', decode(repeat('ab', 3000), 'hex')),
  (6, -1, -1, -1, 3.4e38, 1.7976931348623157e308, true, 'line1
line2', 'ü', 'null', 'null', -98765.4321, 'infinity', '1970-01-01 00:00:00',
   'epoch', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x'),
  (7, 42, 42, 42, 0.1, 0.1, NULL, 'last', 'last', '1', '1',
   round(1::numeric / 7, 1000), '2024-12-31', '2024-12-31 23:59:59',
   '2024-12-31 23:59:59.5+05:30', NULL, NULL);

-- All rows in one bytea, in id order.
CREATE TABLE rt_blob AS
SELECT string_agg(fs_formatter.encode_row(id, i2, i4, i8, f4, f8, b, t, vc, j, jb,
                                          n, d, ts, tstz, u, ba),
                  ''::bytea ORDER BY id) AS data
  FROM rt_src;

CREATE TABLE rt_out AS
SELECT t.*
  FROM rt_blob,
       fs_formatter.decode(rt_blob.data) AS t(
         id int, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, b bool,
         t text, vc varchar(10), j json, jb jsonb, n numeric, d date,
         ts timestamp, tstz timestamptz, u uuid, ba bytea);

-- Every decoded row renders exactly like its source row.
SELECT s.id, o.id IS NOT NULL AS decoded, s::text = o::text AS same_text
  FROM rt_src s LEFT JOIN rt_out o ON o.id = s.id
 ORDER BY s.id;
SELECT count(*) AS decoded_rows FROM rt_out;

-- The decoded values themselves (long values summarised).
\x on
SELECT id, i2, i4, i8, f4, f8, b,
       CASE WHEN length(t) > 40 THEN left(t, 10) || '... ' || length(t) || ' chars' ELSE t END AS t,
       vc, j, jb,
       CASE WHEN scale(n) > 40 THEN left(n::text, 20) || '... scale ' || scale(n) ELSE n::text END AS n,
       d, ts, tstz, u,
       CASE WHEN length(ba) > 16 THEN length(ba) || ' bytes' ELSE ba::text END AS ba
  FROM rt_out ORDER BY id;
\x off

-- Numeric details survive: sign, NaN, scale.
SELECT id, n IS NOT DISTINCT FROM (SELECT n FROM rt_src s WHERE s.id = o.id) AS same_numeric,
       scale(n) AS scale
  FROM rt_out o ORDER BY id;

-- Empty text and NULL are different things.
SELECT id, t = '' AS empty_text, t IS NULL AS null_text FROM rt_out WHERE id IN (2, 3) ORDER BY id;

-- Many rows concatenated.
CREATE TABLE rt_many AS
SELECT i AS id, 'row ' || i AS name, CASE WHEN i % 10 = 0 THEN NULL ELSE i * 1.5 END AS score
  FROM generate_series(1, 10000) i;
SELECT count(*) AS row_count, sum(id) AS id_sum, count(score) AS non_null_scores,
       md5(string_agg(name, ',' ORDER BY id)) = (SELECT md5(string_agg(name, ',' ORDER BY id)) FROM rt_many) AS names_match
  FROM fs_formatter.decode((SELECT string_agg(fs_formatter.encode_row(id, name, score), ''::bytea ORDER BY id)
                              FROM rt_many))
       AS t(id int, name text, score numeric);

-- No rows: empty input, and NULL input (decode is strict).
SELECT count(*) AS from_empty FROM fs_formatter.decode(''::bytea) AS t(id int);
SELECT count(*) AS from_null FROM fs_formatter.decode(NULL::bytea) AS t(id int);

-- Only the column definition list decides the types: the same bytes as
-- int8 and as bytea.
SELECT * FROM fs_formatter.decode(fs_formatter.encode_row(1::int8)) AS t(v int8);
SELECT * FROM fs_formatter.decode(fs_formatter.encode_row(1::int8)) AS t(v bytea);

-- Domains go through domain_recv, which checks constraints.
CREATE DOMAIN rt_posint AS int CHECK (VALUE > 0);
SELECT * FROM fs_formatter.decode(fs_formatter.encode_row(5)) AS t(v rt_posint);

-- A call site used with different rows each time (cached decoder reused).
SELECT r.k, t.*
  FROM (VALUES (1, fs_formatter.encode_row(10, 'a'::text)),
               (2, fs_formatter.encode_row(20, 'b'::text) || fs_formatter.encode_row(21, NULL::text))) r(k, data),
       LATERAL fs_formatter.decode(r.data) AS t(id int, name text)
 ORDER BY r.k, t.id;

DROP TABLE rt_src, rt_blob, rt_out, rt_many;
DROP DOMAIN rt_posint;
