//! Step rows (`step_executions`): inserting an execution's steps, a
//! transition's load and its one-statement write, renewing and finding
//! leases, and finding the step that waits on a correlation id.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::engine::AttemptKey;
use crate::engine::model::StepRow;
use crate::engine::outbox::OutboxEvent;

/// The columns of [`StepRow`].
macro_rules! step_columns {
    () => {
        "execution_id, step_id, position, name, action, status, available_at, attempt, failures, crashes,
    lease_owner, lease_expires_at, awaiting_event, external_workflow_id, timeout_at, timeout_seconds,
    outputs, error, skip_reason, progress, stage, started_at, completed_at"
    };
}

const OF_EXECUTION: &str = concat!(
    "SELECT ",
    step_columns!(),
    " FROM step_executions WHERE execution_id = $1 ORDER BY position"
);

/// Every step of an execution, in declaration order (`rows[i]` is step `i`).
pub(crate) async fn of_execution(
    tx: &mut PgConnection,
    execution_id: Uuid,
) -> Result<Vec<StepRow>, sqlx::Error> {
    sqlx::query_as(OF_EXECUTION)
        .bind(execution_id)
        .fetch_all(tx)
        .await
}

/// What one transition writes ([`write_transition`], or together with
/// other executions' [`write_transitions`]).
pub(crate) struct TransitionWrite {
    pub execution_id: Uuid,
    /// The step rows it changed.
    pub dirty: Vec<StepRow>,
    /// The attempts that ended.
    pub attempts: AttemptRows,
    pub events: Vec<OutboxEvent>,
    /// The execution row's new values; `None` when it does not change
    /// (no step row and not the execution did).
    pub exec: Option<ExecutionWrite>,
}

impl TransitionWrite {
    /// Nothing to write at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.dirty.is_empty()
            && self.attempts.steps.is_empty()
            && self.events.is_empty()
            && self.exec.is_none()
    }
}

/// Attempts that ended, column by column (one `step_attempts` row each).
#[derive(Default)]
pub(crate) struct AttemptRows {
    pub steps: Vec<String>,
    pub numbers: Vec<i32>,
    pub owners: Vec<Uuid>,
    pub started: Vec<DateTime<Utc>>,
    pub outcomes: Vec<String>,
}

/// What a transition writes to its execution's row.
#[derive(Serialize)]
pub(crate) struct ExecutionWrite {
    pub status: &'static str,
    pub outputs: Value,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub deadline_at: Option<DateTime<Utc>>,
    pub timed_out: bool,
    /// The execution's new revision.
    pub revision: i64,
    /// How many of its steps have finished (what lists show as progress).
    pub finished_steps: i32,
}

/// What a transition's write SETs on a changed step row, from its record `r`.
macro_rules! step_set {
    () => {
        "status = r.status, available_at = r.available_at, attempt = r.attempt,
           failures = r.failures, crashes = r.crashes, lease_owner = r.lease_owner,
           lease_expires_at = r.lease_expires_at, awaiting_event = r.awaiting_event,
           external_workflow_id = r.external_workflow_id, timeout_at = r.timeout_at,
           outputs = r.outputs, error = r.error, skip_reason = r.skip_reason,
           progress = r.progress, stage = r.stage, started_at = r.started_at,
           completed_at = r.completed_at"
    };
}
const STEP_SET: &str = step_set!();

/// The record a changed step row is read from (its JSON, [`StepRow`]'s serde).
macro_rules! step_record {
    () => {
        "step_id text, status text, available_at timestamptz, attempt int, failures int, crashes int,
           lease_owner uuid, lease_expires_at timestamptz, awaiting_event bool,
           external_workflow_id text, timeout_at timestamptz, outputs jsonb, error text,
           skip_reason text, progress float8, stage jsonb, started_at timestamptz,
           completed_at timestamptz"
    };
}
const STEP_RECORD: &str = step_record!();

