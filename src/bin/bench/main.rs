//! `bench`: the performance benchmark of ENGINE.md "Performance targets".
//!
//! `make bench` (or `cargo run --release --bin bench`, with DATABASE_URL set)
//! builds the service, creates a fresh database on the DATABASE_URL server,
//! applies the migrations, starts `budpipeline serve` against a stand-in Dapr
//! sidecar, runs the scenarios, prints a table and writes the same figures
//! to `target/bench/results.json`; the service's own log goes to
//! `target/bench/service.log`. The database is dropped and the service
//! stopped at the end, also on error or Ctrl-C.
//!
//! `--quick` runs the same scenarios with small counts in well under a
//! minute (CI runs it so the benchmark keeps working); its figures are
//! noisy and are not the ones to compare with the targets.
//!
//! The service runs with `INLINE_STEPS=false`: every step is claimed and
//! committed on its own, as a step that calls another service is, so the
//! per-step figures are those of the engine's scheduling. The throughput
//! scenario runs a second time with the service's default (pure steps run
//! inside the transition that readies them, `throughput_inline`).
//!
//! Scenarios, in order: start-up to ready (migrations applied) and the idle
//! RSS; sequential overhead (a chain of 50 `log` steps); throughput (many
//! 10-step executions submitted at once), then the same with pure steps
//! inline; the floor (the bare SQL of a job
//! queue, same database, same number of connections as the service's pool);
//! event to resume; reads of `GET /executions/{id}` (a COMPLETED execution);
//! RSS with many steps waiting for events; reads again, of one of those
//! RUNNING executions (a finished execution may be served from a cache).
//! Then the scale scenarios of `scale.rs` (how cost grows with the DAG's
//! size, the history, and the number of waiting steps), which seed rows in
//! bulk (`seed.rs`) and restart the service.

mod api;
mod cpu;
mod scale;
mod scenarios;
mod seed;
mod service;
mod sidecar;
mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use sqlx::postgres::PgPoolOptions;

use crate::api::Api;
use crate::service::{BenchDb, ServiceConfig};
use crate::stats::round3;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, BoxError>;

pub fn fail(message: impl Into<String>) -> BoxError {
    message.into().into()
}

static START: OnceLock<Instant> = OnceLock::new();

/// Progress goes to stderr; the table to stdout.
pub fn progress(message: &str) {
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[bench {t:6.1}s] {message}");
}

/// Counts and durations of one mode.
#[derive(Debug, Clone)]
pub struct Config {
    pub quick: bool,
    /// Keep the database at the end (to inspect it, or replay a query with pgbench).
    pub keep_db: bool,
    pub startup_samples: usize,
    pub idle_settle_ms: u64,
    pub seq_steps: usize,
    pub seq_runs: usize,
    pub tp_executions: usize,
    pub tp_timeout: Duration,
    pub submitters: usize,
    pub floor_duration: Duration,
    pub events: usize,
    pub event_batch: usize,
    pub read_clients: usize,
    pub read_duration: Duration,
    pub waiting_steps: usize,
    pub waiting_timeout: Duration,
    /// DAG size: the chain lengths measured (the first is the baseline,
    /// the last the one compared with it).
    pub chain_sizes: Vec<usize>,
    /// DAG size: the fan-out widths (root -> width `log` steps -> join).
    pub fanout_widths: Vec<usize>,
    /// Measured runs per DAG size (after one warm-up run).
    pub size_runs: usize,
    /// `GET /executions?limit=20` requests per latency sample.
    pub list_requests: usize,
    /// History: finished executions seeded in bulk, and step rows per execution.
    pub history_executions: usize,
    pub history_steps_per_execution: usize,
    /// How long retention may take to work off the seeded history.
    pub retention_timeout: Duration,
    /// Waiting at scale: steps waiting in total, how many of them started
    /// through the API (the rest seeded), and events sent afterwards.
    pub scale_waiting: usize,
    pub scale_waiting_api: usize,
    pub scale_events: usize,
}

