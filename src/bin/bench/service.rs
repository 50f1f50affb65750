//! The things the benchmark runs against: a fresh database, the service
//! binary (built if needed) and the service as a child process.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;
use tokio::process::{Child, Command};

use crate::{Result, fail, progress};

/// A database created for one run, dropped by [`BenchDb::drop_now`].
pub(crate) struct BenchDb {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl BenchDb {
    /// `CREATE DATABASE budpipeline_bench_<pid>` on the server of `admin_url`.
    pub(crate) async fn create(admin_url: &str) -> Result<Self> {
        let name = format!("budpipeline_bench_{}", std::process::id());
        let mut url = reqwest::Url::parse(admin_url)
            .map_err(|e| fail(format!("DATABASE_URL is not a URL: {e}")))?;
        url.set_path(&format!("/{name}"));
        let mut admin = sqlx::PgConnection::connect(admin_url).await?;
        drop_leftovers(&mut admin).await;
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut admin)
            .await?;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    /// Drop the database, ending any session still connected to it.
    pub(crate) async fn drop_now(&self) -> Result<()> {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await?;
        let forced = sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await;
        if forced.is_err() {
            // Before PostgreSQL 13 there is no FORCE.
            sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {}", self.name))
                .execute(&mut admin)
                .await?;
        }
        admin.close().await?;
        Ok(())
    }
}

/// Databases of earlier runs that were killed before they could clean up:
/// their bench process is gone and nobody is connected to them.
async fn drop_leftovers(admin: &mut sqlx::PgConnection) {
    let leftovers: Vec<String> = sqlx::query_scalar(
        "SELECT d.datname FROM pg_database d
         WHERE d.datname ~ '^budpipeline_bench_[0-9]+$'
           AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
    )
    .fetch_all(&mut *admin)
    .await
    .unwrap_or_default();
    for name in leftovers {
        let pid = name.trim_start_matches("budpipeline_bench_");
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dropped = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut *admin)
            .await;
        if dropped.is_ok() {
            progress(&format!("dropped {name}, left over by an interrupted run"));
        }
    }
}

/// The `budpipeline` binary next to this one, built first when running
/// under cargo (`cargo run --bin bench` builds only the bench).
pub(crate) async fn service_binary(build: bool) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| fail("cannot tell the bench binary's directory"))?;
    let bin = dir.join("budpipeline");
    let profile = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("release")
        .to_owned();
    if profile != "release" {
        progress(&format!(
            "WARNING: the bench runs from the `{profile}` profile; the figures mean little outside --release"
        ));
    }
    let cargo = std::env::var_os("CARGO");
    match (build, cargo) {
        (true, Some(cargo)) => {
            progress(&format!(
                "building the service: cargo build --profile {profile} --bin budpipeline"
            ));
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--profile", &profile, "--bin", "budpipeline"]);
            if let Some(target_dir) = dir.parent() {
                cmd.arg("--target-dir").arg(target_dir);
            }
            let status = cmd.stdin(Stdio::null()).status().await?;
            if !status.success() {
                if bin.exists() {
                    progress(
                        "WARNING: building the service failed; using the binary already there",
                    );
                } else {
                    return Err(fail(format!("building the service failed ({status})")));
                }
            }
        }
        (true, None) => progress("not run by cargo: using the service binary as it is"),
        (false, _) => {}
    }
    if !bin.exists() {
        return Err(fail(format!(
            "{} is missing: run `cargo build --release --bin budpipeline`",
            bin.display()
        )));
    }
    Ok(bin)
}

/// How to start the service.
pub(crate) struct ServiceConfig {
    pub bin: PathBuf,
    pub database_url: String,
    pub token: String,
    pub dapr_url: String,
    pub log: PathBuf,
}

