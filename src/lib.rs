//! budpipeline: a durable DAG workflow engine for Bud Runtime.
//!
//! A tour:
//! - [`config`]: settings from the environment, checked at start-up.
//! - [`dag`]: the workflow document, its validation and templating.
//! - [`actions`]: what steps do, behind the `StepHandler` trait.
//! - [`engine`]: Postgres-backed execution: claims, leases, completions, timers.
//! - [`dapr`]: the sidecar client (invoke with retry and circuit breaker), budcluster, the outbox publisher.
//! - [`http`]: the axum API.
//! - [`legacy`]: `import-legacy`, copying the Python budpipeline's data.
//! - [`startup`]: wires it all into a running service.

pub mod actions;
pub(crate) mod causes;
pub mod cli;
pub mod config;
pub mod dag;
pub mod dapr;
pub mod db;
pub mod engine;
pub(crate) mod http;
pub(crate) mod legacy;
pub(crate) mod metrics;
pub mod startup;
pub mod telemetry;
