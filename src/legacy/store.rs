//! Writing one pipeline or one execution into this service's tables, each
//! in its own transaction, keeping the original's ids.
//!
//! These statements stay here rather than in `db::pipelines`: they write
//! what only an import has (the original's ids, versions and timestamps).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::convert::{self, Ending, Fate, NewStep, Prepared, Snapshot};
use super::source;
use crate::actions::Registry;

/// What became of one item.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Outcome {
    /// Copied; the text says how when it was not copied as it was.
    Copied(String),
    Skipped(String),
}

const ALREADY: &str = "already imported";

type Tx = Transaction<'static, Postgres>;

pub(super) async fn pipeline(
    target: &PgPool,
    p: &source::Pipeline,
    registry: &Registry,
) -> Result<Outcome, sqlx::Error> {
    let mut tx = target.begin().await?;
    if exists(&mut tx, "workflows", p.id).await? {
        return Ok(Outcome::Skipped(ALREADY.into()));
    }
    let Some(status) = convert::pipeline_status(&p.status) else {
        return Ok(Outcome::Skipped(format!(
            "unknown status '{}' in the original",
            p.status
        )));
    };
    let name = p.name.trim();
    if name.is_empty() {
        return Ok(Outcome::Skipped("it has no name".into()));
    }
    let mut notes = Vec::new();
    let (prepared, status) = if status == "draft" {
        (convert::as_stored(&p.dag_definition, Vec::new()), "draft")
    } else {
        let prepared = convert::prepare(&p.dag_definition, registry);
        if prepared.valid() {
            (prepared, status)
        } else {
            notes.push(format!(
                "as a draft (it was {}; it cannot run until its DAG is fixed): {}",
                p.status.to_ascii_uppercase(),
                prepared.first_errors()
            ));
            (prepared, "draft")
        }
    };
    let owner = p.user_id.map(|u| u.to_string());
    let (name, taken_by) = free_name(&mut tx, name, owner.as_deref()).await?;
    if let Some(other) = taken_by {
        notes.insert(
            0,
            format!(
                "as {name:?} ({:?} is taken by pipeline {other} of the same owner)",
                p.name.trim()
            ),
        );
    }
    let description = p
        .description
        .clone()
        .or_else(|| prepared.dag.as_ref().and_then(|d| d.description.clone()));
    let step_count = if prepared.valid() {
        prepared.step_count
    } else {
        prepared.step_count.max(p.step_count)
    };
    sqlx::query(
        "INSERT INTO workflows (id, name, created_by, version, description, dag, step_count,
                                system_owned, icon, status, ephemeral, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, false, $11, $12)",
    )
    .bind(p.id)
    .bind(&name)
    .bind(&owner)
    .bind(p.version.max(1))
    .bind(&description)
    .bind(&prepared.stored)
    .bind(step_count)
    .bind(p.system_owned)
    .bind(&p.icon)
    .bind(status)
    .bind(p.created_at)
    .bind(p.updated_at)
    .execute(&mut *tx)
    .await?;
    add_version(
        &mut tx,
        p.id,
        p.version.max(1),
        &prepared.stored,
        p.updated_at,
    )
    .await?;
    tx.commit().await?;
    Ok(Outcome::Copied(notes.join("; ")))
}

/// The name itself when no live pipeline of the owner has it, else the
/// first free renamed one, with the id of the pipeline holding the name.
async fn free_name(
    tx: &mut Tx,
    name: &str,
    owner: Option<&str>,
) -> Result<(String, Option<Uuid>), sqlx::Error> {
    let mut first_holder = None;
    let mut last = name.to_owned();
    for candidate in convert::names(name) {
        let holder: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM workflows
             WHERE name = $1 AND coalesce(created_by, '') = coalesce($2, '')
               AND deleted_at IS NULL AND NOT ephemeral
             LIMIT 1",
        )
        .bind(&candidate)
        .bind(owner)
        .fetch_optional(&mut **tx)
        .await?;
        match holder {
            None => return Ok((candidate, first_holder)),
            Some(id) => {
                first_holder = first_holder.or(Some(id));
                last = candidate;
            }
        }
    }
    // A hundred names taken: let the unique index report it.
    Ok((last, first_holder))
}

