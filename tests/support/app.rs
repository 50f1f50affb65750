//! The service under test: in-process ([`TestApp`], for most tests) or as a
//! real process of the built binary ([`ServiceProcess`], for kill -9 and
//! SIGTERM tests). Both talk real HTTP on loopback to a real Postgres
//! database of the test's own (`#[sqlx::test]`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use budpipeline::config::Settings;
use budpipeline::startup::Application;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::views;

pub(crate) const TOKEN: &str = "test-app-token";

/// The URL of the database behind `pool` (a `#[sqlx::test]` database).
pub(crate) fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for tests");
    let db = pool
        .connect_options()
        .get_database()
        .expect("test database name")
        .to_owned();
    let base = base.split('?').next().unwrap_or(&base);
    let root = base.rsplit_once('/').map(|(r, _)| r).unwrap_or(base);
    format!("{root}/{db}")
}

/// Environment for a test service: a real database, a token, a sidecar
/// that does not exist unless `DAPR_HTTP_ENDPOINT` is given, quick timers.
pub(crate) fn env_for(db_url: &str, overrides: &[(&str, &str)]) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = [
        ("DATABASE_URL", db_url),
        ("APP_API_TOKEN", TOKEN),
        ("APP_PORT", "0"),
        ("DAPR_HTTP_ENDPOINT", "http://127.0.0.1:9"),
        ("DAPR_HEALTH_TIMEOUT", "0.2"),
        ("LEASE_SECONDS", "2"),
        ("SWEEP_INTERVAL_MS", "100"),
        ("SHUTDOWN_GRACE_SECONDS", "5"),
        ("DATABASE_MAX_CONNECTIONS", "8"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in overrides {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    vars
}

/// A small HTTP client for the service's API with the token set.
#[derive(Clone)]
pub(crate) struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
}

impl Api {
    pub(crate) fn new(base: String) -> Self {
        Self {
            base,
            http: reqwest::Client::new(),
            token: Some(TOKEN.to_owned()),
        }
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("dapr-api-token", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request reaches the service");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Create a workflow from a DAG; panics unless 201.
    pub(crate) async fn create_workflow(&self, dag: Value) -> Uuid {
        let (status, body) = self.post("/workflows", json!({ "dag": dag })).await;
        assert_eq!(status, StatusCode::CREATED, "create workflow: {body}");
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// Start an execution; panics unless 202.
    pub(crate) async fn execute(&self, workflow_id: Uuid, body: Value) -> Uuid {
        let (status, resp) = self
            .post(&format!("/workflows/{workflow_id}/execute"), body)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "execute: {resp}");
        resp["execution_id"].as_str().unwrap().parse().unwrap()
    }

    pub(crate) async fn execution(&self, id: Uuid) -> Value {
        let (status, body) = self.get(&format!("/executions/{id}")).await;
        assert_eq!(status, StatusCode::OK, "get execution: {body}");
        body
    }

    /// Poll until the execution is terminal (COMPLETED, FAILED, CANCELLED).
    pub(crate) async fn wait_terminal(&self, id: Uuid, timeout: Duration) -> Value {
        self.wait_until(id, timeout, |e| {
            matches!(
                e["status"].as_str(),
                Some("COMPLETED" | "FAILED" | "CANCELLED")
            )
        })
        .await
    }

    /// Poll the execution until `done` holds; panics with the last state on timeout.
    pub(crate) async fn wait_until(
        &self,
        id: Uuid,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = self.get(&format!("/executions/{id}")).await;
            if status == StatusCode::OK && done(&body) {
                return body;
            }
            if Instant::now() > deadline {
                panic!("execution {id} did not reach the expected state in {timeout:?}: {body:#}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Typed reads of an execution ([`views::Execution`]): a field the
/// document lacks fails the read, naming it, instead of reading `Null`.
impl Api {
    /// `GET /executions/{id}` as a view; panics unless 200.
    pub(crate) async fn execution_view(&self, id: Uuid) -> views::Execution {
        views::Execution::from_value(&self.execution(id).await)
    }

    /// [`Api::wait_terminal`], as a view.
    pub(crate) async fn wait_terminal_view(&self, id: Uuid, timeout: Duration) -> views::Execution {
        views::Execution::from_value(&self.wait_terminal(id, timeout).await)
    }

    /// [`Api::wait_until`] with a condition on the view.
    pub(crate) async fn wait_until_view(
        &self,
        id: Uuid,
        timeout: Duration,
        done: impl Fn(&views::Execution) -> bool,
    ) -> views::Execution {
        let body = self
            .wait_until(id, timeout, |e| done(&views::Execution::from_value(e)))
            .await;
        views::Execution::from_value(&body)
    }
}

/// The step named `id` in an execution body.
pub(crate) fn step<'a>(execution: &'a Value, id: &str) -> &'a Value {
    execution["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["step_id"] == id))
        .unwrap_or_else(|| panic!("no step {id} in {execution:#}"))
}

/// The service running inside the test process.
pub(crate) struct TestApp {
    pub api: Api,
    pub port: u16,
    pub engine: budpipeline::engine::Engine,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    pub(crate) async fn spawn(pool: &PgPool) -> Self {
        Self::spawn_with(pool, &[]).await
    }

    pub(crate) async fn spawn_with(pool: &PgPool, overrides: &[(&str, &str)]) -> Self {
        let vars = env_for(&database_url(pool), overrides);
        let settings =
            Settings::from_lookup(|name| vars.get(name).cloned()).expect("test settings");
        let app = Application::build(settings).await.expect("app builds");
        let port = app.port();
        let engine = app.engine().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        let api = Api::new(format!("http://127.0.0.1:{port}"));
        wait_ready(&api, Duration::from_secs(20)).await;
        Self {
            api,
            port,
            engine,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Graceful stop (as on SIGTERM), waiting for the drain to finish.
    /// Wait until every event the service recorded has been published
    /// (no outbox row is left to send): what was published by then is all
    /// there is until something new happens. Instead of a fixed sleep "for
    /// a stray late publish".
    pub(crate) async fn outbox_drained(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left: i64 =
                sqlx::query_scalar("SELECT count(*) FROM outbox WHERE failed_at IS NULL")
                    .fetch_one(self.engine.pool())
                    .await
                    .unwrap();
            if left == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{left} outbox rows never published"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub(crate) async fn wait_ready(api: &Api, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(resp) = api.http.get(format!("{}/ready", api.base)).send().await {
            if resp.status() == StatusCode::OK {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "service at {} not ready in {timeout:?}",
            api.base
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free loopback port (bound then released; good enough for tests).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The built `budpipeline` binary running as a child process.
pub(crate) struct ServiceProcess {
    pub api: Api,
    pub port: u16,
    vars: HashMap<String, String>,
    child: Option<tokio::process::Child>,
    /// The running process's replica id (its Postgres sessions are named
    /// `budpipeline/<replica id>`).
    replica: Option<Uuid>,
}

impl ServiceProcess {
    pub(crate) async fn start(db_url: &str, overrides: &[(&str, &str)]) -> Self {
        let port = free_port();
        let port_text = port.to_string();
        let mut all: Vec<(&str, &str)> = overrides.to_vec();
        all.push(("APP_PORT", &port_text));
        let vars = env_for(db_url, &all);
        let mut process = Self {
            api: Api::new(format!("http://127.0.0.1:{port}")),
            port,
            vars,
            child: None,
            replica: None,
        };
        process.launch().await;
        process
    }

    async fn launch(&mut self) {
        let log = std::env::temp_dir().join(format!("budpipeline-test-{}.log", self.port));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_budpipeline"))
            .arg("serve")
            .env_clear()
            .envs(&self.vars)
            // TEST_SERVICE_LOG=debug,sqlx=debug to see every statement.
            .env(
                "RUST_LOG",
                std::env::var("TEST_SERVICE_LOG").unwrap_or("info,sqlx=warn".into()),
            )
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("start budpipeline");
        self.child = Some(child);
        wait_ready(&self.api, Duration::from_secs(30)).await;
        let (status, body) = self.api.get("/internal/status").await;
        assert!(status.is_success(), "/internal/status: {body}");
        self.replica = body["replica_id"].as_str().and_then(|s| s.parse().ok());
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().and_then(|c| c.id()).expect("running")
    }

    /// `kill -9`: no drain, no cleanup. Returns once the process is gone
    /// AND Postgres has ended its sessions: a statement the process sent
    /// just before it died (a COMMIT, say) still takes effect after its
    /// death, so what the database holds is final only then.
    pub(crate) async fn kill9(&mut self) {
        if let Some(replica) = self.replica {
            // The LISTEN session is always open: if none carries the name,
            // the wait below would prove nothing.
            assert!(
                self.sessions(replica).await > 0,
                "no Postgres session is named after replica {replica}"
            );
        }
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL");
            let _ = child.wait().await;
        }
        if let Some(replica) = self.replica.take() {
            self.wait_sessions_gone(replica).await;
        }
    }

    /// How many Postgres sessions the replica has open.
    async fn sessions(&self, replica: Uuid) -> i64 {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.vars["DATABASE_URL"])
            .await
            .expect("connect");
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(format!("budpipeline/{replica}"))
            .fetch_one(&mut conn)
            .await
            .expect("pg_stat_activity")
    }

    async fn wait_sessions_gone(&self, replica: Uuid) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = self.sessions(replica).await;
            if left == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{left} Postgres sessions of the killed replica {replica} are still open"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGTERM, then wait for the process to exit by itself.
    pub(crate) async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().expect("pid") as i32;
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("exits after SIGTERM")
            .expect("exit status")
    }

    /// Start again on the same port and database.
    pub(crate) async fn restart(&mut self) {
        self.launch().await;
    }
}
