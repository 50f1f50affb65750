//! The scenarios, in the order they run. Each adds its figures to the report.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::api::Api;
use crate::cpu;
use crate::service::{Service, ServiceConfig};
use crate::sidecar::Counters;
use crate::stats::summarize;
use crate::{BoxError, Config, Report, Result, Target, fail, progress};

const SEQUENTIAL: &str = "sequential";
const FLOOR: &str = "floor";
const EVENT: &str = "event to resume";
const MEMORY: &str = "memory";
const STARTUP: &str = "start-up";

/// What every scenario needs.
pub(crate) struct Ctx {
    pub cfg: Config,
    pub api: Api,
    pub db: PgPool,
    pub db_url: String,
    pub db_name: String,
    pub report: Arc<std::sync::Mutex<Report>>,
    pub pool_size: u32,
    pub sidecar: Arc<Counters>,
}

impl Ctx {
    pub(crate) fn report(&self) -> std::sync::MutexGuard<'_, Report> {
        self.report.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Start the service (migrations applied beforehand), restart it `samples`
/// times measuring spawn to the first 200 from /ready; then the idle RSS.
pub(crate) async fn startup(
    cfg: &Config,
    service: &ServiceConfig,
    report: &std::sync::Mutex<Report>,
) -> Result<Service> {
    let migrate = service.migrate().await?;
    progress(&format!("migrations applied in {:.0} ms", ms(migrate)));
    let mut svc = service.spawn()?;
    let first = svc.wait_ready(Duration::from_secs(60)).await?;
    progress(&format!(
        "service up (pid {}, {}) in {:.1} ms",
        svc.pid,
        svc.base,
        ms(first)
    ));
    let mut samples = Vec::new();
    for _ in 0..cfg.startup_samples {
        svc.stop(Duration::from_secs(30)).await?;
        svc = service.spawn()?;
        samples.push(ms(svc.wait_ready(Duration::from_secs(60)).await?));
    }
    progress(&format!("restarts, spawn to ready (ms): {samples:.1?}"));
    let s = summarize(&samples);
    // Let the pool, the listener and the first sweeps settle before reading RSS.
    tokio::time::sleep(Duration::from_millis(cfg.idle_settle_ms)).await;
    svc.alive()?;
    let (rss, _) = svc
        .memory_mb()
        .ok_or_else(|| fail("cannot read /proc/<pid>/status"))?;
    let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
    r.figure(
        STARTUP,
        "startup_to_ready_ms",
        s.p50,
        Some(Target::Below(200.0)),
    );
    r.info("startup_to_ready_ms_max", s.max);
    r.info("startup_samples", samples.len());
    r.info("startup_first_start_ms", ms(first));
    r.info("migrate_command_ms", ms(migrate));
    r.figure(MEMORY, "rss_idle_mb", rss, Some(Target::Below(15.0)));
    Ok(svc)
}

pub(crate) fn step(id: &str, action: &str, deps: &[String], params: Value) -> Value {
    json!({"id": id, "name": id, "action": action, "depends_on": deps, "params": params})
}

/// s0 -> s1 -> ... -> s{n-1}, all `log`.
pub(crate) fn chain_dag(name: &str, n: usize) -> Value {
    let steps: Vec<Value> = (0..n)
        .map(|i| {
            let deps = if i == 0 {
                vec![]
            } else {
                vec![format!("s{}", i - 1)]
            };
            step(
                &format!("s{i}"),
                "log",
                &deps,
                json!({"message": format!("step {i}")}),
            )
        })
        .collect();
    json!({"name": name, "steps": steps})
}

/// Ten `log` steps: a -> b -> c -> (f1..f5) -> join -> tail.
pub(crate) fn fanout_dag(name: &str) -> Value {
    let log = |id: &str, deps: &[&str]| {
        let deps: Vec<String> = deps.iter().map(|d| d.to_string()).collect();
        step(id, "log", &deps, json!({"message": id}))
    };
    let fan = ["f1", "f2", "f3", "f4", "f5"];
    let mut steps = vec![log("a", &[]), log("b", &["a"]), log("c", &["b"])];
    steps.extend(fan.iter().map(|f| log(f, &["c"])));
    steps.push(log("join", &fan));
    steps.push(log("tail", &["join"]));
    json!({"name": name, "steps": steps})
}

fn deploy_params() -> Value {
    json!({"cluster_id": "bench-cluster", "model_id": "bench-model"})
}

/// deploy (waits for its event) -> after (`log`).
pub(crate) fn event_dag(name: &str) -> Value {
    json!({"name": name, "steps": [
        step("deploy", "deploy_model", &[], deploy_params()),
        step("after", "log", &["deploy".to_owned()],
             json!({"message": "deployed {{ steps.deploy.outputs.deployment_id }}"})),
    ]})
}

/// `k` independent `deploy_model` steps, all waiting at once.
fn parallel_deploy_dag(name: &str, k: usize) -> Value {
    let steps: Vec<Value> = (0..k)
        .map(|i| step(&format!("d{i}"), "deploy_model", &[], deploy_params()))
        .collect();
    json!({"name": name, "settings": {"max_parallel_steps": k}, "steps": steps})
}

/// Start `n` executions of `workflow`, `concurrency` requests in flight.
pub(crate) async fn submit_many(
    api: &Api,
    workflow: Uuid,
    n: usize,
    concurrency: usize,
) -> Result<Vec<Uuid>> {
    let gate = Arc::new(Semaphore::new(concurrency));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let permit = gate.clone().acquire_owned().await?;
        let api = api.clone();
        set.spawn(async move {
            let id = api.execute(workflow).await;
            drop(permit);
            id
        });
    }
    let mut ids = Vec::with_capacity(n);
    while let Some(joined) = set.join_next().await {
        ids.push(joined??);
    }
    Ok(ids)
}