/// The CTE inserting a transition's outbox rows, read from the JSON array
/// in parameter `$events` ([`OutboxEvent`]'s serde): the same in every
/// statement that writes a transition.
macro_rules! outbox_rows {
    ($events:literal) => {
        concat!(
            "outbox_rows AS (
       INSERT INTO outbox (event_id, topic, body, trace_id, execution_id)
       SELECT event_id, topic, body, trace_id, execution_id
       FROM jsonb_to_recordset(",
            $events,
            ") AS o(event_id text, topic text, body jsonb, trace_id text, execution_id uuid)
       RETURNING 1
    )"
        )
    };
}

/// Changed step rows written with one primary-key lookup each; a
/// transition that changes more joins them on a record set.
///
/// Why not always the join: its rows are found with `step_id = ANY(ids)`
/// on the primary key's second column, and the planner (estimating an
/// execution at a handful of rows) prefers to read every step of the
/// execution and filter them. That makes a transition O(steps) in the
/// database: on a 1,000-step chain, a third of Postgres' time. A lookup by
/// the whole key is chosen whatever the statistics say. Two covers a
/// chain (the finished step and the next, claimed) and most results of a
/// fan-out; a transition that readies many steps writes many rows anyway.
const PROBES: usize = 2;

/// The parts of one transition's statement: only those with something to
/// write, so a step's write opens no table it does not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    /// Changed step rows: `0..=PROBES` looked up one by one, more joined.
    steps: usize,
    attempts: bool,
    outbox: bool,
}

impl Shape {
    const STEP_FORMS: usize = PROBES + 2;

    fn of(w: &TransitionWrite) -> Self {
        Self {
            steps: w.dirty.len().min(PROBES + 1),
            attempts: !w.attempts.steps.is_empty(),
            outbox: !w.events.is_empty(),
        }
    }

    fn index(self) -> usize {
        (self.steps * 2 + usize::from(self.attempts)) * 2 + usize::from(self.outbox)
    }

    fn every() -> impl Iterator<Item = Shape> {
        (0..Self::STEP_FORMS).flat_map(|steps| {
            [(false, false), (false, true), (true, false), (true, true)]
                .into_iter()
                .map(move |(attempts, outbox)| Shape {
                    steps,
                    attempts,
                    outbox,
                })
        })
    }
}

/// The statement of each [`Shape`], built once ([`Shape::every`] yields
/// them in the order of [`Shape::index`]).
static TRANSITION_SQL: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| Shape::every().map(build_transition_sql).collect());

fn transition_sql(shape: Shape) -> &'static str {
    &TRANSITION_SQL[shape.index()]
}

/// One statement for everything a transition changed (its data-modifying
/// CTEs touch different rows, so they cannot see or conflict with each
/// other). `$1` is the execution; the others are numbered in the order
/// [`write_transition`] binds them.
fn build_transition_sql(shape: Shape) -> String {
    let mut last = 1;
    let mut next = || {
        last += 1;
        last
    };
    let mut ctes = Vec::new();
    if shape.steps <= PROBES {
        for j in 0..shape.steps {
            let row = next();
            ctes.push(format!(
                "step{j} AS (
       UPDATE step_executions s SET {STEP_SET}
       FROM jsonb_to_record(${row}) AS r({STEP_RECORD})
       WHERE s.execution_id = $1 AND s.step_id = ${row}::jsonb ->> 'step_id'
       RETURNING 1
    )"
            ));
        }
    } else {
        let (rows, ids) = (next(), next());
        ctes.push(format!(
            "steps AS (
       UPDATE step_executions s SET {STEP_SET}
       FROM jsonb_to_recordset(${rows}) AS r({STEP_RECORD})
       -- The ids again as an array, so the rows are found through the
       -- primary key (see PROBES for when the planner does not).
       WHERE s.execution_id = $1 AND s.step_id = ANY(${ids}) AND s.step_id = r.step_id
       RETURNING 1
    )"
        ));
    }
    if shape.attempts {
        let [steps, numbers, owners, started, outcomes] = [next(), next(), next(), next(), next()];
        ctes.push(format!(
            "ended AS (
       INSERT INTO step_attempts (execution_id, step_id, attempt, replica_id, started_at, ended_at, outcome)
       SELECT $1, a.step_id, a.attempt, a.replica_id, a.started_at, now(), a.outcome
       FROM UNNEST(${steps}::text[], ${numbers}::int[], ${owners}::uuid[], ${started}::timestamptz[], ${outcomes}::text[])
            AS a(step_id, attempt, replica_id, started_at, outcome)
       RETURNING 1
    )"
        ));
    }
    if shape.outbox {
        let events = next();
        ctes.push(format!(outbox_rows!("${}"), events));
    }
    let [
        status,
        outputs,
        error,
        started,
        completed,
        deadline,
        timed_out,
        revision,
        finished,
        bump,
    ] = [
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
    ];
    let with = if ctes.is_empty() {
        String::new()
    } else {
        format!("WITH {}\n    ", ctes.join(", "))
    };
    format!(
        "{with}UPDATE executions SET status = ${status}, outputs = ${outputs}, error = ${error},
           started_at = ${started}, completed_at = ${completed}, deadline_at = ${deadline},
           timed_out = ${timed_out}, revision = ${revision}, finished_steps = ${finished}
    WHERE id = $1 AND ${bump}"
    )
}