async fn exists(tx: &mut Tx, table: &str, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT EXISTS (SELECT 1 FROM {table} WHERE id = $1)"
    ))
    .bind(id)
    .fetch_one(&mut **tx)
    .await
}

async fn add_version(
    tx: &mut Tx,
    workflow_id: Uuid,
    version: i32,
    dag: &Value,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO workflow_versions (workflow_id, version, dag, created_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(workflow_id)
    .bind(version)
    .bind(dag)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The version of `workflow_id` whose DAG is `dag`; else a new version row
/// for it. The original kept only a pipeline's current DAG (under its
/// current version number), so a DAG an execution ran that differs from it
/// was an earlier version: it takes the lowest number nobody holds below
/// the pipeline's. `None` when no such number is left.
async fn version_for(
    tx: &mut Tx,
    workflow_id: Uuid,
    dag: &Value,
    at: DateTime<Utc>,
) -> Result<Option<i32>, sqlx::Error> {
    let same: Option<i32> = sqlx::query_scalar(
        "SELECT version FROM workflow_versions WHERE workflow_id = $1 AND dag = $2
         ORDER BY version DESC LIMIT 1",
    )
    .bind(workflow_id)
    .bind(dag)
    .fetch_optional(&mut **tx)
    .await?;
    if same.is_some() {
        return Ok(same);
    }
    let free: Option<i32> = sqlx::query_scalar(
        "SELECT v FROM generate_series(1, (SELECT max(version) FROM workflow_versions
                                           WHERE workflow_id = $1)) AS v
         WHERE NOT EXISTS (SELECT 1 FROM workflow_versions w
                           WHERE w.workflow_id = $1 AND w.version = v)
         ORDER BY v LIMIT 1",
    )
    .bind(workflow_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(version) = free {
        add_version(tx, workflow_id, version, dag, at).await?;
    }
    Ok(free)
}

pub(super) async fn execution(
    target: &PgPool,
    e: &source::Execution,
    registry: &Registry,
) -> Result<Outcome, sqlx::Error> {
    let mut tx = target.begin().await?;
    if exists(&mut tx, "executions", e.id).await? {
        return Ok(Outcome::Skipped(ALREADY.into()));
    }
    let (status, interrupted) = match convert::fate(&e.status) {
        Fate::Copy {
            status,
            interrupted,
        } => (status, interrupted),
        Fate::Skip(reason) => return Ok(Outcome::Skipped(reason)),
    };
    let snapshot = Snapshot::of(&e.pipeline_definition);
    let Some(doc) = snapshot.dag else {
        return Ok(Outcome::Skipped(
            "its pipeline_definition snapshot holds no DAG".into(),
        ));
    };
    let prepared = convert::prepare(doc, registry);
    let completed_at = e.end_time.unwrap_or(e.updated_at);
    let ending = Ending {
        failed: status == crate::engine::model::ExecutionStatus::Failed,
        at: completed_at,
    };
    let steps = match convert::steps(prepared.dag.as_ref(), doc, &e.steps, &ending, registry) {
        Ok(steps) => steps,
        Err(reason) => return Ok(Outcome::Skipped(reason)),
    };
    let (workflow_id, version, whose) = match e.pipeline_id {
        Some(pipeline_id) => {
            if !exists(&mut tx, "workflows", pipeline_id).await? {
                return Ok(Outcome::Skipped(format!(
                    "its pipeline {pipeline_id} was not imported; run again once it is"
                )));
            }
            let Some(version) =
                version_for(&mut tx, pipeline_id, &prepared.stored, e.created_at).await?
            else {
                return Ok(Outcome::Skipped(format!(
                    "the DAG it ran matches no version of pipeline {pipeline_id} \
                     and no earlier version number is free for it"
                )));
            };
            (pipeline_id, version, format!("pipeline {pipeline_id}"))
        }
        None => {
            let id = ephemeral(&mut tx, &snapshot, &prepared, e.created_at).await?;
            let whose = match snapshot.workflow_id {
                Some(w) if w.parse::<Uuid>().is_ok() => format!(
                    "its pipeline {w} was deleted in the original: kept with its own definition {id}"
                ),
                _ => format!("run without a stored pipeline: its own definition {id}"),
            };
            (id, 1, whose)
        }
    };
    let error = convert::execution_error(status, interrupted, e.error_info.as_ref(), &steps);
    let outputs = match &e.final_outputs {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v) => v.clone(),
    };
    let mut topics: Vec<String> = Vec::new();
    for t in &e.topics {
        if !topics.contains(t) {
            topics.push(t.clone());
        }
    }
    sqlx::query(
        "INSERT INTO executions (id, workflow_id, workflow_version, status, parameters, outputs, error,
                                 callback_topics, initiator, subscriber_ids, payload_type,
                                 notification_workflow_id, total_steps, created_at, started_at,
                                 completed_at, trace_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                 replace($1::text, '-', ''))",
    )
    .bind(e.id)
    .bind(workflow_id)
    .bind(version)
    .bind(status.as_str())
    .bind(Value::Object(snapshot.params.clone()))
    .bind(&outputs)
    .bind(&error)
    .bind(&topics)
    .bind(&e.initiator)
    .bind(&e.subscriber_ids)
    .bind(&e.payload_type)
    .bind(&e.notification_workflow_id)
    .bind(steps.len() as i32)
    .bind(e.created_at)
    .bind(e.start_time)
    .bind(completed_at)
    .execute(&mut *tx)
    .await?;
    for step in &steps {
        insert_step(&mut tx, e.id, step).await?;
    }
    tx.commit().await?;
    let plural = if steps.len() == 1 { "" } else { "s" };
    let mut how = format!("{} step{plural}, {whose}", steps.len());
    if !prepared.valid() {
        how.push_str(&format!(
            "; its DAG does not pass this service's validation: {}",
            prepared.first_errors()
        ));
    }
    Ok(Outcome::Copied(if interrupted {
        format!("as FAILED (INTERRUPTED in the original; {how})")
    } else {
        format!("({}, {how})", status.as_str())
    }))
}

