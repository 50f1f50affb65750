//! Settings from the environment (API.md "Configuration"), checked once at
//! start-up: a bad value stops the process with a message naming the variable.

use std::str::FromStr;
use std::time::Duration;

use crate::actions::bud::address::{AddressRange, parse_ranges};

/// Every variable the service reads, with its default and meaning; `--help`
/// prints this table and `.env.example` mirrors it.
pub const VARIABLES: &[(&str, &str, &str)] = &[
    ("DATABASE_URL", "-", "Postgres URL (required)"),
    ("APP_PORT", "8010", "listen port"),
    (
        "DAPR_HTTP_ENDPOINT",
        "http://localhost:3500",
        "sidecar HTTP endpoint",
    ),
    (
        "DAPR_API_TOKEN",
        "-",
        "token the service sends to the sidecar",
    ),
    (
        "APP_API_TOKEN",
        "-",
        "token the sidecar sends to the service (unset: every protected route answers 403)",
    ),
    (
        "SERVICE_INVOKE_TIMEOUT",
        "30",
        "seconds per invocation attempt",
    ),
    ("SERVICE_INVOKE_MAX_RETRIES", "3", "attempts per invocation"),
    (
        "CIRCUIT_BREAKER_FAILURE_THRESHOLD",
        "5",
        "consecutive failures that open a breaker",
    ),
    (
        "CIRCUIT_BREAKER_RECOVERY_TIMEOUT",
        "30",
        "seconds before a trial call",
    ),
    ("PUBSUB_NAME", "budpubsub", "Dapr pub/sub component"),
    (
        "PUBLISH_FORMAT",
        "json",
        "`json`: events are the CloudEvent's data; `cloudevent`: each event is its own CloudEvent, as Bud services publish (a Bud install needs this)",
    ),
    (
        "WORKFLOW_EVENTS_TOPIC",
        "workflow-events",
        "topic the service subscribes to",
    ),
    (
        "PROGRAMMATIC_SUBSCRIPTION",
        "true",
        "`false`: GET /dapr/subscribe lists nothing, for clusters whose declarative Subscription (Bud's Helm chart) subscribes the service",
    ),
    (
        "NOTIFY_TOPIC",
        "-",
        "budnotify topic for the events of executions with subscriber_ids",
    ),
    (
        "BUDCLUSTER_APP_ID",
        "budcluster",
        "Dapr app id of budcluster",
    ),
    ("BUDAPP_APP_ID", "budapp", "Dapr app id of budapp"),
    ("BUDSIM_APP_ID", "budsim", "Dapr app id of budsim"),
    ("BUDMODEL_APP_ID", "budmodel", "Dapr app id of budmodel"),
    (
        "SYSTEM_USER_ID",
        "-",
        "budapp user the actions' budapp calls are made for when neither the step nor the execution names one (`?user_id=`)",
    ),
    (
        "HTTP_REQUEST_ALLOWED_CIDRS",
        "-",
        "address ranges `http_request` may reach although loopback, link-local or private (comma list, e.g. 10.20.0.0/16)",
    ),
    (
        "DAPR_HEALTH_TIMEOUT",
        "60",
        "seconds outbound work waits for /v1.0/healthz/outbound before trying anyway",
    ),
    ("DATABASE_MAX_CONNECTIONS", "16", "pool size per replica"),
    (
        "MAX_CONCURRENT_STEPS",
        "64",
        "step handlers in flight per replica (waiting steps hold no slot); as many more steps a fan-out made ready may wait here for a slot",
    ),
    (
        "LEASE_SECONDS",
        "10",
        "step lease; renewed every third of it",
    ),
    ("MAX_BODY_BYTES", "1048576", "request body limit"),
    (
        "HTTP_HEADER_READ_TIMEOUT_SECONDS",
        "10",
        "a connection that has not finished its request headers by then is closed",
    ),
    (
        "HTTP_IDLE_TIMEOUT_SECONDS",
        "120",
        "an idle keep-alive connection is closed after this",
    ),
    (
        "HTTP_MAX_CONNECTIONS",
        "4096",
        "concurrent connections accepted; more wait in the listen backlog",
    ),
    (
        "TEMPLATE_MAX_BYTES",
        "1048576",
        "bytes one template render may build (its output and every string or list on the way)",
    ),
    (
        "EARLY_EVENT_TTL_SECONDS",
        "600",
        "how long an unmatched event is kept",
    ),
    (
        "RETENTION_DAYS",
        "30",
        "finished executions older than this are deleted",
    ),
    (
        "SHUTDOWN_GRACE_SECONDS",
        "20",
        "how long SIGTERM waits for running handlers",
    ),
    ("LOG_FORMAT", "pretty", "`json` for production"),
    (
        "INLINE_STEPS",
        "true",
        "pure steps (log, set_output, transform, aggregate, conditional, fail) run inside the transition that makes them ready, with no claim and no commit of their own; `false`: they are claimed and run like any other",
    ),
    (
        "STEP_CRASH_LIMIT",
        "3",
        "a step whose attempts end with their replica dying this many times in a row fails",
    ),
    (
        "SWEEP_INTERVAL_MS",
        "500",
        "how often timers, leases and retention are checked",
    ),
    (
        "SCHEDULE_POLL_INTERVAL_MS",
        "1000",
        "the longest a replica waits before looking for due schedules (it also wakes at the next due time it knows of)",
    ),
    (
        "WEBHOOK_RATE_PER_SECOND",
        "10",
        "POST /trigger/{id} calls per second each webhook is allowed, per replica (token bucket); more are 429",
    ),
    (
        "WEBHOOK_RATE_BURST",
        "100",
        "calls a webhook may make at once before WEBHOOK_RATE_PER_SECOND applies, per replica",
    ),
    (
        "WEBHOOK_TRUSTED_PROXIES",
        "-",
        "comma-separated addresses or CIDR ranges of proxies whose X-Forwarded-For names the caller for a webhook's allowed_ips (unset: the connection's peer address is the caller)",
    ),
];