/// Binds the execution row's new values (the last ten parameters of a
/// transition's statement, the last saying whether to write them at all).
fn bind_execution<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    e: Option<&'q ExecutionWrite>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(e.map(|e| e.status))
        .bind(e.map(|e| &e.outputs))
        .bind(e.and_then(|e| e.error.as_deref()))
        .bind(e.and_then(|e| e.started_at))
        .bind(e.and_then(|e| e.completed_at))
        .bind(e.and_then(|e| e.deadline_at))
        .bind(e.map(|e| e.timed_out))
        .bind(e.map(|e| e.revision))
        .bind(e.map(|e| e.finished_steps))
        .bind(e.is_some())
}

/// Everything a transition changed, in ONE statement: the changed step
/// rows, the attempts that ended, the outbox rows, and the execution row.
pub(crate) async fn write_transition(
    tx: &mut PgConnection,
    w: &TransitionWrite,
) -> Result<(), sqlx::Error> {
    let shape = Shape::of(w);
    let mut query = sqlx::query(transition_sql(shape)).bind(w.execution_id);
    if shape.steps <= PROBES {
        for row in &w.dirty {
            query = query.bind(sqlx::types::Json(row));
        }
    } else {
        let ids: Vec<&str> = w.dirty.iter().map(|r| r.step_id.as_str()).collect();
        query = query.bind(sqlx::types::Json(&w.dirty)).bind(ids);
    }
    if shape.attempts {
        let a = &w.attempts;
        query = query
            .bind(&a.steps)
            .bind(&a.numbers)
            .bind(&a.owners)
            .bind(&a.started)
            .bind(&a.outcomes);
    }
    if shape.outbox {
        query = query.bind(sqlx::types::Json(&w.events));
    }
    bind_execution(query, w.exec.as_ref()).execute(tx).await?;
    Ok(())
}

/// What many transitions (of different executions, each locked by this
/// transaction) changed, in ONE statement: the per-statement cost of
/// Postgres is paid once for all of them instead of once per execution.
///
/// Rows come as arrays (`UNNEST`), each JSON record read on its own: the
/// planner estimates an array at 10 elements, and so finds each row by its
/// key. A `jsonb_to_recordset` counts as 100 rows, and on a table of a few
/// thousand executions it read all of them to join a handful.
const WRITE_TRANSITIONS: &str = concat!(
    "WITH steps AS (
       UPDATE step_executions s SET ",
    step_set!(),
    "
       FROM UNNEST($1::uuid[], $2::jsonb[]) AS k(execution_id, doc)
            CROSS JOIN LATERAL jsonb_to_record(k.doc) AS r(",
    step_record!(),
    ")
       WHERE s.execution_id = k.execution_id AND s.step_id = r.step_id
       RETURNING 1
    ), ended AS (
       -- An attempt ends once, past the attempt fence under its execution's
       -- lock: a plain insert (ON CONFLICT would make it a speculative one).
       INSERT INTO step_attempts (execution_id, step_id, attempt, replica_id, started_at, ended_at, outcome)
       SELECT a.execution_id, a.step_id, a.attempt, a.replica_id, a.started_at, now(), a.outcome
       FROM UNNEST($3::uuid[], $4::text[], $5::int[], $6::uuid[], $7::timestamptz[], $8::text[])
            AS a(execution_id, step_id, attempt, replica_id, started_at, outcome)
       RETURNING 1
    ), ",
    outbox_rows!("$9"),
    "
    UPDATE executions e SET status = x.status, outputs = x.outputs, error = x.error,
           started_at = x.started_at, completed_at = x.completed_at, deadline_at = x.deadline_at,
           timed_out = x.timed_out, revision = x.revision, finished_steps = x.finished_steps
    FROM UNNEST($10::uuid[], $11::jsonb[]) AS k(id, doc)
         CROSS JOIN LATERAL jsonb_to_record(k.doc) AS x(status text, outputs jsonb, error text,
           started_at timestamptz, completed_at timestamptz, deadline_at timestamptz,
           timed_out bool, revision int8, finished_steps int)
    WHERE e.id = k.id"
);

