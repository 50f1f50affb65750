//! Logs: readable lines locally, JSON in production (`LOG_FORMAT=json`).
//! `RUST_LOG` overrides the default filter.
//!
//! Readable lines are coloured only when they go to a terminal (and
//! `NO_COLOR` is unset): a log redirected to a file or collected by a
//! container runtime holds plain text, not escape sequences.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colours_wanted(std::io::stdout().is_terminal()));
    // A second init (tests start several apps in one process) is harmless.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// Colour only on a terminal, and never with `NO_COLOR` set (no-color.org).
pub fn colours_wanted(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