impl Config {
    fn full() -> Self {
        Self {
            quick: false,
            keep_db: false,
            startup_samples: 3,
            idle_settle_ms: 2000,
            seq_steps: 50,
            seq_runs: 10,
            // About 5 s of work, against the floor's 10 s: at 1,000 (2 s)
            // the submits' ramp and the last executions' tail were a fifth
            // of the run, and the ratio read 0.96-1.04 where 3,000 read
            // 1.09-1.12 on the same binaries.
            tp_executions: 3000,
            tp_timeout: Duration::from_secs(900),
            submitters: 32,
            floor_duration: Duration::from_secs(10),
            events: 300,
            event_batch: 50,
            read_clients: 32,
            read_duration: Duration::from_secs(10),
            waiting_steps: 10_000,
            waiting_timeout: Duration::from_secs(900),
            chain_sizes: vec![50, 200, 500, 1000],
            // 998: DAG.md allows 1,000 steps per document, root and join included.
            fanout_widths: vec![50, 200, 500, 998],
            size_runs: 3,
            list_requests: 500,
            history_executions: 200_000,
            history_steps_per_execution: 5,
            retention_timeout: Duration::from_secs(600),
            scale_waiting: 100_000,
            scale_waiting_api: 1000,
            scale_events: 200,
        }
    }

    fn quick() -> Self {
        Self {
            quick: true,
            startup_samples: 1,
            idle_settle_ms: 500,
            seq_runs: 2,
            tp_executions: 50,
            tp_timeout: Duration::from_secs(120),
            floor_duration: Duration::from_secs(2),
            events: 30,
            event_batch: 35,
            read_duration: Duration::from_secs(2),
            waiting_steps: 500,
            waiting_timeout: Duration::from_secs(120),
            chain_sizes: vec![50, 200],
            fanout_widths: vec![50, 200],
            size_runs: 2,
            list_requests: 100,
            history_executions: 10_000,
            retention_timeout: Duration::from_secs(120),
            scale_waiting: 5000,
            scale_waiting_api: 200,
            scale_events: 40,
            ..Self::full()
        }
    }
}

/// A target of ENGINE.md.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    Below(f64),
    /// `<=`: the scale ratios of ENGINE.md ("at most 1.3x").
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    fn met(self, value: f64) -> bool {
        match self {
            Self::Below(limit) => value < limit,
            Self::AtMost(limit) => value <= limit,
            Self::AtLeast(limit) => value >= limit,
        }
    }

    fn describe(self) -> String {
        match self {
            Self::Below(limit) => format!("< {limit}"),
            Self::AtMost(limit) => format!("<= {limit}"),
            Self::AtLeast(limit) => format!(">= {limit}"),
        }
    }
}

struct Row {
    scenario: String,
    key: String,
    value: f64,
    target: Option<Target>,
}

/// Every figure (flat keys, units in the names) and the rows of the table.
#[derive(Default)]
pub struct Report {
    pub values: Map<String, Value>,
    rows: Vec<Row>,
}

impl Report {
    /// A figure shown in the table (and written to the JSON).
    pub fn figure(
        &mut self,
        scenario: impl Into<String>,
        key: &str,
        value: f64,
        target: Option<Target>,
    ) {
        self.values.insert(key.to_owned(), json!(round3(value)));
        self.rows.push(Row {
            scenario: scenario.into(),
            key: key.to_owned(),
            value,
            target,
        });
    }

    /// A figure or fact for the JSON only.
    pub fn info(&mut self, key: &str, value: impl Into<Value>) {
        let value = match value.into() {
            Value::Number(n) if n.is_f64() => json!(round3(n.as_f64().unwrap_or(f64::NAN))),
            other => other,
        };
        self.values.insert(key.to_owned(), value);
    }

    fn table(&self, quick: bool) -> String {
        let mut out = String::new();
        let line = format!(
            "{:<24} {:<36} {:>12} {:>10} {:>5}\n",
            "scenario", "figure", "value", "target", "met"
        );
        out.push_str(&line);
        out.push_str(&format!("{}\n", "-".repeat(line.len() - 1)));
        for row in &self.rows {
            let (target, met) = match row.target {
                Some(t) => (t.describe(), if t.met(row.value) { "yes" } else { "NO" }),
                None => (String::new(), ""),
            };
            out.push_str(&format!(
                "{:<24} {:<36} {:>12.3} {:>10} {:>5}\n",
                row.scenario, row.key, row.value, target, met
            ));
        }
        if quick {
            out.push_str(
                "(--quick: small counts, noisy figures; `make bench` for the real ones)\n",
            );
        }
        out
    }

