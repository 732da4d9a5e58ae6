//! Database sessions: connecting, telling PostgreSQL from WarehousePG /
//! Greenplum, and reading what the start checks need from the catalog.

use tokio_postgres::{Client, Config, GenericClient, NoTls, Row};

use crate::jobspec::DatabaseTarget;
use crate::load_plan::TargetColumn;
use crate::sql::qualified;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the database {endpoint}: {source}")]
    Connect { endpoint: String, source: tokio_postgres::Error },
    #[error("{context}: {source}")]
    Query { context: String, source: tokio_postgres::Error },
}

impl DbError {
    /// The database's own message (with detail), without our context.
    pub fn database_message(&self) -> String {
        let source = match self {
            DbError::Connect { source, .. } | DbError::Query { source, .. } => source,
        };
        describe(source)
    }

    pub fn source(&self) -> &tokio_postgres::Error {
        match self {
            DbError::Connect { source, .. } | DbError::Query { source, .. } => source,
        }
    }
}

/// A database error as a user should read it: the server's message and
/// detail, or the client's description when the server said nothing.
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        },
        None => error.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    PostgreSql,
    /// WarehousePG or Greenplum: loads go through gpfdist external tables.
    Greenplum,
}

pub fn endpoint(target: &DatabaseTarget) -> String {
    format!("{}:{}/{}", target.host, target.port, target.dbname)
}

/// Runs one statement without parameters through the extended protocol, in
/// one round trip, and returns the rows it affected. The server parses the
/// text as a single statement, so text that ends the statement early and
/// starts another (from a job file's mapping, say) is refused, never run.
/// Every statement flowserver sends goes through this or a prepared
/// statement: the simple query protocol is never used (clippy.toml).
pub async fn run<C: GenericClient + Sync>(client: &C, statement: &str) -> Result<u64, tokio_postgres::Error> {
    client.execute_typed(statement, &[]).await
}

/// Opens a session; its connection task runs on the current tokio runtime.
pub async fn connect(target: &DatabaseTarget, application_name: &str) -> Result<Client, DbError> {
    let mut config = Config::new();
    config
        .host(&target.host)
        .port(target.port)
        .user(&target.user)
        .dbname(&target.dbname)
        .application_name(application_name)
        .connect_timeout(std::time::Duration::from_secs(10));
    if let Some(password) = &target.password {
        config.password(password);
    }
    let (client, connection) =
        config.connect(NoTls).await.map_err(|source| DbError::Connect { endpoint: endpoint(target), source })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "database connection ended");
        }
    });
    Ok(client)
}

pub async fn target_kind(client: &Client) -> Result<TargetKind, DbError> {
    let row = client
        .query_one("SELECT version()", &[])
        .await
        .map_err(|source| DbError::Query { context: "cannot read version()".into(), source })?;
    let version: String =
        row.try_get(0).map_err(|source| DbError::Query { context: "cannot read version()".into(), source })?;
    Ok(if version.contains("Greenplum") || version.contains("WarehousePG") {
        TargetKind::Greenplum
    } else {
        TargetKind::PostgreSql
    })
}

/// Columns of a table, or None if it does not exist.
pub async fn table_columns(
    client: &Client,
    schema: Option<&str>,
    table: &str,
) -> Result<Option<Vec<TargetColumn>>, DbError> {
    let name = qualified(schema, table);
    let context = || format!("cannot read the columns of {name}");
    let exists = client
        .query_one("SELECT to_regclass($1)::oid", &[&name])
        .await
        .map_err(|source| DbError::Query { context: context(), source })?;
    let oid: Option<u32> = exists.try_get(0).map_err(|source| DbError::Query { context: context(), source })?;
    let Some(oid) = oid else { return Ok(None) };
    let rows = client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&oid],
        )
        .await
        .map_err(|source| DbError::Query { context: context(), source })?;
    let columns = rows
        .iter()
        .map(|row| Ok(TargetColumn { name: row.try_get(0)?, sql_type: row.try_get(1)? }))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|source| DbError::Query { context: context(), source })?;
    Ok(Some(columns))
}

pub async fn schema_exists(client: &Client, schema: &str) -> Result<bool, DbError> {
    let row = client
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", &[&schema])
        .await
        .map_err(|source| DbError::Query { context: format!("cannot look up schema {schema:?}"), source })?;
    row.try_get(0).map_err(|source| DbError::Query { context: format!("cannot look up schema {schema:?}"), source })
}

/// Whether the session's TimeZone makes zone-less timestamptz input UTC.
pub async fn session_time_zone_is_utc(client: &Client) -> Result<bool, DbError> {
    let row = client
        .query_one("SELECT current_setting('TimeZone')", &[])
        .await
        .map_err(|source| DbError::Query { context: "cannot read TimeZone".into(), source })?;
    let zone: String =
        row.try_get(0).map_err(|source| DbError::Query { context: "cannot read TimeZone".into(), source })?;
    Ok(matches!(zone.as_str(), "UTC" | "Etc/UTC" | "GMT" | "Etc/GMT" | "Universal" | "Zulu" | "UCT" | "Etc/UCT"))
}

/// The `(partition, next_offset)` rows of `Bookkeeping::read_offsets`. A
/// flow_offsets table made by something else (other column types, NULLs) is
/// an error naming the table, not a panic.
pub fn stored_offsets(rows: &[Row]) -> Result<Vec<(i32, i64)>, DbError> {
    rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect::<Result<_, tokio_postgres::Error>>().map_err(
        |source| DbError::Query {
            context: "cannot read flow_offsets (\"partition\" must be integer, next_offset bigint, neither NULL)"
                .into(),
            source,
        },
    )
}
