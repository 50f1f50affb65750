//! Test stand-ins shared by the integration tests: real HTTP servers on
//! 127.0.0.1 that play the Dapr sidecar ([`sidecar::FakeSidecar`]) and
//! budcluster ([`budcluster::FakeBudcluster`]), and [`cluster`]: helpers
//! for the tests that run the real binary as replicas (a slow sidecar,
//! history checks over `step_attempts`, load DAGs), and [`cli`]: the
//! binary as a command line client of a running service.
//!
//! Include with `mod support;` in a test file. Typical wiring:
//!
//! ```ignore
//! let budcluster = FakeBudcluster::start().await;
//! let sidecar = FakeSidecar::start(budcluster.url()).await;
//! let settings = support::settings(sidecar.url(), &[("NOTIFY_TOPIC", "notifications")]);
//! ```

#![allow(dead_code)]

pub(crate) mod app;
pub(crate) mod bud;
pub(crate) mod budcluster;
pub(crate) mod cli;
pub(crate) mod cluster;
pub(crate) mod events;
pub(crate) mod sidecar;
pub(crate) mod views;

use budpipeline::config::Settings;

/// Settings that talk to the sidecar at `dapr_url`, with `vars` on top.
/// `DATABASE_URL` defaults to a dummy (pass a real one in `vars` when the
/// test needs a database).
pub(crate) fn settings(dapr_url: &str, vars: &[(&str, &str)]) -> Settings {
    let lookup = |name: &str| {
        vars.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
            .or_else(|| match name {
                "DATABASE_URL" => Some("postgres://x/y".to_owned()),
                "DAPR_HTTP_ENDPOINT" => Some(dapr_url.to_owned()),
                _ => None,
            })
    };
    Settings::from_lookup(lookup).expect("valid test settings")
}
