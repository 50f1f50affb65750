//! The trigger tables (COMPAT.md "Triggers"): schedules, webhooks, event
//! triggers, and the firing rows that make each fire once.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgArguments;
use sqlx::query::{Query, QueryAs};
use sqlx::{PgExecutor, Postgres};
use uuid::Uuid;

/// A stored schedule, with the status of its last execution.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ScheduleRow {
    pub id: Uuid,
    pub workflow_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub schedule_type: String,
    pub expression: Option<String>,
    pub timezone: String,
    pub run_at: Option<DateTime<Utc>>,
    pub params: Value,
    pub enabled: bool,
    pub status: String,
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_execution_id: Option<Uuid>,
    pub last_execution_status: Option<String>,
    pub run_count: i32,
    pub failure_count: i32,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub max_runs: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Columns of [`ScheduleRow`] over `schedules s`.
macro_rules! schedule_columns {
    () => {
        "s.id, s.workflow_id, s.name, s.description, s.schedule_type, s.expression,
    s.timezone, s.run_at, s.params, s.enabled, s.status, s.next_run_at, s.last_run_at, s.last_execution_id,
    (SELECT e.status FROM executions e WHERE e.id = s.last_execution_id) AS last_execution_status,
    s.run_count, s.failure_count, s.last_error, s.last_error_at, s.max_runs, s.expires_at,
    s.created_at, s.updated_at"
    };
}
pub(crate) use schedule_columns;

/// What a create or an update writes.
#[derive(Debug, Clone)]
pub(crate) struct ScheduleFields {
    pub name: String,
    pub description: Option<String>,
    pub schedule_type: String,
    pub expression: Option<String>,
    pub timezone: String,
    pub run_at: Option<DateTime<Utc>>,
    pub params: Value,
    pub enabled: bool,
    pub status: String,
    pub next_run_at: Option<DateTime<Utc>>,
    pub max_runs: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl ScheduleFields {
    pub(crate) fn of(row: &ScheduleRow) -> Self {
        Self {
            name: row.name.clone(),
            description: row.description.clone(),
            schedule_type: row.schedule_type.clone(),
            expression: row.expression.clone(),
            timezone: row.timezone.clone(),
            run_at: row.run_at,
            params: row.params.clone(),
            enabled: row.enabled,
            status: row.status.clone(),
            next_run_at: row.next_run_at,
            max_runs: row.max_runs,
            expires_at: row.expires_at,
        }
    }
}

/// How a read takes its row.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Read {
    Plain,
    /// `FOR UPDATE`, for a change: a schedule's firing holds it too.
    ForUpdate,
}

const PIPELINE_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM workflows WHERE id = $1 AND deleted_at IS NULL AND NOT ephemeral)";

/// Whether a live (not deleted, not a hidden one-off) pipeline has this id.
pub(crate) async fn pipeline_exists(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(PIPELINE_EXISTS)
        .bind(id)
        .fetch_one(db)
        .await
}

/// `$1` is the schedule's id, `$2`… its [`ScheduleFields`] in order
/// ([`with_schedule_fields`]), then the pipeline and the owner.
const INSERT_SCHEDULE: &str = "INSERT INTO schedules (id, name, description, schedule_type, expression,
        timezone, run_at, params, enabled, status, next_run_at, max_runs, expires_at, workflow_id, created_by)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

/// Binds `f` in the order of the statements' `$2`…`$13`.
fn with_schedule_fields<'q>(
    query: Query<'q, Postgres, PgArguments>,
    f: &'q ScheduleFields,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(&f.name)
        .bind(&f.description)
        .bind(&f.schedule_type)
        .bind(&f.expression)
        .bind(&f.timezone)
        .bind(f.run_at)
        .bind(&f.params)
        .bind(f.enabled)
        .bind(&f.status)
        .bind(f.next_run_at)
        .bind(f.max_runs)
        .bind(f.expires_at)
}

pub(crate) async fn insert_schedule(
    db: impl PgExecutor<'_>,
    id: Uuid,
    workflow_id: Uuid,
    created_by: Option<&str>,
    f: &ScheduleFields,
) -> Result<(), sqlx::Error> {
    with_schedule_fields(sqlx::query(INSERT_SCHEDULE).bind(id), f)
        .bind(workflow_id)
        .bind(created_by)
        .execute(db)
        .await?;
    Ok(())
}

