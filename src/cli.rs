//! The command line: `serve` (the default), `migrate`, `validate FILE`,
//! `--help`. Three subcommands do not warrant an argument-parsing crate.

use std::process::ExitCode;

use crate::config::{self, Settings};

pub enum Command {
    Serve,
    Migrate,
    Validate(String),
    Help,
    Version,
}

pub fn parse(args: &[String]) -> Result<Command, String> {
    match args {
        [] => Ok(Command::Serve),
        [flag, ..] if flag == "--help" || flag == "-h" || flag == "help" => Ok(Command::Help),
        [flag] if flag == "--version" || flag == "-V" => Ok(Command::Version),
        [cmd] if cmd == "serve" => Ok(Command::Serve),
        [cmd] if cmd == "migrate" => Ok(Command::Migrate),
        [cmd, file] if cmd == "validate" => Ok(Command::Validate(file.clone())),
        [cmd] if cmd == "validate" => {
            Err("validate needs a file: budpipeline validate FILE.json|yaml".into())
        }
        other => Err(format!("unknown arguments: {}", other.join(" "))),
    }
}

pub fn usage() -> String {
    let mut out = String::from(
        "budpipeline: durable DAG workflow engine for Bud Runtime\n\n\
         USAGE:\n    budpipeline [COMMAND]\n\n\
         COMMANDS:\n\
         \x20   serve            run the service (the default)\n\
         \x20   migrate          apply database migrations and exit\n\
         \x20   validate FILE    check a workflow document (JSON or YAML) offline; exit 1 on errors\n\
         \x20   --help           print this help\n\
         \x20   --version        print the version\n\n\
         ENVIRONMENT:\n",
    );
    for (name, default, meaning) in config::VARIABLES {
        out.push_str(&format!("    {name:<36} {meaning} (default: {default})\n"));
    }
    out.push_str("    RUST_LOG                             log filter (default: info,sqlx=warn)\n");
    out.push_str("\nTRACING (standard OpenTelemetry variables; see README \"Tracing\"):\n");
    for (name, default, meaning) in crate::telemetry::VARIABLES {
        out.push_str(&format!("    {name:<36} {meaning} (default: {default})\n"));
    }
    out
}

/// `budpipeline validate FILE`: the same checks and messages as the API.
pub fn validate_file(path: &str) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    let lower = path.to_ascii_lowercase();
    let parsed: Result<serde_json::Value, String> =
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            serde_norway::from_str(&text).map_err(|e| e.to_string())
        } else {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        };
    let doc = match parsed {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{path}: not a valid document: {e}");
            return ExitCode::from(2);
        }
    };
    // A workflow file may be the DAG itself or a request body `{"dag": ...}`.
    let dag = match doc.get("dag") {
        Some(inner) if doc.get("steps").is_none() => inner.clone(),
        _ => doc,
    };
    let settings = Settings::from_lookup(|name| match name {
        "DATABASE_URL" => Some("postgres://offline/validate".into()),
        other => std::env::var(other).ok(),
    });
    let settings = match settings {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let dapr = crate::dapr::DaprClient::new(&settings);
    let registry = crate::startup::registry(&settings, &dapr);
    let report = crate::dag::validate::validate(&dag, &registry);
    for w in &report.warnings {
        println!("warning: {w}");
    }
    if report.errors.is_empty() && report.dag.is_some() {
        println!("{path}: valid");
        ExitCode::SUCCESS
    } else {
        for e in &report.errors {
            println!("error: {e}");
        }
        println!("{path}: {} error(s)", report.errors.len());
        ExitCode::from(1)
    }
}
