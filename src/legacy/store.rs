//! Writing one pipeline or one execution into this service's tables, each
//! in its own transaction, keeping the original's ids.
//!
//! The statements are `db::legacy`'s: they write what only an import has
//! (the original's ids, versions and timestamps).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::convert::{self, Ending, Fate, Prepared, Snapshot};
use crate::actions::Registry;
use crate::db::legacy as db;
use crate::db::original as source;

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
    if db::workflow_exists(&mut tx, p.id).await? {
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
    let row = db::Workflow {
        id: p.id,
        name: &name,
        created_by: owner.as_deref(),
        version: p.version.max(1),
        description: description.as_deref(),
        dag: &prepared.stored,
        step_count,
        system_owned: p.system_owned,
        icon: p.icon.as_deref(),
        status,
        ephemeral: false,
        created_at: p.created_at,
        updated_at: p.updated_at,
    };
    db::insert_workflow(&mut tx, &row).await?;
    db::add_version(
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
        match db::name_holder(tx, &candidate, owner).await? {
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
    let same = db::version_with_dag(tx, workflow_id, dag).await?;
    if same.is_some() {
        return Ok(same);
    }
    let free = db::free_version(tx, workflow_id).await?;
    if let Some(version) = free {
        db::add_version(tx, workflow_id, version, dag, at).await?;
    }
    Ok(free)
}

pub(super) async fn execution(
    target: &PgPool,
    e: &source::Execution,
    registry: &Registry,
) -> Result<Outcome, sqlx::Error> {
    let mut tx = target.begin().await?;
    if db::execution_exists(&mut tx, e.id).await? {
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
            if !db::workflow_exists(&mut tx, pipeline_id).await? {
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
    let parameters = Value::Object(snapshot.params.clone());
    let row = db::Execution {
        id: e.id,
        workflow_id,
        workflow_version: version,
        status: status.as_str(),
        parameters: &parameters,
        outputs: &outputs,
        error: error.as_deref(),
        callback_topics: &topics,
        initiator: &e.initiator,
        subscriber_ids: e.subscriber_ids.as_deref(),
        payload_type: e.payload_type.as_deref(),
        notification_workflow_id: e.notification_workflow_id.as_deref(),
        total_steps: steps.len() as i32,
        finished_steps: steps.iter().filter(|s| s.status.is_terminal()).count() as i32,
        created_at: e.created_at,
        started_at: e.start_time,
        completed_at,
    };
    db::insert_execution(&mut tx, &row).await?;
    for step in &steps {
        db::insert_step(&mut tx, e.id, step).await?;
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
    let name = snapshot.definition_name();
    let row = db::Workflow {
        id,
        name: &name,
        created_by: snapshot.user_id(),
        version: 1,
        description: description.as_deref(),
        dag: &prepared.stored,
        step_count: prepared.step_count,
        system_owned: false,
        icon: None,
        status,
        ephemeral: true,
        created_at: at,
        updated_at: at,
    };
    db::insert_workflow(tx, &row).await?;
    db::add_version(tx, id, 1, &prepared.stored, at).await?;
    Ok(id)
}