/// Upper bound of `RETENTION_DAYS` (a hundred years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub app_port: u16,
    pub dapr_http_endpoint: String,
    pub dapr_api_token: Option<String>,
    pub app_api_token: Option<String>,
    pub service_invoke_timeout: Duration,
    pub service_invoke_max_retries: u32,
    pub circuit_breaker_failure_threshold: u32,
    pub circuit_breaker_recovery_timeout: Duration,
    pub pubsub_name: String,
    pub publish_format: PublishFormat,
    /// Whether `GET /dapr/subscribe` lists the events subscription.
    pub programmatic_subscription: bool,
    pub workflow_events_topic: String,
    pub notify_topic: Option<String>,
    pub budcluster_app_id: String,
    pub budapp_app_id: String,
    pub budsim_app_id: String,
    pub budmodel_app_id: String,
    /// The budapp user calls are made for when a step names none.
    pub system_user_id: Option<String>,
    /// Ranges `http_request` may reach although they are not public.
    pub http_request_allowed_cidrs: Vec<AddressRange>,
    pub dapr_health_timeout: Duration,
    pub database_max_connections: u32,
    pub max_concurrent_steps: usize,
    pub lease: Duration,
    pub max_body_bytes: usize,
    pub http_header_read_timeout: Duration,
    pub http_idle_timeout: Duration,
    pub http_max_connections: usize,
    /// What one template render may build (`dag::template::Budget`).
    pub template_max_bytes: usize,
    pub early_event_ttl: Duration,
    pub retention_days: u32,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    pub sweep_interval: Duration,
    /// Attempts in a row that may end with their replica dying before the
    /// step fails (a step that kills its process must not take the fleet down).
    pub step_crash_limit: u32,
    /// Whether pure steps run inside the transition that readies them
    /// (`engine::inline`).
    pub inline_steps: bool,
    /// The longest a replica waits before looking for due schedules.
    pub schedule_poll_interval: Duration,
    /// Token bucket of each webhook on this replica.
    pub webhook_rate_per_second: f64,
    pub webhook_rate_burst: u32,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub webhook_trusted_proxies: Vec<ipnet::IpNet>,
}

