//! The integration tests, in one binary: the service's dependencies are
//! linked once instead of once per file, and the stand-ins of
//! `tests/support/` are shared by every module. Each module is one area
//! (`cargo test --test it api_errors::` runs one). `tests/wakeups.rs` stays
//! its own binary: it measures a latency, which must not be taken while the
//! replica tests here load the machine.

#[path = "../support/mod.rs"]
mod support;

mod api_errors;
mod api_ops;
mod api_workflows;
mod bud_actions;
mod bud_events;
mod budapp_compat;
mod cli;
mod connections;
mod crash;
mod dag_props;
mod dapr_client;
mod dapr_flow;
mod docs;
mod engine_control;
mod engine_semantics;
mod examples;
mod first_run;
mod hardening;
mod import_legacy;
mod inline;
mod manifests;
mod paging;
mod replicas;
mod schedule_replicas;
mod schema;
mod service_props;
mod shutdown;
mod smoke;
mod telemetry;
mod template_bombs;
mod triggers;