/// [`write_transition`] for the transitions of many executions at once.
pub(crate) async fn write_transitions(
    tx: &mut PgConnection,
    writes: &[TransitionWrite],
) -> Result<(), sqlx::Error> {
    let (mut row_execs, mut rows) = (Vec::new(), Vec::new());
    // The attempts' columns, with the execution of each.
    let (mut attempt_execs, mut a) = (Vec::new(), AttemptRows::default());
    let mut events = Vec::new();
    let (mut exec_ids, mut execs) = (Vec::new(), Vec::new());
    for w in writes {
        row_execs.extend(std::iter::repeat_n(w.execution_id, w.dirty.len()));
        rows.extend(w.dirty.iter().map(sqlx::types::Json));
        let ended = &w.attempts;
        attempt_execs.extend(std::iter::repeat_n(w.execution_id, ended.steps.len()));
        a.steps.extend_from_slice(&ended.steps);
        a.numbers.extend_from_slice(&ended.numbers);
        a.owners.extend_from_slice(&ended.owners);
        a.started.extend_from_slice(&ended.started);
        a.outcomes.extend_from_slice(&ended.outcomes);
        events.extend(&w.events);
        if let Some(exec) = &w.exec {
            exec_ids.push(w.execution_id);
            execs.push(sqlx::types::Json(exec));
        }
    }
    sqlx::query(WRITE_TRANSITIONS)
        .bind(row_execs)
        .bind(rows)
        .bind(attempt_execs)
        .bind(a.steps)
        .bind(a.numbers)
        .bind(a.owners)
        .bind(a.started)
        .bind(a.outcomes)
        .bind(sqlx::types::Json(&events))
        .bind(exec_ids)
        .bind(execs)
        .execute(tx)
        .await?;
    Ok(())
}

/// Every shape of a transition's statement (for `crate::db::check`).
pub(crate) fn built() -> Vec<super::check::Statement> {
    Shape::every()
        .map(|shape| super::check::Statement {
            name: format!(
                "steps::transition_sql({} step rows, attempts {}, outbox {})",
                shape.steps, shape.attempts, shape.outbox
            )
            .into(),
            sql: transition_sql(shape).into(),
            reads: None,
        })
        .chain(std::iter::once(super::check::Statement {
            name: "steps::WRITE_TRANSITIONS".into(),
            sql: WRITE_TRANSITIONS.into(),
            reads: None,
        }))
        .collect()
}

/// The steps of a new execution, one entry per step in declaration order
/// (`position` is the index).
pub(crate) struct NewSteps<'a> {
    pub ids: &'a [&'a str],
    pub positions: &'a [i32],
    pub names: &'a [&'a str],
    pub actions: &'a [&'a str],
    pub timeouts: &'a [Option<f64>],
}

