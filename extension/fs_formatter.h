/*-------------------------------------------------------------------------
 *
 * fs_formatter.h
 *	  The decoding core shared by fs_formatter.decode() and the Greenplum
 *	  custom formatter fs_formatter_in: FORMAT.md rows -> Datums of a TupleDesc.
 *
 * Row layout (FORMAT.md, version 1; integers big-endian):
 *
 *	 row   := row_len:u32 field_count:u16 field{field_count}
 *	 field := len:i32 value[len]		-- len = -1: NULL
 *
 * The core works on one complete row at a time.  Finding row boundaries in a
 * buffer (fs_frame_length) is separate from decoding (fs_decode_row), because
 * the two callers differ exactly there: decode() owns the whole stream, the
 * Greenplum formatter sees a buffer that may end inside a row.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FS_FORMATTER_H
#define FS_FORMATTER_H

#include "fs_compat.h"

#include "lib/stringinfo.h"

/* Bytes of row_len in front of every row. */
#define FS_ROW_LEN_BYTES	4
/* FORMAT.md: "A row is at most 1 GiB" (row_len counts the bytes after itself). */
#define FS_MAX_ROW_LEN		((uint32) 1 << 30)
/* field_count is a u16. */
#define FS_MAX_FIELDS		0xFFFF

/*
 * A malformed row is a data error of that row: class 22, so Greenplum's
 * single-row error handling (SREH) may log it and go on.
 */
#define FS_ERRCODE_ROW		ERRCODE_INVALID_BINARY_REPRESENTATION
/*
 * A stream that ends inside a row, or whose row header cannot be a row, has
 * lost its framing: nothing after it can be trusted, and FORMAT.md says it
 * cannot be skipped.  Greenplum's SREH only swallows class 22 errors, so this
 * one must use another class to abort the scan instead of logging a bogus row.
 */
#define FS_ERRCODE_STREAM	ERRCODE_PROTOCOL_VIOLATION

/* One column that receives a field. */
typedef struct FsColumn
{
	FmgrInfo	recv;			/* the type's typreceive function */
	Oid			typioparam;
	int32		typmod;
	int			attidx;			/* index in the tuple descriptor */
	const char *name;			/* for messages */
} FsColumn;

/*
 * Per-call-site decoding state, built once from the tuple descriptor and kept
 * in a long-lived memory context (fn_extra, or the formatter's user context).
 */
typedef struct FsDecoder
{
	TupleDesc	tupdesc;		/* private copy */
	int			ncolumns;		/* non-dropped attributes = fields per row */
	FsColumn   *columns;
	Datum	   *values;			/* tupdesc->natts entries */
	bool	   *nulls;
	StringInfoData field;		/* writable, NUL-terminated copy of one value */
	long long	rownum;			/* 1-based ordinal of the current row */
	int			curcol;			/* column inside a receive call, or -1 */
	ErrorContextCallback errcb;
} FsDecoder;

extern FsDecoder *fs_decoder_create(TupleDesc tupdesc, MemoryContext mcxt);
extern bool fs_decoder_matches(const FsDecoder *decoder, TupleDesc tupdesc);

extern uint32 fs_frame_length(const char *data, size_t avail);
extern void fs_decode_row(FsDecoder *decoder, const char *row, uint32 row_len);
extern void fs_report_incomplete_row(size_t avail) pg_attribute_noreturn();
extern void fs_rethrow_error(FsDecoder *decoder, MemoryContext cxt) pg_attribute_noreturn();

extern void fs_decoder_push_context(FsDecoder *decoder);
extern void fs_decoder_pop_context(FsDecoder *decoder);

#endif							/* FS_FORMATTER_H */
