//! The command line. One binary is both the service and its client:
//!
//! - the service: `serve` (the default), `migrate`;
//! - offline tools: `validate FILE`, `docs …` (the generated documentation);
//! - a client of a running service: `run FILE` (create or update the
//!   workflow, execute it, watch it to the end) and `executions
//!   show|list|watch|cancel|retry`.
//!
//! A dozen subcommands and flags do not warrant an argument-parsing crate;
//! [`parse`] is a plain match over the words, and every mistake is a usage
//! error (exit 2) that names the word.

pub(crate) mod client;
pub mod docs;
pub(crate) mod executions;
pub(crate) mod render;
pub(crate) mod run;

use std::process::ExitCode;

use serde_json::Value;

use crate::config::{self, Settings};

pub enum Command {
    Serve,
    Migrate,
    Validate(String),
    Help,
    Version,
    /// `run FILE [--param k=v …]`: see [`run`].
    Run(RunArgs),
    /// `executions show|list|watch|cancel|retry`: see [`executions`].
    Executions(Remote, ExecutionsCommand),
    /// `docs actions|configuration|openapi|write DIR`: see [`docs`].
    Docs(DocsCommand),
    /// `import-legacy --from URL`: the original budpipeline's database.
    ImportLegacy(String),
}

/// Where the service is and the token to send; flags given on the command
/// line (the environment and defaults are applied by [`client::Client`]).
#[derive(Debug, Clone, Default)]
pub struct Remote {
    pub url: Option<String>,
    pub token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RunArgs {
    pub file: String,
    /// `--param k=v`, in order (a later one wins).
    pub params: Vec<(String, String)>,
    /// `--name`: store the workflow under this name instead of the DAG's.
    pub name: Option<String>,
    /// `--no-watch`: print the execution id and return at once.
    pub watch: bool,
    pub remote: Remote,
}

#[derive(Debug, Clone)]
pub enum ExecutionsCommand {
    Show {
        id: String,
        json: bool,
    },
    List {
        workflow: Option<String>,
        status: Option<String>,
        limit: u32,
        json: bool,
    },
    Watch {
        id: String,
    },
    Cancel {
        id: String,
    },
    Retry {
        id: String,
        watch: bool,
    },
}

#[derive(Debug, Clone)]
pub enum DocsCommand {
    Actions,
    Configuration,
    Openapi,
    /// Write every generated file into this directory.
    Write(String),
}

/// The words of a command line after the subcommand: positional words,
/// `--flag value` (or `--flag=value`) pairs and bare switches.
#[derive(Default)]
struct Words {
    positional: Vec<String>,
    values: Vec<(&'static str, String)>,
    switches: Vec<&'static str>,
}

/// Flags that take a value, with their short forms.
const VALUE_FLAGS: &[(&str, &str)] = &[
    ("--url", ""),
    ("--token", ""),
    ("--param", "-p"),
    ("--name", ""),
    ("--workflow", ""),
    ("--status", ""),
    ("--limit", ""),
];
const SWITCHES: &[&str] = &["--json", "--no-watch"];

impl Words {
    fn split(args: &[String]) -> Result<Self, String> {
        let mut words = Self::default();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
                _ => (arg.as_str(), None),
            };
            if let Some((long, _)) = VALUE_FLAGS
                .iter()
                .find(|(long, short)| flag == *long || (!short.is_empty() && flag == *short))
            {
                let value = match inline {
                    Some(v) => v,
                    None => iter
                        .next()
                        .cloned()
                        .ok_or_else(|| format!("{long} needs a value"))?,
                };
                words.values.push((long, value));
            } else if let Some(switch) = SWITCHES.iter().find(|s| **s == flag) {
                words.switches.push(switch);
            } else if arg.starts_with('-') && arg.len() > 1 {
                return Err(format!("unknown option {arg}"));
            } else {
                words.positional.push(arg.clone());
            }
        }
        Ok(words)
    }

    /// Refuses any flag the subcommand does not take.
    fn only(&self, command: &str, allowed: &[&str]) -> Result<(), String> {
        let used = self
            .values
            .iter()
            .map(|(f, _)| *f)
            .chain(self.switches.iter().copied());
        for flag in used {
            if !allowed.contains(&flag) {
                return Err(format!("{command} does not take {flag}"));
            }
        }
        Ok(())
    }

    fn value(&self, flag: &str) -> Option<String> {
        self.values
            .iter()
            .rev()
            .find(|(f, _)| *f == flag)
            .map(|(_, v)| v.clone())
    }

