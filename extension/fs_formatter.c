/*-------------------------------------------------------------------------
 *
 * fs_formatter.c
 *	  SQL entry points of the fs_formatter extension:
 *
 *	  fs_formatter.decode(bytea) RETURNS SETOF record	  (all servers)
 *	  fs_formatter.encode_row(VARIADIC "any") RETURNS bytea (all servers)
 *	  fs_formatter_in() RETURNS record					  (Greenplum only: the
 *			FORMAT 'CUSTOM' (formatter='fs_formatter_in') of an external table)
 *
 * The row format is extension/FORMAT.md; decoding lives in fs_decode.c.
 *
 *-------------------------------------------------------------------------
 */
#include "fs_formatter.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/tuplestore.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(fs_decode);
PG_FUNCTION_INFO_V1(fs_encode_row);

/* ---------------------------------------------------------------------------
 * decode(data bytea) RETURNS SETOF record
 * ---------------------------------------------------------------------------
 */

/* What decode() keeps in fn_extra between calls of one call site. */
typedef struct FsDecodeCache
{
	FsDecoder  *decoder;
	MemoryContext rowcxt;		/* reset after every row */
} FsDecodeCache;

/*
 * Decode every row of data into tupstore.  Allocations of one row go to
 * rowcxt, which is reset after the row has been copied into the tuplestore.
 */
static void
fs_decode_all(FsDecoder *decoder, MemoryContext rowcxt,
			  Tuplestorestate *tupstore, TupleDesc setdesc,
			  const char *p, size_t avail)
{
	while (avail > 0)
	{
		uint32		frame;
		MemoryContext oldcxt;

		decoder->rownum++;
		frame = fs_frame_length(p, avail);
		if (frame == 0)
			fs_report_incomplete_row(avail);

		oldcxt = MemoryContextSwitchTo(rowcxt);
		fs_decode_row(decoder, p + FS_ROW_LEN_BYTES, frame - FS_ROW_LEN_BYTES);
		/* Copies the values into the tuplestore's own memory. */
		tuplestore_putvalues(tupstore, setdesc, decoder->values, decoder->nulls);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(rowcxt);

		p += frame;
		avail -= frame;
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Materialize mode: PostgreSQL's function scan stores every SRF result in a
 * tuplestore anyway, so building it here directly is the cheapest path, and
 * the decoder runs in one tight loop without per-row fmgr round trips.
 */
Datum
fs_decode(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	FsDecodeCache *cache = (FsDecodeCache *) fcinfo->flinfo->fn_extra;
	FsDecoder  *decoder;
	bytea	   *data;
	MemoryContext rowcxt;
	MemoryContext oldcxt;
	Tuplestorestate *tupstore;
	TupleDesc	setdesc;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if (!(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("materialize mode required, but it is not allowed in this context")));
	if (rsinfo->expectedDesc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("fs_formatter.decode() needs a column definition list"),
				 errhint("Call it as SELECT * FROM fs_formatter.decode(data) AS t(id int, name text).")));

	if (cache == NULL || !fs_decoder_matches(cache->decoder, rsinfo->expectedDesc))
	{
		MemoryContext fncxt = fcinfo->flinfo->fn_mcxt;

		if (cache == NULL)
		{
			cache = MemoryContextAllocZero(fncxt, sizeof(FsDecodeCache));
			cache->rowcxt = AllocSetContextCreate(fncxt, "fs_formatter row",
												  ALLOCSET_DEFAULT_SIZES);
			fcinfo->flinfo->fn_extra = cache;
		}
		/* A replaced decoder is small and dies with fn_mcxt; not worth freeing. */
		cache->decoder = fs_decoder_create(rsinfo->expectedDesc, fncxt);
	}
	decoder = cache->decoder;

	/* Not copied: fs_decode_row copies each value before its receive call. */
	data = PG_GETARG_BYTEA_PP(0);

	oldcxt = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	tupstore = tuplestore_begin_heap((rsinfo->allowedModes & SFRM_Materialize_Random) != 0,
									 false, work_mem);
	setdesc = CreateTupleDescCopy(decoder->tupdesc);
	MemoryContextSwitchTo(oldcxt);

	decoder->rownum = 0;
	rowcxt = cache->rowcxt;
	fs_decoder_push_context(decoder);
	/* One PG_TRY for the whole call, not per row: it only re-classifies. */
	PG_TRY();
	{
		fs_decode_all(decoder, rowcxt, tupstore, setdesc,
					  VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data));
	}
	PG_CATCH();
	{
		fs_rethrow_error(decoder, rowcxt);
	}
	PG_END_TRY();
	fs_decoder_pop_context(decoder);

	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tupstore;
	rsinfo->setDesc = setdesc;
	return (Datum) 0;
}

