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
#[derive(Debug, Clone)]
pub struct BookkeepingSql {
    pub create_offsets: String,
    pub create_errors: String,
    /// $1 job, $2 topic, $3 int[] partitions → (partition, next_offset).
    pub read_offsets: String,
    /// $1 job, $2 topic, $3 int[] partitions, $4 bigint[] stored_before
    /// (-1: no row expected), $5 bigint[] next offsets. Affects one row per
    /// partition exactly when every stored offset is still `stored_before`.
    pub advance_offsets: String,
    /// $1 job, $2 topic, $3 int[] partitions, $4 bigint[] offsets: sets them unconditionally.
    pub reset_offsets: String,
    /// $1 job, $2 topic, $3 int[], $4 bigint[], $5 timestamptz[], $6 text[], $7 bytea[].
    pub insert_errors: String,
}

impl BookkeepingSql {
    pub fn new(staging_schema: &str) -> BookkeepingSql {
        let offsets = format!("{}.flow_offsets", ident(staging_schema));
        let errors = format!("{}.flow_errors", ident(staging_schema));
        BookkeepingSql {
            create_offsets: format!(
                "CREATE TABLE IF NOT EXISTS {offsets} (\
                 job text NOT NULL, topic text NOT NULL, \"partition\" integer NOT NULL, \
                 next_offset bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), \
                 PRIMARY KEY (job, topic, \"partition\"))"
            ),
            create_errors: format!(
                "CREATE TABLE IF NOT EXISTS {errors} (\
                 job text NOT NULL, topic text NOT NULL, \"partition\" integer NOT NULL, \"offset\" bigint NOT NULL, \
                 message_time timestamptz, error_time timestamptz NOT NULL DEFAULT now(), \
                 reason text NOT NULL, raw bytea, \
                 PRIMARY KEY (job, topic, \"partition\", \"offset\"))"
            ),
            read_offsets: format!(
                "SELECT \"partition\", next_offset FROM {offsets} WHERE job = $1 AND topic = $2 AND \"partition\" = ANY($3::int[])"
            ),
            advance_offsets: format!(
                "WITH input AS (SELECT * FROM unnest($3::int[], $4::bigint[], $5::bigint[]) \
                 AS i(\"partition\", stored_before, next_offset)) \
                 INSERT INTO {offsets} AS o (job, topic, \"partition\", next_offset, updated_at) \
                 SELECT $1, $2, \"partition\", next_offset, now() FROM input \
                 ON CONFLICT (job, topic, \"partition\") DO UPDATE \
                 SET next_offset = EXCLUDED.next_offset, updated_at = EXCLUDED.updated_at \
                 WHERE o.next_offset = (SELECT input.stored_before FROM input WHERE input.\"partition\" = o.\"partition\")"
            ),
            reset_offsets: format!(
                "INSERT INTO {offsets} AS o (job, topic, \"partition\", next_offset, updated_at) \
                 SELECT $1, $2, \"partition\", next_offset, now() FROM unnest($3::int[], $4::bigint[]) AS i(\"partition\", next_offset) \
                 ON CONFLICT (job, topic, \"partition\") DO UPDATE \
                 SET next_offset = EXCLUDED.next_offset, updated_at = EXCLUDED.updated_at"
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