/// A new execution's steps, as its first transition left them, written
/// with the rest of that transition (its outbox rows, its execution row):
/// the steps are inserted once, already ready or claimed, instead of
/// inserted and then updated.
const INSERT: &str = concat!(
    "WITH inserted AS (
       INSERT INTO step_executions (execution_id, step_id, position, name, action, timeout_seconds,
           status, available_at, attempt, failures, crashes, lease_owner, lease_expires_at,
           awaiting_event, external_workflow_id, timeout_at, outputs, error, skip_reason,
           progress, stage, started_at, completed_at)
       SELECT $1, n.step_id, n.position, n.name, n.action, n.timeout_seconds,
           r.status, r.available_at, r.attempt, r.failures, r.crashes, r.lease_owner,
           r.lease_expires_at, r.awaiting_event, r.external_workflow_id, r.timeout_at,
           r.outputs, r.error, r.skip_reason, r.progress, r.stage, r.started_at, r.completed_at
       FROM UNNEST($2::text[], $3::int[], $4::text[], $5::text[], $6::float8[], $7::jsonb[])
            AS n(step_id, position, name, action, timeout_seconds, doc)
            CROSS JOIN LATERAL jsonb_to_record(n.doc) AS r(",
    step_record!(),
    ")
       RETURNING 1
    ), ",
    outbox_rows!("$8"),
    "
    UPDATE executions SET status = $9, outputs = $10, error = $11,
           started_at = $12, completed_at = $13, deadline_at = $14,
           timed_out = $15, revision = $16, finished_steps = $17
    WHERE id = $1 AND $18"
);

/// Insert a new execution's steps (`rows`, one per step in declaration
/// order, as its first transition left them) together with the rest of
/// that transition, `w` (whose changed rows are among `rows`), inside the
/// transaction that inserted the execution.
pub(crate) async fn insert(
    tx: &mut PgConnection,
    steps: &NewSteps<'_>,
    rows: &[StepRow],
    w: &TransitionWrite,
) -> Result<(), sqlx::Error> {
    let docs: Vec<sqlx::types::Json<&StepRow>> = rows.iter().map(sqlx::types::Json).collect();
    let query = sqlx::query(INSERT)
        .bind(w.execution_id)
        .bind(steps.ids)
        .bind(steps.positions)
        .bind(steps.names)
        .bind(steps.actions)
        .bind(steps.timeouts)
        .bind(docs)
        .bind(sqlx::types::Json(&w.events));
    bind_execution(query, w.exec.as_ref()).execute(tx).await?;
    Ok(())
}

const RENEW_LEASES: &str = "WITH mine AS (
        SELECT s.execution_id, s.step_id, s.attempt FROM step_executions s
        JOIN UNNEST($3::uuid[], $4::text[], $5::int[]) AS h(execution_id, step_id, attempt)
          ON s.execution_id = h.execution_id AND s.step_id = h.step_id AND s.attempt = h.attempt
        WHERE s.status = 'RUNNING' AND NOT s.awaiting_event AND s.lease_owner = $1
    ), free AS (
        SELECT s.execution_id, s.step_id FROM step_executions s
        JOIN mine m ON s.execution_id = m.execution_id AND s.step_id = m.step_id
        WHERE s.attempt = m.attempt AND s.status = 'RUNNING' AND NOT s.awaiting_event
          AND s.lease_owner = $1
        FOR NO KEY UPDATE OF s SKIP LOCKED
    ), renewed AS (
        UPDATE step_executions s SET lease_expires_at = now() + make_interval(secs => $2)
        FROM free f WHERE s.execution_id = f.execution_id AND s.step_id = f.step_id
        RETURNING 1
    )
    SELECT execution_id, step_id, attempt FROM mine";

/// Extend the lease of the attempts in `held` that `replica` still runs
/// (by `lease_seconds` from now), returning every one of them that is
/// still this replica's.
///
/// Never waits for a row lock: a transition holding a step's row (one
/// recording results of several executions, say) would otherwise be
/// able to wait on this statement while it waits on that transition,
/// a deadlock that fails the renewal. A row locked at this moment is
/// being finished or was just claimed; it is still ours (the snapshot
/// says so) and its lease is extended at the next round.
pub(crate) async fn renew_leases(
    db: impl PgExecutor<'_>,
    replica: Uuid,
    lease_seconds: f64,
    held: &[AttemptKey],
) -> Result<Vec<AttemptKey>, sqlx::Error> {
    let executions: Vec<Uuid> = held.iter().map(|k| k.0).collect();
    let steps: Vec<String> = held.iter().map(|k| k.1.clone()).collect();
    let attempts: Vec<i32> = held.iter().map(|k| k.2).collect();
    sqlx::query_as(RENEW_LEASES)
        .bind(replica)
        .bind(lease_seconds)
        .bind(&executions)
        .bind(&steps)
        .bind(&attempts)
        .fetch_all(db)
        .await
}