/// Poll the database (cheap, and no load on the service) until the
/// execution is terminal; its status.
pub(crate) async fn wait_terminal(
    ctx: &Ctx,
    svc: &mut Service,
    id: Uuid,
    poll: Duration,
    timeout: Duration,
) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM executions WHERE id = $1")
                .bind(id)
                .fetch_optional(&ctx.db)
                .await?;
        if let Some(s) =
            status.filter(|s| matches!(s.as_str(), "COMPLETED" | "FAILED" | "CANCELLED"))
        {
            return Ok(s);
        }
        svc.alive()?;
        if Instant::now() > deadline {
            return Err(fail(format!(
                "execution {id} did not finish within {timeout:?}"
            )));
        }
        tokio::time::sleep(poll).await;
    }
}

fn timestamp(v: &Value) -> Result<DateTime<Utc>> {
    let s = v
        .as_str()
        .ok_or_else(|| fail(format!("not a timestamp: {v}")))?;
    Ok(DateTime::parse_from_rfc3339(s)?.with_timezone(&Utc))
}

fn span_ms(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e3
}

/// A linear chain of `log` steps, one execution at a time. Per step: the
/// gap between consecutive steps' `completed_at` (the first from the
/// execution's `started_at`), from the service's own timestamps.
pub(crate) async fn sequential(ctx: &Ctx, svc: &mut Service) -> Result<()> {
    let n = ctx.cfg.seq_steps;
    let workflow = ctx
        .api
        .create_workflow(&chain_dag("bench-sequential", n))
        .await?;
    let mut gaps = Vec::new();
    let mut per_run = Vec::new();
    let mut wall = Vec::new();
    let mut cpu_before = None;
    let mut measured: Vec<Uuid> = Vec::new();
    // Run 0 warms up (prepared statements, caches) and is not counted.
    for run in 0..=ctx.cfg.seq_runs {
        let t = Instant::now();
        let id = ctx.api.execute(workflow).await?;
        let status = wait_terminal(
            ctx,
            svc,
            id,
            Duration::from_millis(5),
            Duration::from_secs(120),
        )
        .await?;
        let elapsed = t.elapsed();
        let exec = ctx.api.execution(id).await?;
        if status != "COMPLETED" {
            return Err(fail(format!(
                "sequential execution {id} ended {status}: {}",
                exec["error"]
            )));
        }
        let started = timestamp(&exec["started_at"]).or_else(|_| timestamp(&exec["created_at"]))?;
        let completed = timestamp(&exec["completed_at"])?;
        let done: HashMap<&str, &Value> = exec["steps"]
            .as_array()
            .ok_or_else(|| fail("execution without steps"))?
            .iter()
            .map(|s| (s["step_id"].as_str().unwrap_or(""), &s["completed_at"]))
            .collect();
        let mut previous = started;
        let mut run_gaps = Vec::with_capacity(n);
        for i in 0..n {
            let at = timestamp(
                done.get(format!("s{i}").as_str())
                    .copied()
                    .unwrap_or(&Value::Null),
            )?;
            run_gaps.push(span_ms(previous, at));
            previous = at;
        }
        if run == 0 {
            cpu_before = cpu::snapshot(svc.pid, &ctx.db_name);
            continue;
        }
        gaps.extend(run_gaps);
        measured.push(id);
        per_run.push(span_ms(started, completed) / n as f64);
        wall.push(ms(elapsed) / n as f64);
    }
    let cpu_after = cpu::snapshot(svc.pid, &ctx.db_name);
    // Where a step's time goes, from step_attempts (both ends are the
    // now() of a transaction): claim to result, and the previous result
    // to this claim (zero when the completing transaction claims the next step).
    let attempts: Vec<(Option<f64>, Option<f64>)> = sqlx::query_as(
        "SELECT (extract(epoch FROM ended_at - started_at) * 1000)::float8,
                (extract(epoch FROM started_at - lag(ended_at)
                    OVER (PARTITION BY execution_id ORDER BY started_at)) * 1000)::float8
         FROM step_attempts WHERE execution_id = ANY($1)",
    )
    .bind(&measured)
    .fetch_all(&ctx.db)
    .await?;
    let attempt_ms: Vec<f64> = attempts.iter().filter_map(|a| a.0).collect();
    let handoff_ms: Vec<f64> = attempts.iter().filter_map(|a| a.1).collect();
    let attempt = summarize(&attempt_ms);
    let handoff = summarize(&handoff_ms);
    let g = summarize(&gaps);
    let r = summarize(&per_run);
    let w = summarize(&wall);
    progress(&format!(
        "sequential: {} runs x {n} steps; per step p50 {:.2} ms, p95 {:.2} ms; per run {:.2} ms/step (median)",
        per_run.len(),
        g.p50,
        g.p95,
        r.p50
    ));
    let mut rep = ctx.report();
    rep.figure(
        SEQUENTIAL,
        "seq_step_overhead_ms_p50",
        g.p50,
        Some(Target::Below(2.0)),
    );
    rep.figure(SEQUENTIAL, "seq_step_overhead_ms_p95", g.p95, None);
    rep.info("seq_step_overhead_ms_mean", g.mean);
    rep.info("seq_step_overhead_ms_max", g.max);
    rep.figure(SEQUENTIAL, "seq_run_ms_per_step_p50", r.p50, None);
    rep.info("seq_run_ms_per_step_max", r.max);
    rep.info("seq_wall_ms_per_step_p50", w.p50);
    rep.info("seq_runs", per_run.len());
    rep.info("seq_steps_per_run", n);
    rep.info("seq_attempt_claim_to_result_ms_p50", attempt.p50);
    rep.info("seq_attempt_claim_to_result_ms_p95", attempt.p95);
    rep.info("seq_result_to_next_claim_ms_p50", handoff.p50);
    rep.info("seq_result_to_next_claim_ms_p95", handoff.p95);
    cpu::record(&mut rep, "seq", cpu_before, cpu_after);
    Ok(())
}

