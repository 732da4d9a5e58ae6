/*-------------------------------------------------------------------------
 *
 * fs_compat.h
 *	  Every difference between the PostgreSQL and the Greenplum/WarehousePG
 *	  builds of fs_formatter, and between the server versions it targets.
 *
 * The rest of the extension includes this header instead of naming any
 * Greenplum header, macro or type itself, so a PostgreSQL build cannot
 * reference a Greenplum symbol by accident and a port to another fork only
 * touches this file.
 *
 * Greenplum is recognised by GP_VERSION_NUM, which Greenplum's pg_config.h
 * defines (WarehousePG 6/7 inherit it).  Versions: PostgreSQL 12 and later
 * (Greenplum 7 / WarehousePG 7 are 12-based) are the tested targets; the
 * fallbacks below keep the 9.4-based Greenplum 6 / WarehousePG 6 compiling.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FS_COMPAT_H
#define FS_COMPAT_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "fmgr.h"
#include "utils/memutils.h"

#ifdef GP_VERSION_NUM
#define FS_GREENPLUM 1
#else
#define FS_GREENPLUM 0
#endif

/* ---------- server version differences ---------- */

/* TupleDescAttr() arrived in PostgreSQL 10 (attrs became an inline array). */
#ifndef TupleDescAttr
#define TupleDescAttr(tupdesc, i) ((tupdesc)->attrs[(i)])
#endif

/* ALLOCSET_DEFAULT_SIZES arrived in PostgreSQL 9.6. */
#ifndef ALLOCSET_DEFAULT_SIZES
#define ALLOCSET_DEFAULT_SIZES \
	ALLOCSET_DEFAULT_MINSIZE, ALLOCSET_DEFAULT_INITSIZE, ALLOCSET_DEFAULT_MAXSIZE
#endif

/* ---------- Greenplum custom formatter API (access/formatter.h) ---------- */

#if FS_GREENPLUM

#include "access/formatter.h"
#include "funcapi.h"			/* HeapTupleGetDatum, used by FORMATTER_RETURN_TUPLE */

/*
 * Thin renames of the FORMATTER_* macros, so that fs_formatter.c never spells
 * a Greenplum name.  Semantics (Greenplum's external scan driver,
 * externalgettup_custom in fileam.c / extaccess.c):
 *
 * - the driver calls the formatter once per output tuple while its buffer
 *   holds data; unread input starts at DATABUF + DATACURSOR;
 * - the formatter consumes a row by moving DATACURSOR past it, or returns the
 *   FMT_NEED_MORE_DATA notification when the buffer holds no complete row;
 * - on an ERROR of class 22 (data exception) with SREH enabled, the driver
 *   logs BAD_ROW_DATA/BAD_ROW_LEN and itself adds BAD_ROW_LEN to DATACURSOR,
 *   then calls the formatter again.  Any other error class aborts the scan.
 */
#define FS_FMT_CALLED_AS_FORMATTER(fcinfo)	CALLED_AS_FORMATTER(fcinfo)
#define FS_FMT_TUPDESC(fcinfo)				FORMATTER_GET_TUPDESC(fcinfo)
#define FS_FMT_DATABUF(fcinfo)				FORMATTER_GET_DATABUF(fcinfo)
#define FS_FMT_DATALEN(fcinfo)				FORMATTER_GET_DATALEN(fcinfo)
#define FS_FMT_DATACURSOR(fcinfo)			FORMATTER_GET_DATACURSOR(fcinfo)
#define FS_FMT_SAW_EOF(fcinfo)				FORMATTER_GET_SAW_EOF(fcinfo)
#define FS_FMT_PER_ROW_MEM_CTX(fcinfo)		FORMATTER_GET_PER_ROW_MEM_CTX(fcinfo)
#define FS_FMT_USER_CTX(fcinfo)				FORMATTER_GET_USER_CTX(fcinfo)
#define FS_FMT_SET_USER_CTX(fcinfo, p)		FORMATTER_SET_USER_CTX(fcinfo, p)
#define FS_FMT_SET_DATACURSOR(fcinfo, n)	FORMATTER_SET_DATACURSOR(fcinfo, n)
#define FS_FMT_SET_BAD_ROW_NUM(fcinfo, n)	FORMATTER_SET_BAD_ROW_NUM(fcinfo, n)
#define FS_FMT_SET_BAD_ROW_DATA(fcinfo, p, n) FORMATTER_SET_BAD_ROW_DATA(fcinfo, p, n)
/* Adds n to the running byte count the driver reports as the error's bytenum. */
#define FS_FMT_ADD_BYTE_NUMBER(fcinfo, n)	FORMATTER_SET_BYTE_NUMBER(fcinfo, n)
#define FS_FMT_SET_TUPLE(fcinfo, t)			FORMATTER_SET_TUPLE(fcinfo, t)
#define FS_FMT_RETURN_TUPLE(t)				FORMATTER_RETURN_TUPLE(t)
#define FS_FMT_RETURN_NEED_MORE_DATA(fcinfo) \
	FORMATTER_RETURN_NOTIFICATION(fcinfo, FMT_NEED_MORE_DATA)

#endif							/* FS_GREENPLUM */

#endif							/* FS_COMPAT_H */