const UPDATE_SCHEDULE: &str = "UPDATE schedules SET name = $2, description = $3, schedule_type = $4, expression = $5, timezone = $6,
           run_at = $7, params = $8, enabled = $9, status = $10, next_run_at = $11, max_runs = $12,
           expires_at = $13, updated_at = now()
    WHERE id = $1";

pub(crate) async fn update_schedule(
    db: impl PgExecutor<'_>,
    id: Uuid,
    f: &ScheduleFields,
) -> Result<(), sqlx::Error> {
    with_schedule_fields(sqlx::query(UPDATE_SCHEDULE).bind(id), f)
        .execute(db)
        .await?;
    Ok(())
}

const GET_SCHEDULE: &str = concat!(
    "SELECT ",
    schedule_columns!(),
    " FROM schedules s WHERE s.id = $1"
);

const LOCK_SCHEDULE: &str = concat!(
    "SELECT ",
    schedule_columns!(),
    " FROM schedules s WHERE s.id = $1 FOR UPDATE"
);

/// The schedule, locked for a change when `read` says so.
pub(crate) async fn get_schedule(
    db: impl PgExecutor<'_>,
    id: Uuid,
    read: Read,
) -> Result<Option<ScheduleRow>, sqlx::Error> {
    let query = match read {
        Read::Plain => sqlx::query_as(GET_SCHEDULE),
        Read::ForUpdate => sqlx::query_as(LOCK_SCHEDULE),
    };
    query.bind(id).fetch_optional(db).await
}

const LIST_SCHEDULES: &str = concat!(
    "SELECT ",
    schedule_columns!(),
    " FROM schedules s
         WHERE ($1::uuid IS NULL OR s.workflow_id = $1)
           AND ($2::bool IS NULL OR s.enabled = $2)
           AND ($3::text IS NULL OR s.status = $3)
         ORDER BY s.created_at, s.id"
);

pub(crate) async fn list_schedules(
    db: impl PgExecutor<'_>,
    workflow_id: Option<Uuid>,
    enabled: Option<bool>,
    status: Option<&str>,
) -> Result<Vec<ScheduleRow>, sqlx::Error> {
    sqlx::query_as(LIST_SCHEDULES)
        .bind(workflow_id)
        .bind(enabled)
        .bind(status)
        .fetch_all(db)
        .await
}

const DELETE_SCHEDULE: &str = "DELETE FROM schedules WHERE id = $1";

pub(crate) async fn delete_schedule(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(DELETE_SCHEDULE)
        .bind(id)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

/// A stored webhook (its secret only as the SHA-256 of it).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct WebhookRow {
    pub id: Uuid,
    pub workflow_id: Uuid,
    pub name: String,
    pub secret_hash: Option<String>,
    pub allowed_ips: Option<Vec<String>>,
    pub headers_to_include: Vec<String>,
    pub params: Value,
    pub enabled: bool,
    pub trigger_count: i32,
    pub last_triggered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Columns of [`WebhookRow`] over `webhooks`.
macro_rules! webhook_columns {
    () => {
        "id, workflow_id, name, secret_hash, allowed_ips, headers_to_include, params, enabled,
    trigger_count, last_triggered_at, created_at, updated_at"
    };
}

/// What a webhook's create or update writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WebhookFields<'a> {
    pub name: &'a str,
    pub secret_hash: Option<&'a str>,
    pub allowed_ips: Option<&'a [String]>,
    pub headers_to_include: &'a [String],
    pub params: &'a Value,
    pub enabled: bool,
}

/// `$1` is the webhook's id, `$2`… its [`WebhookFields`] in order
/// ([`with_webhook_fields`]), then the pipeline.
const INSERT_WEBHOOK: &str = concat!(
    "INSERT INTO webhooks (id, name, secret_hash, allowed_ips, headers_to_include, params, enabled, workflow_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
    webhook_columns!()
);

/// Binds `f` in the order of the statements' `$2`…`$7`.
fn with_webhook_fields<'q>(
    query: QueryAs<'q, Postgres, WebhookRow, PgArguments>,
    f: &WebhookFields<'q>,
) -> QueryAs<'q, Postgres, WebhookRow, PgArguments> {
    query
        .bind(f.name)
        .bind(f.secret_hash)
        .bind(f.allowed_ips)
        .bind(f.headers_to_include)
        .bind(f.params)
        .bind(f.enabled)
}

pub(crate) async fn insert_webhook(
    db: impl PgExecutor<'_>,
    id: Uuid,
    workflow_id: Uuid,
    f: &WebhookFields<'_>,
) -> Result<WebhookRow, sqlx::Error> {
    with_webhook_fields(sqlx::query_as(INSERT_WEBHOOK).bind(id), f)
        .bind(workflow_id)
        .fetch_one(db)
        .await
}