/// Many small executions submitted at once; from the first submit until
/// the last is COMPLETED. Returns one of them (for the reads). `name`
/// prefixes the figures: `throughput` as the bench's service runs (every
/// step claimed and committed on its own), `throughput_inline` with the
/// service's default INLINE_STEPS=true.
pub(crate) async fn throughput(ctx: &Ctx, svc: &mut Service, name: &str) -> Result<Uuid> {
    let n = ctx.cfg.tp_executions;
    let workflow = ctx
        .api
        .create_workflow(&fanout_dag(&format!("bench-{name}")))
        .await?;
    let cpu_before = cpu::snapshot(svc.pid, &ctx.db_name);
    let started = Instant::now();
    let ids = submit_many(&ctx.api, workflow, n, ctx.cfg.submitters).await?;
    let submitted = started.elapsed();
    progress(&format!(
        "{name}: {n} executions submitted in {:.2} s",
        submitted.as_secs_f64()
    ));
    let deadline = started + ctx.cfg.tp_timeout;
    loop {
        // Only the executions still running, through the index on
        // (workflow_id, status): counting every status of every execution
        // every 10 ms took 3 % of the run's CPU (1.5 ms of Postgres each).
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM executions WHERE workflow_id = $1 AND status IN ('PENDING', 'RUNNING')",
        )
        .bind(workflow)
        .fetch_one(&ctx.db)
        .await?;
        let (done, bad): (i64, i64) = if running == 0 {
            sqlx::query_as(
                "SELECT count(*) FILTER (WHERE status = 'COMPLETED'),
                        count(*) FILTER (WHERE status IN ('FAILED', 'CANCELLED'))
                 FROM executions WHERE workflow_id = $1",
            )
            .bind(workflow)
            .fetch_one(&ctx.db)
            .await?
        } else {
            (0, 0)
        };
        if bad > 0 {
            let error: Option<String> = sqlx::query_scalar(
                "SELECT error FROM executions WHERE workflow_id = $1 AND status <> 'COMPLETED' AND status <> 'RUNNING' LIMIT 1",
            )
            .bind(workflow)
            .fetch_optional(&ctx.db)
            .await?
            .flatten();
            return Err(fail(format!(
                "{name}: {bad} executions did not complete: {error:?}"
            )));
        }
        if done as usize >= n {
            break;
        }
        svc.alive()?;
        if Instant::now() > deadline {
            return Err(fail(format!(
                "{name}: only {done} of {n} executions completed within {:?}",
                ctx.cfg.tp_timeout
            )));
        }
        // Seldom while most are still running, often near the end, where
        // the poll's delay adds to the measured time.
        let pause = if running > 200 { 50 } else { 5 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = cpu::snapshot(svc.pid, &ctx.db_name);
    let db_span: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(completed_at) - min(created_at))::float8 FROM executions WHERE workflow_id = $1",
    )
    .bind(workflow)
    .fetch_one(&ctx.db)
    .await?;
    let steps = (n * 10) as f64;
    progress(&format!(
        "{name}: {n} executions ({steps} steps) in {elapsed:.2} s: {:.0} steps/s",
        steps / elapsed
    ));
    let mut rep = ctx.report();
    let figure = |what: &str| format!("{name}_{what}");
    rep.figure(name, &figure("steps_per_s"), steps / elapsed, None);
    rep.figure(name, &figure("executions_per_s"), n as f64 / elapsed, None);
    rep.info(&figure("executions"), n);
    rep.info(&figure("elapsed_s"), elapsed);
    rep.info(&figure("submit_s"), submitted.as_secs_f64());
    rep.info(&figure("db_span_s"), db_span);
    rep.info(&figure("submit_concurrency"), ctx.cfg.submitters);
    cpu::record(&mut rep, name, cpu_before, cpu_after);
    ids.first().copied().ok_or_else(|| fail("no execution"))
}