const LEASED_EXECUTIONS: &str = "SELECT DISTINCT execution_id FROM step_executions
    WHERE lease_owner = $1 AND status = 'RUNNING' AND NOT awaiting_event";

/// The executions with a step in a handler under `replica`'s lease.
pub(crate) async fn leased_executions(
    db: impl PgExecutor<'_>,
    replica: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(LEASED_EXECUTIONS)
        .bind(replica)
        .fetch_all(db)
        .await
}

const WAITING_ON: &str = "SELECT execution_id, step_id FROM step_executions
    WHERE external_workflow_id = $1 AND awaiting_event";

/// The step waiting on `correlation_id` (execution id, step id), if one is.
pub(crate) async fn waiting_on(
    db: impl PgExecutor<'_>,
    correlation_id: &str,
) -> Result<Option<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as(WAITING_ON)
        .bind(correlation_id)
        .fetch_optional(db)
        .await
}

/// Whether a step waits on `correlation_id`, and whether any step ever
/// recorded it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Correlation {
    pub waiting: bool,
    pub known: bool,
}

const CORRELATION: &str =
    "SELECT COALESCE(bool_or(awaiting_event), false) AS waiting, count(*) > 0 AS known
         FROM step_executions WHERE external_workflow_id = $1";

pub(crate) async fn correlation(
    db: impl PgExecutor<'_>,
    correlation_id: &str,
) -> Result<Correlation, sqlx::Error> {
    sqlx::query_as(CORRELATION)
        .bind(correlation_id)
        .fetch_one(db)
        .await
}

const ANOTHER_WAITS_ON: &str = "SELECT EXISTS (SELECT 1 FROM step_executions
    WHERE external_workflow_id = $1 AND awaiting_event
      AND NOT (execution_id = $2 AND step_id = $3))";

/// Whether a step other than (`execution_id`, `step_id`) waits on
/// `correlation_id`: two steps can never wait on one id at once.
pub(crate) async fn another_waits_on(
    tx: &mut PgConnection,
    correlation_id: &str,
    execution_id: Uuid,
    step_id: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(ANOTHER_WAITS_ON)
        .bind(correlation_id)
        .bind(execution_id)
        .bind(step_id)
        .fetch_one(tx)
        .await
}

/// A row of the claim statement: a claimed step, or (all NULL but the
/// count) the one row saying nothing was claimed.
#[derive(sqlx::FromRow)]
pub(crate) struct Claimed {
    pub execution_id: Option<Uuid>,
    pub step_id: Option<String>,
    pub name: Option<String>,
    pub action: Option<String>,
    pub attempt: Option<i32>,
    pub position: Option<i32>,
    pub timeout_seconds: Option<f64>,
    pub candidates: i64,
}

const CLAIM_READY: &str = "WITH candidate AS (
        SELECT execution_id, step_id FROM step_executions
        WHERE status = 'PENDING' AND available_at <= now()
        ORDER BY available_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ), free AS (
        SELECT id FROM executions
        WHERE id IN (SELECT execution_id FROM candidate) AND status = 'RUNNING'
        FOR NO KEY UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE step_executions s
        SET status = 'RUNNING', attempt = s.attempt + 1, available_at = NULL,
            lease_owner = $1, lease_expires_at = now() + make_interval(secs => $3),
            started_at = now(), awaiting_event = false,
            timeout_at = now() + make_interval(secs => s.timeout_seconds)
        FROM candidate c
        WHERE s.execution_id = c.execution_id AND s.step_id = c.step_id
          AND c.execution_id IN (SELECT id FROM free)
        RETURNING s.execution_id, s.step_id, s.name, s.action, s.attempt, s.position,
                  s.timeout_seconds
    ), bumped AS (
        -- The step rows changed: copies kept in memory are stale.
        UPDATE executions e SET revision = e.revision + 1
        WHERE e.id IN (SELECT execution_id FROM claimed)
        RETURNING 1
    )
    SELECT c.*, (SELECT count(*) FROM candidate) AS candidates FROM claimed c
    UNION ALL
    -- No claim at all: one row that carries only the count.
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, (SELECT count(*) FROM candidate)
    WHERE NOT EXISTS (SELECT 1 FROM claimed)";

