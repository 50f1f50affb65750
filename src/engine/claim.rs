//! Claiming ready steps for this replica: `FOR UPDATE SKIP LOCKED` on the
//! step rows and on their executions (so a claim never races a transition
//! that holds the execution), under a lease.

use std::collections::{HashMap, HashSet};

use sqlx::{FromRow, Row};

use serde_json::{Map, Value};
use uuid::Uuid;

use super::Engine;
use super::advance::{step_context, template_context};
use super::complete::{params_render, resolve_params};
use super::model::ClaimedStep;
use super::outbox::{self, Audience, OutboxEvent, Route};
use crate::db;
use crate::db::steps::Claimed;

/// What [`Engine::claim`] got.
pub struct Claim {
    pub steps: Vec<ClaimedStep>,
    /// Ready steps skipped because their execution was held elsewhere.
    pub passed_over: usize,
}

struct Ready {
    execution_id: Uuid,
    step_id: String,
    name: String,
    action: String,
    attempt: i32,
    position: i32,
    timeout_seconds: Option<f64>,
}

impl Ready {
    fn from_row(r: Claimed) -> Option<Self> {
        Some(Self {
            execution_id: r.execution_id?,
            step_id: r.step_id?,
            name: r.name?,
            action: r.action?,
            attempt: r.attempt?,
            position: r.position?,
            timeout_seconds: r.timeout_seconds,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ExecInfo {
    id: Uuid,
    workflow_id: Uuid,
    workflow_version: i32,
    parameters: Value,
    callback_topics: Vec<String>,
    subscriber_ids: Option<String>,
    payload_type: Option<String>,
    notification_workflow_id: Option<String>,
    trace_id: Option<String>,
}

impl Engine {
    /// Claim up to `limit` ready steps. Each is RUNNING with attempt + 1 and
    /// this replica's lease when this returns. Also says how many ready steps
    /// were passed over because another transaction held their execution
    /// (a transition, or another replica's claim): they are claimable again
    /// in a moment, so the caller should look again soon, not at its poll.
    pub async fn claim(&self, limit: usize) -> Result<Claim, crate::engine::Error> {
        // The claim's statement is planned once: Postgres would otherwise
        // plan it afresh at each claim (its parameters look selective),
        // which cost more than running it (0.76 ms against 0.51,
        // pg_stat_statements), for the same plan on the claimable index.
        let mut tx = self
            .pool()
            .begin_with("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan")
            .await?;
        let rows = db::steps::claim_ready(
            &mut tx,
            self.replica_id(),
            limit as i64,
            self.settings().lease.as_secs_f64(),
        )
        .await?;
        let candidates = rows.first().map_or(0, |r| r.candidates) as usize;
        let claimed: Vec<Claimed> = rows.into_iter().filter(|r| r.step_id.is_some()).collect();
        let passed_over = candidates.saturating_sub(claimed.len());
        if claimed.is_empty() {
            tx.rollback().await?;
            return Ok(Claim {
                steps: Vec::new(),
                passed_over,
            });
        }
        let claimed: Vec<Ready> = claimed.into_iter().filter_map(Ready::from_row).collect();
        let ids: Vec<Uuid> = claimed.iter().map(|c| c.execution_id).collect();
        // Rows are decoded one by one: a row that cannot be read back fails
        // its own execution (by the sweeper, once these leases run out),
        // never the claim of every other execution's steps.
        let mut unreadable: HashSet<Uuid> = HashSet::new();
        let exec_rows = db::executions::claim_infos(&mut tx, &ids).await?;
        let mut execs = Vec::with_capacity(exec_rows.len());
        for row in &exec_rows {
            match ExecInfo::from_row(row) {
                Ok(exec) => execs.push(exec),
                Err(e) => {
                    let id: Option<Uuid> = row.try_get("id").ok();
                    tracing::error!(execution_id = ?id, error = %e, "an execution's row cannot be read");
                    unreadable.extend(id);
                }
            }
        }
        // Earlier steps' outputs are read only for executions where a
        // claimed step's params render them: a plain step's claim costs the
        // same in a DAG of 10 steps or of 1,000.
        // Each execution's DAG, looked up once for both uses below.
        let mut dags: HashMap<Uuid, std::sync::Arc<crate::dag::Dag>> = HashMap::new();
        for exec in &execs {
            dags.insert(
                exec.id,
                self.dag(exec.workflow_id, exec.workflow_version).await?,
            );
        }
        let mut rendering: Vec<Uuid> = Vec::new();
        for c in &claimed {
            if dags
                .get(&c.execution_id)
                .and_then(|dag| dag.steps.get(c.position as usize))
                .is_some_and(|s| params_render(&s.params))
            {
                rendering.push(c.execution_id);
            }
        }
        let output_rows = if rendering.is_empty() {
            Vec::new()
        } else {
            db::steps::outputs_of(&mut tx, &rendering).await?
        };
        let mut outputs: Vec<(Uuid, String, Value)> = Vec::with_capacity(output_rows.len());
        for row in &output_rows {
            match <(Uuid, String, Value)>::from_row(row) {
                Ok(o) => outputs.push(o),
                Err(e) => {
                    let id: Option<Uuid> = row.try_get("execution_id").ok();
                    tracing::error!(execution_id = ?id, error = %e, "a step's outputs cannot be read");
                    unreadable.extend(id);
                }
            }
        }
        execs.retain(|e| !unreadable.contains(&e.id));

        let mut contexts: HashMap<Uuid, Map<String, Value>> = HashMap::new();
        for (execution_id, step_id, out) in outputs {
            contexts
                .entry(execution_id)
                .or_default()
                .insert(step_id, step_context(out));
        }
        let execs: HashMap<Uuid, ExecInfo> = execs.into_iter().map(|e| (e.id, e)).collect();
        let mut steps = Vec::with_capacity(claimed.len());
        let mut events: Vec<OutboxEvent> = Vec::new();
        let notify_topic = self.settings().notify_topic.clone();
        for c in claimed {
            let (Some(exec), Some(dag)) = (execs.get(&c.execution_id), dags.get(&c.execution_id))
            else {
                continue;
            };
            let params = match &exec.parameters {
                Value::Object(map) => map.clone(),
                _ => Map::new(),
            };
            let ctx = template_context(
                &params,
                contexts.get(&c.execution_id).cloned().unwrap_or_default(),
            );
            let step_params = &dag.steps[c.position as usize].params;
            let audience = Audience {
                topics: &exec.callback_topics,
                notify_topic: notify_topic.as_deref(),
                subscriber_ids: exec.subscriber_ids.as_deref().filter(|s| !s.is_empty()),
                trace_id: exec.trace_id.as_deref(),
                route: Route::new(&exec.payload_type, &exec.notification_workflow_id),
            };
            if !audience.is_empty() {
                let content = outbox::step_started(&c.name, c.attempt);
                audience.rows(c.execution_id, &c.step_id, content, &mut events);
            }
            steps.push(ClaimedStep {
                execution_id: c.execution_id,
                step_id: c.step_id,
                action: c.action,
                attempt: c.attempt,
                params: resolve_params(step_params, &ctx, self.settings().template_max_bytes),
                workflow_params: params,
                timeout: c.timeout_seconds.map(std::time::Duration::from_secs_f64),
                trace_id: exec.trace_id.clone(),
            });
        }
        crate::db::outbox::insert(&mut tx, &events).await?;
        tx.commit().await?;
        if !events.is_empty() {
            self.inner.outbox_wake.notify_one();
        }
        Ok(Claim { steps, passed_over })
    }
}