/// The bare minimum SQL of a job queue, each statement its own commit:
/// insert a job; claim the oldest queued one with SKIP LOCKED; mark it done.
pub(crate) async fn floor(ctx: &Ctx, service_pid: u32) -> Result<()> {
    let connections = ctx.pool_size.max(8) as usize;
    sqlx::raw_sql(
        "CREATE TABLE bench_jobs (
             id bigserial PRIMARY KEY,
             status text NOT NULL,
             payload jsonb,
             created_at timestamptz NOT NULL DEFAULT now());
         CREATE INDEX bench_jobs_queued ON bench_jobs (id) WHERE status = 'queued';",
    )
    .execute(&ctx.db)
    .await?;
    // What one durable commit costs here: one connection, one-row inserts.
    let mut probe = PgConnection::connect(&ctx.db_url).await?;
    let mut commits = Vec::new();
    let until = Instant::now() + ctx.cfg.floor_duration / 5;
    while Instant::now() < until {
        let t = Instant::now();
        sqlx::query("INSERT INTO bench_jobs (status) VALUES ('probe')")
            .execute(&mut probe)
            .await?;
        commits.push(ms(t.elapsed()));
    }
    probe.close().await?;
    let commit = summarize(&commits[1.min(commits.len())..]);
    progress(&format!(
        "floor: one commit (one connection) p50 {:.2} ms, p99 {:.2} ms",
        commit.p50, commit.p99
    ));
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(PgConnection::connect(&ctx.db_url).await?);
    }
    let duration = ctx.cfg.floor_duration;
    let cpu_before = cpu::snapshot(service_pid, &ctx.db_name);
    let start = Instant::now();
    let deadline = start + duration;
    let mut set = JoinSet::new();
    for mut conn in conns {
        set.spawn(async move {
            let mut jobs = 0u64;
            let mut last = Instant::now();
            while Instant::now() < deadline {
                sqlx::query("INSERT INTO bench_jobs (status, payload) VALUES ('queued', $1)")
                    .bind(json!({"job": jobs}))
                    .execute(&mut conn)
                    .await?;
                let claimed: Option<i64> = sqlx::query_scalar(
                    "UPDATE bench_jobs SET status = 'running'
                     WHERE id = (SELECT id FROM bench_jobs WHERE status = 'queued'
                                 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                     RETURNING id",
                )
                .fetch_optional(&mut conn)
                .await?;
                if let Some(id) = claimed {
                    sqlx::query("UPDATE bench_jobs SET status = 'done' WHERE id = $1")
                        .bind(id)
                        .execute(&mut conn)
                        .await?;
                    jobs += 1;
                    last = Instant::now();
                }
            }
            Ok::<_, BoxError>((jobs, last, conn))
        });
    }
    let mut jobs = 0u64;
    let mut end = start;
    let mut open = Vec::with_capacity(connections);
    while let Some(joined) = set.join_next().await {
        let (n, last, conn) = joined??;
        jobs += n;
        end = end.max(last);
        open.push(conn);
    }
    let elapsed = (end - start).as_secs_f64();
    // Before the connections close, so their backends are still counted.
    let cpu_after = cpu::snapshot(service_pid, &ctx.db_name);
    for conn in open {
        conn.close().await?;
    }
    let done: i64 = sqlx::query_scalar("SELECT count(*) FROM bench_jobs WHERE status = 'done'")
        .fetch_one(&ctx.db)
        .await?;
    if done as u64 != jobs {
        return Err(fail(format!(
            "floor: counted {jobs} jobs but {done} are done"
        )));
    }
    let rate = jobs as f64 / elapsed;
    progress(&format!(
        "floor: {jobs} jobs with {connections} connections in {elapsed:.2} s: {rate:.0} jobs/s"
    ));
    let mut rep = ctx.report();
    rep.figure(FLOOR, "floor_jobs_per_s", rate, None);
    rep.info("floor_connections", connections);
    rep.info("floor_duration_s", elapsed);
    rep.figure(FLOOR, "commit_ms_p50", commit.p50, None);
    rep.info("commit_ms_p99", commit.p99);
    cpu::record(&mut rep, "floor", cpu_before, cpu_after);
    if let Some(step) = rep
        .values
        .get("seq_step_overhead_ms_p50")
        .and_then(Value::as_f64)
    {
        rep.info("seq_step_overhead_in_commits", step / commit.p50);
    }
    for name in ["throughput", "throughput_inline"] {
        if let Some(steps) = rep
            .values
            .get(&format!("{name}_steps_per_s"))
            .and_then(Value::as_f64)
        {
            rep.figure(
                FLOOR,
                &format!("{name}_to_floor_ratio"),
                steps / rate,
                Some(Target::AtLeast(1.0)),
            );
        }
    }
    Ok(())
}

