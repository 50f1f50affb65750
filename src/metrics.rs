//! Prometheus metrics (the `prometheus-client` crate, maintained by the
//! Prometheus project). Counters and histograms are updated where things
//! happen; gauges that describe the database (queue depths, outbox backlog)
//! are read when `/metrics` is scraped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::model::ExecutionStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub action: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub app_id: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabels {
    pub app_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub executions_started: Counter,
    pub executions_finished: Family<StatusLabels, Counter>,
    pub steps_finished: Family<StepLabels, Counter>,
    pub step_duration: Family<ActionLabels, Histogram, fn() -> Histogram>,
    pub dapr_calls: Family<CallLabels, Counter>,
    pub dapr_call_duration: Family<AppLabels, Histogram, fn() -> Histogram>,
    pub breaker_state: Family<AppLabels, Gauge>,
    pub events_received: Family<OutcomeLabels, Counter>,
    pub outbox_backlog: Gauge,
    pub outbox_published: Counter,
    pub outbox_failures: Counter,
    /// Outbox rows failed for good (a topic that can never be published).
    pub outbox_failed: Counter,
    pub steps_claimable: Gauge,
    pub steps_waiting: Gauge,
    pub steps_running: Gauge,
    pub stale_results: Counter,
    pub combined_results: Counter,
    /// Transitions that found this replica's kept step rows current (`hit`)
    /// or had to load them (`miss`).
    pub step_rows_kept: Family<OutcomeLabels, Counter>,
    pub schedules_fired: Counter,
    pub schedules_failed: Counter,
    pub schedules_due: Gauge,
    pub webhook_triggers: Family<OutcomeLabels, Counter>,
    pub event_triggers_fired: Counter,
    pub db_connections: Family<StateLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("budpipeline");
        let m = Self {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            executions_started: Counter::default(),
            executions_finished: Family::default(),
            steps_finished: Family::default(),
            step_duration: Family::new_with_constructor(latency_histogram),
            dapr_calls: Family::default(),
            dapr_call_duration: Family::new_with_constructor(latency_histogram),
            breaker_state: Family::default(),
            events_received: Family::default(),
            outbox_backlog: Gauge::default(),
            outbox_published: Counter::default(),
            outbox_failures: Counter::default(),
            outbox_failed: Counter::default(),
            steps_claimable: Gauge::default(),
            steps_waiting: Gauge::default(),
            steps_running: Gauge::default(),
            stale_results: Counter::default(),
            combined_results: Counter::default(),
            step_rows_kept: Family::default(),
            schedules_fired: Counter::default(),
            schedules_failed: Counter::default(),
            schedules_due: Gauge::default(),
            webhook_triggers: Family::default(),
            event_triggers_fired: Counter::default(),
            db_connections: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "step_rows_kept",
            "Transitions that reused the step rows this replica kept (hit) or loaded them (miss)",
            m.step_rows_kept.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            m.http_duration.clone(),
        );
        registry.register(
            "executions_started",
            "Executions accepted",
            m.executions_started.clone(),
        );
        registry.register(
            "executions_finished",
            "Executions that reached a terminal status",
            m.executions_finished.clone(),
        );
        registry.register(
            "steps_finished",
            "Step attempts finished, by action and status",
            m.steps_finished.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Time a step handler ran",
            m.step_duration.clone(),
        );
        registry.register(
            "dapr_calls",
            "Outbound Dapr service invocations by app and outcome",
            m.dapr_calls.clone(),
        );
        registry.register(
            "dapr_call_duration_seconds",
            "Outbound Dapr call latency (all attempts)",
            m.dapr_call_duration.clone(),
        );
        registry.register(
            "circuit_breaker_state",
            "0 closed, 1 half-open, 2 open",
            m.breaker_state.clone(),
        );
        registry.register(
            "events_received",
            "Events delivered to /workflow-events, by answer",
            m.events_received.clone(),
        );
        registry.register(
            "outbox_backlog",
            "Progress events waiting to be published",
            m.outbox_backlog.clone(),
        );
        registry.register(
            "outbox_published",
            "Progress events published",
            m.outbox_published.clone(),
        );
        registry.register(
            "outbox_publish_failures",
            "Failed publish attempts",
            m.outbox_failures.clone(),
        );
        registry.register(
            "outbox_failed",
            "Outbox rows failed for good: their topic can never be published",
            m.outbox_failed.clone(),
        );
        registry.register(
            "steps_claimable",
            "Steps ready to run now",
            m.steps_claimable.clone(),
        );
        registry.register(
            "steps_waiting",
            "Steps waiting for an event or a timer",
            m.steps_waiting.clone(),
        );
        registry.register(
            "steps_running",
            "Steps inside a handler",
            m.steps_running.clone(),
        );
        registry.register(
            "stale_results",
            "Step results discarded by the attempt fence",
            m.stale_results.clone(),
        );
        registry.register(
            "combined_results",
            "Step results recorded in another result's transaction of the same execution",
            m.combined_results.clone(),
        );
        registry.register(
            "schedules_fired",
            "Schedule due times that started their execution (once per due time across replicas)",
            m.schedules_fired.clone(),
        );
        registry.register(
            "schedules_failed",
            "Schedule due times whose execution could not start (pipeline deleted, a draft, parameters refused)",
            m.schedules_failed.clone(),
        );
        registry.register(
            "schedules_due",
            "Active schedules whose due time has passed and that have not fired yet",
            m.schedules_due.clone(),
        );
        registry.register(
            "webhook_triggers",
            "POST /trigger/{id} answers, by outcome",
            m.webhook_triggers.clone(),
        );
        registry.register(
            "event_triggers_fired",
            "Executions started by event triggers",
            m.event_triggers_fired.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Database pool connections by state",
            m.db_connections.clone(),
        );
        Self { registry, ..m }
    }

    pub fn execution_finished(&self, status: ExecutionStatus) {
        self.executions_finished
            .get_or_create(&StatusLabels {
                status: status.as_str().to_owned(),
            })
            .inc();
    }

    /// One attempt of a step ended: `status` is how (COMPLETED, FAILED,
    /// TIMEOUT, CANCELLED, PENDING for a retry, RELEASED for a hand-back).
    pub fn step_finished(&self, action: &str, status: &str, seconds: f64) {
        self.steps_finished
            .get_or_create(&StepLabels {
                action: action.to_owned(),
                status: status.to_owned(),
            })
            .inc();
        self.step_duration
            .get_or_create(&ActionLabels {
                action: action.to_owned(),
            })
            .observe(seconds);
    }

    pub fn dapr_call(&self, app_id: &str, outcome: &str, seconds: f64) {
        self.dapr_calls
            .get_or_create(&CallLabels {
                app_id: app_id.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.dapr_call_duration
            .get_or_create(&AppLabels {
                app_id: app_id.to_owned(),
            })
            .observe(seconds);
    }

    pub fn webhook(&self, outcome: &str) {
        self.webhook_triggers
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn event(&self, outcome: &str) {
        self.events_received
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