    fn targets(&self) -> (usize, usize) {
        let with: Vec<&Row> = self.rows.iter().filter(|r| r.target.is_some()).collect();
        let met = with
            .iter()
            .filter(|r| r.target.is_some_and(|t| t.met(r.value)))
            .count();
        (met, with.len())
    }
}

const USAGE: &str = "bench: the budpipeline benchmark (ENGINE.md, Performance targets)

USAGE: cargo run --release --bin bench -- [--quick] [--no-build] [--keep-db]

  --quick      small counts, finishes in well under a minute (CI)
  --no-build   do not run `cargo build` for the service binary first
  --keep-db    keep the run's database at the end (it is dropped otherwise)

BENCH_UNTIL=floor stops after the throughput and floor scenarios (to iterate
on throughput without the rest); BENCH_UNTIL=throughput stops after the first
throughput run (one commit a step); BENCH_UNTIL=dag runs only start-up and the
DAG-size scenario (chains and fan-outs).

Needs DATABASE_URL (a server where the user may CREATE DATABASE); a fresh
database is created for the run and dropped at the end (also on error,
Ctrl-C or SIGTERM; databases left by a killed run are dropped by the next). Writes
target/bench/results.json and target/bench/service.log.
";

fn main() -> ExitCode {
    START.get_or_init(Instant::now);
    let mut quick = false;
    let mut build = true;
    let mut keep_db = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            "--no-build" => build = false,
            "--keep-db" => keep_db = true,
            // `cargo bench`-style harness flags are ignored.
            "--bench" => {}
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument `{other}`\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let mut cfg = if quick {
        Config::quick()
    } else {
        Config::full()
    };
    cfg.keep_db = keep_db;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cfg, build))
}

fn out_dir() -> PathBuf {
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    root.join("target").join("bench")
}

async fn run(cfg: Config, build: bool) -> ExitCode {
    let Some(admin_url) = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) else {
        eprintln!("bench: DATABASE_URL is required (`make bench` sets it)");
        return ExitCode::from(2);
    };
    let dir = out_dir();
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("bench: cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let lock = dir.join("running.pid");
    warn_if_other_run(&lock);
    let _ = std::fs::write(&lock, std::process::id().to_string());
    let log = dir.join("service.log");
    let _ = std::fs::File::create(&log);
    let report = Arc::new(Mutex::new(Report::default()));
    let wall = Instant::now();

    let outcome = prepare_and_run(&cfg, build, &admin_url, &log, report.clone()).await;

    let mut report = report.lock().unwrap_or_else(|e| e.into_inner());
    let (warns, errors, top) = service::log_summary(&log);
    report.info("service_log_warn_lines", warns);
    report.info("service_log_error_lines", errors);
    report.info("bench_wall_s", wall.elapsed().as_secs_f64());
    load_average(&mut report, "loadavg_1m_end");
    let (met, total) = report.targets();
    report.info("targets_met", met);
    report.info("targets_total", total);
    if let Err(e) = &outcome {
        report.info("error", e.to_string());
    }
    println!();
    print!("{}", report.table(cfg.quick));
    println!("targets met: {met} of {total}");
    if warns + errors > 0 {
        println!(
            "service log ({}): {warns} WARN, {errors} ERROR lines; most frequent:",
            log.display()
        );
        for (message, count) in &top {
            println!("  {count:>6} x {message}");
        }
    }
    let json_path = dir.join("results.json");
    let written = serde_json::to_string_pretty(&Value::Object(report.values.clone()))
        .map_err(BoxError::from)
        .and_then(|text| std::fs::write(&json_path, text + "\n").map_err(BoxError::from));
    match written {
        Ok(()) => println!("results: {}", json_path.display()),
        Err(e) => eprintln!("bench: cannot write {}: {e}", json_path.display()),
    }
    let _ = std::fs::remove_file(&lock);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Everything that needs cleaning up afterwards: the database is created
/// here and dropped here whatever happens in between (the service child is
/// killed when the task that owns it ends or is aborted).
async fn prepare_and_run(
    cfg: &Config,
    build: bool,
    admin_url: &str,
    log: &Path,
    report: Arc<Mutex<Report>>,
) -> Result<()> {
    machine_info(&mut report.lock().unwrap_or_else(|e| e.into_inner()), cfg);
    warn_if_busy();
    let bin = service::service_binary(build).await?;
    let sidecar = sidecar::start().await?;
    let db = BenchDb::create(admin_url).await?;
    progress(&format!("created database {}", db.name));
    let service = ServiceConfig {
        bin,
        database_url: db.url.clone(),
        token: format!("bench-{}", uuid::Uuid::new_v4()),
        dapr_url: sidecar.url.clone(),
        log: log.to_owned(),
    };
    let mut work = tokio::spawn(run_scenarios(
        cfg.clone(),
        service,
        db.name.clone(),
        report.clone(),
        sidecar.counters.clone(),
    ));
    let outcome = tokio::select! {
        joined = &mut work => match joined {
            Ok(r) => r,
            Err(e) => Err(fail(format!("the benchmark panicked: {e}"))),
        },
        signal = interrupted() => {
            progress(&format!("{signal}: cleaning up"));
            work.abort();
            let _ = (&mut work).await;
            Err(fail(format!("interrupted by {signal}")))
        }
    };
    if cfg.keep_db {
        progress(&format!("kept database {} (--keep-db)", db.url));
        drop(sidecar);
        return outcome;
    }
    match db.drop_now().await {
        Ok(()) => progress(&format!("dropped database {}", db.name)),
        Err(e) => progress(&format!(
            "WARNING: could not drop database {}: {e}",
            db.name
        )),
    }
    drop(sidecar);
    outcome
}

/// Ctrl-C or SIGTERM (what `timeout` in CI sends): the name of the signal.
async fn interrupted() -> &'static str {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term => "SIGTERM",
    }
}