/// Claim up to `limit` ready steps for `replica` with a lease of
/// `lease_seconds`, skipping steps and executions other transactions hold;
/// bumps the revision of each execution claimed from (its kept rows are
/// stale). Also counts the candidates, so the caller knows how many it
/// passed over.
pub(crate) async fn claim_ready(
    tx: &mut PgConnection,
    replica: Uuid,
    limit: i64,
    lease_seconds: f64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(CLAIM_READY)
        .bind(replica)
        .bind(limit)
        .bind(lease_seconds)
        .fetch_all(tx)
        .await
}

const OUTPUTS_OF: &str = "SELECT execution_id, step_id, outputs FROM step_executions
    WHERE execution_id = ANY($1) AND outputs IS NOT NULL";

/// The outputs of every step of `executions` that has some, as raw rows:
/// the caller decodes them one by one, so an unreadable row fails only its
/// own execution.
pub(crate) async fn outputs_of(
    tx: &mut PgConnection,
    executions: &[Uuid],
) -> Result<Vec<sqlx::postgres::PgRow>, sqlx::Error> {
    sqlx::query(OUTPUTS_OF).bind(executions).fetch_all(tx).await
}

super::check::statements!(
    OF_EXECUTION => StepRow,
    INSERT,
    RENEW_LEASES => AttemptKey,
    LEASED_EXECUTIONS,
    WAITING_ON => (Uuid, String),
    CORRELATION => Correlation,
    ANOTHER_WAITS_ON,
    CLAIM_READY => Claimed,
    OUTPUTS_OF,
);

#[cfg(test)]
mod tests {
    use super::*;

    /// `write_transition` reads the changed rows from their JSON: every
    /// field serde writes is a column of its record and is SET, and the
    /// reverse, so a `#[serde(skip)]` or a renamed field cannot silently
    /// stop a column being written.
    #[test]
    fn a_transition_writes_every_field_of_a_step_row() {
        let json = serde_json::to_value(StepRow::fresh("a", 0, "a", "log")).unwrap();
        let mut fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut columns: Vec<&str> = STEP_RECORD
            .split(',')
            .map(|c| c.split_whitespace().next().unwrap())
            .collect();
        fields.sort_unstable();
        columns.sort_unstable();
        assert_eq!(fields, columns);
        for column in columns.iter().filter(|c| **c != "step_id") {
            assert!(
                STEP_SET.contains(&format!("{column} = r.{column}")),
                "{column} is not SET"
            );
            // A new execution's steps are inserted from the same record.
            assert!(
                INSERT.contains(&format!("r.{column}"))
                    && (INSERT.contains(&format!(" {column},"))
                        || INSERT.contains(&format!(" {column})"))),
                "{column} is not inserted"
            );
        }
        assert!(WRITE_TRANSITIONS.contains(STEP_SET));
    }

    /// Each shape has its own statement, and each statement uses every
    /// parameter up to the last it binds (none left unbound or unused).
    #[test]
    fn every_transition_shape_has_its_statement() {
        let shapes: Vec<Shape> = Shape::every().collect();
        assert_eq!(shapes.len(), Shape::STEP_FORMS * 4);
        // `TRANSITION_SQL` is indexed by `index` in the order of `every`.
        let indexes: Vec<usize> = shapes.iter().map(|s| s.index()).collect();
        assert_eq!(indexes, (0..shapes.len()).collect::<Vec<_>>());
        for shape in shapes {
            let sql = transition_sql(shape);
            let params =
                1 + if shape.steps <= PROBES {
                    shape.steps
                } else {
                    2
                } + if shape.attempts { 5 } else { 0 }
                    + usize::from(shape.outbox)
                    + 10;
            for n in 1..=params {
                assert!(sql.contains(&format!("${n}")), "{shape:?}: ${n} unused");
            }
            assert!(!sql.contains(&format!("${}", params + 1)), "{shape:?}");
            assert_eq!(sql.contains("INSERT INTO step_attempts"), shape.attempts);
            assert_eq!(sql.contains("INSERT INTO outbox"), shape.outbox);
        }
    }
}