    fn switch(&self, flag: &str) -> bool {
        self.switches.contains(&flag)
    }

    fn remote(&self) -> Remote {
        Remote {
            url: self.value("--url"),
            token: self.value("--token"),
        }
    }
}

pub fn parse(args: &[String]) -> Result<Command, String> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(Command::Help);
    }
    let Some((first, rest)) = args.split_first() else {
        return Ok(Command::Serve);
    };
    match first.as_str() {
        "help" => Ok(Command::Help),
        "--version" | "-V" | "version" if rest.is_empty() => Ok(Command::Version),
        "serve" if rest.is_empty() => Ok(Command::Serve),
        "migrate" if rest.is_empty() => Ok(Command::Migrate),
        "validate" => match rest {
            [file] => Ok(Command::Validate(file.clone())),
            [] => Err("validate needs a file: budpipeline validate FILE.json|yaml".into()),
            _ => Err(format!("validate takes one file, not: {}", rest.join(" "))),
        },
        "run" => parse_run(rest),
        "executions" | "execution" | "exec" => match rest.split_first() {
            Some((sub, rest)) => parse_executions(sub, rest),
            None => Err("executions needs a command: show, list, watch, cancel or retry".into()),
        },
        // Short forms: `budpipeline show ID` is `budpipeline executions show ID`.
        sub @ ("show" | "list" | "watch" | "cancel" | "retry") => parse_executions(sub, rest),
        "docs" => parse_docs(rest),
        "import-legacy" => crate::legacy::from_arg(rest).map(Command::ImportLegacy),
        _ => Err(format!("unknown arguments: {}", args.join(" "))),
    }
}

fn parse_run(rest: &[String]) -> Result<Command, String> {
    let words = Words::split(rest)?;
    words.only(
        "run",
        &["--url", "--token", "--param", "--name", "--no-watch"],
    )?;
    let file = match words.positional.as_slice() {
        [file] => file.clone(),
        [] => return Err("run needs a workflow file: budpipeline run FILE [--param k=v …]".into()),
        more => return Err(format!("run takes one file, not: {}", more.join(" "))),
    };
    let mut params = Vec::new();
    for (flag, value) in &words.values {
        if *flag == "--param" {
            match value.split_once('=') {
                Some((k, v)) if !k.is_empty() => params.push((k.to_owned(), v.to_owned())),
                _ => return Err(format!("--param takes NAME=VALUE, not '{value}'")),
            }
        }
    }
    Ok(Command::Run(RunArgs {
        file,
        params,
        name: words.value("--name"),
        watch: !words.switch("--no-watch"),
        remote: words.remote(),
    }))
}

fn parse_executions(sub: &str, rest: &[String]) -> Result<Command, String> {
    let words = Words::split(rest)?;
    let one_id = |words: &Words| match words.positional.as_slice() {
        [id] => Ok(id.clone()),
        [] => Err(format!("{sub} needs an execution id")),
        more => Err(format!(
            "{sub} takes one execution id, not: {}",
            more.join(" ")
        )),
    };
    let command = match sub {
        "show" => {
            words.only("show", &["--url", "--token", "--json"])?;
            ExecutionsCommand::Show {
                id: one_id(&words)?,
                json: words.switch("--json"),
            }
        }
        "list" => {
            words.only(
                "list",
                &[
                    "--url",
                    "--token",
                    "--json",
                    "--workflow",
                    "--status",
                    "--limit",
                ],
            )?;
            if let Some(extra) = words.positional.first() {
                return Err(format!("list takes no arguments, not: {extra}"));
            }
            let limit = match words.value("--limit") {
                None => 20,
                Some(v) => v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| format!("--limit must be 1 to 1000, not '{v}'"))?,
            };
            ExecutionsCommand::List {
                workflow: words.value("--workflow"),
                status: words.value("--status"),
                limit,
                json: words.switch("--json"),
            }
        }
        "watch" => {
            words.only("watch", &["--url", "--token"])?;
            ExecutionsCommand::Watch {
                id: one_id(&words)?,
            }
        }
        "cancel" => {
            words.only("cancel", &["--url", "--token"])?;
            ExecutionsCommand::Cancel {
                id: one_id(&words)?,
            }
        }
        "retry" => {
            words.only("retry", &["--url", "--token", "--no-watch"])?;
            ExecutionsCommand::Retry {
                id: one_id(&words)?,
                watch: !words.switch("--no-watch"),
            }
        }
        other => {
            return Err(format!(
                "unknown executions command '{other}': show, list, watch, cancel or retry"
            ));
        }
    };
    Ok(Command::Executions(words.remote(), command))
}

