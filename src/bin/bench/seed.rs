//! Bulk seeding for the scale scenarios: a long history of finished
//! executions, and many steps waiting for events.
//!
//! Creating 200,000 executions or 100,000 waiting steps through the API
//! would take longer than the whole benchmark may (and would measure the
//! API, not the state the figures are about). So one real execution is
//! made through the API first, and its rows (the execution, its steps, its
//! attempts) are copied with `INSERT ... SELECT ... generate_series`, a few
//! statements in all. The copies take every column from the template row,
//! so they have exactly the shape the service writes (a column added by a
//! later migration is copied too); only the identity (ids, correlation ids,
//! trace ids), the timestamps (all shifted together) and, for a tenth of
//! the history, the failure are changed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use crate::{Result, fail};

/// The columns of `table` in order, with their types.
async fn columns(db: &PgPool, table: &str) -> Result<Vec<(String, String)>> {
    let cols: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1
           AND is_generated = 'NEVER'
         ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(db)
    .await?;
    if cols.is_empty() {
        return Err(fail(format!("seed: no table {table}")));
    }
    Ok(cols)
}

/// `INSERT INTO table (every column) SELECT ... FROM table t <tail>;`:
/// each column is the template row's (`t.col`), except those in `overrides`;
/// a `timestamp with time zone` column not overridden is shifted by `shift`
/// (an SQL interval expression), so the copy keeps the template's durations.
async fn copy_rows(
    db: &PgPool,
    table: &str,
    overrides: &HashMap<&str, String>,
    shift: &str,
    tail: &str,
) -> Result<String> {
    let cols = columns(db, table).await?;
    let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
    let exprs: Vec<String> = cols
        .iter()
        .map(|(name, ty)| match overrides.get(name.as_str()) {
            Some(e) => e.clone(),
            None if ty == "timestamp with time zone" => format!("t.{name} + ({shift})"),
            None => format!("t.{name}"),
        })
        .collect();
    Ok(format!(
        "INSERT INTO {table} ({}) SELECT {} FROM {table} t {tail};\n",
        names.join(", "),
        exprs.join(", ")
    ))
}

/// Run a seeding script: one connection (its temporary table), one
/// round trip; the statements are plain INSERT ... SELECT.
async fn run_script(db: &PgPool, script: &str) -> Result<()> {
    sqlx::raw_sql(script).execute(db).await?;
    Ok(())
}

/// How many rows of `table` the template has.
async fn template_rows(db: &PgPool, table: &str, column: &str, template: Uuid) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE {column} = $1"))
        .bind(template)
        .fetch_one(db)
        .await?;
    Ok(n as u64)
}

/// A UUIDv7-shaped id from a timestamp expression (as the service's
/// `Uuid::now_v7()`: time-ordered, so the primary key grows at its end).
fn v7_from(ts: &str) -> String {
    format!(
        "(lpad(to_hex((extract(epoch FROM {ts}) * 1000)::bigint), 12, '0') || '7'
          || substr(md5(random()::text), 1, 3) || '8' || substr(md5(random()::text), 1, 15))::uuid"
    )
}

/// What a seeding did.
pub(crate) struct Seeded {
    pub executions: u64,
    pub steps: u64,
    pub attempts: u64,
    pub took: Duration,
}

impl Seeded {
    /// `copies` copies of `template` made since `started`.
    async fn counted(db: &PgPool, template: Uuid, copies: usize, started: Instant) -> Result<Self> {
        let n = copies as u64;
        Ok(Self {
            executions: n,
            steps: n * template_rows(db, "step_executions", "execution_id", template).await?,
            attempts: n * template_rows(db, "step_attempts", "execution_id", template).await?,
            took: started.elapsed(),
        })
    }
}

/// `CREATE TEMP TABLE seeds`: one row per copy, its number `n` (1 to
/// `count`), its time `ts` (the SQL `ts`, of `n`) and its id (from `ts`).
fn seed_table(seeds: &str, count: usize, ts: &str) -> String {
    format!(
        "CREATE TEMP TABLE {seeds} AS
         SELECT n, ts, {} AS id FROM (
             SELECT n, {ts} AS ts
             FROM generate_series(1, {count}) n) x;\n",
        v7_from("ts")
    )
}

/// The statements that copy `template` (its execution, steps and attempts)
/// once per row `s` of `seeds`, newest first: each copy takes the row's id
/// (and a trace id from it), its timestamps shifted by `shift`, and the
/// column overrides in `executions` and `steps`.
async fn copy_execution(
    db: &PgPool,
    template: Uuid,
    seeds: &str,
    shift: &str,
    mut executions: HashMap<&str, String>,
    mut steps: HashMap<&str, String>,
) -> Result<String> {
    executions.insert("id", "s.id".to_owned());
    executions.insert("trace_id", "replace(s.id::text, '-', '')".to_owned());
    steps.insert("execution_id", "s.id".to_owned());
    let attempts = HashMap::from([("execution_id", "s.id".to_owned())]);
    let mut script = copy_rows(
        db,
        "executions",
        &executions,
        shift,
        &format!("CROSS JOIN {seeds} s WHERE t.id = '{template}' ORDER BY s.n DESC"),
    )
    .await?;
    script += &copy_rows(
        db,
        "step_executions",
        &steps,
        shift,
        &format!(
            "CROSS JOIN {seeds} s WHERE t.execution_id = '{template}' ORDER BY s.n DESC, t.position"
        ),
    )
    .await?;
    script += &copy_rows(
        db,
        "step_attempts",
        &attempts,
        shift,
        &format!(
            "CROSS JOIN {seeds} s WHERE t.execution_id = '{template}' ORDER BY s.n DESC, t.started_at"
        ),
    )
    .await?;
    Ok(script)
}

