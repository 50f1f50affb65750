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

use axum::Router;
use budpipeline::config::Settings;
use serde_json::Value;
use tokio::task::JoinHandle;

/// Serve `app` on `127.0.0.1:<a free port>` until the task is aborted:
/// its `http://127.0.0.1:<port>` and the task. `what` names the stand-in
/// in the panic if no port is free.
pub(crate) async fn serve(app: Router, what: &str) -> (String, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind the {what}: {e}"));
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    (url, task)
}

/// A request body as a stand-in records it: its JSON, `Null` when empty,
/// a string when not JSON.
pub(crate) fn recorded_body(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// Decode `%XX` escapes; in a query, `+` is a space too.
pub(crate) fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', _) if plus_is_space => out.push(b' '),
            (byte, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

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