const GET_WEBHOOK: &str = concat!(
    "SELECT ",
    webhook_columns!(),
    " FROM webhooks WHERE id = $1"
);

const LOCK_WEBHOOK: &str = concat!(
    "SELECT ",
    webhook_columns!(),
    " FROM webhooks WHERE id = $1 FOR UPDATE"
);

/// The webhook, locked for a change when `read` says so.
pub(crate) async fn get_webhook(
    db: impl PgExecutor<'_>,
    id: Uuid,
    read: Read,
) -> Result<Option<WebhookRow>, sqlx::Error> {
    let query = match read {
        Read::Plain => sqlx::query_as(GET_WEBHOOK),
        Read::ForUpdate => sqlx::query_as(LOCK_WEBHOOK),
    };
    query.bind(id).fetch_optional(db).await
}

const LIST_WEBHOOKS: &str = concat!(
    "SELECT ",
    webhook_columns!(),
    " FROM webhooks
         WHERE ($1::uuid IS NULL OR workflow_id = $1) AND ($2::bool IS NULL OR enabled = $2)
         ORDER BY created_at, id"
);

pub(crate) async fn list_webhooks(
    db: impl PgExecutor<'_>,
    workflow_id: Option<Uuid>,
    enabled: Option<bool>,
) -> Result<Vec<WebhookRow>, sqlx::Error> {
    sqlx::query_as(LIST_WEBHOOKS)
        .bind(workflow_id)
        .bind(enabled)
        .fetch_all(db)
        .await
}

const UPDATE_WEBHOOK: &str = concat!(
    "UPDATE webhooks SET name = $2, secret_hash = $3, allowed_ips = $4, headers_to_include = $5,
                params = $6, enabled = $7, updated_at = now()
         WHERE id = $1 RETURNING ",
    webhook_columns!()
);

/// Rewrite a webhook (the caller has it locked: [`get_webhook`] with [`Read::ForUpdate`]).
pub(crate) async fn update_webhook(
    db: impl PgExecutor<'_>,
    id: Uuid,
    f: &WebhookFields<'_>,
) -> Result<WebhookRow, sqlx::Error> {
    with_webhook_fields(sqlx::query_as(UPDATE_WEBHOOK).bind(id), f)
        .fetch_one(db)
        .await
}

const SET_WEBHOOK_SECRET: &str = concat!(
    "UPDATE webhooks SET secret_hash = $2, updated_at = now() WHERE id = $1 RETURNING ",
    webhook_columns!()
);

/// A new secret (its hash); `None` when there is no such webhook.
pub(crate) async fn set_webhook_secret(
    db: impl PgExecutor<'_>,
    id: Uuid,
    secret_hash: &str,
) -> Result<Option<WebhookRow>, sqlx::Error> {
    sqlx::query_as(SET_WEBHOOK_SECRET)
        .bind(id)
        .bind(secret_hash)
        .fetch_optional(db)
        .await
}

const DELETE_WEBHOOK: &str = "DELETE FROM webhooks WHERE id = $1";

