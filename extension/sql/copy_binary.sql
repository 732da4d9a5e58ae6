--
-- FORMAT.md: after row_len comes exactly the tuple a binary COPY carries.
-- A binary COPY file is a 19-byte header, the tuples, and a 2-byte trailer.
--
CREATE TABLE cb_src (id int, name text, note text, ts timestamptz, n numeric, j jsonb);
INSERT INTO cb_src VALUES
  (7, 'ab', NULL, '2024-05-01 10:00:00+00', 1.25, '{"k": [1, "x"]}'),
  (8, '', 'note', NULL, 'NaN', 'null'),
  (9, NULL, NULL, 'infinity', -123456789.000001, '[]');

COPY (SELECT * FROM cb_src ORDER BY id) TO '/tmp/fs_formatter_regress_copy.bin' (FORMAT binary);

-- The COPY tuples, concatenated, equal the fs_formatter rows without their row_len.
WITH copyfile AS (
  SELECT pg_read_binary_file('/tmp/fs_formatter_regress_copy.bin') AS f
), fsrows AS (
  SELECT string_agg(substring(fs_formatter.encode_row(id, name, note, ts, n, j) FROM 5),
                    ''::bytea ORDER BY id) AS tuples
    FROM cb_src
)
SELECT substring(f FROM 20 FOR length(f) - 21) = tuples AS copy_tuples_match,
       substring(f FROM length(f) - 1) AS copy_trailer
  FROM copyfile, fsrows;

-- And decode() reads them back.
SELECT t.* FROM (
  SELECT string_agg(fs_formatter.encode_row(id, name, note, ts, n, j), ''::bytea ORDER BY id) AS b
    FROM cb_src
) s, fs_formatter.decode(s.b) AS t(id int, name text, note text, ts timestamptz, n numeric, j jsonb);

DROP TABLE cb_src;
