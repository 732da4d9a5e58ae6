/* fs_formatter--1.0.sql */

-- complain if the script is sourced in psql rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION fs_formatter" to load this file. \quit

-- Unqualified objects land in the extension's schema, fs_formatter.

-- "decode" is quoted: Greenplum reserves DECODE as a keyword (its Oracle-style
-- function); on Greenplum call it as fs_formatter."decode"(data).
-- Rows of extension/FORMAT.md -> a set of records; needs a column definition
-- list: SELECT * FROM fs_formatter.decode(data) AS t(id int, name text).
-- STABLE, not IMMUTABLE: text-like receive functions depend on client_encoding.
CREATE FUNCTION "decode"(data bytea)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'fs_decode'
LANGUAGE C STRICT STABLE;

COMMENT ON FUNCTION "decode"(bytea) IS
'decode fs_formatter rows (FORMAT.md) into records; call with a column definition list';

-- One row of extension/FORMAT.md from its arguments (send functions; NULL -> -1).
CREATE FUNCTION encode_row(VARIADIC "any")
RETURNS bytea
AS 'MODULE_PATHNAME', 'fs_encode_row'
LANGUAGE C STABLE;

COMMENT ON FUNCTION encode_row("any") IS
'encode the arguments as one fs_formatter row (FORMAT.md), for tests and benchmarks';

DO $$
BEGIN
    -- PARALLEL SAFE is 9.6+ syntax; Greenplum 6 / WarehousePG 6 are 9.4-based.
    IF current_setting('server_version_num')::int >= 90600 THEN
        EXECUTE 'ALTER FUNCTION "decode"(bytea) PARALLEL SAFE';
        EXECUTE 'ALTER FUNCTION encode_row("any") PARALLEL SAFE';
    END IF;

    -- The custom formatter exists only in a Greenplum build of the library.
    -- Greenplum resolves FORMAT 'CUSTOM' (formatter='name') as an unqualified
    -- name through the search_path (a dotted name is not split into schema and
    -- function), so the function goes to pg_catalog, which every search_path
    -- includes, rather than to the fs_formatter schema.
    IF version() ~ '(Greenplum|WarehousePG)' THEN
        EXECUTE $f$
            CREATE FUNCTION pg_catalog.fs_formatter_in()
            RETURNS record
            AS 'MODULE_PATHNAME', 'fs_formatter_in'
            LANGUAGE C STABLE
        $f$;
        EXECUTE $f$
            COMMENT ON FUNCTION pg_catalog.fs_formatter_in() IS
            'readable external table formatter for fs_formatter rows: FORMAT ''CUSTOM'' (formatter=''fs_formatter_in'')'
        $f$;
    END IF;
END
$$;
