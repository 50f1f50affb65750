//! Starting, cancelling and retrying executions.

use std::sync::Arc;

use chrono::Duration as ChronoDuration;
use serde_json::{Map, Value};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::Engine;
use super::advance::Finish;
use super::complete::Handoff;
use super::model::{ExecutionStatus, SkipReason, StepRow, StepStatus};
use super::transition::{AfterCommit, Locked};
use crate::dag::{self, Dag};
use crate::db;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The execution does not exist.
    #[error("execution not found")]
    NotFound,
    /// A pipeline saved without steps (`draft`) or retired (`archived`): it
    /// can be read, not run.
    #[error("the pipeline is {0}")]
    NotRunnable(String),
    /// The workflow to execute does not exist or is deleted.
    #[error("workflow not found")]
    WorkflowNotFound,
    #[error("invalid parameters")]
    Invalid(Vec<String>),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Engine(#[from] crate::engine::Error),
}

impl From<sqlx::Error> for ControlError {
    fn from(e: sqlx::Error) -> Self {
        Self::Engine(e.into())
    }
}

#[derive(Debug, Clone)]
pub struct NewExecution {
    pub workflow_id: Uuid,
    pub parameters: Map<String, Value>,
    pub callback_topics: Vec<String>,
    pub initiator: String,
    pub subscriber_ids: Option<String>,
    /// `payload.type` of every event published for the execution.
    pub payload_type: Option<String>,
    /// `payload.workflow_id` of every event published for the execution.
    pub notification_workflow_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// A digest of the request, so a repeated key with another body is a conflict.
    pub request_hash: String,
    /// The caller's trace (from `traceparent`), continued by every step.
    pub trace_id: Option<String>,
}

