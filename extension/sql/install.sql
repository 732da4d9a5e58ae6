--
-- What CREATE EXTENSION fs_formatter installs on PostgreSQL
-- (pg_regress --load-extension=fs_formatter has already run it).
--
SELECT e.extname, e.extversion, n.nspname AS schema, e.extrelocatable
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'fs_formatter';

-- Every function of the extension, with its volatility, strictness and
-- parallel safety.
SELECT p.oid::regprocedure AS function, p.prorettype::regtype AS returns,
       p.proretset AS setof, p.provolatile, p.proisstrict, p.proparallel
  FROM pg_depend d
  JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'fs_formatter')
   AND d.deptype = 'e'
 ORDER BY 1::text;

-- The Greenplum custom formatter exists only on Greenplum / WarehousePG.
SELECT count(*) AS fs_formatter_in_functions
  FROM pg_proc WHERE proname = 'fs_formatter_in';
