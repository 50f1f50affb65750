//! ENGINE.md "How cost grows with the work": the scale scenarios. Each
//! figure that has a target is a ratio measured within one run (against a
//! figure of the same run on a smaller DAG or an emptier database), so the
//! machine's speed cancels out; the absolute figures are recorded too.
//!
//! Order (after the original scenarios, which keep their conditions):
//! DAG size; a page of `GET /executions` on the (nearly) empty database;
//! the steps left waiting by the memory scenario are cancelled (so that the
//! only difference afterwards is the history); history seeded in bulk and
//! the same figures again; the service restarted with a retention that
//! makes the seeded history eligible (deletion rate, and the chain while
//! it runs); many steps waiting, mostly seeded, the service restarted
//! (start-up, RSS, event to resume).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::api::Api;
use crate::scenarios::{
    self, Ctx, chain_dag, event_dag, ms, resume_one, step, submit_many, wait_terminal,
};
use crate::seed;
use crate::service::{Service, ServiceConfig};
use crate::stats::{Summary, summarize};
use crate::{Result, Target, fail, progress};

const CHAIN: &str = "DAG size (chain)";
const FANOUT: &str = "DAG size (fan-out)";
const LIST: &str = "GET /executions page";
const HISTORY: &str = "history";
const RETENTION: &str = "retention";
const WAITING: &str = "waiting at scale";

/// DAG.md's upper bound of `settings.max_parallel_steps` (its default is
/// 10): every fan-out runs with it, whatever its width, so that only the
/// width changes between the sizes compared. The replica's own limit,
/// MAX_CONCURRENT_STEPS (64 by default), applies as well.
const FANOUT_PARALLEL: usize = 100;

/// root -> `width` independent `log` steps -> join.
fn fanout_wide_dag(name: &str, width: usize) -> Value {
    let fan: Vec<String> = (0..width).map(|i| format!("f{i}")).collect();
    let mut steps = vec![step("root", "log", &[], json!({"message": "root"}))];
    steps.extend(
        fan.iter()
            .map(|f| step(f, "log", &["root".to_owned()], json!({"message": f}))),
    );
    steps.push(step("join", "log", &fan, json!({"message": "join"})));
    json!({"name": name, "settings": {"max_parallel_steps": FANOUT_PARALLEL}, "steps": steps})
}

/// More runs for the baseline size: the ratios divide by it.
fn runs_for(ctx: &Ctx, size: usize, baseline: usize) -> usize {
    if size == baseline {
        ctx.cfg.size_runs * 3
    } else {
        ctx.cfg.size_runs
    }
}

/// `runs` runs of `workflow` one at a time (after one unmeasured run when
/// `warmup`); the ms per step of each from the service's own timestamps
/// (execution `started_at` to `completed_at`, divided by `steps`).
async fn ms_per_step_runs(
    ctx: &Ctx,
    svc: &mut Service,
    workflow: Uuid,
    steps: usize,
    runs: usize,
    warmup: bool,
) -> Result<Vec<f64>> {
    let skip = usize::from(warmup);
    let mut out = Vec::with_capacity(runs);
    for run in 0..runs + skip {
        let id = ctx.api.execute(workflow).await?;
        // Polling the database every 10 ms costs Postgres little, and the
        // figure comes from the service's timestamps, not from the poll.
        wait_terminal(
            ctx,
            svc,
            id,
            Duration::from_millis(10),
            Duration::from_secs(300),
        )
        .await?;
        let (status, span, error): (String, Option<f64>, Option<String>) = sqlx::query_as(
            "SELECT status, (extract(epoch FROM completed_at - started_at) * 1000)::float8, error
             FROM executions WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&ctx.db)
        .await?;
        if status != "COMPLETED" {
            return Err(fail(format!(
                "execution {id} of {steps} steps ended {status}: {error:?}"
            )));
        }
        if run >= skip {
            out.push(span.unwrap_or(f64::NAN) / steps as f64);
        }
    }
    Ok(out)
}