/* ---------------------------------------------------------------------------
 * encode_row(VARIADIC "any") RETURNS bytea
 *
 * The inverse of decode for one row: each argument through its type's send
 * function, NULL as length -1.  For tests and benchmarks; flowserver's shards
 * have their own writer (engine/src/codec/fsrow.rs).
 * ---------------------------------------------------------------------------
 */

/* Send functions of one call site, keyed by the argument types. */
typedef struct FsEncodeCache
{
	int			nargs;
	bool		variadic_array; /* called as encode_row(VARIADIC array) */
	Oid		   *types;			/* per argument, or the array's element type */
	FmgrInfo   *send;
	int16		elmlen;			/* element storage, variadic_array only */
	bool		elmbyval;
	char		elmalign;
} FsEncodeCache;

static FsEncodeCache *
fs_encode_cache(FunctionCallInfo fcinfo, int nargs, bool variadic_array)
{
	FsEncodeCache *cache = (FsEncodeCache *) fcinfo->flinfo->fn_extra;
	MemoryContext fncxt = fcinfo->flinfo->fn_mcxt;
	Oid		   *types = palloc(sizeof(Oid) * nargs);
	int			i;

	for (i = 0; i < nargs; i++)
	{
		types[i] = get_fn_expr_argtype(fcinfo->flinfo, i);
		if (!OidIsValid(types[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("could not determine the type of argument %d", i + 1)));
		if (variadic_array)
		{
			types[i] = get_base_element_type(types[i]);
			if (!OidIsValid(types[i]))
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("VARIADIC argument must be an array")));
		}
	}

	if (cache != NULL && cache->nargs == nargs &&
		cache->variadic_array == variadic_array &&
		memcmp(cache->types, types, sizeof(Oid) * nargs) == 0)
	{
		pfree(types);
		return cache;
	}

	cache = MemoryContextAllocZero(fncxt, sizeof(FsEncodeCache));
	cache->nargs = nargs;
	cache->variadic_array = variadic_array;
	cache->types = MemoryContextAlloc(fncxt, sizeof(Oid) * nargs);
	memcpy(cache->types, types, sizeof(Oid) * nargs);
	cache->send = MemoryContextAllocZero(fncxt, sizeof(FmgrInfo) * nargs);
	for (i = 0; i < nargs; i++)
	{
		Oid			sendoid;
		bool		isvarlena;

		getTypeBinaryOutputInfo(types[i], &sendoid, &isvarlena);
		fmgr_info_cxt(sendoid, &cache->send[i], fncxt);
	}
	if (variadic_array)
		get_typlenbyvalalign(types[0], &cache->elmlen, &cache->elmbyval,
							 &cache->elmalign);
	pfree(types);
	fcinfo->flinfo->fn_extra = cache;
	return cache;
}

static inline void
fs_put_u32(char *dst, uint32 v)
{
	dst[0] = (char) (v >> 24);
	dst[1] = (char) (v >> 16);
	dst[2] = (char) (v >> 8);
	dst[3] = (char) v;
}

static void
fs_append_field(StringInfo out, FmgrInfo *send, Datum value, bool isnull)
{
	char		lenbuf[4];

	if (isnull)
	{
		fs_put_u32(lenbuf, (uint32) -1);
		appendBinaryStringInfo(out, lenbuf, 4);
	}
	else
	{
		bytea	   *bin = SendFunctionCall(send, value);
		uint32		len = VARSIZE(bin) - VARHDRSZ;

		fs_put_u32(lenbuf, len);
		appendBinaryStringInfo(out, lenbuf, 4);
		appendBinaryStringInfo(out, VARDATA(bin), len);
		pfree(bin);
	}
}

Datum
fs_encode_row(PG_FUNCTION_ARGS)
{
	bool		variadic_array = get_fn_expr_variadic(fcinfo->flinfo);
	int			nargs = PG_NARGS();
	FsEncodeCache *cache;
	StringInfoData out;
	int			nfields;
	uint64		row_len;
	int			i;

	/* encode_row(VARIADIC NULL::int[]) has no row to describe. */
	if (variadic_array && PG_ARGISNULL(0))
		PG_RETURN_NULL();

	cache = fs_encode_cache(fcinfo, nargs, variadic_array);

	/* Varlena header and row_len are filled in once the length is known. */
	initStringInfo(&out);
	appendStringInfoSpaces(&out, VARHDRSZ + FS_ROW_LEN_BYTES + 2);

	if (!variadic_array)
	{
		nfields = nargs;
		for (i = 0; i < nargs; i++)
			fs_append_field(&out, &cache->send[i], PG_GETARG_DATUM(i),
							PG_ARGISNULL(i));
	}
	else
	{
		ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
		Datum	   *elems;
		bool	   *elemnulls;

		deconstruct_array(arr, cache->types[0], cache->elmlen, cache->elmbyval,
						  cache->elmalign, &elems, &elemnulls, &nfields);
		if (nfields > FS_MAX_FIELDS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("a row has at most %d fields, not %d",
							FS_MAX_FIELDS, nfields)));
		for (i = 0; i < nfields; i++)
			fs_append_field(&out, &cache->send[0], elems[i], elemnulls[i]);
	}

	row_len = (uint64) out.len - VARHDRSZ - FS_ROW_LEN_BYTES;
	if (row_len > FS_MAX_ROW_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("row length %llu exceeds 1 GiB",
						(unsigned long long) row_len)));
	fs_put_u32(out.data + VARHDRSZ, (uint32) row_len);
	out.data[VARHDRSZ + FS_ROW_LEN_BYTES] = (char) (nfields >> 8);
	out.data[VARHDRSZ + FS_ROW_LEN_BYTES + 1] = (char) nfields;
	SET_VARSIZE(out.data, out.len);
	PG_RETURN_BYTEA_P((bytea *) out.data);
}

