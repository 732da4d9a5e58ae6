/*-------------------------------------------------------------------------
 *
 * fs_decode.c
 *	  Decoding core: FORMAT.md rows -> values/nulls of a tuple descriptor.
 *
 * Every value goes through its column type's binary receive function, as in
 * COPY ... (FORMAT binary): FORMAT.md defines a row as row_len followed by
 * exactly a binary COPY tuple, so the checks below mirror CopyReadBinaryAttribute
 * (NULLs still reach non-strict receive functions such as domain_recv; a
 * receive function must consume its whole field) plus the row-framing checks
 * FORMAT.md lists.
 *
 *-------------------------------------------------------------------------
 */
#include "fs_formatter.h"

#include "utils/lsyscache.h"

/*
 * Big-endian loads.  Written with shifts so they are alignment-free and
 * endian-independent; compilers turn them into a single load plus bswap.
 */
static inline uint32
fs_get_u32(const unsigned char *p)
{
	return ((uint32) p[0] << 24) | ((uint32) p[1] << 16) |
		((uint32) p[2] << 8) | (uint32) p[3];
}

static inline uint16
fs_get_u16(const unsigned char *p)
{
	return (uint16) (((uint32) p[0] << 8) | (uint32) p[1]);
}

FsDecoder *
fs_decoder_create(TupleDesc tupdesc, MemoryContext mcxt)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(mcxt);
	FsDecoder  *decoder = palloc0(sizeof(FsDecoder));
	int			natts = tupdesc->natts;
	int			i;

	/* Own copy: the names must outlive the caller's descriptor for messages. */
	decoder->tupdesc = CreateTupleDescCopy(tupdesc);
	decoder->columns = palloc0(sizeof(FsColumn) * (natts > 0 ? natts : 1));
	decoder->values = palloc0(sizeof(Datum) * (natts > 0 ? natts : 1));
	decoder->nulls = palloc(sizeof(bool) * (natts > 0 ? natts : 1));
	decoder->curcol = -1;
	initStringInfo(&decoder->field);

	for (i = 0; i < natts; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(decoder->tupdesc, i);
		FsColumn   *col;
		Oid			recvoid;

		/* Dropped columns carry no field and stay NULL. */
		decoder->nulls[i] = true;
		if (attr->attisdropped)
			continue;

		col = &decoder->columns[decoder->ncolumns++];
		/* Errors out for a type without a receive function, before any row. */
		getTypeBinaryInputInfo(attr->atttypid, &recvoid, &col->typioparam);
		fmgr_info_cxt(recvoid, &col->recv, mcxt);
		col->typmod = attr->atttypmod;
		col->attidx = i;
		col->name = NameStr(attr->attname);
	}

	MemoryContextSwitchTo(oldcxt);
	return decoder;
}

/*
 * Whether a cached decoder still fits this descriptor.  A call site's column
 * list does not change while its FmgrInfo lives, but checking costs little
 * next to a whole decode() call and makes a stale cache impossible.
 */
bool
fs_decoder_matches(const FsDecoder *decoder, TupleDesc tupdesc)
{
	int			i;

	if (decoder->tupdesc->natts != tupdesc->natts)
		return false;
	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(decoder->tupdesc, i);
		Form_pg_attribute b = TupleDescAttr(tupdesc, i);

		if (a->atttypid != b->atttypid || a->atttypmod != b->atttypmod ||
			a->attisdropped != b->attisdropped ||
			strcmp(NameStr(a->attname), NameStr(b->attname)) != 0)
			return false;
	}
	return true;
}

/*
 * Length of the row starting at data (row_len plus its 4 bytes), or 0 when
 * avail bytes do not hold the whole row yet.  A row_len over the 1 GiB limit
 * is reported as soon as its 4 bytes are seen: waiting for that much data
 * would only end in an out-of-memory error, and the framing is lost anyway.
 */
uint32
fs_frame_length(const char *data, size_t avail)
{
	uint32		row_len;

	if (avail < FS_ROW_LEN_BYTES)
		return 0;
	row_len = fs_get_u32((const unsigned char *) data);
	if (row_len > FS_MAX_ROW_LEN)
		ereport(ERROR,
				(errcode(FS_ERRCODE_STREAM),
				 errmsg("row length %u exceeds 1 GiB", row_len)));
	if (avail - FS_ROW_LEN_BYTES < row_len)
		return 0;
	return row_len + FS_ROW_LEN_BYTES;
}

void
fs_report_incomplete_row(size_t avail)
{
	ereport(ERROR,
			(errcode(FS_ERRCODE_STREAM),
			 errmsg("incomplete row at end of data: %llu bytes",
					(unsigned long long) avail)));
}

static void
fs_error_context(void *arg)
{
	FsDecoder  *decoder = (FsDecoder *) arg;

	if (decoder->curcol >= 0)
		errcontext("fs_formatter row %lld, column \"%s\"",
				   decoder->rownum, decoder->columns[decoder->curcol].name);
	else
		errcontext("fs_formatter row %lld", decoder->rownum);
}

/* Names the row (and the column inside a receive function) in any error. */
void
fs_decoder_push_context(FsDecoder *decoder)
{
	decoder->curcol = -1;		/* a previous row may have failed inside a receive */
	decoder->errcb.callback = fs_error_context;
	decoder->errcb.arg = decoder;
	decoder->errcb.previous = error_context_stack;
	error_context_stack = &decoder->errcb;
}