/// A `deploy_model` step waits; its event is POSTed; time until a GET
/// shows the execution (one `log` step after it) COMPLETED, polling GETs
/// back to back. Events are sent one at a time.
pub(crate) async fn event_to_resume(ctx: &Ctx, svc: &mut Service) -> Result<()> {
    let e = event_samples(ctx, svc, "bench-event", ctx.cfg.events).await?;
    let server = server_side_resume_ms(ctx, &e.measured).await?;
    let c = summarize(&e.resume);
    let a = summarize(&e.ack);
    let s = summarize(&server);
    let p = summarize(&e.polls);
    progress(&format!(
        "event to resume: {} events; p50 {:.2} ms, p99 {:.2} ms (server side p50 {:.2}, p99 {:.2})",
        c.n, c.p50, c.p99, s.p50, s.p99
    ));
    let mut rep = ctx.report();
    rep.figure(EVENT, "event_to_resume_ms_p50", c.p50, None);
    rep.figure(
        EVENT,
        "event_to_resume_ms_p99",
        c.p99,
        Some(Target::Below(20.0)),
    );
    rep.info("event_to_resume_ms_max", c.max);
    rep.info("event_ack_ms_p50", a.p50);
    rep.info("event_ack_ms_p99", a.p99);
    rep.figure(EVENT, "event_to_resume_server_ms_p50", s.p50, None);
    rep.figure(EVENT, "event_to_resume_server_ms_p99", s.p99, None);
    rep.info("event_polls_per_event_p50", p.p50);
    rep.info("event_count", c.n);
    cpu::record(&mut rep, "event", e.cpu_before, e.cpu_after);
    Ok(())
}

