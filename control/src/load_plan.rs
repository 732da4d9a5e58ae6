//! From a validated job file and the target's catalog to a [`LoadPlan`]: what
//! each shard computes (the engine's `DecodePlan`) and the SQL that moves a
//! batch into the target tables.
//!
//! # One load model
//! Every batch is two relations of rows:
//! - **fast rows**: values the shards computed (push-down of plain columns and
//!   `->>` / `#>>` extractions with a cast). When there is a single table, every
//!   mapping is pushed down and there is no filter, they are copied straight
//!   into the target ("direct"); otherwise into a temporary staging table that
//!   also holds the source columns as text, and an `INSERT … SELECT` applies the
//!   SQL parts of the mapping and the filters ("staged");
//! - **slow rows**: the source columns as text, for messages the shard could
//!   not compute exactly; the job's original SQL mapping is applied to them.
//!
//! Both paths evaluate the same mapping, so a row loads identically either
//! way, and every database error is PostgreSQL's own.

use flowserver_engine::codec::{
    Conversion, CsvOptions, DecodePlan, EncodeContext, FastColumn, JsonKind, JsonPath, PgType, SourceFormat,
};

use crate::db::TargetKind;
use crate::jobspec::{CsvSpec, JobConfig, JsonColumnType, MappingExpr, SourceFormatSpec, TargetTable};
use crate::sql::{ident, literal, qualified};

/// A column of a target table, as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetColumn {
    pub name: String,
    /// `format_type(atttypid, atttypmod)`, e.g. `character varying(20)`.
    pub sql_type: String,
}

/// What the start checks learnt from the target database.
#[derive(Debug, Clone)]
pub struct TargetCatalog {
    /// Columns of each job table, in the job file's table order.
    pub tables: Vec<Vec<TargetColumn>>,
    pub session_time_zone_is_utc: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PlanError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FastRelation {
    /// Fast rows are copied into this target table.
    Direct { table: String },
    /// Fast rows go to the session's staging table, then `insert_fast` runs.
    Staged,
}

/// Name of the session's temporary tables.
pub const FAST_STAGING: &str = "pg_temp.flowserver_fast";
pub const SLOW_STAGING: &str = "pg_temp.flowserver_slow";

#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub decode: DecodePlan,
    pub fast: FastRelation,
    /// Run once per database session.
    pub create_staging: Vec<String>,
    pub copy_fast: String,
    pub copy_slow: String,
    /// Empties the fast staging table (staged only) before a partial load.
    pub truncate_fast: Option<String>,
    pub truncate_slow: String,
    pub insert_fast: Vec<String>,
    pub insert_slow: Vec<String>,
    /// Fast rows as a relation of staged columns: what an external table
    /// serving them holds (WarehousePG / Greenplum).
    pub staged: RelationShape,
    /// What shards compute for the staged shape.
    pub staged_decode: Vec<FastColumn>,
    /// The source columns as text, with the job's own SQL: the slow rows'
    /// relation, and what an external table serves when fs_formatter is missing.
    pub sources: RelationShape,
    pub source_decode: Vec<FastColumn>,
    /// One line per target column saying how it is computed, for the job's log.
    pub explain_lines: Vec<String>,
}

struct SourceColumn {
    name: String,
    /// SQL type the text is cast to for SQL evaluation.
    sql_type: String,
}

struct Pushed {
    fast: FastColumn,
    sql_type: String,
}