pub(crate) async fn delete_webhook(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(DELETE_WEBHOOK)
        .bind(id)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

const COUNT_WEBHOOK_TRIGGER: &str = "UPDATE webhooks SET trigger_count = trigger_count + 1, last_triggered_at = now() WHERE id = $1";

/// Count a firing of the webhook: in the transaction that records its
/// execution, so the row lock is held only to that commit.
pub(crate) async fn count_webhook_trigger(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(COUNT_WEBHOOK_TRIGGER)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// A stored event trigger.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct EventTriggerRow {
    pub id: Uuid,
    pub workflow_id: Uuid,
    pub name: String,
    pub event_type: String,
    pub filters: Value,
    pub params: Value,
    pub enabled: bool,
    pub trigger_count: i32,
    pub last_triggered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Columns of [`EventTriggerRow`] over `event_triggers`.
macro_rules! event_trigger_columns {
    () => {
        "id, workflow_id, name, event_type, filters, params, enabled,
    trigger_count, last_triggered_at, created_at, updated_at"
    };
}
pub(crate) use event_trigger_columns;

/// What an event trigger's create writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewEventTrigger<'a> {
    pub workflow_id: Uuid,
    pub name: &'a str,
    pub event_type: Option<&'a str>,
    pub filters: &'a Value,
    pub params: &'a Value,
    pub enabled: bool,
}

const INSERT_EVENT_TRIGGER: &str = concat!(
    "INSERT INTO event_triggers (id, workflow_id, name, event_type, filters, params, enabled)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
    event_trigger_columns!()
);

pub(crate) async fn insert_event_trigger(
    db: impl PgExecutor<'_>,
    id: Uuid,
    t: &NewEventTrigger<'_>,
) -> Result<EventTriggerRow, sqlx::Error> {
    sqlx::query_as(INSERT_EVENT_TRIGGER)
        .bind(id)
        .bind(t.workflow_id)
        .bind(t.name)
        .bind(t.event_type)
        .bind(t.filters)
        .bind(t.params)
        .bind(t.enabled)
        .fetch_one(db)
        .await
}

const LIST_EVENT_TRIGGERS: &str = concat!(
    "SELECT ",
    event_trigger_columns!(),
    " FROM event_triggers
         WHERE ($1::uuid IS NULL OR workflow_id = $1) AND ($2::bool IS NULL OR enabled = $2)
           AND ($3::text IS NULL OR event_type = $3)
         ORDER BY created_at, id"
);

pub(crate) async fn list_event_triggers(
    db: impl PgExecutor<'_>,
    workflow_id: Option<Uuid>,
    enabled: Option<bool>,
    event_type: Option<&str>,
) -> Result<Vec<EventTriggerRow>, sqlx::Error> {
    sqlx::query_as(LIST_EVENT_TRIGGERS)
        .bind(workflow_id)
        .bind(enabled)
        .bind(event_type)
        .fetch_all(db)
        .await
}

const GET_EVENT_TRIGGER: &str = concat!(
    "SELECT ",
    event_trigger_columns!(),
    " FROM event_triggers WHERE id = $1"
);

pub(crate) async fn get_event_trigger(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<EventTriggerRow>, sqlx::Error> {
    sqlx::query_as(GET_EVENT_TRIGGER)
        .bind(id)
        .fetch_optional(db)
        .await
}

/// What an event trigger's update changes: each field given replaces the
/// stored one.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EventTriggerChange<'a> {
    pub name: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub filters: Option<&'a Value>,
    pub params: Option<&'a Value>,
    pub enabled: Option<bool>,
}

const UPDATE_EVENT_TRIGGER: &str = concat!(
    "UPDATE event_triggers SET name = COALESCE($2, name), event_type = COALESCE($3, event_type),
                filters = COALESCE($4, filters), params = COALESCE($5, params),
                enabled = COALESCE($6, enabled), updated_at = now()
         WHERE id = $1 RETURNING ",
    event_trigger_columns!()
);

/// The changed trigger; `None` when there is no such trigger.
pub(crate) async fn update_event_trigger(
    db: impl PgExecutor<'_>,
    id: Uuid,
    c: &EventTriggerChange<'_>,
) -> Result<Option<EventTriggerRow>, sqlx::Error> {
    sqlx::query_as(UPDATE_EVENT_TRIGGER)
        .bind(id)
        .bind(c.name)
        .bind(c.event_type)
        .bind(c.filters)
        .bind(c.params)
        .bind(c.enabled)
        .fetch_optional(db)
        .await
}

const DELETE_EVENT_TRIGGER: &str = "DELETE FROM event_triggers WHERE id = $1";

pub(crate) async fn delete_event_trigger(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(DELETE_EVENT_TRIGGER)
        .bind(id)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

super::check::statements!(
    GET_SCHEDULE => ScheduleRow,
    LOCK_SCHEDULE => ScheduleRow,
    LIST_SCHEDULES => ScheduleRow,
    INSERT_WEBHOOK => WebhookRow,
    GET_WEBHOOK => WebhookRow,
    LOCK_WEBHOOK => WebhookRow,
    LIST_WEBHOOKS => WebhookRow,
    UPDATE_WEBHOOK => WebhookRow,
    SET_WEBHOOK_SECRET => WebhookRow,
    INSERT_EVENT_TRIGGER => EventTriggerRow,
    LIST_EVENT_TRIGGERS => EventTriggerRow,
    GET_EVENT_TRIGGER => EventTriggerRow,
    UPDATE_EVENT_TRIGGER => EventTriggerRow,
    PIPELINE_EXISTS,
    INSERT_SCHEDULE,
    UPDATE_SCHEDULE,
    DELETE_SCHEDULE,
    DELETE_WEBHOOK,
    COUNT_WEBHOOK_TRIGGER,
    DELETE_EVENT_TRIGGER,
);
