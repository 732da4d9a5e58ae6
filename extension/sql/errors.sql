--
-- Every error of extension/FORMAT.md, with its message, SQLSTATE and the
-- error context naming the row (and the column for receive functions).
-- Base row: FORMAT.md's example, (id int, name text, note text) = (7, 'ab', NULL):
--   00000014 0003 00000004 00000007 00000002 6162 ffffffff
--

-- SQLSTATE and message of an error, without stopping the script.
CREATE FUNCTION pg_temp.decode_error(data bytea, coldefs text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  n bigint;
BEGIN
  EXECUTE format('SELECT count(*) FROM fs_formatter.decode($1) AS t(%s)', coldefs)
     INTO n USING data;
  RETURN 'no error: ' || n || ' rows';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- Wrong field count: 2 fields for 3 columns.
SELECT * FROM fs_formatter.decode(
  '\x00000014 0002 00000004 00000007 00000002 6162 ffffffff'::bytea
) AS t(id int, name text, note text);

-- ... and 3 fields for 2 columns.
SELECT * FROM fs_formatter.decode(
  '\x00000014 0003 00000004 00000007 00000002 6162 ffffffff'::bytea
) AS t(id int, name text);

-- Truncated field: name claims 8 bytes, only 6 remain in the row.
SELECT * FROM fs_formatter.decode(
  '\x00000014 0003 00000004 00000007 00000008 6162 ffffffff'::bytea
) AS t(id int, name text, note text);

-- Row length shorter than its fields: row_len 16 ends where note's length
-- would start.
SELECT * FROM fs_formatter.decode(
  '\x00000010 0003 00000004 00000007 00000002 6162'::bytea
) AS t(id int, name text, note text);

-- ... and a row too short for even its field count.
SELECT * FROM fs_formatter.decode('\x00000001 00'::bytea) AS t(id int);

-- Trailing bytes: row_len 22 ends 2 bytes after the last field.
SELECT * FROM fs_formatter.decode(
  '\x00000016 0003 00000004 00000007 00000002 6162 ffffffff 0000'::bytea
) AS t(id int, name text, note text);

-- A length below -1.
SELECT * FROM fs_formatter.decode(
  '\x00000014 0003 00000004 00000007 00000002 6162 fffffffe'::bytea
) AS t(id int, name text, note text);

-- Receive function errors, with the column in the context:
-- int4recv given 2 bytes,
SELECT * FROM fs_formatter.decode(
  '\x00000012 0003 00000002 0007 00000002 6162 ffffffff'::bytea
) AS t(id int, name text, note text);

-- int4recv given 8 bytes (a receive function must consume the whole field),
SELECT * FROM fs_formatter.decode(
  '\x00000018 0003 00000008 00000007 00000000 00000002 6162 ffffffff'::bytea
) AS t(id int, name text, note text);

-- textrecv given invalid UTF-8,
SELECT * FROM fs_formatter.decode(
  '\x00000014 0003 00000004 00000007 00000002 61ff ffffffff'::bytea
) AS t(id int, name text, note text);

-- varcharrecv enforcing the column's typmod,
SELECT * FROM fs_formatter.decode(
  '\x00000014 0003 00000004 00000007 00000002 6162 ffffffff'::bytea
) AS t(id int, name varchar(1), note text);

-- a domain's receive function rejecting a NULL and a value.
CREATE DOMAIN err_posint AS int NOT NULL CHECK (VALUE > 0);
SELECT * FROM fs_formatter.decode(fs_formatter.encode_row(NULL::int)) AS t(v err_posint);
SELECT * FROM fs_formatter.decode(fs_formatter.encode_row(-1)) AS t(v err_posint);
DROP DOMAIN err_posint;

-- The error names the row it is in: row 2 of 3 is bad.
SELECT * FROM fs_formatter.decode(
  fs_formatter.encode_row(1, 'a'::text)
  || fs_formatter.encode_row(2, 'b'::text, 'extra'::text)
  || fs_formatter.encode_row(3, 'c'::text)
) AS t(id int, name text);

-- Incomplete row at end of data: a whole row, then 5 bytes of the next one,
SELECT * FROM fs_formatter.decode(
  '\x00000014 0003 00000004 00000007 00000002 6162 ffffffff 00000014 00'::bytea
) AS t(id int, name text, note text);

-- ... or fewer bytes than row_len itself.
SELECT * FROM fs_formatter.decode('\x000000'::bytea) AS t(id int, name text, note text);

-- A row_len over the 1 GiB limit is reported at once.
SELECT * FROM fs_formatter.decode('\x40000001 0001'::bytea) AS t(id int);

-- SQLSTATEs: row errors are 22P03 (invalid_binary_representation) so that
-- Greenplum's SREH can skip the row; receive functions keep their own codes;
-- a stream cut inside a row is 08P01 (protocol_violation), which SREH cannot
-- skip.
SELECT k, pg_temp.decode_error(data, 'id int, name text, note text') AS error
  FROM (VALUES
    ('field count',   '\x00000014 0002 00000004 00000007 00000002 6162 ffffffff'::bytea),
    ('field overrun', '\x00000014 0003 00000004 00000007 00000008 6162 ffffffff'),
    ('row too short', '\x00000010 0003 00000004 00000007 00000002 6162'),
    ('trailing',      '\x00000016 0003 00000004 00000007 00000002 6162 ffffffff 0000'),
    ('bad length',    '\x00000014 0003 00000004 00000007 00000002 6162 fffffffe'),
    ('short int4',    '\x00000012 0003 00000002 0007 00000002 6162 ffffffff'),
    ('long int4',     '\x00000018 0003 00000008 00000007 00000000 00000002 6162 ffffffff'),
    ('bad utf8',      '\x00000014 0003 00000004 00000007 00000002 61ff ffffffff'),
    ('incomplete',    '\x00000014 0003 00000004 00000007 00000002 6162 ffffffff 00000014 00'),
    ('oversized',     '\x40000001 0001'),
    ('good',          '\x00000014 0003 00000004 00000007 00000002 6162 ffffffff')
  ) AS c(k, data);

-- Misuse: no column definition list, or a type without a receive function.
SELECT * FROM fs_formatter.decode('\x'::bytea);
SELECT * FROM fs_formatter.decode('\x'::bytea) AS t(v aclitem);
