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

/// Every statement of `src/db/` prepares against the migrated schema and,
/// where the code reads its rows into a type, a row of its columns reads
/// into that type: a wrong table, column or type fails here, whether or not
/// another test runs the statement. (`make lint` runs this test.)
#[sqlx::test]
async fn every_statement_fits_the_schema(pool: PgPool) {
    use budpipeline::db::check;
    let statements = check::all();
    assert!(statements.len() > 90, "{} statements", statements.len());
    let mut conn = pool.acquire().await.unwrap();
    let problems = check::check(&mut conn, &statements).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The check itself finds each kind of mistake.
#[sqlx::test]
async fn the_statement_check_finds_a_wrong_column_a_missing_field_and_a_wrong_type(pool: PgPool) {
    use budpipeline::db::check::{Statement, check};

    #[derive(sqlx::FromRow)]
    #[allow(dead_code)]
    struct Probe {
        id: Uuid,
        version: i32,
    }
    let probe = |name: &'static str, sql: &'static str| Statement {
        name: name.into(),
        sql: sql.into(),
        reads: Some(|row| <Probe as sqlx::FromRow<_>>::from_row(row).map(drop)),
    };
    let statements = [
        probe("fits", "SELECT id, version FROM workflows"),
        probe("unknown column", "SELECT id, versoin FROM workflows"),
        probe("missing field", "SELECT id FROM workflows"),
        probe(
            "wrong type",
            "SELECT id, version::bigint AS version FROM workflows",
        ),
    ];
    let mut conn = pool.acquire().await.unwrap();
    let problems = check(&mut conn, &statements).await;
    let named: Vec<&str> = problems
        .iter()
        .map(|p| p.split(':').next().unwrap())
        .collect();
    assert_eq!(
        named,
        ["unknown column", "missing field", "wrong type"],
        "{problems:#?}"
    );
    assert!(problems[0].contains("versoin"), "{}", problems[0]);
    assert!(problems[1].contains("version"), "{}", problems[1]);
    assert!(problems[2].contains("mismatched types"), "{}", problems[2]);

    // A field after one whose sample value does not parse (an empty status)
    // is still checked: the status column takes its next sample.
    #[derive(sqlx::FromRow)]
    #[allow(dead_code)]
    struct Parsed {
        #[sqlx(try_from = "String")]
        status: StepStatus,
        attempt: i32,
    }
    let parsed = |name: &'static str, sql: &'static str| Statement {
        name: name.into(),
        sql: sql.into(),
        reads: Some(|row| <Parsed as sqlx::FromRow<_>>::from_row(row).map(drop)),
    };
    let statements = [
        parsed("fits", "SELECT status, attempt FROM step_executions"),
        parsed("missing after", "SELECT status FROM step_executions"),
    ];
    let problems = check(&mut conn, &statements).await;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].starts_with("missing after") && problems[0].contains("attempt"),
        "{}",
        problems[0]
    );
}
