//! Wiring: the pool, the registry, the engine's loops and the HTTP server,
//! and the order they start and stop in.
//!
//! Start: the HTTP server listens first (Dapr reads `/dapr/subscribe` and
//! `/health` from it), migrations run (`/ready` waits for them), then the
//! engine's loops start; the outbox publisher waits for the sidecar.
//!
//! Stop (SIGTERM): stop claiming, let handlers finish for up to
//! `SHUTDOWN_GRACE_SECONDS`, abandon the rest and hand their steps back,
//! flush the outbox once more, then stop serving: no new connections,
//! requests in flight finish, then every connection closes
//! ([`crate::http::server`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::actions::Registry;
use crate::config::Settings;
use crate::dapr::DaprClient;
use crate::engine::Engine;
use crate::http::{self, AppState};
use crate::metrics::Metrics;

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

/// The actions of this service, given its Dapr client.
pub fn registry(settings: &Settings, dapr: &DaprClient) -> Registry {
    let mut registry = Registry::with_builtins();
    crate::actions::seed::register(&mut registry, dapr.clone(), settings);
    crate::actions::bud::register(&mut registry, dapr.clone(), settings);
    registry
}

impl Application {
    /// Bind the port and build everything; nothing runs until [`Application::run`].
    pub async fn build(
        settings: Settings,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let settings = Arc::new(settings);
        let replica_id = uuid::Uuid::new_v4();
        let pool = crate::db::pool(&settings, Some(replica_id))?;
        let metrics = Arc::new(Metrics::new());
        let dapr = DaprClient::new(&settings).with_metrics(metrics.clone());
        let registry = registry(&settings, &dapr);
        let engine = Engine::new(replica_id, pool, registry, settings.clone(), metrics);
        let listener =
            TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], settings.app_port))).await?;
        let state = AppState {
            engine,
            dapr,
            migrated: Arc::new(AtomicBool::new(false)),
            started: Instant::now(),
            reads: Arc::default(),
            read_flights: Arc::default(),
            totals: Arc::default(),
            webhook_limiter: Arc::new(http::webhooks::RateLimiter::new(
                settings.webhook_rate_per_second,
                settings.webhook_rate_burst,
            )),
        };
        Ok(Self { listener, state })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn engine(&self) -> &Engine {
        &self.state.engine
    }

    /// Serve until `shutdown` resolves, then drain (see the module docs).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let engine = state.engine.clone();
        if engine.settings().app_token().is_none() {
            tracing::warn!("APP_API_TOKEN is not set: every protected route will answer 403");
        }
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        let limits = http::server::Limits::from_settings(engine.settings());
        let server = http::server::serve(
            self.listener,
            http::router(state.clone()),
            limits,
            async move {
                let _ = stopped_rx.await;
            },
        );
        let server = tokio::spawn(server);
        tracing::info!(replica_id = %engine.replica_id(), "serving");

        let loops = start_engine(state.clone());
        shutdown.await;
        tracing::info!("shutdown requested: draining");
        drain(&state, loops).await;
        let _ = stopped_tx.send(());
        server.await.map_err(std::io::Error::other)
    }
}

/// Migrate (retrying until the database answers), then start the loops.
fn start_engine(state: AppState) -> JoinHandle<Vec<JoinHandle<()>>> {
    tokio::spawn(async move {
        let engine = state.engine.clone();
        let mut delay = Duration::from_millis(200);
        loop {
            match crate::db::migrate(engine.pool()).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "migrations failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
            if engine.is_draining() {
                return Vec::new();
            }
        }
        state.migrated.store(true, Ordering::Relaxed);
        tracing::info!("migrations applied; engine starting");
        vec![
            tokio::spawn(engine.clone().run_dispatcher()),
            tokio::spawn(engine.clone().run_listener()),
            tokio::spawn(engine.clone().run_notifier()),
            tokio::spawn(engine.clone().run_sweeper()),
            tokio::spawn(engine.clone().run_scheduler()),
            tokio::spawn(engine.clone().run_lease_renewal()),
            tokio::spawn(engine.clone().run_publisher(state.dapr.clone())),
        ]
    })
}

async fn drain(state: &AppState, loops: JoinHandle<Vec<JoinHandle<()>>>) {
    let engine = &state.engine;
    engine.start_draining();
    let grace = engine.settings().shutdown_grace;
    // Every claim holds a handler slot from before its transaction until its
    // result is recorded, so holding all slots means nothing is being
    // claimed or run here any more.
    if engine.wait_idle(grace).await.is_none() {
        let left = engine.inflight();
        tracing::warn!(
            handlers = left,
            "grace period over: abandoning handlers still running"
        );
        engine.abandon_all();
        if engine.wait_idle(Duration::from_secs(5)).await.is_none() {
            tracing::warn!("handlers did not stop after being abandoned; their leases will expire");
        }
    }
    match engine.release_leases().await {
        Ok(n) if n > 0 => tracing::info!(
            steps = n,
            "handed unfinished steps back for another replica"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not release leases; they expire on their own"),
    }
    let flush = engine.publish_batch(&state.dapr);
    if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), flush).await {
        tracing::warn!(error = %e, "final outbox flush failed; another replica will publish");
    }
    if let Ok(loops) = loops.await {
        for handle in loops {
            handle.abort();
        }
    }
    tracing::info!("drained");
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