impl NewExecution {
    /// The execution a trigger (a schedule, a webhook, an event trigger)
    /// starts on `workflow_id`: the trigger's stored `params` with `extra` on
    /// top and `_trigger` (what fired it) last, started by `initiator`, with
    /// no callbacks, notifications, idempotency key or trace.
    pub fn triggered(
        workflow_id: Uuid,
        params: &Value,
        extra: Map<String, Value>,
        trigger: Value,
        initiator: String,
    ) -> Self {
        let mut parameters = params.as_object().cloned().unwrap_or_default();
        parameters.extend(extra);
        parameters.insert("_trigger".into(), trigger);
        Self {
            workflow_id,
            parameters,
            callback_topics: Vec::new(),
            initiator,
            subscriber_ids: None,
            payload_type: None,
            notification_workflow_id: None,
            idempotency_key: None,
            request_hash: String::new(),
            trace_id: None,
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Started {
    pub execution_id: Uuid,
    pub workflow_id: Uuid,
    pub workflow_version: i32,
    pub status: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug)]
pub enum StartOutcome {
    Created(Started),
    /// The same `Idempotency-Key` and body were seen before.
    Repeated(Started),
}

/// An execution checked against its pipeline (it exists, is not a draft,
/// and the parameters fit), ready to be recorded by [`Engine::record_execution`].
#[derive(Debug)]
pub struct Prepared {
    new: NewExecution,
    version: i32,
    dag: Arc<Dag>,
    parameters: Map<String, Value>,
}

impl Prepared {
    pub fn workflow_id(&self) -> Uuid {
        self.new.workflow_id
    }
}

/// What [`Engine::record_execution`] did inside the caller's transaction.
pub enum Recorded {
    /// The execution is written; once the transaction commits, [`Launch::go`].
    Created {
        tx: Transaction<'static, Postgres>,
        started: Started,
        launch: Launch,
    },
    /// Its idempotency key is already taken (a concurrent request won):
    /// nothing was written.
    KeyTaken { tx: Transaction<'static, Postgres> },
}

impl ControlError {
    /// Why a trigger's run of pipeline `workflow_id` cannot start, as the
    /// trigger records it (a schedule's `last_error`, a firing's `error`).
    pub fn trigger_refusal(&self, workflow_id: Uuid) -> String {
        match self {
            Self::WorkflowNotFound => format!("pipeline {workflow_id} no longer exists"),
            Self::NotRunnable(status) => format!("pipeline {workflow_id} is {status}"),
            Self::Invalid(errors) => {
                format!("the pipeline refuses the parameters: {}", errors.join("; "))
            }
            other => other.to_string(),
        }
    }
}

/// What a recorded execution still needs once its transaction committed:
/// run the first steps it claimed here, wake the others.
#[must_use = "call go() once the transaction has committed"]
pub struct Launch {
    effects: AfterCommit,
    handoffs: Vec<Handoff>,
}

impl Launch {
    pub fn go(self, engine: &Engine) {
        self.effects.apply(engine);
        engine.inner.metrics.executions_started.inc();
        engine.spawn_handoffs(self.handoffs);
    }
}

impl Engine {
    /// Durably record an execution and release its first steps. Returns once
    /// committed; the steps run in the background.
    pub async fn start(&self, new: NewExecution) -> Result<StartOutcome, ControlError> {
        let version = self.live_version(new.workflow_id).await?;
        if let Some(existing) = self.find_repeat(&new).await? {
            return Ok(StartOutcome::Repeated(existing));
        }
        let prepared = self.prepare_version(new, version).await?;
        let repeat_of = prepared.new.clone();
        let tx = self.pool().begin().await?;
        match self.record_execution(tx, prepared).await? {
            Recorded::Created {
                tx,
                started,
                launch,
            } => {
                tx.commit().await?;
                launch.go(self);
                Ok(StartOutcome::Created(started))
            }
            Recorded::KeyTaken { tx } => {
                // A concurrent request with the same key won the race.
                tx.rollback().await?;
                match self.find_repeat(&repeat_of).await? {
                    Some(existing) => Ok(StartOutcome::Repeated(existing)),
                    None => Err(ControlError::Conflict(
                        "the execution could not be recorded; retry".into(),
                    )),
                }
            }
        }
    }

    /// Check an execution against its pipeline before recording it.
    pub async fn prepare(&self, new: NewExecution) -> Result<Prepared, ControlError> {
        let version = self.live_version(new.workflow_id).await?;
        self.prepare_version(new, version).await
    }

    /// The current version of a runnable pipeline.
    async fn live_version(&self, workflow_id: Uuid) -> Result<i32, ControlError> {
        let live = db::workflows::live_version(self.pool(), workflow_id).await?;
        let Some((version, status)) = live else {
            return Err(ControlError::WorkflowNotFound);
        };
        if status != "active" {
            return Err(ControlError::NotRunnable(status));
        }
        Ok(version)
    }

    async fn prepare_version(
        &self,
        new: NewExecution,
        version: i32,
    ) -> Result<Prepared, ControlError> {
        let dag = self.dag(new.workflow_id, version).await?;
        let parameters =
            dag::params::merge(&dag, &new.parameters).map_err(ControlError::Invalid)?;
        Ok(Prepared {
            new,
            version,
            dag,
            parameters,
        })
    }

    /// Write a prepared execution inside the caller's transaction (which may
    /// hold more: a schedule's firing, a webhook's counters), claiming its
    /// first steps for this replica. Nothing runs until the caller commits
    /// and calls [`Launch::go`]; if the transaction is rolled back instead,
    /// dropping the [`Launch`] gives the claimed slots back.
    /// Record the run a trigger (a schedule, an event trigger) prepared.
    /// A trigger sets no idempotency key, so a collision on one is an error.
    pub async fn record_triggered(
        &self,
        tx: Transaction<'static, Postgres>,
        prepared: Prepared,
    ) -> Result<(Transaction<'static, Postgres>, Started, Launch), crate::engine::Error> {
        match self.record_execution(tx, prepared).await {
            Ok(Recorded::Created {
                tx,
                started,
                launch,
            }) => Ok((tx, started, launch)),
            Ok(Recorded::KeyTaken { tx }) => {
                tx.rollback().await?;
                Err(crate::engine::Error::Launch(
                    "a triggered run collided on an idempotency key".into(),
                ))
            }
            Err(ControlError::Engine(e)) => Err(e),
            Err(e) => Err(crate::engine::Error::Launch(e.to_string())),
        }
    }

    pub async fn record_execution(
        &self,
        mut tx: Transaction<'static, Postgres>,
        prepared: Prepared,
    ) -> Result<Recorded, ControlError> {
        let Prepared {
            new,
            version,
            dag,
            parameters,
        } = prepared;
        let execution_id = Uuid::now_v7();
        // The new rows come back from the INSERTs themselves: nobody else can
        // see them before the commit, so there is nothing to lock or re-read.
        let row = db::executions::NewRow {
            id: execution_id,
            workflow_id: new.workflow_id,
            workflow_version: version,
            parameters: Value::Object(parameters),
            callback_topics: &new.callback_topics,
            initiator: &new.initiator,
            subscriber_ids: new.subscriber_ids.as_deref(),
            idempotency_key: new.idempotency_key.as_deref(),
            request_hash: &new.request_hash,
            total_steps: dag.steps.len() as i32,
            timeout_seconds: dag.settings.timeout_seconds as f64,
            trace_id: new.trace_id.as_deref(),
            payload_type: new.payload_type.as_deref(),
            notification_workflow_id: new.notification_workflow_id.as_deref(),
        };
        let inserted = db::executions::insert(&mut tx, &row).await?;
        let Some(inserted) = inserted else {
            return Ok(Recorded::KeyTaken { tx });
        };
        let new_steps = NewSteps::of(self, &dag);
        let rows = new_steps.rows(execution_id);
        let started = Started {
            execution_id,
            workflow_id: new.workflow_id,
            workflow_version: version,
            status: ExecutionStatus::Running.as_str().to_owned(),
            created_at: inserted.created_at,
        };
        let max_bytes = self.settings().template_max_bytes;
        let mut locked = Locked::new(tx, inserted.exec, rows, dag.clone(), max_bytes);
        // Not `advance_inline`: a submit returns once the execution is
        // recorded and never runs its steps in the request (API.md).
        let ready = locked.advance();
        let handoffs = locked.claim_locally(self, &ready, Vec::new());
        // The steps are inserted as this first transition leaves them, in
        // the statement that writes the rest of it.
        let mut rows = locked.rows.clone();
        for row in &mut rows {
            row.truncate_to_micros();
        }
        let (mut tx, write, effects) = locked.stage(self);
        db::steps::insert(&mut tx, &new_steps.as_new(), &rows, &write).await?;
        Ok(Recorded::Created {
            tx,
            started,
            launch: Launch { effects, handoffs },
        })
    }

    async fn find_repeat(&self, new: &NewExecution) -> Result<Option<Started>, ControlError> {
        let Some(key) = &new.idempotency_key else {
            return Ok(None);
        };
        let found = db::executions::find_by_key(self.pool(), new.workflow_id, key).await?;
        match found {
            None => Ok(None),
            Some((id, hash)) if hash.as_deref() == Some(new.request_hash.as_str()) => {
                Ok(self.started(id).await?)
            }
            Some(_) => Err(ControlError::Conflict(
                "Idempotency-Key was already used with a different request body".into(),
            )),
        }
    }

    /// The acceptance answer ([`db::executions::started`]).
    async fn started(&self, id: Uuid) -> Result<Option<Started>, crate::engine::Error> {
        Ok(db::executions::started(self.pool(), id).await?)
    }

    /// Cancel a running execution: pending and waiting steps are cancelled;
    /// a step inside a handler is cancelled when its result arrives.
    pub async fn cancel(&self, execution_id: Uuid) -> Result<(), ControlError> {
        let mut locked = self
            .lock(execution_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        if locked.exec.status.is_terminal() {
            return Err(ControlError::Conflict(format!(
                "execution is already {}",
                locked.exec.status.as_str()
            )));
        }
        let now = locked.now();
        for row in locked.rows.iter_mut() {
            if row.status == StepStatus::Pending || row.is_waiting() {
                row.finish(StepStatus::Cancelled, now);
            }
        }
        locked.finish(Finish {
            status: ExecutionStatus::Cancelled,
            error: Some("cancelled".into()),
        });
        locked.commit(self).await?;
        Ok(())
    }

    /// Run again what failed in a FAILED or CANCELLED execution; completed
    /// steps keep their outputs and do not run again.
    pub async fn retry(&self, execution_id: Uuid) -> Result<(), ControlError> {
        let mut locked = self
            .lock(execution_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        if !matches!(
            locked.exec.status,
            ExecutionStatus::Failed | ExecutionStatus::Cancelled
        ) {
            return Err(ControlError::Conflict(format!(
                "only a FAILED or CANCELLED execution can be retried; this one is {}",
                locked.exec.status.as_str()
            )));
        }
        for row in locked.rows.iter_mut() {
            let upstream = row.skip_reason.as_deref() == Some(SkipReason::UpstreamFailed.as_str());
            let again = matches!(
                row.status,
                StepStatus::Failed | StepStatus::Timeout | StepStatus::Cancelled
            ) || (row.status == StepStatus::Skipped && upstream);
            if again {
                row.rerun();
            }
        }
        let now = locked.now();
        let limit = locked.dag.settings.timeout_seconds as i64;
        locked.exec.status = ExecutionStatus::Running;
        locked.exec.error = None;
        locked.exec.completed_at = None;
        locked.exec.outputs = Value::Object(Map::new());
        locked.exec.deadline_at = Some(now + ChronoDuration::seconds(limit));
        locked.touch_execution();
        // As at submit: the retry answers with the execution RUNNING again.
        let ready = locked.advance();
        let handoffs = locked.claim_locally(self, &ready, Vec::new());
        locked.commit(self).await?;
        self.spawn_handoffs(handoffs);
        Ok(())
    }
}

/// The columns of a new execution's steps that no transition changes, in
/// declaration order.
struct NewSteps<'a> {
    ids: Vec<&'a str>,
    positions: Vec<i32>,
    /// The step's name, or its id when it has none.
    names: Vec<&'a str>,
    actions: Vec<&'a str>,
    /// The step's own timeout, or its action's default.
    timeouts: Vec<Option<f64>>,
}

impl<'a> NewSteps<'a> {
    fn of(engine: &Engine, dag: &'a Dag) -> Self {
        let steps = &dag.steps;
        Self {
            ids: steps.iter().map(|s| s.id.as_str()).collect(),
            positions: (0..steps.len() as i32).collect(),
            names: steps
                .iter()
                .map(|s| {
                    if s.name.is_empty() {
                        s.id.as_str()
                    } else {
                        s.name.as_str()
                    }
                })
                .collect(),
            actions: steps.iter().map(|s| s.action.as_str()).collect(),
            timeouts: steps
                .iter()
                .map(|s| {
                    let default = engine
                        .registry()
                        .get(&s.action)
                        .and_then(|h| h.spec().default_timeout_seconds);
                    s.timeout_seconds.or(default).map(|t| t as f64)
                })
                .collect(),
        }
    }

    /// The step rows as the execution is created, before its first
    /// transition (`rows[i]` is step `i`).
    fn rows(&self, execution_id: Uuid) -> Vec<StepRow> {
        (0..self.ids.len())
            .map(|i| {
                StepRow::new(
                    execution_id,
                    self.ids[i],
                    i,
                    self.names[i],
                    self.actions[i],
                    self.timeouts[i],
                )
            })
            .collect()
    }

    fn as_new(&self) -> db::steps::NewSteps<'_> {
        db::steps::NewSteps {
            ids: &self.ids,
            positions: &self.positions,
            names: &self.names,
            actions: &self.actions,
            timeouts: &self.timeouts,
        }
    }
}