void
fs_decoder_pop_context(FsDecoder *decoder)
{
	error_context_stack = decoder->errcb.previous;
	decoder->curcol = -1;
}

static void fs_row_shorter_than_fields(uint32 row_len) pg_attribute_noreturn();

/*
 * Re-throw the error being handled (call from PG_CATCH around fs_decode_row).
 *
 * The pq_getmsg* helpers that receive functions use report malformed bytes --
 * "insufficient data left in message", "invalid string in message" -- as
 * ERRCODE_PROTOCOL_VIOLATION (08P01), because they were written for the wire
 * protocol.  Inside a field that is a data error of the row, and it must be
 * class 22 for Greenplum's SREH to log the row and go on instead of aborting
 * the scan; so it is re-thrown as FS_ERRCODE_ROW with its message and context
 * unchanged.  Everything else (other receive-function errors, out of memory,
 * cancels) passes through untouched.  cxt must not be ErrorContext; the copy
 * made there is short-lived.
 */
void
fs_rethrow_error(FsDecoder *decoder, MemoryContext cxt)
{
	if (decoder->curcol >= 0)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
		ErrorData  *edata = CopyErrorData();

		MemoryContextSwitchTo(oldcxt);
		decoder->curcol = -1;
		if (edata->sqlerrcode == ERRCODE_PROTOCOL_VIOLATION)
		{
			FlushErrorState();
			edata->sqlerrcode = FS_ERRCODE_ROW;
			/* Does not run the context callbacks again: the context stays. */
			ReThrowError(edata);
		}
		FreeErrorData(edata);
	}
	PG_RE_THROW();
}

static void
fs_row_shorter_than_fields(uint32 row_len)
{
	ereport(ERROR,
			(errcode(FS_ERRCODE_ROW),
			 errmsg("row length %u is shorter than its fields", row_len)));
}

/*
 * Run column i's receive function over len bytes at src.
 *
 * The value is copied into the decoder's own buffer first, as COPY does with
 * its attribute_buf: receive functions may rely on the StringInfo convention
 * of a NUL after the data, and record_recv/array_recv even write into the
 * buffer temporarily.  Neither may touch the caller's input, which can be a
 * read-only detoasted datum (decode) or the next row (the formatter buffer).
 */
static Datum
fs_receive(FsDecoder *decoder, int i, const char *src, int len)
{
	FsColumn   *col = &decoder->columns[i];
	StringInfo	buf = &decoder->field;
	Datum		value;

	if (len >= buf->maxlen)
	{
		resetStringInfo(buf);
		enlargeStringInfo(buf, len);
	}
	memcpy(buf->data, src, len);
	buf->data[len] = '\0';
	buf->len = len;
	buf->cursor = 0;

	decoder->curcol = i;
	value = ReceiveFunctionCall(&col->recv, buf, col->typioparam, col->typmod);
	/* Same rule and message as binary COPY: the value is the whole field. */
	if (buf->cursor != buf->len)
		ereport(ERROR,
				(errcode(FS_ERRCODE_ROW),
				 errmsg("incorrect binary data format")));
	decoder->curcol = -1;
	return value;
}

/*
 * Decode one row into decoder->values/nulls.  row points just after row_len
 * and holds row_len bytes.  Allocations (by-reference values) happen in the
 * caller's current memory context, which the callers reset per row.
 */
void
fs_decode_row(FsDecoder *decoder, const char *row, uint32 row_len)
{
	const unsigned char *p = (const unsigned char *) row;
	Datum	   *values = decoder->values;
	bool	   *nulls = decoder->nulls;
	uint32		pos;
	int			nfields;
	int			i;

	if (row_len < 2)
		fs_row_shorter_than_fields(row_len);

	nfields = fs_get_u16(p);
	if (nfields != decoder->ncolumns)
		ereport(ERROR,
				(errcode(FS_ERRCODE_ROW),
				 errmsg("row has %d fields but the table has %d columns",
						nfields, decoder->ncolumns)));
	pos = 2;

	for (i = 0; i < decoder->ncolumns; i++)
	{
		FsColumn   *col = &decoder->columns[i];
		int32		len;

		if (row_len - pos < 4)
			fs_row_shorter_than_fields(row_len);
		len = (int32) fs_get_u32(p + pos);
		pos += 4;

		if (len == -1)
		{
			nulls[col->attidx] = true;
			values[col->attidx] = (Datum) 0;
			/* Like COPY: a non-strict receive function (a domain's) sees NULL too. */
			if (!col->recv.fn_strict)
			{
				decoder->curcol = i;
				values[col->attidx] = ReceiveFunctionCall(&col->recv, NULL,
														  col->typioparam,
														  col->typmod);
				decoder->curcol = -1;
			}
			continue;
		}
		if (len < 0)
			ereport(ERROR,
					(errcode(FS_ERRCODE_ROW),
					 errmsg("field for column \"%s\" has invalid length %d",
							col->name, len)));
		if ((uint32) len > row_len - pos)
			ereport(ERROR,
					(errcode(FS_ERRCODE_ROW),
					 errmsg("field for column \"%s\" claims %d bytes but only %u remain in the row",
							col->name, len, row_len - pos)));

		values[col->attidx] = fs_receive(decoder, i, row + pos, len);
		nulls[col->attidx] = false;
		pos += (uint32) len;
	}

	if (pos != row_len)
		ereport(ERROR,
				(errcode(FS_ERRCODE_ROW),
				 errmsg("row ends %u bytes after its last field", row_len - pos)));
}
