//! The workflow document as clients send it (DAG.md "Shape").
//!
//! Parsing is deliberately lenient (`serde_json::Value` first, then these
//! types) so that validation can report every problem at once instead of
//! stopping at serde's first error; see `dag::validate`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A parsed and validated workflow definition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Dag {
    pub name: String,
    #[serde(default = "default_doc_version")]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    #[serde(default)]
    pub settings: Settings,
    pub steps: Vec<Step>,
    #[serde(default)]
    pub outputs: Map<String, Value>,
    /// Step ids to positions, built on first use: the planner looks a
    /// dependency up for every pending step of every transition.
    #[serde(skip)]
    index: StepIndex,
}

#[derive(Debug, Clone, Default)]
struct StepIndex {
    ids: std::sync::OnceLock<std::collections::HashMap<String, usize>>,
    /// Each step's dependencies as positions (unknown ids left out).
    deps: std::sync::OnceLock<Vec<Vec<usize>>>,
}

/// Derived from `steps`, so it never makes two DAGs differ.
impl PartialEq for StepIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

fn default_doc_version() -> String {
    "1.0".to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(from = "ParameterDoc")]
pub struct Parameter {
    pub name: String,
    /// `string`, `integer`, `number`, `boolean`, `object`, `array`; any other
    /// name (e.g. `cluster_ref`) is treated as a string.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// As written, else `true` exactly when there is no `default`: a
    /// parameter with a default can always be left out.
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

/// A parameter declaration as written, before the defaults are filled in.
#[derive(Deserialize)]
struct ParameterDoc {
    name: String,
    #[serde(rename = "type", default = "default_param_type")]
    kind: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    required: Option<bool>,
    #[serde(default)]
    default: Option<Value>,
}

impl From<ParameterDoc> for Parameter {
    fn from(doc: ParameterDoc) -> Self {
        let has_default = doc.default.as_ref().is_some_and(|d| !d.is_null());
        Self {
            required: doc.required.unwrap_or(!has_default),
            name: doc.name,
            kind: doc.kind,
            description: doc.description,
            default: doc.default,
        }
    }
}

fn default_param_type() -> String {
    "string".to_owned()
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    #[serde(default = "default_exec_timeout")]
    pub timeout_seconds: u64,
    #[serde(default = "default_max_parallel")]
    pub max_parallel_steps: u32,
    #[serde(default = "default_true")]
    pub fail_fast: bool,
}

fn default_exec_timeout() -> u64 {
    7200
}

fn default_max_parallel() -> u32 {
    10
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            timeout_seconds: default_exec_timeout(),
            max_parallel_steps: default_max_parallel(),
            fail_fast: true,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    #[default]
    Fail,
    Continue,
    Retry,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Step {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub action: String,
    #[serde(default)]
    pub params: Map<String, Value>,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default)]
    pub on_failure: OnFailure,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct RetryPolicy {
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_backoff")]
    pub backoff_seconds: f64,
    #[serde(default = "default_multiplier")]
    pub backoff_multiplier: f64,
    #[serde(default = "default_max_backoff")]
    pub max_backoff_seconds: f64,
}

fn default_attempts() -> u32 {
    3
}
fn default_backoff() -> f64 {
    5.0
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_max_backoff() -> f64 {
    60.0
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: default_attempts(),
            backoff_seconds: default_backoff(),
            backoff_multiplier: default_multiplier(),
            max_backoff_seconds: default_max_backoff(),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `failed + 1`, given `failed` failures so far (≥ 1).
    pub fn backoff(&self, failed: u32) -> std::time::Duration {
        let exp = self
            .backoff_multiplier
            .powi(failed.saturating_sub(1) as i32);
        let secs = (self.backoff_seconds * exp)
            .min(self.max_backoff_seconds)
            .max(0.0);
        std::time::Duration::from_secs_f64(secs)
    }
}

impl Step {
    /// The retry policy in force: an explicit `retry` block always applies;
    /// `on_failure: retry` without one means the DAG.md default.
    pub fn effective_retry(&self) -> RetryPolicy {
        match (self.retry, self.on_failure) {
            (Some(r), _) => r,
            (None, OnFailure::Retry) => RetryPolicy::default(),
            (None, _) => RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
        }
    }

    /// Failures of this step let its dependents run.
    pub fn continues_on_failure(&self) -> bool {
        self.on_failure == OnFailure::Continue
    }
}

impl Dag {
    /// The positions of step `i`'s dependencies, computed once per DAG: the
    /// planner reads them for every pending step of every transition, and a
    /// join of 1,000 branches has 1,000 of them.
    pub fn dependencies(&self, i: usize) -> &[usize] {
        let deps = self.index.deps.get_or_init(|| {
            self.steps
                .iter()
                .map(|s| {
                    s.depends_on
                        .iter()
                        .filter_map(|d| self.step_index(d))
                        .collect()
                })
                .collect()
        });
        deps.get(i).map_or(&[], Vec::as_slice)
    }

    pub fn step_index(&self, id: &str) -> Option<usize> {
        let index = self.index.ids.get_or_init(|| {
            self.steps
                .iter()
                .enumerate()
                .rev() // the first of duplicate ids wins, as a scan would find it
                .map(|(i, s)| (s.id.clone(), i))
                .collect()
        });
        index.get(id).copied()
    }
}