/// Chains and fan-outs of growing size on the (nearly) empty database:
/// ms per step of each size (median of its runs), and the largest size's
/// figure divided by the smallest's.
pub(crate) async fn dag_size(ctx: &Ctx, svc: &mut Service) -> Result<()> {
    let chains = ctx.cfg.chain_sizes.clone();
    let mut chain_figures = Vec::new();
    for &n in &chains {
        let workflow = ctx
            .api
            .create_workflow(&chain_dag(&format!("bench-chain-{n}"), n))
            .await?;
        let runs =
            ms_per_step_runs(ctx, svc, workflow, n, runs_for(ctx, n, chains[0]), true).await?;
        let s = summarize(&runs);
        progress(&format!(
            "chain of {n}: {:.3} ms/step (median of {}; {runs:.3?})",
            s.p50, s.n
        ));
        chain_figures.push((n, s.p50));
    }
    let widths = ctx.cfg.fanout_widths.clone();
    let mut fan_figures = Vec::new();
    for &w in &widths {
        let workflow = ctx
            .api
            .create_workflow(&fanout_wide_dag(&format!("bench-fanout-{w}"), w))
            .await?;
        let steps = w + 2;
        let runs =
            ms_per_step_runs(ctx, svc, workflow, steps, runs_for(ctx, w, widths[0]), true).await?;
        let s = summarize(&runs);
        progress(&format!(
            "fan-out of {w} ({steps} steps): {:.3} ms/step (median of {}; {runs:.3?})",
            s.p50, s.n
        ));
        fan_figures.push((w, s.p50));
    }
    let mut rep = ctx.report();
    for (n, v) in &chain_figures {
        rep.figure(CHAIN, &format!("chain_{n}_ms_per_step"), *v, None);
    }
    if let (Some(first), Some(last)) = (chain_figures.first(), chain_figures.last()) {
        rep.figure(
            CHAIN,
            &format!("chain_{}_to_{}_ratio", last.0, first.0),
            last.1 / first.1,
            Some(Target::AtMost(1.3)),
        );
    }
    for (w, v) in &fan_figures {
        rep.figure(FANOUT, &format!("fanout_{w}_ms_per_step"), *v, None);
    }
    if let (Some(first), Some(last)) = (fan_figures.first(), fan_figures.last()) {
        rep.figure(
            FANOUT,
            &format!("fanout_{}_to_{}_ratio", last.0, first.0),
            last.1 / first.1,
            Some(Target::AtMost(1.3)),
        );
    }
    rep.info("fanout_max_parallel_steps", FANOUT_PARALLEL);
    rep.info("dag_size_runs", ctx.cfg.size_runs);
    Ok(())
}

