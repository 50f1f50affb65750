//! Rows of the engine's tables as the engine sees them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

macro_rules! text_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            /// Every value, in declaration order (the schema's CHECK lists the same).
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(format!("unknown {}: {other}", stringify!($name))),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> { s.parse() }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(ExecutionStatus {
    Pending => "PENDING",
    Running => "RUNNING",
    Completed => "COMPLETED",
    Failed => "FAILED",
    Cancelled => "CANCELLED",
});

text_enum!(StepStatus {
    Pending => "PENDING",
    Running => "RUNNING",
    Completed => "COMPLETED",
    Failed => "FAILED",
    Skipped => "SKIPPED",
    Timeout => "TIMEOUT",
    Cancelled => "CANCELLED",
});

text_enum!(InboundStatus {
    // Applied to a waiting step when it arrived.
    Applied => "APPLIED",
    // For a correlation id no step waits on any more (a duplicate, a late event).
    Ignored => "IGNORED",
    // Before any step waits on it: kept until one does, or until it expires.
    Early => "EARLY",
    // An early event a step later took.
    Consumed => "CONSUMED",
    Expired => "EXPIRED",
});

text_enum!(SkipReason {
    Condition => "condition",
    Branch => "branch",
    UpstreamFailed => "upstream_failed",
});

impl ExecutionStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

impl StepStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }
}

/// One `step_executions` row. The engine loads all rows of an execution
/// under the execution's lock, changes them in memory, and writes back the
/// ones it changed (`dirty`) in one statement.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StepRow {
    #[serde(skip)]
    pub execution_id: Uuid,
    pub step_id: String,
    #[serde(skip)]
    pub position: i32,
    #[serde(skip)]
    pub name: String,
    #[serde(skip)]
    pub action: String,
    #[sqlx(try_from = "String")]
    pub status: StepStatus,
    pub available_at: Option<DateTime<Utc>>,
    pub attempt: i32,
    pub failures: i32,
    /// Attempts in a row that ended with their replica dying.
    pub crashes: i32,
    pub lease_owner: Option<Uuid>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub awaiting_event: bool,
    pub external_workflow_id: Option<String>,
    pub timeout_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub timeout_seconds: Option<f64>,
    pub outputs: Option<Value>,
    pub error: Option<String>,
    pub skip_reason: Option<String>,
    pub progress: Option<f64>,
    /// The latest stage a long operation reported while the step waited.
    pub stage: Option<Value>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    #[sqlx(skip)]
    #[serde(skip)]
    pub dirty: bool,
}

impl StepRow {
    pub fn outputs_map(&self) -> Map<String, Value> {
        match &self.outputs {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        }
    }

    /// Every timestamp at the microsecond Postgres stores.
    pub fn truncate_to_micros(&mut self) {
        use chrono::SubsecRound;
        for t in [
            &mut self.available_at,
            &mut self.lease_expires_at,
            &mut self.timeout_at,
            &mut self.started_at,
            &mut self.completed_at,
        ]
        .into_iter()
        .flatten()
        {
            *t = t.trunc_subsecs(6);
        }
    }

    /// Waiting for an external event or a timer.
    pub fn is_waiting(&self) -> bool {
        self.status == StepStatus::Running && self.awaiting_event
    }

    /// A handler is (or may be) running it right now somewhere.
    pub fn is_in_handler(&self) -> bool {
        self.status == StepStatus::Running && !self.awaiting_event
    }
}

impl StepRow {
    /// A step as its execution is created (the columns' defaults): PENDING,
    /// never released.
    pub(crate) fn new(
        execution_id: Uuid,
        step_id: &str,
        position: usize,
        name: &str,
        action: &str,
        timeout_seconds: Option<f64>,
    ) -> Self {
        StepRow {
            execution_id,
            step_id: step_id.to_owned(),
            position: position as i32,
            name: name.to_owned(),
            action: action.to_owned(),
            status: StepStatus::Pending,
            available_at: None,
            attempt: 0,
            failures: 0,
            crashes: 0,
            lease_owner: None,
            lease_expires_at: None,
            awaiting_event: false,
            external_workflow_id: None,
            timeout_at: None,
            timeout_seconds,
            outputs: None,
            error: None,
            skip_reason: None,
            progress: None,
            stage: None,
            started_at: None,
            completed_at: None,
            dirty: false,
        }
    }
}

#[cfg(test)]
impl StepRow {
    /// A step as its execution starts, of no execution (tests).
    pub(crate) fn fresh(step_id: &str, position: usize, name: &str, action: &str) -> Self {
        Self::new(Uuid::nil(), step_id, position, name, action, None)
    }
}

/// The columns of `executions` the engine needs while it holds the row lock.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExecutionRow {
    pub id: Uuid,
    pub workflow_id: Uuid,
    pub workflow_version: i32,
    #[sqlx(try_from = "String")]
    pub status: ExecutionStatus,
    pub parameters: Value,
    pub outputs: Value,
    pub error: Option<String>,
    pub callback_topics: Vec<String>,
    pub subscriber_ids: Option<String>,
    pub payload_type: Option<String>,
    pub notification_workflow_id: Option<String>,
    pub total_steps: i32,
    pub deadline_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub trace_id: Option<String>,
    /// The execution ended because it ran past its deadline (set by the
    /// sweeper): a late handler result then ends its step TIMEOUT, not
    /// CANCELLED.
    pub timed_out: bool,
    /// Changed by every transaction that changes the step rows (see
    /// [`super::cache`]).
    pub revision: i64,
    /// The database's clock at the start of the transaction; every time the
    /// engine writes is derived from it so replicas agree on time.
    pub now: DateTime<Utc>,
}

impl ExecutionRow {
    pub fn params_map(&self) -> Map<String, Value> {
        match &self.parameters {
            Value::Object(map) => map.clone(),
            _ => Map::new(),
        }
    }
}

/// A step this replica has claimed and must run now.
#[derive(Debug, Clone)]
pub struct ClaimedStep {
    pub execution_id: Uuid,
    pub step_id: String,
    pub action: String,
    pub attempt: i32,
    /// The step's params resolved; an error fails the attempt permanently.
    pub params: Result<Map<String, Value>, String>,
    pub workflow_params: Map<String, Value>,
    /// How long this attempt may run (the handler is cut off past it).
    pub timeout: Option<std::time::Duration>,
    /// The execution's W3C trace id (32 hex digits).
    pub trace_id: Option<String>,
}

/// A `traceparent` for one outbound call of an attempt: the execution's
/// trace, a fresh span id.
pub fn traceparent(trace_id: &str) -> String {
    let span = uuid::Uuid::new_v4().simple().to_string();
    format!("00-{trace_id}-{}-01", &span[..16])
}

/// The trace id of a W3C `traceparent` header, when it is well formed.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    let valid = trace.len() == 32
        && trace
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && trace.bytes().any(|b| b != b'0');
    valid.then(|| trace.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_from_well_formed_traceparents_only() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            trace_id_of(&format!("00-{id}-00f067aa0ba902b7-01")).as_deref(),
            Some(id)
        );
        assert_eq!(
            trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            trace_id_of("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id_of("garbage"), None);
        let header = traceparent(id);
        assert!(
            header.starts_with(&format!("00-{id}-"))
                && header.ends_with("-01")
                && header.len() == 55,
            "{header}"
        );
    }
}
