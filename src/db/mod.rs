//! The Postgres pool and the migrations, the two statements that belong to
//! no table (the database's clock, `NOTIFY`), and one module per table or
//! aggregate with its statements.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::config::Settings;

pub mod check;
pub(crate) mod events;
pub(crate) mod executions;
pub(crate) mod firings;
pub(crate) mod legacy;
pub(crate) mod ops;
pub(crate) mod original;
pub(crate) mod outbox;
pub mod paging;
pub(crate) mod pipelines;
pub(crate) mod steps;
pub(crate) mod triggers;
pub(crate) mod workflows;

const NOW: &str = "SELECT now()";

const NOTIFY: &str = "SELECT pg_notify($1, '')";

/// The database's clock: inside a transaction, the time it started (every
/// `now()` of the transaction's statements).
pub(crate) async fn now(db: impl PgExecutor<'_>) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar(NOW).fetch_one(db).await
}

/// `NOTIFY` (with an empty payload) on `channel`.
pub(crate) async fn notify(db: impl PgExecutor<'_>, channel: &str) -> Result<(), sqlx::Error> {
    sqlx::query(NOTIFY)
        .bind(channel)
        .execute(db)
        .await
        .map(|_| ())
}

check::statements!(NOW, NOTIFY);

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A bounded pool with an acquire timeout, connecting lazily so the HTTP
/// server (and `/health`) is up even while the database is not.
///
/// Each session is named `budpipeline/<replica id>` (`application_name`), so
/// `pg_stat_activity` shows which replica holds which lock or transaction.
pub fn pool(settings: &Settings, replica_id: Option<Uuid>) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = settings.database_url.parse()?;
    // A replica that stalls inside a transaction (a partition, a frozen
    // process) must not hold execution locks for long: Postgres ends such a
    // session after twice the lease (at least 5 s). No transaction of ours
    // waits on anything but the database.
    let idle_ms = (settings.lease.as_millis() * 2).max(5000);
    let name = match replica_id {
        Some(id) => format!("budpipeline/{id}"),
        None => "budpipeline".to_owned(),
    };
    let options = options.application_name(&name).options([
        ("idle_in_transaction_session_timeout", format!("{idle_ms}")),
        // Timestamps that Postgres renders (execution documents) are UTC.
        ("timezone", "UTC".to_owned()),
    ]);
    Ok(PgPoolOptions::new()
        .max_connections(settings.database_max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .connect_lazy_with(options))
}

/// Apply pending migrations. sqlx holds a Postgres advisory lock while it
/// migrates, so replicas starting together apply each migration once.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// A row that was stored but cannot be read back into the engine's types
/// (a status no version knows, a value that does not decode). Retrying
/// reads the same row again, so only its own execution may pay for it.
pub fn undecodable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)
    )
}

/// A database error that no retry can cure: SQLSTATE class 22 (data
/// exception, e.g. a value Postgres cannot hold) or 54 (program limit
/// exceeded, e.g. an index row too large). Connection loss, pool timeouts,
/// deadlocks and serialization failures stay transient.
pub fn unstorable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("54")),
        _ => false,
    }
}

/// Whether `error` violates the unique index or constraint `name` (e.g.
/// [`workflows::LIVE_NAME`]), which the caller answers as a conflict.
pub fn violates(error: &sqlx::Error, name: &str) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.constraint() == Some(name))
}
