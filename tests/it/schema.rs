//! The schema refuses a status the engine does not know, and accepts every
//! one it does: the CHECK constraints of the migrations and the enums of
//! `src/engine/model.rs` list the same values.

use budpipeline::engine::model::{ExecutionStatus, InboundStatus, SkipReason, StepStatus};
use sqlx::PgPool;
use uuid::Uuid;

/// A workflow and one execution with one step, written directly.
async fn seed(pool: &PgPool) -> Uuid {
    let wf = Uuid::new_v4();
    let exec = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO workflows (id, name, version, dag, step_count) VALUES ($1, 'schema', 1, '{}', 1)",
    )
    .bind(wf)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO workflow_versions (workflow_id, version, dag) VALUES ($1, 1, '{}')")
        .bind(wf)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO executions (id, workflow_id, workflow_version, status, parameters, initiator, total_steps)
         VALUES ($1, $2, 1, 'PENDING', '{}', 'test', 1)",
    )
    .bind(exec)
    .bind(wf)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO step_executions (execution_id, step_id, position, name, action)
         VALUES ($1, 's', 0, 's', 'log')",
    )
    .bind(exec)
    .execute(pool)
    .await
    .unwrap();
    exec
}

/// Set `column` of the seeded row of `table` to `value`; the constraint
/// that refused it, if one did.
async fn set(pool: &PgPool, table: &str, column: &str, value: &str) -> Option<String> {
    let sql = format!("UPDATE {table} SET {column} = $1");
    match sqlx::query(&sql).bind(value).execute(pool).await {
        Ok(done) => {
            assert_eq!(done.rows_affected(), 1, "{table} has one row");
            None
        }
        Err(sqlx::Error::Database(e)) => {
            assert_eq!(e.code().as_deref(), Some("23514"), "{e}");
            Some(e.constraint().unwrap_or_default().to_owned())
        }
        Err(e) => panic!("{e}"),
    }
}

#[sqlx::test]
async fn every_status_the_engine_writes_is_accepted_and_no_other(pool: PgPool) {
    let exec = seed(&pool).await;
    sqlx::query(
        "INSERT INTO step_attempts (execution_id, step_id, attempt, replica_id, started_at)
         VALUES ($1, 's', 1, $2, now())",
    )
    .bind(exec)
    .bind(Uuid::new_v4())
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO inbound_events (source, id, correlation_id, body, status)
         VALUES ('s', '1', 'c', '{}', 'APPLIED')",
    )
    .execute(&pool)
    .await
    .unwrap();

    let columns: [(&str, &str, Vec<&str>, &str); 5] = [
        (
            "executions",
            "status",
            ExecutionStatus::ALL.iter().map(|s| s.as_str()).collect(),
            "executions_status",
        ),
        (
            "step_executions",
            "status",
            StepStatus::ALL.iter().map(|s| s.as_str()).collect(),
            "step_executions_status",
        ),
        (
            "step_executions",
            "skip_reason",
            SkipReason::ALL.iter().map(|s| s.as_str()).collect(),
            "step_executions_skip_reason",
        ),
        (
            "step_attempts",
            "outcome",
            StepStatus::ALL
                .iter()
                .map(|s| s.as_str())
                .chain(["RELEASED"])
                .collect(),
            "step_attempts_outcome",
        ),
        (
            "inbound_events",
            "status",
            InboundStatus::ALL.iter().map(|s| s.as_str()).collect(),
            "inbound_events_status",
        ),
    ];
    for (table, column, values, constraint) in columns {
        for value in values {
            assert_eq!(
                set(&pool, table, column, value).await,
                None,
                "{table}.{column} = {value}"
            );
        }
        for bad in ["NOT_A_STATUS", "completed", ""] {
            assert_eq!(
                set(&pool, table, column, bad).await.as_deref(),
                Some(constraint),
                "{table}.{column} = {bad:?} must be refused"
            );
        }
    }
}