/// `requests` GETs of `path`, one at a time; their latencies (ms) and the
/// first answer.
async fn timed_gets(api: &Api, path: &str, requests: usize) -> Result<(Vec<f64>, Value)> {
    let mut first = Value::Null;
    let mut latencies = Vec::with_capacity(requests);
    for i in 0..requests {
        let t = Instant::now();
        let answer = api.request(Method::GET, path).send().await?;
        let status = answer.status();
        let body = answer.bytes().await?;
        let took = ms(t.elapsed());
        if status != reqwest::StatusCode::OK {
            return Err(fail(format!(
                "GET {path} answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )));
        }
        if i == 0 {
            first = serde_json::from_slice(&body)?;
        }
        latencies.push(took);
    }
    Ok((latencies, first))
}

/// The first page of `GET /executions?limit=20` (newest first), one
/// request at a time, after ten unmeasured ones. When the answer carries a
/// `next_cursor` (keyset paging, being added on another branch), page 2
/// is measured too, for the JSON only; nothing here depends on it.
async fn list_page(
    ctx: &Ctx,
    svc: &mut Service,
    label: &str,
) -> Result<(Summary, Option<Summary>)> {
    // The page shows the newest executions: the same twenty small ones
    // each time, so that the figures differ by the history alone (not by
    // the outputs of the DAG-size scenario's 1,000-step executions).
    let workflow = ctx
        .api
        .create_workflow(&scenarios::fanout_dag(&format!("bench-list-{label}")))
        .await?;
    for id in submit_many(&ctx.api, workflow, 20, ctx.cfg.submitters).await? {
        wait_terminal(
            ctx,
            svc,
            id,
            Duration::from_millis(5),
            Duration::from_secs(60),
        )
        .await?;
    }
    let path = "/executions?limit=20";
    timed_gets(&ctx.api, path, 10).await?;
    let (latencies, first) = timed_gets(&ctx.api, path, ctx.cfg.list_requests).await?;
    let page2 = match first.get("next_cursor").and_then(Value::as_str) {
        Some(cursor) => {
            let encoded: String = url_encode(cursor);
            let path2 = format!("/executions?limit=20&cursor={encoded}");
            let (l2, _) = timed_gets(&ctx.api, &path2, ctx.cfg.list_requests).await?;
            Some(summarize(&l2))
        }
        None => None,
    };
    Ok((summarize(&latencies), page2))
}

/// Percent-encode everything but unreserved characters (a cursor is opaque).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A page of `GET /executions` before the history is seeded: the baseline
/// of the history ratio.
pub(crate) async fn list_empty(ctx: &Ctx, svc: &mut Service) -> Result<()> {
    // After the DAG-size scenario's updates, as `quiesce` does before it:
    // the history side is measured settled too.
    seed::settle(&ctx.db).await?;
    let (s, page2) = list_page(ctx, svc, "empty").await?;
    let executions: i64 = sqlx::query_scalar("SELECT count(*) FROM executions")
        .fetch_one(&ctx.db)
        .await?;
    progress(&format!(
        "GET /executions?limit=20 with {executions} executions: p50 {:.2} ms, p99 {:.2} ms",
        s.p50, s.p99
    ));
    let mut rep = ctx.report();
    rep.figure(LIST, "list_page_ms_p50", s.p50, None);
    rep.figure(LIST, "list_page_ms_p99", s.p99, None);
    rep.info("list_page_executions", executions);
    if let Some(p) = page2 {
        rep.info("list_page2_ms_p50", p.p50);
        rep.info("list_page2_ms_p99", p.p99);
    }
    Ok(())
}

/// Cancel every RUNNING execution (those the memory scenario left
/// waiting), then vacuum and analyze, so that the history figures differ from the empty-database
/// ones by the history alone.
pub(crate) async fn quiesce(ctx: &Ctx) -> Result<()> {
    let running: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM executions WHERE status = 'RUNNING'")
            .fetch_all(&ctx.db)
            .await?;
    let gate = Arc::new(Semaphore::new(16));
    let mut set = JoinSet::new();
    for &id in &running {
        let permit = gate.clone().acquire_owned().await?;
        let api = ctx.api.clone();
        set.spawn(async move {
            let answer = api
                .request(Method::POST, &format!("/executions/{id}/cancel"))
                .send()
                .await;
            drop(permit);
            answer.map(|a| a.status())
        });
    }
    while let Some(joined) = set.join_next().await {
        let status = joined??;
        // 409: it finished meanwhile.
        if !status.is_success() && status != reqwest::StatusCode::CONFLICT {
            return Err(fail(format!("cancel answered {status}")));
        }
    }
    progress(&format!("cancelled {} running executions", running.len()));
    // The seeded side is vacuumed and analyzed after its bulk insert; the
    // baselines get the same, or they would measure dead tuples and stale
    // statistics (a full run saw a page of GET /executions at 16 ms p50
    // before, 3.4 ms after, with 200,000 more executions).
    seed::settle(&ctx.db).await?;
    ctx.report().info("history_cancelled_before", running.len());
    Ok(())
}

/// A figure of this run recorded earlier.
fn earlier(ctx: &Ctx, key: &str) -> f64 {
    ctx.report()
        .values
        .get(key)
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN)
}

/// The chain of the smallest DAG size (the empty-database baseline).
async fn baseline_chain(ctx: &Ctx, suffix: &str) -> Result<(usize, Uuid, f64)> {
    let n = ctx.cfg.chain_sizes[0];
    let workflow = ctx
        .api
        .create_workflow(&chain_dag(&format!("bench-chain-{n}-{suffix}"), n))
        .await?;
    Ok((n, workflow, earlier(ctx, &format!("chain_{n}_ms_per_step"))))
}

/// Seed a history of finished executions in bulk (copies of a real one),
/// then the same three figures as on the empty database: the chain's ms
/// per step, event to resume p99, a page of `GET /executions`.
/// Returns the workflow the history belongs to.
pub(crate) async fn history(ctx: &Ctx, svc: &mut Service) -> Result<Uuid> {
    let per = ctx.cfg.history_steps_per_execution;
    let count = ctx.cfg.history_executions;
    let workflow = ctx
        .api
        .create_workflow(&chain_dag("bench-history", per))
        .await?;
    let template = ctx.api.execute(workflow).await?;
    let status = wait_terminal(
        ctx,
        svc,
        template,
        Duration::from_millis(10),
        Duration::from_secs(60),
    )
    .await?;
    if status != "COMPLETED" {
        return Err(fail(format!("history template ended {status}")));
    }
    progress(&format!(
        "history: seeding {count} finished executions of {per} steps (copies of {template})"
    ));
    let seeded = seed::history(&ctx.db, template, count).await?;
    progress(&format!(
        "history: seeded {} executions, {} steps, {} attempts in {:.1} s (vacuum analyze included)",
        seeded.executions,
        seeded.steps,
        seeded.attempts,
        seeded.took.as_secs_f64()
    ));
    let (n, chain, chain_base) = baseline_chain(ctx, "history").await?;
    let runs = ms_per_step_runs(ctx, svc, chain, n, runs_for(ctx, n, n), true).await?;
    let chain_now = summarize(&runs).p50;
    progress(&format!(
        "history: chain of {n}: {chain_now:.3} ms/step (empty database {chain_base:.3})"
    ));
    let events = scenarios::event_samples(ctx, svc, "bench-event-history", ctx.cfg.events).await?;
    let server = scenarios::server_side_resume_ms(ctx, &events.measured).await?;
    let e = summarize(&events.resume);
    let e_server = summarize(&server);
    let e_base = earlier(ctx, "event_to_resume_ms_p99");
    progress(&format!(
        "history: event to resume p50 {:.2} ms, p99 {:.2} ms (empty database p99 {e_base:.2})",
        e.p50, e.p99
    ));
    let (list, page2) = list_page(ctx, svc, "history").await?;
    let (l50, l99) = (
        earlier(ctx, "list_page_ms_p50"),
        earlier(ctx, "list_page_ms_p99"),
    );
    progress(&format!(
        "history: GET /executions?limit=20 p50 {:.2} ms, p99 {:.2} ms (empty database {l50:.2} / {l99:.2})",
        list.p50, list.p99
    ));
    let mut rep = ctx.report();
    rep.info("history_seeded_executions", seeded.executions);
    rep.info("history_seeded_steps", seeded.steps);
    rep.info("history_seeded_attempts", seeded.attempts);
    rep.info("history_seed_s", seeded.took.as_secs_f64());
    rep.figure(
        HISTORY,
        &format!("history_chain_{n}_ms_per_step"),
        chain_now,
        None,
    );
    rep.figure(
        HISTORY,
        "history_chain_ratio",
        chain_now / chain_base,
        Some(Target::AtMost(1.2)),
    );
    rep.figure(HISTORY, "history_event_to_resume_ms_p99", e.p99, None);
    rep.info("history_event_to_resume_ms_p50", e.p50);
    rep.info("history_event_to_resume_server_ms_p99", e_server.p99);
    rep.figure(
        HISTORY,
        "history_event_to_resume_p99_ratio",
        e.p99 / e_base,
        Some(Target::AtMost(1.2)),
    );
    rep.figure(HISTORY, "history_list_page_ms_p50", list.p50, None);
    rep.figure(HISTORY, "history_list_page_ms_p99", list.p99, None);
    rep.figure(
        HISTORY,
        "history_list_page_p50_ratio",
        list.p50 / l50,
        Some(Target::AtMost(2.0)),
    );
    rep.figure(
        HISTORY,
        "history_list_page_p99_ratio",
        list.p99 / l99,
        Some(Target::AtMost(2.0)),
    );
    if let Some(p) = page2 {
        rep.info("history_list_page2_ms_p50", p.p50);
        rep.info("history_list_page2_ms_p99", p.p99);
    }
    Ok(workflow)
}

/// Stop `svc`, start the service again (with `env`), wait for /ready and
/// point the context's client at it; the new service and its start-up time.
pub(crate) async fn restart(
    ctx: &mut Ctx,
    svc: Service,
    service: &ServiceConfig,
    env: &[(&str, &str)],
) -> Result<(Service, Duration)> {
    svc.stop(Duration::from_secs(30)).await?;
    let mut svc = service.spawn_with(env)?;
    let ready = svc.wait_ready(Duration::from_secs(120)).await?;
    ctx.api = Api::new(&svc.base, &service.token)?;
    Ok((svc, ready))
}

/// Restart the service with RETENTION_DAYS=1 (the seeded history finished
/// 2 to 28 days ago, the bench's own executions today): how fast
/// housekeeping deletes the history, and the chain's ms per step while it
/// does. The target (the chain within 1.5x of the empty database) is this
/// benchmark's, not ENGINE.md's: retention shares the database with the
/// work, and a backlog (a lowered RETENTION_DAYS, a long outage) should
/// slow it down noticeably less than a second service would.
pub(crate) async fn retention(
    ctx: &mut Ctx,
    svc: Service,
    service: &ServiceConfig,
    history_workflow: Uuid,
) -> Result<Service> {
    let count_left = |db: sqlx::PgPool| async move {
        // The seeded copies; not their template, which finished today.
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM executions
             WHERE workflow_id = $1 AND completed_at < now() - interval '1 day'",
        )
        .bind(history_workflow)
        .fetch_one(&db)
        .await
    };
    let before = count_left(ctx.db.clone()).await?;
    let (mut svc, ready) = restart(ctx, svc, service, &[("RETENTION_DAYS", "1")]).await?;
    // Housekeeping starts with the sweeper, at start-up: count from there.
    let started = Instant::now() - ready;
    progress(&format!(
        "retention: restarted with RETENTION_DAYS=1 ({} ms to ready), {before} executions eligible",
        ms(ready) as u64
    ));
    let (n, chain, chain_base) = baseline_chain(ctx, "retention").await?;
    // One unmeasured run first (a new workflow, a new process).
    ms_per_step_runs(ctx, &mut svc, chain, n, 1, false).await?;
    let mut during = Vec::new();
    let mut left = before;
    let mut last_count = Instant::now();
    let mut finished_after = None;
    let deadline = Instant::now() + ctx.cfg.retention_timeout;
    while Instant::now() < deadline {
        let runs = ms_per_step_runs(ctx, &mut svc, chain, n, 1, false).await?;
        if last_count.elapsed() >= Duration::from_millis(500) {
            left = count_left(ctx.db.clone()).await?;
            last_count = Instant::now();
            if left == 0 {
                finished_after = Some(started.elapsed());
                break;
            }
        }
        // Counted only while the backlog was still there after the run.
        if left > 0 {
            during.extend(runs);
        }
    }
    let elapsed = finished_after.unwrap_or_else(|| started.elapsed());
    let deleted = before - left;
    let rate = deleted as f64 / elapsed.as_secs_f64();
    let per = ctx.cfg.history_steps_per_execution as f64;
    let c = summarize(&during);
    match finished_after {
        Some(t) => progress(&format!(
            "retention: {deleted} executions deleted in {:.1} s: {rate:.0}/s ({:.0} step rows/s); chain {:.3} ms/step during it ({} runs)",
            t.as_secs_f64(),
            rate * per,
            c.p50,
            c.n
        )),
        None => progress(&format!(
            "retention: WARNING: {left} of {before} executions still there after {:?}",
            ctx.cfg.retention_timeout
        )),
    }
    let mut rep = ctx.report();
    rep.figure(RETENTION, "retention_executions_deleted_per_s", rate, None);
    rep.figure(
        RETENTION,
        "retention_step_rows_deleted_per_s",
        rate * per,
        None,
    );
    rep.info("retention_deleted_executions", deleted);
    rep.info("retention_left_executions", left);
    rep.info("retention_elapsed_s", elapsed.as_secs_f64());
    rep.info("retention_chain_runs", c.n);
    rep.figure(
        RETENTION,
        &format!("retention_chain_{n}_ms_per_step"),
        c.p50,
        None,
    );
    rep.figure(
        RETENTION,
        "retention_chain_ratio",
        c.p50 / chain_base,
        Some(Target::AtMost(1.5)),
    );
    Ok(svc)
}

/// Many steps waiting for events: a few started through the API, the rest
/// seeded as copies of one of them. Then the service is restarted: start-up
/// to /ready, RSS once settled, and event to resume for steps picked across
/// the seeded and the real ones (each execution has one `log` step after
/// its waiting one, so COMPLETED means it really resumed).
pub(crate) async fn waiting_at_scale(
    ctx: &mut Ctx,
    svc: Service,
    service: &ServiceConfig,
) -> Result<Service> {
    let mut svc = svc;
    let target = ctx.cfg.scale_waiting;
    let already: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM step_executions WHERE status = 'RUNNING' AND awaiting_event",
    )
    .fetch_one(&ctx.db)
    .await?;
    let api_count = ctx.cfg.scale_waiting_api.min(target);
    let workflow = ctx
        .api
        .create_workflow(&event_dag("bench-scale-waiting"))
        .await?;
    let ids = submit_many(&ctx.api, workflow, api_count, ctx.cfg.submitters).await?;
    let real = scenarios::wait_for_waiting(ctx, &mut svc, &ids, ctx.cfg.waiting_timeout).await?;
    let template = real
        .first()
        .map(|p| p.0)
        .ok_or_else(|| fail("no waiting execution to copy"))?;
    let to_seed = target.saturating_sub(already as usize + api_count);
    progress(&format!(
        "waiting: {api_count} waiting through the API, {already} before; seeding {to_seed}"
    ));
    let (seeded, pairs) = seed::waiting(&ctx.db, template, to_seed).await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM step_executions WHERE status = 'RUNNING' AND awaiting_event",
    )
    .fetch_one(&ctx.db)
    .await?;
    progress(&format!(
        "waiting: seeded {} executions ({} steps) in {:.1} s; {total} steps waiting",
        seeded.executions,
        seeded.steps,
        seeded.took.as_secs_f64()
    ));
    let (mut svc, first) = restart(ctx, svc, service, &[]).await?;
    let mut samples = Vec::new();
    for _ in 0..ctx.cfg.startup_samples {
        let (s, ready) = restart(ctx, svc, service, &[]).await?;
        svc = s;
        samples.push(ms(ready));
    }
    let start = summarize(&samples);
    progress(&format!(
        "waiting: start-up with {total} waiting: first {:.1} ms, then {samples:.1?}",
        ms(first)
    ));
    tokio::time::sleep(Duration::from_millis(ctx.cfg.idle_settle_ms * 2)).await;
    svc.alive()?;
    let (rss, peak) = svc
        .memory_mb()
        .ok_or_else(|| fail("cannot read /proc/<pid>/status"))?;
    progress(&format!("waiting: RSS {rss:.1} MB (peak {peak:.1} MB)"));
    // Three of four events for seeded steps, spread over them; the rest
    // for steps that waited through the API.
    const WARMUP: usize = 5;
    let k = ctx.cfg.scale_events + WARMUP;
    let from_seed = if pairs.is_empty() { 0 } else { k * 3 / 4 };
    let mut picks: Vec<(Uuid, String)> = Vec::with_capacity(k);
    for i in 0..from_seed {
        picks.push(pairs[i * pairs.len() / from_seed].clone());
    }
    let rest = k - from_seed;
    for i in 0..rest.min(real.len()) {
        picks.push(real[i * real.len() / rest.min(real.len())].clone());
    }
    let mut resume = Vec::new();
    for (i, (execution, correlation)) in picks.iter().enumerate() {
        let (took, _, _) = resume_one(ctx, *execution, correlation).await?;
        if i >= WARMUP {
            resume.push(ms(took));
        }
    }
    let e = summarize(&resume);
    progress(&format!(
        "waiting: event to resume over {} events: p50 {:.2} ms, p99 {:.2} ms",
        e.n, e.p50, e.p99
    ));
    let (rss_after, _) = svc.memory_mb().unwrap_or((f64::NAN, f64::NAN));
    let mut rep = ctx.report();
    rep.info("scale_waiting_steps", total);
    rep.info("scale_waiting_seeded", seeded.executions);
    rep.info("scale_waiting_api", api_count);
    rep.info("scale_waiting_seed_s", seeded.took.as_secs_f64());
    rep.info("scale_startup_first_ms", ms(first));
    rep.figure(
        format!("{WAITING} ({total})"),
        "scale_startup_to_ready_ms",
        start.p50,
        Some(Target::Below(1000.0)),
    );
    rep.figure(
        format!("{WAITING} ({total})"),
        "scale_rss_waiting_mb",
        rss,
        Some(Target::Below(150.0)),
    );
    rep.info("scale_rss_peak_mb", peak);
    rep.info("scale_rss_after_events_mb", rss_after);
    rep.figure(
        format!("{WAITING} ({total})"),
        "scale_event_to_resume_ms_p50",
        e.p50,
        None,
    );
    rep.figure(
        format!("{WAITING} ({total})"),
        "scale_event_to_resume_ms_p99",
        e.p99,
        Some(Target::Below(20.0)),
    );
    rep.info("scale_events", e.n);
    Ok(svc)
}