/* ---------------------------------------------------------------------------
 * fs_formatter_in() RETURNS record -- Greenplum / WarehousePG only
 *
 * Called by the external scan once per output tuple (see fs_compat.h for the
 * driver's contract).  Returns one tuple per call, or FMT_NEED_MORE_DATA when
 * the unread part of the buffer holds no complete row.
 *
 * Bad rows: before decoding, the whole row is described as the "bad row"
 * (data, length, number, byte count).  If decoding raises a data error and
 * SREH is on, the driver logs those bytes and advances the data cursor by
 * their length itself (fileam.c / extaccess.c: fmt_databuf.cursor +=
 * fmt_badrow_len), so the cursor must still point at the row's start here --
 * moving it past the row as well would skip the next row too.  The cursor is
 * moved only once a row has decoded.
 * ---------------------------------------------------------------------------
 */
#if FS_GREENPLUM

PG_FUNCTION_INFO_V1(fs_formatter_in);

Datum
fs_formatter_in(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	FsDecoder  *decoder;
	char	   *buf;
	int			cursor;
	size_t		avail;
	uint32		frame;
	MemoryContext rowcxt;
	MemoryContext oldcxt;
	HeapTuple	tuple;

	if (!FS_FMT_CALLED_AS_FORMATTER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("fs_formatter_in: not called by the external table format manager")));

	tupdesc = FS_FMT_TUPDESC(fcinfo);
	decoder = (FsDecoder *) FS_FMT_USER_CTX(fcinfo);
	if (decoder == NULL)
	{
		/* Lives as long as the scan's FmgrInfo, i.e. the whole scan. */
		decoder = fs_decoder_create(tupdesc, fcinfo->flinfo->fn_mcxt);
		FS_FMT_SET_USER_CTX(fcinfo, decoder);
	}

	buf = FS_FMT_DATABUF(fcinfo);
	cursor = FS_FMT_DATACURSOR(fcinfo);
	avail = (size_t) (FS_FMT_DATALEN(fcinfo) - cursor);

	fs_decoder_push_context(decoder);
	decoder->rownum++;			/* the row about to be read, for error contexts */
	frame = fs_frame_length(buf + cursor, avail);
	if (frame == 0)
	{
		/* The stream ended inside a row: no later data can complete it. */
		if (FS_FMT_SAW_EOF(fcinfo) && avail > 0)
			fs_report_incomplete_row(avail);
		decoder->rownum--;		/* not read yet: asked again with more data */
		fs_decoder_pop_context(decoder);
		FS_FMT_RETURN_NEED_MORE_DATA(fcinfo);
	}

	/* fmt_badrow_num is an int; the error log's linenum is informative only. */
	FS_FMT_SET_BAD_ROW_NUM(fcinfo, (int) Min(decoder->rownum, (long long) INT_MAX));
	FS_FMT_SET_BAD_ROW_DATA(fcinfo, buf + cursor, (int) frame);
	FS_FMT_ADD_BYTE_NUMBER(fcinfo, (int) frame);

	/* The driver resets this context after each tuple. */
	rowcxt = FS_FMT_PER_ROW_MEM_CTX(fcinfo);
	oldcxt = MemoryContextSwitchTo(rowcxt);
	PG_TRY();
	{
		fs_decode_row(decoder, buf + cursor + FS_ROW_LEN_BYTES,
					  frame - FS_ROW_LEN_BYTES);
	}
	PG_CATCH();
	{
		/* Receive functions' 08P01 becomes 22P03, so SREH can skip the row. */
		fs_rethrow_error(decoder, rowcxt);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	fs_decoder_pop_context(decoder);

	FS_FMT_SET_DATACURSOR(fcinfo, cursor + (int) frame);
	/*
	 * In the caller's context, not the per-row one: the driver resets the
	 * per-row context before it hands the tuple on.
	 */
	tuple = heap_form_tuple(tupdesc, decoder->values, decoder->nulls);
	FS_FMT_SET_TUPLE(fcinfo, tuple);
	FS_FMT_RETURN_TUPLE(tuple);
}

#endif							/* FS_GREENPLUM */