pub fn build(config: &JobConfig, catalog: &TargetCatalog, kind: TargetKind) -> Result<LoadPlan, PlanError> {
    let target = &config.target;
    let (format, sources, json_kind) = source_shape(&config.source.format);
    let context = EncodeContext { session_time_zone_is_utc: catalog.session_time_zone_is_utc };

    // Per table: target column names, and for each either a pushed column or a SQL expression.
    let mut tables = Vec::new();
    for (index, (table, columns)) in target.tables.iter().zip(&catalog.tables).enumerate() {
        let mapping = effective_mapping(table, &sources);
        let mut resolved = Vec::with_capacity(mapping.len());
        for (target_column, expr) in mapping {
            let path = format!("target.database.tables[{index}].mapping.{target_column}");
            let Some(column) = columns.iter().find(|c| c.name == target_column) else {
                return Err(PlanError {
                    path,
                    message: format!(
                        "column {} does not exist in table {}",
                        ident(&target_column),
                        qualified(table.schema.as_deref(), &table.table)
                    ),
                });
            };
            let pushed = push_down(&expr, column, &config.source.format, json_kind);
            resolved.push((target_column, expr, pushed));
        }
        tables.push(resolved);
    }

    let has_filters = target.filter_expression.is_some() || target.tables.iter().any(|t| t.filter.is_some());
    let direct = kind == TargetKind::PostgreSql
        && tables.len() == 1
        && !has_filters
        && tables[0].iter().all(|(_, _, pushed)| pushed.is_some());

    let source_list = sources
        .iter()
        .map(|s| format!("{}::{} AS {}", ident(&s.name), s.sql_type, ident(&s.name)))
        .collect::<Vec<_>>()
        .join(", ");
    let slow_columns = sources.iter().map(|s| format!("{} text", ident(&s.name))).collect::<Vec<_>>().join(", ");
    let mut create_staging =
        vec![format!("CREATE TEMP TABLE IF NOT EXISTS flowserver_slow ({slow_columns}) ON COMMIT DELETE ROWS")];
    let mut explain_lines = Vec::new();

    // The slow relation always holds the source columns as text; the job's own SQL applies.
    let mut slow_inserts = Vec::new();
    for (index, (table, resolved)) in target.tables.iter().zip(&tables).enumerate() {
        let name = qualified(table.schema.as_deref(), &table.table);
        let columns = resolved.iter().map(|(c, _, _)| ident(c)).collect::<Vec<_>>().join(", ");
        let select = resolved.iter().map(|(_, expr, _)| sql_of(expr)).collect::<Vec<_>>().join(", ");
        slow_inserts.push(TableInsert {
            table: name.clone(),
            columns,
            select,
            filter: where_clause(target.filter_expression.as_deref(), table.filter.as_deref()),
        });
        for (column, expr, pushed) in resolved {
            let how = if pushed.is_some() { "computed by flowserver" } else { "evaluated by the database" };
            explain_lines.push(format!("tables[{index}] {name}.{}: {} ({how})", ident(column), sql_of(expr)));
        }
    }
    let slow = RelationShape {
        columns: sources.iter().map(|s| (s.name.clone(), "text".to_string())).collect(),
        inner: source_list.clone(),
        inserts: slow_inserts,
    };
    let source_decode: Vec<FastColumn> =
        (0..sources.len()).map(|source_index| FastColumn::SourceText { source_index }).collect();

    // The staged shape of fast rows: pushed columns typed, plus the source
    // columns as text when some SQL needs them.
    let mut staged_decode = Vec::new();
    let mut staged_columns = Vec::new();
    let mut pushed_names: Vec<Vec<Option<String>>> = Vec::new();
    for (t, resolved) in tables.iter().enumerate() {
        let mut names = Vec::new();
        for (c, (_, _, pushed)) in resolved.iter().enumerate() {
            match pushed {
                Some(pushed) => {
                    let staging_name = format!("__fs_t{t}_c{c}");
                    staged_columns.push((staging_name.clone(), pushed.sql_type.clone()));
                    staged_decode.push(pushed.fast.clone());
                    names.push(Some(staging_name));
                }
                None => names.push(None),
            }
        }
        pushed_names.push(names);
    }
    let needs_sources = has_filters || tables.iter().flatten().any(|(_, _, pushed)| pushed.is_none());
    if needs_sources {
        for (i, source) in sources.iter().enumerate() {
            staged_columns.push((source.name.clone(), "text".into()));
            staged_decode.push(FastColumn::SourceText { source_index: i });
        }
    }
    let mut inner = pushed_names.iter().flatten().flatten().map(|n| ident(n)).collect::<Vec<_>>();
    if needs_sources {
        inner.push(source_list);
    }
    let mut fast_inserts = Vec::new();
    for ((table, resolved), names) in target.tables.iter().zip(&tables).zip(&pushed_names) {
        let select = resolved
            .iter()
            .zip(names)
            .map(|((_, expr, _), staged)| match staged {
                Some(staged) => ident(staged),
                None => sql_of(expr),
            })
            .collect::<Vec<_>>()
            .join(", ");
        fast_inserts.push(TableInsert {
            table: qualified(table.schema.as_deref(), &table.table),
            columns: resolved.iter().map(|(c, _, _)| ident(c)).collect::<Vec<_>>().join(", "),
            select,
            filter: where_clause(target.filter_expression.as_deref(), table.filter.as_deref()),
        });
    }
    let staged = RelationShape { columns: staged_columns, inner: inner.join(", "), inserts: fast_inserts };
    let staged_decode_copy = staged_decode.clone();

    let (fast, decode_columns, copy_fast, truncate_fast, insert_fast) = if direct {
        let table = &target.tables[0];
        let name = qualified(table.schema.as_deref(), &table.table);
        let mut fast_columns = Vec::new();
        let mut names = Vec::new();
        for (column, _, pushed) in &tables[0] {
            if let Some(pushed) = pushed {
                fast_columns.push(pushed.fast.clone());
                names.push(ident(column));
            }
        }
        let copy = format!("COPY {name} ({}) FROM STDIN (FORMAT binary)", names.join(", "));
        (FastRelation::Direct { table: name }, fast_columns, copy, None, Vec::new())
    } else {
        create_staging.push(format!(
            "CREATE TEMP TABLE IF NOT EXISTS flowserver_fast ({}) ON COMMIT DELETE ROWS",
            staged.column_definitions()
        ));
        (
            FastRelation::Staged,
            staged_decode,
            format!("COPY {FAST_STAGING} FROM STDIN (FORMAT binary)"),
            Some(format!("TRUNCATE {FAST_STAGING}")),
            staged.inserts(FAST_STAGING),
        )
    };

    Ok(LoadPlan {
        decode: DecodePlan { format, fast_columns: decode_columns, context },
        fast,
        create_staging,
        copy_fast,
        copy_slow: format!("COPY {SLOW_STAGING} FROM STDIN (FORMAT binary)"),
        truncate_fast,
        truncate_slow: format!("TRUNCATE {SLOW_STAGING}"),
        insert_fast,
        insert_slow: slow.inserts(SLOW_STAGING),
        staged,
        staged_decode: staged_decode_copy,
        sources: slow,
        source_decode,
        explain_lines,
    })
}