/// The samples of one run of events (warm-up excluded).
pub(crate) struct EventSamples {
    /// POST of the event until a GET shows the execution COMPLETED (ms).
    pub resume: Vec<f64>,
    /// The POST alone (ms).
    pub ack: Vec<f64>,
    /// GETs until COMPLETED.
    pub polls: Vec<f64>,
    pub measured: Vec<Uuid>,
    pub cpu_before: Option<cpu::Snapshot>,
    pub cpu_after: Option<cpu::Snapshot>,
}

/// `count` executions of a new [`event_dag`] workflow, started in batches
/// through the API; each batch waits, then its events go one at a time.
pub(crate) async fn event_samples(
    ctx: &Ctx,
    svc: &mut Service,
    name: &str,
    count: usize,
) -> Result<EventSamples> {
    const WARMUP: usize = 5;
    let workflow = ctx.api.create_workflow(&event_dag(name)).await?;
    let total = WARMUP + count;
    let mut out = EventSamples {
        resume: Vec::new(),
        ack: Vec::new(),
        polls: Vec::new(),
        measured: Vec::new(),
        cpu_before: None,
        cpu_after: None,
    };
    let mut sent = 0;
    while sent < total {
        let batch = ctx.cfg.event_batch.min(total - sent);
        let ids = submit_many(&ctx.api, workflow, batch, 16).await?;
        let waiting = wait_for_waiting(ctx, svc, &ids, Duration::from_secs(60)).await?;
        // Let the service go quiet before timing anything.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for (execution, correlation) in waiting {
            if sent == WARMUP {
                out.cpu_before = cpu::snapshot(svc.pid, &ctx.db_name);
            }
            let (took, acked, n) = resume_one(ctx, execution, &correlation).await?;
            sent += 1;
            if sent > WARMUP {
                out.resume.push(ms(took));
                out.ack.push(ms(acked));
                out.polls.push(f64::from(n));
                out.measured.push(execution);
            }
        }
    }
    out.cpu_after = cpu::snapshot(svc.pid, &ctx.db_name);
    Ok(out)
}