impl ServiceConfig {
    fn command(&self, args: &[&str]) -> Result<Command> {
        let log = File::options().create(true).append(true).open(&self.log)?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("DATABASE_URL", &self.database_url)
            .env("APP_API_TOKEN", &self.token)
            .env("DAPR_HTTP_ENDPOINT", &self.dapr_url)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            // Every step claimed and committed on its own, as a step that
            // calls another service is: the per-step figures stay those of
            // the engine's scheduling. `spawn_with` may turn it back on.
            .env("INLINE_STEPS", "false")
            .env_remove("DAPR_API_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        Ok(cmd)
    }

    /// `budpipeline migrate`; its duration.
    pub(crate) async fn migrate(&self) -> Result<Duration> {
        let started = Instant::now();
        let status = self.command(&["migrate"])?.status().await?;
        if !status.success() {
            return Err(fail(format!(
                "`budpipeline migrate` failed ({status}); see {}",
                self.log.display()
            )));
        }
        Ok(started.elapsed())
    }

    /// `budpipeline serve` on a free port.
    pub(crate) fn spawn(&self) -> Result<Service> {
        self.spawn_with(&[])
    }

    /// `budpipeline serve` on a free port, with more environment variables
    /// (the retention scenario sets RETENTION_DAYS).
    pub(crate) fn spawn_with(&self, env: &[(&str, &str)]) -> Result<Service> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = self.command(&["serve"])?;
        cmd.env("APP_PORT", port.to_string());
        for (key, value) in env {
            cmd.env(key, value);
        }
        let spawned_at = Instant::now();
        let child = cmd.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| fail("the service exited at once"))?;
        Ok(Service {
            child,
            pid,
            base: format!("http://127.0.0.1:{port}"),
            spawned_at,
            log: self.log.clone(),
        })
    }
}

/// The running service.
pub(crate) struct Service {
    child: Child,
    pub pid: u32,
    pub base: String,
    spawned_at: Instant,
    log: PathBuf,
}

impl Service {
    /// Poll `GET /ready` every 2 ms; the time from spawn to the first 200.
    pub(crate) async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        // No pooled connections: each poll is what a fresh caller would see.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("{}/ready", self.base);
        loop {
            self.alive()?;
            let answer = http.get(&url).send().await;
            if answer.is_ok_and(|a| a.status() == reqwest::StatusCode::OK) {
                return Ok(self.spawned_at.elapsed());
            }
            if self.spawned_at.elapsed() > timeout {
                return Err(fail(format!(
                    "the service was not ready within {timeout:?}; see {}",
                    self.log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// An error if the process has exited.
    pub(crate) fn alive(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(fail(format!(
                "the service exited unexpectedly ({status}); see {}",
                self.log.display()
            ))),
        }
    }

    /// Resident and peak resident set size in MiB (from /proc/<pid>/status).
    pub(crate) fn memory_mb(&self) -> Option<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let field = |name: &str| -> Option<f64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb / 1024.0)
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// SIGTERM, then SIGKILL after `grace`. `None` when it had to be killed.
    pub(crate) async fn stop(mut self, grace: Duration) -> Result<Option<ExitStatus>> {
        if self.child.try_wait()?.is_none() {
            let sent = std::process::Command::new("kill")
                .args(["-s", "TERM", &self.pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !sent.is_ok_and(|s| s.success()) {
                self.child.start_kill()?;
            }
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => Ok(Some(status?)),
            Err(_) => {
                self.child.kill().await?;
                Ok(None)
            }
        }
    }
}

/// Counts of WARN and ERROR lines in the service log, and the most common
/// messages of each (the log is JSON lines).
pub(crate) fn log_summary(path: &Path) -> (usize, usize, Vec<(String, usize)>) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return (0, 0, Vec::new());
    };
    let mut warns = 0;
    let mut errors = 0;
    let mut messages: std::collections::BTreeMap<String, usize> = Default::default();
    for line in text.lines() {
        let parsed: Option<serde_json::Value> = serde_json::from_str(line).ok();
        let (level, message) = match &parsed {
            Some(v) => (
                v["level"].as_str().unwrap_or("").to_owned(),
                v["message"].as_str().unwrap_or(line).to_owned(),
            ),
            None => ("TEXT".to_owned(), line.to_owned()),
        };
        match level.as_str() {
            "WARN" => warns += 1,
            "ERROR" => errors += 1,
            "TEXT" if !line.trim().is_empty() => {}
            _ => continue,
        }
        if !line.trim().is_empty() {
            let mut key: String = format!("{level} {message}");
            key.truncate(200);
            *messages.entry(key).or_default() += 1;
        }
    }
    let mut top: Vec<(String, usize)> = messages.into_iter().collect();
    top.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    top.truncate(8);
    (warns, errors, top)
}