/// The definition of a run the original did not keep as a pipeline (or
/// whose pipeline it deleted): an ephemeral workflow, as `POST
/// /executions/run` keeps, built from the execution's snapshot.
async fn ephemeral(
    tx: &mut Tx,
    snapshot: &Snapshot<'_>,
    prepared: &Prepared,
    at: DateTime<Utc>,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    let status = if prepared.valid() { "active" } else { "draft" };
    let description = prepared.dag.as_ref().and_then(|d| d.description.clone());
    sqlx::query(
        "INSERT INTO workflows (id, name, created_by, version, description, dag, step_count,
                                status, ephemeral, created_at, updated_at)
         VALUES ($1, $2, $3, 1, $4, $5, $6, $7, true, $8, $8)",
    )
    .bind(id)
    .bind(snapshot.definition_name())
    .bind(snapshot.user_id())
    .bind(&description)
    .bind(&prepared.stored)
    .bind(prepared.step_count)
    .bind(status)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    add_version(tx, id, 1, &prepared.stored, at).await?;
    Ok(id)
}

async fn insert_step(tx: &mut Tx, execution_id: Uuid, s: &NewStep) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO step_executions (execution_id, step_id, position, name, action, status, attempt,
                                      failures, external_workflow_id, timeout_at, timeout_seconds,
                                      outputs, error, skip_reason, progress, started_at, completed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(execution_id)
    .bind(&s.step_id)
    .bind(s.position)
    .bind(&s.name)
    .bind(&s.action)
    .bind(s.status.as_str())
    .bind(s.attempt)
    .bind(s.failures)
    .bind(&s.external_workflow_id)
    .bind(s.timeout_at)
    .bind(s.timeout_seconds)
    .bind(&s.outputs)
    .bind(&s.error)
    .bind(s.skip_reason)
    .bind(s.progress)
    .bind(s.started_at)
    .bind(s.completed_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
