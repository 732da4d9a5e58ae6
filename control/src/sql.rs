//! SQL text: identifier and literal quoting, and the statements flowserver
//! owns (offsets, error rows). Identifiers are always quoted, so a table named
//! `Order Lines` or `select` loads like any other.

/// `"name"` with embedded quotes doubled.
pub fn ident(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('"');
    for c in name.chars() {
        if c == '"' {
            quoted.push('"');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// `'text'` with embedded quotes doubled (standard_conforming_strings on).
pub fn literal(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('\'');
    for c in text.chars() {
        if c == '\'' {
            quoted.push('\'');
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

/// `"schema"."table"`, or `"table"` when no schema is given.
pub fn qualified(schema: Option<&str>, table: &str) -> String {
    match schema {
        Some(schema) => format!("{}.{}", ident(schema), ident(table)),
        None => ident(table),
    }
}

/// The target tables of a job, qualified and quoted, comma-separated.
pub fn table_list(tables: &[crate::jobspec::TargetTable]) -> String {
    tables.iter().map(|t| qualified(t.schema.as_deref(), &t.table)).collect::<Vec<_>>().join(", ")
}

/// The statements on flowserver's own tables in the job's staging schema.
/// `partition` is quoted: Greenplum reserves the word.
///
/// `flow_offsets` also counts, per partition, the messages read and the
/// messages rejected since the job's offsets were last reset: the span
/// `error_limit` is judged over (see the committer). The counts change in the
/// same transaction as the offsets, so a restart neither forgets nor recounts.
#[derive(Debug, Clone)]
pub struct BookkeepingSql {
    pub create_offsets: String,
    pub create_errors: String,
    /// $1 staging schema → the names of flow_offsets' columns (empty when the
    /// table does not exist), to upgrade a table written by an older flowserver.
    pub offsets_columns: &'static str,
    /// Adds the counting columns to a flow_offsets without them.
    pub upgrade_offsets: String,
    /// $1 job, $2 topic, $3 int[] partitions → (partition, next_offset).
    pub read_offsets: String,
    /// $1 job, $2 topic, $3 int[] partitions, $4 bigint[] stored_before
    /// (-1: no row expected), $5 bigint[] next offsets, $6 bigint[] messages
    /// read. Affects one row per partition exactly when every stored offset
    /// is still `stored_before`.
    pub advance_offsets: String,
    /// Like `advance_offsets` without the compare-and-set, for the modes whose
    /// positions live in the consumer group: the table then records what was
    /// loaded and counts messages for `error_limit`.
    pub record_offsets: String,
    /// $1 job, $2 topic, $3 int[] partitions, $4 bigint[] rejected messages to add.
    pub add_rejected: String,
    /// $1 job, $2 topic → (messages, rejected) summed over the job's partitions.
    pub read_totals: String,
    /// $1 job, $2 topic, $3 int[] partitions, $4 bigint[] offsets, $5 boolean:
    /// sets the offsets unconditionally; with $5 the counts start again at 0.
    pub reset_offsets: String,
    /// $1 job, $2 topic, $3 int[], $4 bigint[], $5 timestamptz[], $6 text[], $7 bytea[].
    pub insert_errors: String,
}

impl BookkeepingSql {
    pub fn new(staging_schema: &str) -> BookkeepingSql {
        let offsets = format!("{}.flow_offsets", ident(staging_schema));
        let errors = format!("{}.flow_errors", ident(staging_schema));
        let upsert = |condition: &str| {
            format!(
                "WITH input AS (SELECT * FROM unnest($3::int[], $4::bigint[], $5::bigint[], $6::bigint[]) \
                 AS i(\"partition\", stored_before, next_offset, messages)) \
                 INSERT INTO {offsets} AS o (job, topic, \"partition\", next_offset, messages, updated_at) \
                 SELECT $1, $2, \"partition\", next_offset, messages, now() FROM input \
                 ON CONFLICT (job, topic, \"partition\") DO UPDATE \
                 SET next_offset = EXCLUDED.next_offset, messages = o.messages + EXCLUDED.messages, \
                 updated_at = EXCLUDED.updated_at{condition}"
            )
        };
        BookkeepingSql {
            create_offsets: format!(
                "CREATE TABLE IF NOT EXISTS {offsets} (\
                 job text NOT NULL, topic text NOT NULL, \"partition\" integer NOT NULL, \
                 next_offset bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), \
                 messages bigint NOT NULL DEFAULT 0, rejected bigint NOT NULL DEFAULT 0, \
                 PRIMARY KEY (job, topic, \"partition\"))"
            ),
            create_errors: format!(
                "CREATE TABLE IF NOT EXISTS {errors} (\
                 job text NOT NULL, topic text NOT NULL, \"partition\" integer NOT NULL, \"offset\" bigint NOT NULL, \
                 message_time timestamptz, error_time timestamptz NOT NULL DEFAULT now(), \
                 reason text NOT NULL, raw bytea, \
                 PRIMARY KEY (job, topic, \"partition\", \"offset\"))"
            ),
            offsets_columns: "SELECT a.attname::text FROM pg_attribute a \
                 JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = 'flow_offsets' AND a.attnum > 0 AND NOT a.attisdropped",
            upgrade_offsets: format!(
                "ALTER TABLE {offsets} ADD COLUMN IF NOT EXISTS messages bigint NOT NULL DEFAULT 0, \
                 ADD COLUMN IF NOT EXISTS rejected bigint NOT NULL DEFAULT 0"
            ),
            read_offsets: format!(
                "SELECT \"partition\", next_offset FROM {offsets} WHERE job = $1 AND topic = $2 AND \"partition\" = ANY($3::int[])"
            ),
            advance_offsets: upsert(
                " WHERE o.next_offset = (SELECT input.stored_before FROM input WHERE input.\"partition\" = o.\"partition\")",
            ),
            record_offsets: upsert(""),
            add_rejected: format!(
                "UPDATE {offsets} AS o SET rejected = o.rejected + i.rejected \
                 FROM unnest($3::int[], $4::bigint[]) AS i(\"partition\", rejected) \
                 WHERE o.job = $1 AND o.topic = $2 AND o.\"partition\" = i.\"partition\""
            ),
            read_totals: format!(
                "SELECT coalesce(sum(messages), 0)::bigint, coalesce(sum(rejected), 0)::bigint \
                 FROM {offsets} WHERE job = $1 AND topic = $2"
            ),
            reset_offsets: format!(
                "INSERT INTO {offsets} AS o (job, topic, \"partition\", next_offset, updated_at) \
                 SELECT $1, $2, \"partition\", next_offset, now() FROM unnest($3::int[], $4::bigint[]) AS i(\"partition\", next_offset) \
                 ON CONFLICT (job, topic, \"partition\") DO UPDATE \
                 SET next_offset = EXCLUDED.next_offset, updated_at = EXCLUDED.updated_at, \
                 messages = CASE WHEN $5::boolean THEN 0 ELSE o.messages END, \
                 rejected = CASE WHEN $5::boolean THEN 0 ELSE o.rejected END"
            ),
            insert_errors: format!(
                "INSERT INTO {errors} (job, topic, \"partition\", \"offset\", message_time, reason, raw) \
                 SELECT $1, $2, i.* FROM unnest($3::int[], $4::bigint[], $5::timestamptz[], $6::text[], $7::bytea[]) \
                 AS i(\"partition\", \"offset\", message_time, reason, raw) \
                 ON CONFLICT (job, topic, \"partition\", \"offset\") DO NOTHING"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(ident("Order Lines"), "\"Order Lines\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(qualified(Some("public"), "t"), "\"public\".\"t\"");
        assert_eq!(qualified(None, "t"), "\"t\"");
    }
}
