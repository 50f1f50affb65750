//! `budpipeline import-legacy --from URL` (COMPAT.md "Moving over from the
//! original"): copy the Python budpipeline's pipelines and finished
//! executions, with their ids, into this service's database.
//!
//! - Pipelines keep owner, system flag, icon, version, description and
//!   timestamps. One whose DAG this service's validator refuses is copied
//!   as a `draft` with its DAG as the original stored it (nothing is lost,
//!   it cannot run until fixed); a name the owner already uses here is
//!   copied as `name (imported)`.
//! - Executions are copied when finished (COMPLETED, FAILED, INTERRUPTED as
//!   FAILED), with their steps and callback topics; each points at the
//!   version of its pipeline whose DAG it ran (its snapshot), and one
//!   without a pipeline gets an ephemeral definition built from it.
//! - Each item is one transaction; an id already here is skipped, so a
//!   second run copies only what is new. The original is only read.

mod convert;
mod store;

use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::db::original as source;

use crate::actions::Registry;
use crate::config::Settings;
use store::Outcome;

/// Executions read from the original per query.
const PAGE: i64 = 200;

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    pub pipelines_copied: u64,
    pub pipelines_skipped: u64,
    pub executions_copied: u64,
    pub executions_skipped: u64,
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pipelines: {} copied, {} skipped; executions: {} copied, {} skipped",
            self.pipelines_copied,
            self.pipelines_skipped,
            self.executions_copied,
            self.executions_skipped
        )
    }
}

/// Why a run stopped before the end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImportError {
    #[error("{0}")]
    NotTheOriginal(String),
    #[error("cannot read the original's database: {0}")]
    Read(#[from] sqlx::Error),
}

/// One line per item: what was copied (and how, when not as it was) and
/// what was skipped, with the reason.
fn line(kind: &str, label: &str, outcome: &Result<Outcome, sqlx::Error>) -> (bool, String) {
    match outcome {
        Ok(Outcome::Copied(how)) if how.is_empty() => (true, format!("{kind} {label}: copied")),
        Ok(Outcome::Copied(how)) => (true, format!("{kind} {label}: copied {how}")),
        Ok(Outcome::Skipped(why)) => (false, format!("{kind} {label}: skipped: {why}")),
        Err(e) => (false, format!("{kind} {label}: skipped: failed: {e}")),
    }
}

/// Copy everything from `legacy` (the original's database) into `target`
/// (this service's, migrated), calling `out` with one line per item.
/// A failure on one item is reported and the others go on; an error is
/// returned only when the original cannot be read.
pub(crate) async fn import(
    legacy: &PgPool,
    target: &PgPool,
    registry: &Registry,
    out: &mut dyn FnMut(&str),
    totals: &mut Totals,
) -> Result<(), ImportError> {
    source::check(legacy)
        .await
        .map_err(ImportError::NotTheOriginal)?;
    for p in source::pipelines(legacy).await? {
        let outcome = store::pipeline(target, &p, registry).await;
        let (copied, text) = line("pipeline", &format!("{} {:?}", p.id, p.name), &outcome);
        if copied {
            totals.pipelines_copied += 1;
        } else {
            totals.pipelines_skipped += 1;
        }
        out(&text);
    }
    let mut after: Option<(DateTime<Utc>, Uuid)> = None;
    loop {
        let page = source::executions(legacy, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some((last.created_at, last.id));
        for e in &page {
            let outcome = store::execution(target, e, registry).await;
            let (copied, text) = line("execution", &e.id.to_string(), &outcome);
            if copied {
                totals.executions_copied += 1;
            } else {
                totals.executions_skipped += 1;
            }
            out(&text);
        }
    }
    Ok(())
}

/// The arguments after `import-legacy`: `--from URL` or `--from=URL`.
pub(crate) fn from_arg(args: &[String]) -> Result<String, String> {
    let url = match args {
        [flag, url] if flag == "--from" => Some(url.as_str()),
        [arg] => arg.strip_prefix("--from="),
        _ => None,
    };
    match url.map(str::trim).filter(|u| !u.is_empty()) {
        Some(u) => Ok(u.to_owned()),
        None => Err("import-legacy needs the original's database: \
                     budpipeline import-legacy --from postgres://USER:PASSWORD@HOST:5432/DB"
            .into()),
    }
}

/// The original is only read: every transaction of this session is
/// read-only.
async fn connect_legacy(url: &str) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?
        .application_name("budpipeline import-legacy")
        .options([("default_transaction_read_only", "on")]);
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
}

/// `budpipeline import-legacy --from URL`: 0 when the run finished (skips
/// included), 1 when a database could not be reached, migrated or read,
/// 2 on a configuration error.
pub(crate) fn run(from: &str) -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let legacy = match connect_legacy(from).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("cannot connect to the original's database (--from): {e}");
                return ExitCode::FAILURE;
            }
        };
        let target = match crate::db::pool(&settings, None) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("DATABASE_URL: {e}");
                return ExitCode::from(2);
            }
        };
        if let Err(e) = crate::db::migrate(&target).await {
            eprintln!("cannot migrate this service's database (DATABASE_URL): {e}");
            return ExitCode::FAILURE;
        }
        let dapr = crate::dapr::DaprClient::new(&settings);
        let registry = crate::startup::registry(&settings, &dapr);
        let mut totals = Totals::default();
        let mut print = |line: &str| println!("{line}");
        let result = import(&legacy, &target, &registry, &mut print, &mut totals).await;
        println!("{totals}");
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}