fn machine_info(report: &mut Report, cfg: &Config) {
    report.info("mode", if cfg.quick { "quick" } else { "full" });
    report.info(
        "cpu_count",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if let Some(model) = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
    {
        report.info("cpu_model", model.trim());
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    if let Some(kb) = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
    {
        report.info("mem_total_mb", (kb / 1024.0).round());
    }
    let git = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    if let Some(out) = git.ok().filter(|o| o.status.success()) {
        report.info("git_commit", String::from_utf8_lossy(&out.stdout).trim());
    }
    report.info("timestamp", chrono::Utc::now().to_rfc3339());
    load_average(report, "loadavg_1m_start");
}

/// The 1-minute load average: other work on the machine skews every figure.
fn load_average(report: &mut Report, key: &str) {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    if let Some(load) = text
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
    {
        report.info(key, load);
    }
}

/// Two runs at once skew each other's figures and share the output files.
fn warn_if_other_run(lock: &Path) {
    let Some(pid) = std::fs::read_to_string(lock)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    else {
        return;
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if pid != std::process::id() && comm.trim() == "bench" {
        progress(&format!(
            "WARNING: another bench run (pid {pid}) is running: both will be skewed, \
             and they share target/bench/results.json and service.log"
        ));
    }
}

/// Other work on the machine shows up in every figure; say so up front.
fn warn_if_busy() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok());
    if let Some(load) = load.filter(|l| *l > cores * 0.5) {
        progress(&format!(
            "WARNING: load average {load:.2} on {cores} cores: other work will skew the figures \
             (see the *_cpu_other_pct figures in results.json)"
        ));
    }
}

/// The service's pool size as it will read it (DATABASE_MAX_CONNECTIONS, default 16).
fn service_pool_size() -> u32 {
    std::env::var("DATABASE_MAX_CONNECTIONS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(16)
}

async fn run_scenarios(
    cfg: Config,
    service: ServiceConfig,
    db_name: String,
    report: Arc<Mutex<Report>>,
    sidecar: Arc<sidecar::Counters>,
) -> Result<()> {
    let db = PgPoolOptions::new()
        .max_connections(4)
        .connect(&service.database_url)
        .await?;
    let mut settings = Vec::new();
    for (key, setting) in [
        ("postgres_version", "server_version"),
        ("postgres_synchronous_commit", "synchronous_commit"),
        ("postgres_fsync", "fsync"),
        ("postgres_max_connections", "max_connections"),
        ("postgres_shared_buffers", "shared_buffers"),
    ] {
        let value: String = sqlx::query_scalar(&format!("SHOW {setting}"))
            .fetch_one(&db)
            .await?;
        settings.push((key, value));
    }
    {
        let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
        for (key, value) in settings {
            r.info(key, value);
        }
        r.info("service_pool_size", service_pool_size());
    }
    progress("start-up: migrate, start, restart");
    let mut svc = scenarios::startup(&cfg, &service, &report).await?;
    let mut ctx = scenarios::Ctx {
        api: Api::new(&svc.base, &service.token)?,
        db,
        db_url: service.database_url.clone(),
        db_name: db_name.clone(),
        report: report.clone(),
        pool_size: service_pool_size(),
        sidecar,
        cfg,
    };
    if std::env::var("BENCH_UNTIL").is_ok_and(|v| v == "dag") {
        // A developer's shortcut to the DAG-size ratios (see USAGE).
        progress("DAG size: chains and fan-outs");
        scale::dag_size(&ctx, &mut svc).await?;
        svc.stop(Duration::from_secs(30)).await?;
        ctx.db.close().await;
        return Ok(());
    }
    progress("sequential overhead");
    scenarios::sequential(&ctx, &mut svc).await?;
    progress("throughput");
    let finished = scenarios::throughput(&ctx, &mut svc, "throughput").await?;
    if std::env::var("BENCH_UNTIL").is_ok_and(|v| v == "throughput") {
        // A developer's shortcut: one throughput run, one commit a step
        // (e.g. to read pg_stat_statements for it alone; see USAGE).
        svc.stop(Duration::from_secs(30)).await?;
        ctx.db.close().await;
        return Ok(());
    }
    progress("throughput, pure steps inline (the service's default)");
    let (mut inline, _) =
        scale::restart(&mut ctx, svc, &service, &[("INLINE_STEPS", "true")]).await?;
    scenarios::throughput(&ctx, &mut inline, "throughput_inline").await?;
    let (mut svc, _) = scale::restart(&mut ctx, inline, &service, &[]).await?;
    progress("floor (bare job-queue SQL)");
    scenarios::floor(&ctx, svc.pid).await?;
    if std::env::var("BENCH_UNTIL").is_ok_and(|v| v == "floor") {
        // A developer's shortcut to the throughput figures (see USAGE).
        svc.stop(Duration::from_secs(30)).await?;
        ctx.db.close().await;
        return Ok(());
    }
    progress("event to resume");
    scenarios::event_to_resume(&ctx, &mut svc).await?;
    progress("reads of a COMPLETED execution");
    scenarios::reads(&ctx, finished, svc.pid, "reads", "reads (completed)").await?;
    progress("memory with steps waiting");
    let waiting = scenarios::memory_waiting(&ctx, &mut svc).await?;
    progress("reads of a RUNNING execution (10 steps waiting)");
    scenarios::reads(&ctx, waiting, svc.pid, "reads_running", "reads (running)").await?;
    // The scale scenarios (ENGINE.md "How cost grows with the work"),
    // after the original ones so that those keep their conditions.
    scale::quiesce(&ctx).await?;
    progress("DAG size: chains and fan-outs");
    scale::dag_size(&ctx, &mut svc).await?;
    progress("GET /executions page, before any history");
    scale::list_empty(&ctx, &mut svc).await?;
    progress("history: seed in bulk, then measure again");
    let history = scale::history(&ctx, &mut svc).await?;
    progress("retention of the seeded history");
    svc = scale::retention(&mut ctx, svc, &service, history).await?;
    progress("waiting at scale");
    svc = scale::waiting_at_scale(&mut ctx, svc, &service).await?;
    svc.alive()?;
    let stopping = Instant::now();
    let stopped = svc.stop(Duration::from_secs(30)).await?;
    let shutdown_ms = stopping.elapsed().as_secs_f64() * 1e3;
    progress(&format!(
        "service stopped in {shutdown_ms:.0} ms ({stopped:?})"
    ));
    {
        let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
        r.info("shutdown_ms", shutdown_ms);
        r.info("shutdown_clean", stopped.is_some_and(|s| s.success()));
    }
    ctx.db.close().await;
    Ok(())
}