fn parse_docs(rest: &[String]) -> Result<Command, String> {
    let words: Vec<&str> = rest.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["actions"] => Ok(Command::Docs(DocsCommand::Actions)),
        ["configuration"] => Ok(Command::Docs(DocsCommand::Configuration)),
        ["openapi"] => Ok(Command::Docs(DocsCommand::Openapi)),
        ["write", dir] => Ok(Command::Docs(DocsCommand::Write((*dir).to_owned()))),
        ["write"] => Ok(Command::Docs(DocsCommand::Write("docs".to_owned()))),
        _ => Err("docs takes one of: actions, configuration, openapi, write [DIR]".into()),
    }
}

pub fn usage() -> String {
    let mut out = String::from(
        "budpipeline: durable DAG workflow engine for Bud Runtime\n\n\
         USAGE:\n    budpipeline [COMMAND] [OPTIONS]\n\n\
         SERVICE:\n\
         \x20   serve                    run the service (the default)\n\
         \x20   migrate                  apply database migrations and exit\n\n\
         CLIENT (talks to a running service):\n\
         \x20   run FILE [--param NAME=VALUE …] [--name NAME] [--no-watch]\n\
         \x20                            create or update the workflow of FILE (JSON or YAML) by name,\n\
         \x20                            execute it and show its steps live until it ends\n\
         \x20   executions show ID [--json]    the execution's steps as a tree: state, attempts,\n\
         \x20                                  timings, awaited event, error\n\
         \x20   executions list [--workflow ID|NAME] [--status S] [--limit N] [--json]\n\
         \x20   executions watch ID            follow an execution live until it ends\n\
         \x20   executions cancel ID           cancel a pending or running execution\n\
         \x20   executions retry ID [--no-watch]  re-run what failed, then watch it\n\
         \x20   (show, list, watch, cancel and retry also work without `executions`)\n\n\
         \x20   --url URL      the service (default $BUDPIPELINE_URL, else http://127.0.0.1:$APP_PORT, port 8010)\n\
         \x20   --token TOKEN  sent as dapr-api-token (default $BUDPIPELINE_TOKEN, else $APP_API_TOKEN,\n\
         \x20                  else the token `make run` keeps in target/dev-app-api-token)\n\n\
         \x20   Exit status: 0 done (an execution that ended COMPLETED), 1 an execution that ended\n\
         \x20   FAILED or CANCELLED, or a request the service refused; 2 a usage error, an unreadable\n\
         \x20   file, or a service that cannot be reached or refuses the token.\n\n\
         OFFLINE:\n\
         \x20   validate FILE            check a workflow document (JSON or YAML); exit 1 on errors\n\
         \x20   docs actions|configuration|openapi\n\
         \x20                            print generated documentation (`docs write [DIR]` writes\n\
         \x20                            docs/actions.md, docs/configuration.md, docs/openapi.json)\n\
         \x20   import-legacy --from URL copy the Python budpipeline's pipelines and finished\n\
         \x20                            executions (ids kept; safe to run again) into DATABASE_URL\n\
         \x20   --help                   print this help\n\
         \x20   --version                print the version\n\n\
         ENVIRONMENT (the service):\n",
    );
    for (name, default, meaning) in config::VARIABLES {
        out.push_str(&format!("    {name:<36} {meaning} (default: {default})\n"));
    }
    let aliases: Vec<String> = config::ALIASES
        .iter()
        .map(|(ours, theirs)| format!("{theirs} for {ours}"))
        .collect();
    out.push_str(&format!(
        "    (Bud's Helm chart's names, read when ours are unset: {}, DAPR_HTTP_PORT for \
         DAPR_HTTP_ENDPOINT, and PSQL_HOST, PSQL_PORT, PSQL_DB_NAME, PSQL_USER and PSQL_PASSWORD \
         for DATABASE_URL)\n",
        aliases.join(", ")
    ));
    out.push_str("    RUST_LOG                             log filter (default: info,sqlx=warn)\n");
    out.push_str(
        "    NO_COLOR                             set: no colours in logs and CLI output\n",
    );
    out.push_str("\nTRACING (standard OpenTelemetry variables; see README \"Tracing\"):\n");
    for (name, default, meaning) in crate::telemetry::VARIABLES {
        out.push_str(&format!("    {name:<36} {meaning} (default: {default})\n"));
    }
    out
}

