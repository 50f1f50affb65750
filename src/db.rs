//! The Postgres pool and the migrations.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::Settings;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A bounded pool with an acquire timeout, connecting lazily so the HTTP
/// server (and `/health`) is up even while the database is not.
pub fn pool(settings: &Settings) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = settings.database_url.parse()?;
    let options = options.application_name("budpipeline");
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