/// Until the `deploy` step of every execution of `ids` waits for its
/// event; their (execution, correlation id) pairs.
pub(crate) async fn wait_for_waiting(
    ctx: &Ctx,
    svc: &mut Service,
    ids: &[Uuid],
    timeout: Duration,
) -> Result<Vec<(Uuid, String)>> {
    let deadline = Instant::now() + timeout;
    loop {
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT execution_id, external_workflow_id FROM step_executions
             WHERE execution_id = ANY($1) AND step_id = 'deploy'
               AND status = 'RUNNING' AND awaiting_event",
        )
        .bind(ids)
        .fetch_all(&ctx.db)
        .await?;
        if rows.len() == ids.len() {
            return Ok(rows);
        }
        svc.alive()?;
        if Instant::now() > deadline {
            return Err(fail(format!(
                "event: only {} of {} deploy steps were waiting after {timeout:?}",
                rows.len(),
                ids.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POST budcluster's "deployment COMPLETED" event for the step waiting on
/// `correlation`, then GET the execution back to back until COMPLETED.
/// (POST to COMPLETED, the POST alone, the number of GETs.)
pub(crate) async fn resume_one(
    ctx: &Ctx,
    execution: Uuid,
    correlation: &str,
) -> Result<(Duration, Duration, u32)> {
    let envelope = json!({
        "specversion": "1.0",
        "id": Uuid::new_v4().to_string(),
        "source": "budcluster",
        "type": "com.dapr.event.sent",
        "datacontenttype": "application/json",
        "data": {
            "event_type": "deployment_status",
            "workflow_id": correlation,
            "status": "COMPLETED",
            "content": {"deployment_id": "d1"},
        },
    });
    let t = Instant::now();
    let verdict = ctx.api.post_event(&envelope).await?;
    let acked = t.elapsed();
    if verdict != "SUCCESS" {
        return Err(fail(format!("event for {correlation} answered {verdict}")));
    }
    let mut n = 0u32;
    loop {
        let exec = ctx.api.execution(execution).await?;
        n += 1;
        match exec["status"].as_str() {
            Some("COMPLETED") => break,
            Some(s @ ("FAILED" | "CANCELLED")) => {
                return Err(fail(format!(
                    "event: execution {execution} ended {s}: {}",
                    exec["error"]
                )));
            }
            _ => {}
        }
        if t.elapsed() > Duration::from_secs(10) {
            return Err(fail(format!(
                "event: execution {execution} not COMPLETED 10 s after its event"
            )));
        }
    }
    Ok((t.elapsed(), acked, n))
}

/// The same interval from the service's own clock: the event's
/// received_at (its transaction) to the execution's completed_at.
pub(crate) async fn server_side_resume_ms(ctx: &Ctx, measured: &[Uuid]) -> Result<Vec<f64>> {
    Ok(sqlx::query_scalar(
        "SELECT (extract(epoch FROM e.completed_at - i.received_at) * 1000)::float8
         FROM executions e
         JOIN step_executions s ON s.execution_id = e.id AND s.step_id = 'deploy'
         JOIN inbound_events i ON i.correlation_id = s.external_workflow_id
         WHERE e.id = ANY($1)",
    )
    .bind(measured)
    .fetch_all(&ctx.db)
    .await?)
}

/// GET /executions/{id} (a finished 10-step execution) from concurrent
/// clients sharing one HTTP client.
/// `prefix` names the figures (`reads` for the completed execution,
/// `reads_running` for one whose steps still wait: a finished execution
/// may be served from a cache, a running one cannot).
pub(crate) async fn reads(
    ctx: &Ctx,
    id: Uuid,
    service_pid: u32,
    prefix: &str,
    scenario: &'static str,
) -> Result<()> {
    let path = format!("/executions/{id}");
    for _ in 0..50 {
        ctx.api.execution(id).await?;
    }
    let clients = ctx.cfg.read_clients;
    let cpu_before = cpu::snapshot(service_pid, &ctx.db_name);
    let start = Instant::now();
    let deadline = start + ctx.cfg.read_duration;
    let mut set = JoinSet::new();
    for _ in 0..clients {
        let api = ctx.api.clone();
        let path = path.clone();
        set.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let answer = api.request(Method::GET, &path).send().await;
                let ok = match answer {
                    Ok(a) if a.status() == reqwest::StatusCode::OK => a.bytes().await.is_ok(),
                    _ => false,
                };
                if ok {
                    latencies.push(ms(t.elapsed()));
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(joined) = set.join_next().await {
        let (l, e) = joined?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_after = cpu::snapshot(service_pid, &ctx.db_name);
    let s = summarize(&latencies);
    let rate = s.n as f64 / elapsed;
    progress(&format!(
        "{scenario}: {} requests from {clients} clients in {elapsed:.1} s: {rate:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {errors} errors",
        s.n, s.p50, s.p99
    ));
    if errors > 0 {
        return Err(fail(format!("{scenario}: {errors} requests failed")));
    }
    let mut rep = ctx.report();
    let key = |suffix: &str| format!("{prefix}_{suffix}");
    rep.figure(scenario, &key("per_s"), rate, Some(Target::AtLeast(5000.0)));
    rep.figure(scenario, &key("ms_p50"), s.p50, None);
    rep.figure(scenario, &key("ms_p99"), s.p99, Some(Target::Below(10.0)));
    rep.info(&key("ms_max"), s.max);
    rep.info(&key("clients"), clients);
    rep.info(&key("duration_s"), elapsed);
    cpu::record(&mut rep, prefix, cpu_before, cpu_after);
    Ok(())
}

/// Executions of ten parallel `deploy_model` steps until the target number
/// of steps wait for events; then the RSS.
/// Returns one of the executions, still RUNNING (for the reads).
pub(crate) async fn memory_waiting(ctx: &Ctx, svc: &mut Service) -> Result<Uuid> {
    const PER: usize = 10;
    let target = ctx.cfg.waiting_steps;
    let executions = target.div_ceil(PER);
    let workflow = ctx
        .api
        .create_workflow(&parallel_deploy_dag("bench-waiting", PER))
        .await?;
    let cpu_before = cpu::snapshot(svc.pid, &ctx.db_name);
    let started = Instant::now();
    let ids = submit_many(&ctx.api, workflow, executions, ctx.cfg.submitters).await?;
    let submitted = started.elapsed().as_secs_f64();
    let deadline = started + ctx.cfg.waiting_timeout;
    let mut last_report = Instant::now();
    loop {
        let (waiting, bad): (i64, i64) = sqlx::query_as(
            "SELECT
               (SELECT count(*) FROM step_executions s JOIN executions e ON e.id = s.execution_id
                WHERE e.workflow_id = $1 AND s.awaiting_event AND s.status = 'RUNNING'),
               (SELECT count(*) FROM executions WHERE workflow_id = $1 AND status IN ('FAILED', 'CANCELLED'))",
        )
        .bind(workflow)
        .fetch_one(&ctx.db)
        .await?;
        if bad > 0 {
            return Err(fail(format!("memory: {bad} executions failed")));
        }
        if waiting as usize >= executions * PER {
            break;
        }
        svc.alive()?;
        if Instant::now() > deadline {
            return Err(fail(format!(
                "memory: only {waiting} of {} steps waiting after {:?}",
                executions * PER,
                ctx.cfg.waiting_timeout
            )));
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            progress(&format!("memory: {waiting} steps waiting"));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reached = started.elapsed().as_secs_f64();
    let cpu_after = cpu::snapshot(svc.pid, &ctx.db_name);
    let steps = executions * PER;
    tokio::time::sleep(Duration::from_secs(1)).await;
    svc.alive()?;
    let (rss, peak) = svc
        .memory_mb()
        .ok_or_else(|| fail("cannot read /proc/<pid>/status"))?;
    progress(&format!(
        "memory: {steps} steps waiting after {reached:.1} s; RSS {rss:.1} MB (peak {peak:.1} MB)"
    ));
    let mut rep = ctx.report();
    rep.figure(
        format!("{MEMORY} ({steps} waiting)"),
        "rss_10k_waiting_mb",
        rss,
        Some(Target::Below(150.0)),
    );
    rep.info("rss_peak_mb", peak);
    rep.info("memory_waiting_steps", steps);
    rep.info("memory_submit_s", submitted);
    rep.info("memory_steps_to_waiting_per_s", steps as f64 / reached);
    cpu::record(&mut rep, "memory", cpu_before, cpu_after);
    rep.info(
        "sidecar_deploy_calls",
        ctx.sidecar
            .deployments
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    ids.first().copied().ok_or_else(|| fail("no execution"))
}