/// One `INSERT … SELECT` of a relation of source columns into a target table.
#[derive(Debug, Clone)]
struct TableInsert {
    table: String,
    columns: String,
    select: String,
    filter: String,
}

/// A relation of staged rows (temporary table or external table) and the
/// statements that move it into the targets.
#[derive(Debug, Clone)]
pub struct RelationShape {
    /// Column names and SQL types.
    pub columns: Vec<(String, String)>,
    /// The inner select list: staged columns, source columns cast to their types.
    inner: String,
    inserts: Vec<TableInsert>,
}

impl RelationShape {
    /// `"a" int, "b" text, …` for CREATE TABLE.
    pub fn column_definitions(&self) -> String {
        self.columns.iter().map(|(name, ty)| format!("{} {ty}", ident(name))).collect::<Vec<_>>().join(", ")
    }

    #[cfg(test)]
    pub fn for_tests(columns: Vec<(String, String)>) -> RelationShape {
        RelationShape { columns, inner: String::new(), inserts: Vec::new() }
    }

    /// The INSERT statements reading `relation`.
    pub fn inserts(&self, relation: &str) -> Vec<String> {
        self.inserts
            .iter()
            .map(|i| {
                format!(
                    "INSERT INTO {} ({}) SELECT {} FROM (SELECT {} FROM {relation}) AS source{}",
                    i.table, i.columns, i.select, self.inner, i.filter
                )
            })
            .collect()
    }
}

fn source_shape(format: &SourceFormatSpec) -> (SourceFormat, Vec<SourceColumn>, Option<JsonKind>) {
    match format {
        SourceFormatSpec::Json { column, kind } => {
            let (json_kind, sql_type) = match kind {
                JsonColumnType::Json => (JsonKind::Json, "json"),
                JsonColumnType::Jsonb => (JsonKind::Jsonb, "jsonb"),
            };
            (
                SourceFormat::Json(json_kind),
                vec![SourceColumn { name: column.clone(), sql_type: sql_type.into() }],
                Some(json_kind),
            )
        }
        SourceFormatSpec::Csv(csv) => (
            SourceFormat::Csv(csv_options(csv)),
            csv.columns.iter().map(|c| SourceColumn { name: c.name.clone(), sql_type: c.sql_type.clone() }).collect(),
            None,
        ),
    }
}

