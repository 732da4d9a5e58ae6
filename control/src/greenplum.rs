//! WarehousePG / Greenplum loads: each (job, shard) pair has a readable
//! external table whose single `LOCATION` is that shard's gpfdist listener;
//! the coordinator runs `INSERT … SELECT … FROM` it and every segment pulls
//! its share of the shard's batch in parallel.
//!
//! One location per external table means one per shard's transaction, which
//! never exceeds the number of primary segments, and a shard's batch is read
//! only by the transaction that commits its offsets. The listener binds each
//! scan to the batch published when the scan's gpfdist session first arrives,
//! so the table serves every batch (and a retried transaction reads the same
//! batch again).
//!
//! Table names: with `Gpfdist.ReuseTables` the name is a hash of the whole
//! definition (columns, types, format, location, reject limit), so any change
//! of the load configuration gives a new table and a stale one is never
//! reused; without it the name derives from the job and the table is dropped
//! and created again at every start, as FlowServer does.

use crate::load_plan::RelationShape;
use crate::sql::{ident, literal};

/// How the external table reads the served rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedFormat {
    /// fs_formatter rows (see extension/FORMAT.md).
    FsFormatter,
    /// CSV of the source columns, when the extension is not installed.
    Csv,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalTable {
    /// Schema-qualified, quoted.
    pub name: String,
    /// The name as a string literal for `gp_read_error_log`.
    pub name_literal: String,
    pub location: String,
    pub create: String,
    pub drop: String,
    pub reuse: bool,
}

/// What an external table is made of.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec<'a> {
    pub staging_schema: &'a str,
    pub job: &'a str,
    pub shard: usize,
    pub location: &'a str,
    pub shape: &'a RelationShape,
    pub format: ServedFormat,
    pub reuse: bool,
}

/// The external table of one (job, shard).
pub fn external_table(spec: TableSpec<'_>) -> ExternalTable {
    let TableSpec { staging_schema, job, shard, location, shape, format, reuse } = spec;
    let format_clause = match format {
        ServedFormat::FsFormatter => "FORMAT 'CUSTOM' (formatter='fs_formatter_in')".to_string(),
        ServedFormat::Csv => "FORMAT 'CSV' (DELIMITER ',' QUOTE '\"' ESCAPE '\"' NULL '')".to_string(),
    };
    // SREH catches rows a segment cannot read, into the error log; it never
    // fails the statement: flowserver judges error_limit over the job's whole
    // span (committer), not one statement's rows.
    let body = format!(
        "({}) LOCATION ({}) {format_clause} ENCODING 'UTF8' LOG ERRORS SEGMENT REJECT LIMIT 2147483647 ROWS",
        shape.column_definitions(),
        literal(location)
    );
    let base = if reuse {
        format!("flowserver_ext_{:016x}", fnv1a(body.as_bytes()))
    } else {
        let mut base = format!("flowserver_ext_{job}_s{shard}");
        if base.len() > 63 {
            // PostgreSQL cuts identifiers at 63 bytes; keep names distinct.
            base = format!("flowserver_ext_{:016x}_s{shard}", fnv1a(job.as_bytes()));
        }
        base
    };
    let name = format!("{}.{}", ident(staging_schema), ident(&base));
    ExternalTable {
        name_literal: literal(&name),
        location: location.to_owned(),
        // Greenplum has no CREATE EXTERNAL TABLE IF NOT EXISTS: a reused table
        // is created only when `to_regclass` does not find it.
        create: format!("CREATE READABLE EXTERNAL TABLE {name} {body}"),
        drop: format!("DROP EXTERNAL TABLE IF EXISTS {name}"),
        name,
        reuse,
    }
}

/// `gpfdist://host:port/<job>`; IPv6 hosts in brackets.
pub fn location(advertise_host: &str, port: u16, job: &str) -> String {
    if advertise_host.contains(':') && !advertise_host.starts_with('[') {
        format!("gpfdist://[{advertise_host}]:{port}/{job}")
    } else {
        format!("gpfdist://{advertise_host}:{port}/{job}")
    }
}

/// Rows segments rejected in the last scans of `table`: (row number in the
/// batch, 1-based; message; raw bytes).
/// `linenum` is an `integer` in the error log: read as bigint, the type the committer asks for.
pub fn read_error_log(table: &ExternalTable) -> String {
    format!("SELECT linenum::bigint, errmsg, rawbytes FROM gp_read_error_log({}) ORDER BY linenum", table.name_literal)
}

pub fn truncate_error_log(table: &ExternalTable) -> String {
    format!("SELECT gp_truncate_error_log({})", table.name_literal)
}

/// Number of primary segments that can read.
pub const PRIMARY_SEGMENTS: &str = "SELECT count(*) FROM gp_segment_configuration WHERE role = 'p' AND content >= 0";

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> RelationShape {
        RelationShape::for_tests(vec![("__fs_t0_c0".into(), "integer".into()), ("value".into(), "text".into())])
    }

    #[test]
    fn one_location_per_shard_and_the_custom_formatter() {
        let location = location("etl1", 6071, "orders");
        let shape = shape();
        let table = external_table(TableSpec {
            staging_schema: "stage",
            job: "orders",
            shard: 1,
            location: &location,
            shape: &shape,
            format: ServedFormat::FsFormatter,
            reuse: false,
        });
        assert_eq!(table.name, "\"stage\".\"flowserver_ext_orders_s1\"");
        assert_eq!(
            table.create,
            "CREATE READABLE EXTERNAL TABLE \"stage\".\"flowserver_ext_orders_s1\" (\"__fs_t0_c0\" integer, \"value\" text) \
             LOCATION ('gpfdist://etl1:6071/orders') FORMAT 'CUSTOM' (formatter='fs_formatter_in') ENCODING 'UTF8' \
             LOG ERRORS SEGMENT REJECT LIMIT 2147483647 ROWS"
        );
        assert_eq!(table.drop, "DROP EXTERNAL TABLE IF EXISTS \"stage\".\"flowserver_ext_orders_s1\"");
        assert_eq!(
            read_error_log(&table),
            "SELECT linenum::bigint, errmsg, rawbytes FROM gp_read_error_log('\"stage\".\"flowserver_ext_orders_s1\"') ORDER BY linenum"
        );
    }

    #[test]
    fn reused_tables_are_named_by_their_whole_definition() {
        let shape = shape();
        let make = |format, location| {
            external_table(TableSpec {
                staging_schema: "s",
                job: "j",
                shard: 0,
                location,
                shape: &shape,
                format,
                reuse: true,
            })
        };
        let a = make(ServedFormat::FsFormatter, "gpfdist://h:1/j");
        assert!(a.create.starts_with("CREATE READABLE EXTERNAL TABLE \"s\".\"flowserver_ext_"));
        assert_eq!(a, make(ServedFormat::FsFormatter, "gpfdist://h:1/j"));
        assert_ne!(a.name, make(ServedFormat::Csv, "gpfdist://h:1/j").name);
        assert_ne!(a.name, make(ServedFormat::FsFormatter, "gpfdist://h:2/j").name);
    }

    #[test]
    fn locations_and_long_names() {
        assert_eq!(location("::1", 6070, "j"), "gpfdist://[::1]:6070/j");
        let long = "j".repeat(90);
        let shape = shape();
        let table = external_table(TableSpec {
            staging_schema: "s",
            job: &long,
            shard: 3,
            location: "gpfdist://h:1/x",
            shape: &shape,
            format: ServedFormat::FsFormatter,
            reuse: false,
        });
        assert!(table.name.ends_with("_s3\""), "{}", table.name);
        assert!(table.name.len() < 80);
    }
}