/// How progress events are handed to the sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishFormat {
    /// `application/json`: Dapr wraps the event in a CloudEvent of its own,
    /// the event being its `data` (API.md's default).
    Json,
    /// `application/cloudevents+json`: the event is its own CloudEvent, and
    /// Dapr delivers the flat object with its attributes added beside it.
    /// This is how every Bud service publishes, and what budapp's
    /// `/notifications` accepts: its `NotificationRequest` reads `name` and
    /// `payload` at the top level and refuses unknown keys such as the `id`
    /// and `datacontenttype` of Dapr's own envelope.
    CloudEvent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}: {problem}")]
    Invalid { name: &'static str, problem: String },
    #[error("reading the environment: {0}")]
    Source(#[from] config::ConfigError),
}

impl Settings {
    /// Read the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let source = config::Config::builder()
            .add_source(config::Environment::default())
            .build()?;
        Self::from_lookup(|name| source.get_string(&name.to_ascii_lowercase()).ok())
    }

    /// Build settings from any lookup of variable name to value (tests use a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        // Bud's Helm chart names some settings its own way; each of its
        // names is read only when ours is unset.
        let aliased = |name: &str| {
            let raw = |n: &str| lookup(n).filter(|v| !v.trim().is_empty());
            raw(name).or_else(|| {
                ALIASES
                    .iter()
                    .find(|(ours, _)| *ours == name)
                    .and_then(|(_, theirs)| raw(theirs))
            })
        };
        let env = Env(&aliased);
        let database_url = env
            .string("DATABASE_URL")
            .or_else(|| url_from_psql_parts(&env))
            .ok_or(ConfigError::Invalid {
                name: "DATABASE_URL",
                problem: "is required (e.g. postgres://postgres@127.0.0.1:5432/budpipeline), \
                          or PSQL_HOST, PSQL_DB_NAME and PSQL_USER"
                    .into(),
            })?;
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(invalid("DATABASE_URL", "must be a postgres:// URL"));
        }
        let dapr_http_endpoint = env
            .string("DAPR_HTTP_ENDPOINT")
            .or_else(|| {
                // Dapr's own variable for the sidecar's HTTP port.
                env.string("DAPR_HTTP_PORT")
                    .map(|port| format!("http://localhost:{port}"))
            })
            .unwrap_or_else(|| "http://localhost:3500".into());
        match reqwest::Url::parse(&dapr_http_endpoint) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            _ => {
                return Err(invalid(
                    "DAPR_HTTP_ENDPOINT",
                    "must be an http(s) URL such as http://localhost:3500",
                ));
            }
        }
        let log_format = match env.string("LOG_FORMAT").as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid(
                    "LOG_FORMAT",
                    format!("must be `pretty` or `json`, not `{other}`"),
                ));
            }
        };
        let publish_format = match env.string("PUBLISH_FORMAT").as_deref() {
            None | Some("json") => PublishFormat::Json,
            Some("cloudevent") => PublishFormat::CloudEvent,
            Some(other) => {
                return Err(invalid(
                    "PUBLISH_FORMAT",
                    format!("must be `json` or `cloudevent`, not `{other}`"),
                ));
            }
        };
        let programmatic_subscription = env.flag("PROGRAMMATIC_SUBSCRIPTION", true)?;
        let settings = Self {
            database_url,
            publish_format,
            programmatic_subscription,
            app_port: env.parse("APP_PORT", 8010)?,
            dapr_http_endpoint: dapr_http_endpoint.trim_end_matches('/').to_owned(),
            dapr_api_token: env.string("DAPR_API_TOKEN"),
            app_api_token: env.string("APP_API_TOKEN"),
            service_invoke_timeout: env.seconds("SERVICE_INVOKE_TIMEOUT", 30.0)?,
            service_invoke_max_retries: env.positive("SERVICE_INVOKE_MAX_RETRIES", 3)?,
            circuit_breaker_failure_threshold: env
                .positive("CIRCUIT_BREAKER_FAILURE_THRESHOLD", 5)?,
            circuit_breaker_recovery_timeout: env
                .seconds("CIRCUIT_BREAKER_RECOVERY_TIMEOUT", 30.0)?,
            pubsub_name: env
                .string("PUBSUB_NAME")
                .unwrap_or_else(|| "budpubsub".into()),
            workflow_events_topic: env
                .string("WORKFLOW_EVENTS_TOPIC")
                .unwrap_or_else(|| "workflow-events".into()),
            notify_topic: env.string("NOTIFY_TOPIC"),
            budcluster_app_id: env
                .string("BUDCLUSTER_APP_ID")
                .unwrap_or_else(|| "budcluster".into()),
            budapp_app_id: env
                .string("BUDAPP_APP_ID")
                .unwrap_or_else(|| "budapp".into()),
            budsim_app_id: env
                .string("BUDSIM_APP_ID")
                .unwrap_or_else(|| "budsim".into()),
            budmodel_app_id: env
                .string("BUDMODEL_APP_ID")
                .unwrap_or_else(|| "budmodel".into()),
            system_user_id: env.string("SYSTEM_USER_ID"),
            http_request_allowed_cidrs: parse_ranges(
                &env.string("HTTP_REQUEST_ALLOWED_CIDRS").unwrap_or_default(),
            )
            .map_err(|problem| invalid("HTTP_REQUEST_ALLOWED_CIDRS", problem))?,
            dapr_health_timeout: env.seconds("DAPR_HEALTH_TIMEOUT", 60.0)?,
            database_max_connections: env.positive("DATABASE_MAX_CONNECTIONS", 16)?,
            max_concurrent_steps: env.positive::<u32>("MAX_CONCURRENT_STEPS", 64)? as usize,
            lease: env.seconds("LEASE_SECONDS", 10.0)?,
            max_body_bytes: env.positive::<u32>("MAX_BODY_BYTES", 1_048_576)? as usize,
            http_header_read_timeout: env.seconds("HTTP_HEADER_READ_TIMEOUT_SECONDS", 10.0)?,
            http_idle_timeout: env.seconds("HTTP_IDLE_TIMEOUT_SECONDS", 120.0)?,
            http_max_connections: env.positive::<u32>("HTTP_MAX_CONNECTIONS", 4096)? as usize,
            template_max_bytes: env.positive::<u32>(
                "TEMPLATE_MAX_BYTES",
                crate::dag::template::DEFAULT_MAX_BYTES as u32,
            )? as usize,
            early_event_ttl: env.seconds("EARLY_EVENT_TTL_SECONDS", 600.0)?,
            retention_days: env.parse("RETENTION_DAYS", 30)?,
            shutdown_grace: env.seconds("SHUTDOWN_GRACE_SECONDS", 20.0)?,
            log_format,
            sweep_interval: Duration::from_millis(
                env.positive::<u32>("SWEEP_INTERVAL_MS", 500)? as u64
            ),
            step_crash_limit: env.positive("STEP_CRASH_LIMIT", 3)?,
            inline_steps: env.flag("INLINE_STEPS", true)?,
            schedule_poll_interval: Duration::from_millis(
                env.positive::<u32>("SCHEDULE_POLL_INTERVAL_MS", 1000)? as u64,
            ),
            webhook_rate_per_second: {
                let rate: f64 = env.positive("WEBHOOK_RATE_PER_SECOND", 10.0)?;
                if !rate.is_finite() {
                    return Err(invalid(
                        "WEBHOOK_RATE_PER_SECOND",
                        "must be a finite number",
                    ));
                }
                rate
            },
            webhook_rate_burst: env.positive("WEBHOOK_RATE_BURST", 100)?,
            webhook_trusted_proxies: match env.string("WEBHOOK_TRUSTED_PROXIES") {
                None => Vec::new(),
                Some(list) => list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        crate::http::webhooks::parse_net(s).ok_or_else(|| {
                            invalid(
                                "WEBHOOK_TRUSTED_PROXIES",
                                format!("`{s}` is not an address or CIDR range"),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            },
        };
        // The sweeper computes `now() - RETENTION_DAYS days` in Postgres
        // (an `int`); 0 would delete every finished execution at once, and a
        // value past `i32::MAX` would wrap and delete them all as well.
        if !(1..=MAX_RETENTION_DAYS).contains(&settings.retention_days) {
            return Err(invalid(
                "RETENTION_DAYS",
                format!("must be between 1 and {MAX_RETENTION_DAYS}"),
            ));
        }
        if settings.lease < Duration::from_secs(1) {
            return Err(invalid("LEASE_SECONDS", "must be at least 1"));
        }
        Ok(settings)
    }

    /// The token the service expects from the sidecar; `None` means fail closed.
    pub fn app_token(&self) -> Option<&str> {
        self.app_api_token.as_deref().filter(|t| !t.is_empty())
    }
}

/// Variables of Bud's Helm chart (and of the original service) that stand
/// for ours when ours are unset: (ours, theirs).
pub const ALIASES: &[(&str, &str)] = &[
    ("APP_PORT", "SERVICE_PORT"),
    ("NOTIFY_TOPIC", "NOTIFY_SERVICE_TOPIC"),
    ("RETENTION_DAYS", "PIPELINE_RETENTION_DAYS"),
];

/// `DATABASE_URL` from the chart's `PSQL_HOST`, `PSQL_PORT` (5432),
/// `PSQL_DB_NAME`, `PSQL_USER` and `PSQL_PASSWORD`, the user and password
/// percent-encoded.
fn url_from_psql_parts(env: &Env<'_>) -> Option<String> {
    let host = env.string("PSQL_HOST")?;
    let db = env.string("PSQL_DB_NAME")?;
    let user = env.string("PSQL_USER")?;
    let port = env.string("PSQL_PORT").unwrap_or_else(|| "5432".into());
    let mut url = reqwest::Url::parse(&format!("postgres://{host}:{port}/")).ok()?;
    url.set_username(&user).ok()?;
    if let Some(password) = env.string("PSQL_PASSWORD") {
        url.set_password(Some(&password)).ok()?;
    }
    url.path_segments_mut().ok()?.clear().push(&db);
    Some(url.to_string())
}

fn invalid(name: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        problem: problem.into(),
    }
}

struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn string(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn parse<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError> {
        match self.string(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|_| invalid(name, format!("`{raw}` is not a valid number"))),
        }
    }

    fn positive<T: FromStr + PartialOrd + Default>(
        &self,
        name: &'static str,
        default: T,
    ) -> Result<T, ConfigError> {
        let value = self.parse(name, default)?;
        if value <= T::default() {
            return Err(invalid(name, "must be greater than zero"));
        }
        Ok(value)
    }

    fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.string(name).as_deref() {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(invalid(
                name,
                format!("must be `true` or `false`, not `{other}`"),
            )),
        }
    }

    fn seconds(&self, name: &'static str, default: f64) -> Result<Duration, ConfigError> {
        let secs: f64 = self.parse(name, default)?;
        if !secs.is_finite() || secs <= 0.0 {
            return Err(invalid(name, "must be a positive number of seconds"));
        }
        // `Duration::from_secs_f64` panics past u64::MAX seconds.
        Duration::try_from_secs_f64(secs)
            .map_err(|_| invalid(name, format!("`{secs}` seconds is too large")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = settings(&[("DATABASE_URL", "postgres://localhost/x")]).unwrap();
        assert_eq!(s.app_port, 8010);
        assert_eq!(s.service_invoke_max_retries, 3);
        assert_eq!(s.lease, Duration::from_secs(10));
        assert_eq!(s.pubsub_name, "budpubsub");
        assert_eq!(s.template_max_bytes, 1_048_576);
        assert!(s.app_token().is_none());
        assert_eq!(s.http_header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.http_idle_timeout, Duration::from_secs(120));
        assert_eq!(s.http_max_connections, 4096);
    }

    #[test]
    fn http_limits_are_checked() {
        for (name, value) in [
            ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "0"),
            ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "ten"),
            ("HTTP_IDLE_TIMEOUT_SECONDS", "-1"),
            ("HTTP_MAX_CONNECTIONS", "0"),
            ("HTTP_MAX_CONNECTIONS", "many"),
        ] {
            let err = settings(&[("DATABASE_URL", "postgres://x/y"), (name, value)]).unwrap_err();
            assert!(err.to_string().starts_with(&format!("{name}:")), "{err}");
        }
        let s = settings(&[
            ("DATABASE_URL", "postgres://x/y"),
            ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "0.5"),
            ("HTTP_IDLE_TIMEOUT_SECONDS", "30"),
            ("HTTP_MAX_CONNECTIONS", "8"),
        ])
        .unwrap();
        assert_eq!(s.http_header_read_timeout, Duration::from_millis(500));
        assert_eq!(s.http_idle_timeout, Duration::from_secs(30));
        assert_eq!(s.http_max_connections, 8);
    }

    #[test]
    fn the_helm_charts_names_stand_in_for_ours_when_ours_are_unset() {
        let s = settings(&[
            ("PSQL_HOST", "bud-postgresql"),
            ("PSQL_PORT", "5433"),
            ("PSQL_DB_NAME", "budpipeline"),
            ("PSQL_USER", "bud pipeline"),
            ("PSQL_PASSWORD", "p@ss:w/rd"),
            ("SERVICE_PORT", "9010"),
            ("NOTIFY_SERVICE_TOPIC", "notificationMessages"),
            ("PIPELINE_RETENTION_DAYS", "7"),
            ("DAPR_HTTP_PORT", "3600"),
        ])
        .unwrap();
        assert_eq!(
            s.database_url,
            "postgres://bud%20pipeline:p%40ss%3Aw%2Frd@bud-postgresql:5433/budpipeline"
        );
        let parsed: sqlx::postgres::PgConnectOptions = s.database_url.parse().unwrap();
        assert_eq!(parsed.get_host(), "bud-postgresql");
        assert_eq!(parsed.get_username(), "bud pipeline");
        assert_eq!(s.app_port, 9010);
        assert_eq!(s.notify_topic.as_deref(), Some("notificationMessages"));
        assert_eq!(s.retention_days, 7);
        assert_eq!(s.dapr_http_endpoint, "http://localhost:3600");
        // Ours win.
        let s = settings(&[
            ("DATABASE_URL", "postgres://x/y"),
            ("PSQL_HOST", "h"),
            ("PSQL_DB_NAME", "d"),
            ("PSQL_USER", "u"),
            ("APP_PORT", "8010"),
            ("SERVICE_PORT", "9999"),
        ])
        .unwrap();
        assert_eq!(
            (s.database_url.as_str(), s.app_port),
            ("postgres://x/y", 8010)
        );
    }

    #[test]
    fn trigger_settings_have_defaults_and_are_checked() {
        let s = settings(&[("DATABASE_URL", "postgres://x/y")]).unwrap();
        assert_eq!(s.schedule_poll_interval, Duration::from_secs(1));
        assert_eq!(
            (s.webhook_rate_per_second, s.webhook_rate_burst),
            (10.0, 100)
        );
        assert!(s.webhook_trusted_proxies.is_empty());
        let s = settings(&[
            ("DATABASE_URL", "postgres://x/y"),
            ("WEBHOOK_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1"),
            ("WEBHOOK_RATE_PER_SECOND", "0.5"),
        ])
        .unwrap();
        assert_eq!(s.webhook_trusted_proxies.len(), 2);
        assert_eq!(s.webhook_rate_per_second, 0.5);
        for (name, value) in [
            ("WEBHOOK_TRUSTED_PROXIES", "10.0.0.0/8,ingress"),
            ("WEBHOOK_RATE_PER_SECOND", "0"),
            ("WEBHOOK_RATE_PER_SECOND", "inf"),
            ("WEBHOOK_RATE_BURST", "0"),
            ("SCHEDULE_POLL_INTERVAL_MS", "0"),
        ] {
            let err = settings(&[("DATABASE_URL", "postgres://x/y"), (name, value)]).unwrap_err();
            assert!(err.to_string().starts_with(&format!("{name}:")), "{err}");
        }
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = settings(&[
            ("DATABASE_URL", "postgres://x/y"),
            ("SERVICE_INVOKE_TIMEOUT", "soon"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().starts_with("SERVICE_INVOKE_TIMEOUT:"),
            "{err}"
        );
        let err = settings(&[
            ("DATABASE_URL", "postgres://x/y"),
            ("DAPR_HTTP_ENDPOINT", "not a url"),
        ])
        .unwrap_err();
        assert!(err.to_string().starts_with("DAPR_HTTP_ENDPOINT:"), "{err}");
        let err = settings(&[]).unwrap_err();
        assert!(err.to_string().starts_with("DATABASE_URL:"), "{err}");
        for bad in ["0", "-1", "lots", "99999999999"] {
            let err = settings(&[
                ("DATABASE_URL", "postgres://x/y"),
                ("TEMPLATE_MAX_BYTES", bad),
            ])
            .unwrap_err();
            assert!(err.to_string().starts_with("TEMPLATE_MAX_BYTES:"), "{err}");
        }
        let s = settings(&[
            ("DATABASE_URL", "postgres://x/y"),
            ("TEMPLATE_MAX_BYTES", "4096"),
        ])
        .unwrap();
        assert_eq!(s.template_max_bytes, 4096);
        let err = settings(&[
            ("DATABASE_URL", "postgres://x/y"),
            ("HTTP_REQUEST_ALLOWED_CIDRS", "10.0.0.0/8,intranet"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().starts_with("HTTP_REQUEST_ALLOWED_CIDRS:"),
            "{err}"
        );
    }

    #[test]
    fn the_other_bud_services_have_their_bud_app_ids() {
        let s = settings(&[
            ("DATABASE_URL", "postgres://x/y"),
            ("HTTP_REQUEST_ALLOWED_CIDRS", "127.0.0.0/8, 10.1.0.0/16"),
        ])
        .unwrap();
        assert_eq!(
            (
                s.budapp_app_id.as_str(),
                s.budsim_app_id.as_str(),
                s.budmodel_app_id.as_str()
            ),
            ("budapp", "budsim", "budmodel")
        );
        assert_eq!(s.system_user_id, None);
        assert_eq!(s.http_request_allowed_cidrs.len(), 2);
    }
}