fn csv_options(csv: &CsvSpec) -> CsvOptions {
    CsvOptions {
        columns: csv.columns.len(),
        delimiter: csv.delimiter,
        quote: csv.quote,
        escape: csv.escape,
        null_string: csv.null_string.as_bytes().to_vec(),
        force_not_null: csv.columns.iter().map(|c| csv.force_not_null.contains(&c.name)).collect(),
        fill_missing_fields: csv.fill_missing_fields,
    }
}

/// The table's mapping, or, when the file has none, each source column into
/// the target column of the same name.
fn effective_mapping(table: &TargetTable, sources: &[SourceColumn]) -> Vec<(String, MappingExpr)> {
    if !table.mapping.is_empty() {
        return table.mapping.clone();
    }
    sources.iter().map(|s| (s.name.clone(), MappingExpr::SourceColumn(s.name.clone()))).collect()
}

/// The pushed-down column for `expr` into `column`, if the shard can compute
/// exactly what the database would.
fn push_down(
    expr: &MappingExpr,
    column: &TargetColumn,
    format: &SourceFormatSpec,
    json: Option<JsonKind>,
) -> Option<Pushed> {
    let target = PgType::parse(&column.sql_type)?;
    let fast = match (expr, format) {
        (MappingExpr::SourceColumn(name), SourceFormatSpec::Json { column: json_column, .. })
            if name == json_column =>
        {
            let cast = match json? {
                JsonKind::Json => PgType::Json,
                JsonKind::Jsonb => PgType::Jsonb,
            };
            FastColumn::JsonDocument { conversion: Conversion::new(cast, target)? }
        }
        (MappingExpr::SourceColumn(name), SourceFormatSpec::Csv(csv)) => {
            let index = csv.columns.iter().position(|c| &c.name == name)?;
            let cast = PgType::parse(&csv.columns[index].sql_type)?;
            FastColumn::CsvField { index, conversion: Conversion::new(cast, target)? }
        }
        (MappingExpr::JsonText { path, .. }, SourceFormatSpec::Json { .. }) => {
            FastColumn::JsonPath { path: json_path(expr, path), conversion: Conversion::new(PgType::Text, target)? }
        }
        (MappingExpr::JsonCast { path, cast, .. }, SourceFormatSpec::Json { .. }) => FastColumn::JsonPath {
            path: json_path(expr, path),
            conversion: Conversion::new(PgType::parse(cast)?, target)?,
        },
        _ => return None,
    };
    Some(Pushed { fast, sql_type: column.sql_type.clone() })
}

fn json_path(expr: &MappingExpr, path: &[String]) -> JsonPath {
    if uses_path_operator(expr) {
        let elements: Vec<&str> = path.iter().map(String::as_str).collect();
        JsonPath::elements(&elements)
    } else {
        JsonPath::key(&path[0])
    }
}

fn uses_path_operator(expr: &MappingExpr) -> bool {
    match expr {
        MappingExpr::JsonText { path_operator, .. } | MappingExpr::JsonCast { path_operator, .. } => *path_operator,
        _ => false,
    }
}

/// The SQL text of a mapping expression, evaluated over the source columns.
fn sql_of(expr: &MappingExpr) -> String {
    let extraction = |column: &str, path: &[String]| -> String {
        if uses_path_operator(expr) {
            let elements = path.iter().map(|e| literal(e)).collect::<Vec<_>>().join(", ");
            format!("{} #>> ARRAY[{elements}]::text[]", ident(column))
        } else {
            format!("{} ->> {}", ident(column), literal(&path[0]))
        }
    };
    match expr {
        MappingExpr::SourceColumn(name) => ident(name),
        MappingExpr::JsonText { column, path, .. } => extraction(column, path),
        MappingExpr::JsonCast { column, path, cast, .. } => format!("({})::{cast}", extraction(column, path)),
        MappingExpr::Sql(sql) => format!("({sql})"),
    }
}

fn where_clause(job_filter: Option<&str>, table_filter: Option<&str>) -> String {
    match (job_filter, table_filter) {
        (None, None) => String::new(),
        (Some(a), None) | (None, Some(a)) => format!(" WHERE ({a})"),
        (Some(a), Some(b)) => format!(" WHERE ({a}) AND ({b})"),
    }
}
