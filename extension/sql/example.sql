--
-- The example of extension/FORMAT.md, written by hand:
-- table (id int, name text, note text), row (7, 'ab', NULL).
--
SELECT * FROM fs_formatter.decode(
    '\x00000014'            -- row_len = 20
    '0003'                  -- 3 fields
    '00000004 00000007'     -- id   = 7
    '00000002 6162'         -- name = 'ab'
    'ffffffff'::bytea       -- note = NULL
) AS t(id int, name text, note text);

-- encode_row writes exactly those 24 bytes.
SELECT fs_formatter.encode_row(7, 'ab'::text, NULL::text);
SELECT fs_formatter.encode_row(7, 'ab'::text, NULL::text)
       = '\x00000014 0003 00000004 00000007 00000002 6162 ffffffff'::bytea
       AS same_bytes;
SELECT length(fs_formatter.encode_row(7, 'ab'::text, NULL::text)) AS bytes;

-- The VARIADIC array form encodes the same row shape.
SELECT fs_formatter.encode_row(VARIADIC ARRAY['7', 'ab', NULL]::text[]);
SELECT fs_formatter.encode_row(VARIADIC NULL::text[]) IS NULL AS null_array;