/// Runs the commands that are not the service itself (`main` runs `serve`
/// and `migrate`).
pub fn execute(command: Command) -> ExitCode {
    match command {
        Command::Help => {
            print!("{}", usage());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("budpipeline {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Validate(path) => validate_file(&path),
        Command::Docs(what) => docs::command(&what),
        Command::ImportLegacy(from) => crate::legacy::run(&from),
        Command::Run(args) => client::block_on(run::command(args)),
        Command::Executions(remote, what) => client::block_on(executions::command(remote, what)),
        Command::Serve | Command::Migrate => {
            eprintln!("budpipeline: serve and migrate run the service, not the client");
            ExitCode::from(2)
        }
    }
}

/// A workflow document from a JSON or YAML file: the DAG itself, or a
/// request body `{"dag": …}` (then its DAG).
pub fn load_document(path: &str) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let lower = path.to_ascii_lowercase();
    let parsed: Result<Value, String> = if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        serde_norway::from_str(&text).map_err(|e| e.to_string())
    } else {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    };
    let doc = parsed.map_err(|e| format!("{path}: not a valid document: {e}"))?;
    Ok(match doc.get("dag") {
        Some(inner) if doc.get("steps").is_none() => inner.clone(),
        _ => doc,
    })
}

/// The actions this version knows, built without a database or a sidecar
/// (for `validate` and the generated documentation). Only `DATABASE_URL`
/// is set, so the result does not depend on the caller's environment.
pub fn offline_registry() -> crate::actions::Registry {
    let settings = Settings::from_lookup(|name| match name {
        "DATABASE_URL" => Some("postgres://offline/budpipeline".into()),
        _ => None,
    })
    .expect("the default settings are valid");
    let dapr = crate::dapr::DaprClient::new(&settings);
    crate::startup::registry(&settings, &dapr)
}

/// `budpipeline validate FILE`: the same checks and messages as the API.
pub fn validate_file(path: &str) -> ExitCode {
    let dag = match load_document(path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &str) -> Vec<String> {
        words.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn run_takes_params_name_and_connection_flags() {
        let Ok(Command::Run(run)) = parse(&args(
            "run ex.yaml --param a=1 -p b=x=y --param=c= --name n --url http://h:1 --token t",
        )) else {
            panic!("a run command");
        };
        assert_eq!(run.file, "ex.yaml");
        assert_eq!(
            run.params,
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "x=y".to_owned()),
                ("c".to_owned(), String::new())
            ]
        );
        assert_eq!(run.name.as_deref(), Some("n"));
        assert!(run.watch);
        assert_eq!(run.remote.url.as_deref(), Some("http://h:1"));
        assert_eq!(run.remote.token.as_deref(), Some("t"));
    }

    #[test]
    fn mistakes_are_usage_errors_naming_the_word() {
        for (line, expected) in [
            ("run", "run needs a workflow file"),
            ("run a b", "run takes one file"),
            ("run a --param x", "--param takes NAME=VALUE"),
            ("run a --param", "--param needs a value"),
            ("run a --json", "run does not take --json"),
            ("run a --bogus", "unknown option --bogus"),
            ("executions", "executions needs a command"),
            ("executions frob", "unknown executions command 'frob'"),
            ("show", "show needs an execution id"),
            ("list --limit 0", "--limit must be 1 to 1000"),
            ("docs", "docs takes one of"),
            ("serve now", "unknown arguments"),
        ] {
            match parse(&args(line)) {
                Err(e) => assert!(e.contains(expected), "{line}: {e}"),
                Ok(_) => panic!("{line}: accepted"),
            }
        }
    }

    #[test]
    fn short_forms_and_help() {
        assert!(matches!(
            parse(&args("show abc --json")),
            Ok(Command::Executions(
                _,
                ExecutionsCommand::Show { json: true, .. }
            ))
        ));
        assert!(matches!(
            parse(&args("executions retry abc --no-watch")),
            Ok(Command::Executions(
                _,
                ExecutionsCommand::Retry { watch: false, .. }
            ))
        ));
        assert!(matches!(parse(&args("run x --help")), Ok(Command::Help)));
        assert!(matches!(parse(&[]), Ok(Command::Serve)));
    }
}