/// `executions` finished copies of the finished execution `template`
/// (with its steps and attempts), completed between 2 and 28 days ago
/// (inside the default 30-day retention, and all past a 1-day one);
/// every tenth one FAILED at its last step.
pub(crate) async fn history(db: &PgPool, template: Uuid, executions: usize) -> Result<Seeded> {
    let started = Instant::now();
    let last_step: String = sqlx::query_scalar(
        "SELECT step_id FROM step_executions WHERE execution_id = $1 ORDER BY position DESC LIMIT 1",
    )
    .bind(template)
    .fetch_one(db)
    .await?;
    // Newest first.
    let mut script = seed_table(
        "bench_seed",
        executions,
        &format!("now() - interval '2 days' - interval '26 days' * (n::float8 / {executions})"),
    );
    let failed = "s.n % 10 = 0";
    let failing = format!("{failed} AND t.step_id = '{last_step}'");
    script += &copy_execution(
        db,
        template,
        "bench_seed",
        &format!("s.ts - (SELECT completed_at FROM executions WHERE id = '{template}')"),
        HashMap::from([
            (
                "status",
                format!("CASE WHEN {failed} THEN 'FAILED' ELSE t.status END"),
            ),
            (
                "error",
                format!(
                    "CASE WHEN {failed} THEN 'step {last_step} failed: seeded' ELSE t.error END"
                ),
            ),
        ]),
        HashMap::from([
            (
                "status",
                format!("CASE WHEN {failing} THEN 'FAILED' ELSE t.status END"),
            ),
            (
                "error",
                format!("CASE WHEN {failing} THEN 'seeded failure' ELSE t.error END"),
            ),
            (
                "outputs",
                format!("CASE WHEN {failing} THEN NULL ELSE t.outputs END"),
            ),
        ]),
    )
    .await?;
    script += "DROP TABLE bench_seed;";
    run_script(db, &script).await?;
    settle(db).await?;
    Seeded::counted(db, template, executions, started).await
}

/// `count` copies of the RUNNING execution `template`, whose one step
/// waits for an event (`awaiting_event`): each copy's waiting step gets its
/// own correlation id, `bench-seed-<n>` (the `step_waiting` index is
/// unique). Created just before the template, a millisecond apart.
/// Returns the seeded (execution, correlation id) pairs.
pub(crate) async fn waiting(
    db: &PgPool,
    template: Uuid,
    count: usize,
) -> Result<(Seeded, Vec<(Uuid, String)>)> {
    let started = Instant::now();
    let mut script = seed_table(
        "bench_wait_seed",
        count,
        "now() - interval '1 millisecond' * n",
    );
    script += &copy_execution(
        db,
        template,
        "bench_wait_seed",
        &format!("s.ts - (SELECT created_at FROM executions WHERE id = '{template}')"),
        HashMap::new(),
        HashMap::from([(
            "external_workflow_id",
            "CASE WHEN t.external_workflow_id IS NULL THEN NULL ELSE 'bench-seed-' || s.n END"
                .to_owned(),
        )]),
    )
    .await?;
    script += "DROP TABLE bench_wait_seed;";
    run_script(db, &script).await?;
    let pairs: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT execution_id, external_workflow_id FROM step_executions
         WHERE awaiting_event AND external_workflow_id LIKE 'bench-seed-%'
         ORDER BY substr(external_workflow_id, 12)::int",
    )
    .fetch_all(db)
    .await?;
    settle(db).await?;
    Ok((Seeded::counted(db, template, count, started).await?, pairs))
}

/// A real database reaches this size over months, with autovacuum running
/// all along; after a bulk insert, vacuum and analyze at once so that the
/// planner's statistics and the visibility map are what they would be.
///
/// Then a checkpoint, so that the one the seed's gigabyte of WAL sets off
/// is not running (writing out the seed, and logging whole pages on their
/// first change) while the next figures are taken: a full run's history
/// chain, measured 8 s into such a checkpoint, read 1.29x the baseline
/// where the runs before read 0.81-1.09x. Only a superuser (or a member of
/// `pg_checkpoint`) may; without that right the bench goes on without it.
pub(crate) async fn settle(db: &PgPool) -> Result<()> {
    sqlx::raw_sql("VACUUM (ANALYZE) executions, step_executions, step_attempts")
        .execute(db)
        .await?;
    if let Err(e) = sqlx::raw_sql("CHECKPOINT").execute(db).await {
        crate::progress(&format!(
            "settle: no CHECKPOINT ({e}); figures may include one"
        ));
    }
    Ok(())
}
