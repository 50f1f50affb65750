//! `budpipeline run FILE`: create or update the workflow by name, execute
//! it, and follow it to its end; and [`follow`], the live view that `run`,
//! `executions watch` and `executions retry` share.
//!
//! On a terminal the view redraws in place a few times a second: a title,
//! a progress bar, and the steps as a tree with their states. Anywhere else
//! (a pipe, a file, CI) it prints one line per step change instead, without
//! escape sequences. Either way it ends with the final state and the
//! outputs, and the exit status says how the execution ended.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Map, Value, json};

use super::client::{CliError, Client};
use super::render::{self, Line, Paint};
use super::{RunArgs, load_document, offline_registry};
use crate::dag::params::expected_json_type;

/// How often the execution is read while it runs.
const POLL: Duration = Duration::from_millis(250);
/// How long the view waits for a service that stopped answering (it may be
/// restarting) before giving up.
const RECONNECT_FOR: Duration = Duration::from_secs(60);

pub(crate) async fn command(args: RunArgs) -> Result<ExitCode, CliError> {
    let doc = load_document(&args.file).map_err(CliError::Usage)?;
    if !doc.is_object() {
        return Err(CliError::Usage(format!(
            "{}: a workflow document is a JSON or YAML object",
            args.file
        )));
    }
    let name = args
        .name
        .clone()
        .or_else(|| doc["name"].as_str().map(str::to_owned))
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{}: the workflow has no name: add `name:` to it or pass --name",
                args.file
            ))
        })?;
    let parameters = parameters(&doc, &args.params);
    let client = Client::new(&args.remote)?;
    let workflow = upsert(&client, &doc, &name).await?;
    let workflow_id = workflow["id"].as_str().unwrap_or_default().to_owned();
    let started = client
        .post(
            &format!("/workflows/{workflow_id}/execute"),
            json!({"parameters": parameters, "initiator": "cli"}),
        )
        .await?;
    let execution_id = started["execution_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if !args.watch {
        println!("execution {execution_id} started");
        println!("follow it with: budpipeline executions watch {execution_id}");
        return Ok(ExitCode::SUCCESS);
    }
    let title = format!(
        "{name} v{} · execution {execution_id}",
        workflow["version"].as_i64().unwrap_or(0)
    );
    let last = follow(&client, &execution_id, Some(&workflow["dag"]), &title).await?;
    Ok(finish(&last))
}

/// `--param NAME=VALUE` values: a parameter the document declares as a
/// string (or an unknown type, which is a string) takes the text as is;
/// any other value is read as JSON when it is JSON (`3`, `true`,
/// `{"a": 1}`, `[1, 2]`) and is text otherwise.
pub(crate) fn parameters(doc: &Value, given: &[(String, String)]) -> Map<String, Value> {
    let declared: HashMap<&str, &str> = doc["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["name"].as_str()?, p["type"].as_str().unwrap_or("string"))))
        .collect();
    let mut out = Map::new();
    for (name, text) in given {
        let value = match declared.get(name.as_str()) {
            Some(kind) if expected_json_type(kind) == "string" => Value::String(text.clone()),
            _ => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone())),
        };
        out.insert(name.clone(), value);
    }
    out
}

/// The live workflow named `name` (and owned by nobody, as the command line
/// creates them), updated to `doc` when its latest version differs;
/// created when there is none.
async fn upsert(client: &Client, doc: &Value, name: &str) -> Result<Value, CliError> {
    let found = client
        .get_query(
            "/workflows",
            &[("name", name.to_owned()), ("limit", "100".to_owned())],
        )
        .await?;
    let existing = found["workflows"]
        .as_array()
        .and_then(|list| list.iter().find(|w| w["created_by"].is_null()).cloned());
    let body = json!({"dag": doc, "name": name});
    let Some(existing) = existing else {
        let created = client.post("/workflows", body).await?;
        println!(
            "created workflow {name} ({}), version 1",
            created["id"].as_str().unwrap_or("?")
        );
        return Ok(created);
    };
    let id = existing["id"].as_str().unwrap_or_default();
    if normalized(doc).is_some_and(|local| local == existing["dag"]) {
        println!(
            "workflow {name} ({id}) version {} is up to date",
            existing["version"]
        );
        return Ok(existing);
    }
    let updated = client.put(&format!("/workflows/{id}"), body).await?;
    println!(
        "updated workflow {name} ({id}) to version {}",
        updated["version"]
    );
    Ok(updated)
}

/// The document as the service stores it (validated, defaults filled in),
/// when this version of the program can validate it.
fn normalized(doc: &Value) -> Option<Value> {
    let report = crate::dag::validate::validate(doc, &offline_registry());
    report.dag.and_then(|dag| serde_json::to_value(dag).ok())
}

/// Prints how the execution ended and its outputs; the exit status: 0 for
/// COMPLETED, 1 otherwise.
pub(crate) fn finish(execution: &Value) -> ExitCode {
    let colour = render::colour_stdout();
    let status = execution["status"].as_str().unwrap_or("?");
    let mut line = Line::new()
        .push("execution ", Paint::Plain)
        .push(
            execution["execution_id"].as_str().unwrap_or("?"),
            Paint::Plain,
        )
        .push(" ", Paint::Plain)
        .push(status, render::status_paint(status));
    let span = (
        render::timestamp(&execution["created_at"]),
        render::timestamp(&execution["completed_at"]),
    );
    if let (Some(from), Some(to)) = span {
        let seconds = (to - from).num_milliseconds() as f64 / 1000.0;
        line = line.push(format!(" in {}", render::duration(seconds)), Paint::Plain);
    }
    println!("{}", line.render(None, colour));
    if let Some(error) = execution["error"].as_str() {
        println!(
            "{}",
            Line::new()
                .push(format!("error: {error}"), Paint::Red)
                .render(None, colour)
        );
    }
    print_outputs(&execution["outputs"]);
    if status == "COMPLETED" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

pub(crate) fn print_outputs(outputs: &Value) {
    let empty = outputs.as_object().is_none_or(Map::is_empty);
    if !empty {
        println!("outputs:");
        let text = serde_json::to_string_pretty(outputs).unwrap_or_default();
        for line in text.lines() {
            println!("  {line}");
        }
    }
}

/// Follows an execution until it is COMPLETED, FAILED or CANCELLED and
/// returns its last state. `dag` (the DAG of the execution's version) draws
/// the steps as a tree. Ctrl-C stops watching, not the execution.
pub(crate) async fn follow(
    client: &Client,
    id: &str,
    dag: Option<&Value>,
    title: &str,
) -> Result<Value, CliError> {
    let mut view = View::new(title);
    let mut lost: Option<Instant> = None;
    loop {
        match client.get(&format!("/executions/{id}")).await {
            Ok(execution) => {
                if lost.take().is_some() {
                    view.note("", dag);
                }
                view.show(&execution, dag);
                if render::is_terminal_status(execution["status"].as_str().unwrap_or("")) {
                    return Ok(execution);
                }
            }
            // Not answering, or answering 5xx: a restart, a database
            // failover. The execution goes on; keep reading for a while.
            Err(e @ (CliError::Unreachable { .. } | CliError::Api { status: 500.., .. })) => {
                let since = *lost.get_or_insert_with(Instant::now);
                if since.elapsed() > RECONNECT_FOR {
                    return Err(e);
                }
                view.note("the service does not answer; trying again…", dag);
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = tokio::signal::ctrl_c() => {
                println!("stopped watching; execution {id} goes on (budpipeline executions show {id})");
                return Err(CliError::Interrupted);
            }
        }
    }
}

/// The live view: redrawn frames on a terminal, change lines elsewhere.
struct View {
    title: String,
    terminal: bool,
    colour: bool,
    /// Lines of the frame on screen (terminal mode).
    drawn: usize,
    /// Each step's last (status, attempt, waiting) printed (line mode).
    seen: HashMap<String, (String, i64, bool)>,
    started: Instant,
    /// A line shown under the frame (terminal) or printed once (lines).
    note: Option<String>,
    /// The execution as last read (to redraw it with a note).
    last: Option<Value>,
}

impl View {
    fn new(title: &str) -> Self {
        let terminal = std::io::stdout().is_terminal();
        let view = Self {
            title: title.to_owned(),
            terminal,
            colour: render::colour_stdout(),
            drawn: 0,
            seen: HashMap::new(),
            started: Instant::now(),
            note: None,
            last: None,
        };
        if !terminal {
            println!("{title}");
        }
        view
    }

    /// A line under the frame (terminal), or printed once (lines); empty
    /// clears it.
    fn note(&mut self, text: &str, dag: Option<&Value>) {
        let text = (!text.is_empty()).then(|| text.to_owned());
        if text == self.note {
            return;
        }
        self.note = text;
        if self.terminal {
            if let Some(last) = self.last.clone() {
                self.draw(&last, dag);
            }
        } else if let Some(text) = &self.note {
            println!("{text}");
        }
    }

    fn show(&mut self, execution: &Value, dag: Option<&Value>) {
        self.last = Some(execution.clone());
        if self.terminal {
            self.draw(execution, dag);
        } else {
            self.print_changes(execution);
        }
    }

    /// Replaces the frame on screen: back to its first line, clear to the
    /// end of the screen, draw the new one, every line cut to the width.
    fn draw(&mut self, execution: &Value, dag: Option<&Value>) {
        let (columns, rows) = render::terminal_size().unwrap_or((80, 24));
        let width = columns.saturating_sub(1).max(20);
        let now = Utc::now();
        let mut frame = vec![Line::new().push(self.title.clone(), Paint::Bold)];
        frame.push(render::progress_line(
            execution,
            width.saturating_sub(40).clamp(10, 40),
            now,
        ));
        let mut tree = render::step_tree(execution, dag, now);
        let room = rows.saturating_sub(4).max(3);
        if tree.len() > room {
            let hidden = tree.len() - (room - 1);
            tree.truncate(room - 1);
            tree.push(Line::new().push(format!("   … {hidden} more steps"), Paint::Dim));
        }
        frame.extend(tree);
        if let Some(note) = &self.note {
            frame.push(Line::new().push(note.clone(), Paint::Yellow));
        }
        let mut out = String::new();
        if self.drawn > 0 {
            out.push_str(&format!("\x1b[{}F\x1b[J", self.drawn));
        }
        for line in &frame {
            out.push_str(&line.render(Some(width), self.colour));
            out.push('\n');
        }
        self.drawn = frame.len();
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }

    /// One line per step whose state changed since the last read.
    fn print_changes(&mut self, execution: &Value) {
        let percent = execution["progress_percentage"].as_f64().unwrap_or(0.0);
        let elapsed = self.started.elapsed().as_secs_f64();
        for step in execution["steps"].as_array().into_iter().flatten() {
            let id = step["step_id"].as_str().unwrap_or("?").to_owned();
            let status = step["status"].as_str().unwrap_or("?").to_owned();
            let attempt = step["attempt"].as_i64().unwrap_or(0);
            let waiting = step["awaiting_event"].as_bool().unwrap_or(false);
            let state = (status.clone(), attempt, waiting);
            let first = !self.seen.contains_key(&id);
            if self.seen.get(&id) == Some(&state) || (first && status == "PENDING" && attempt == 0)
            {
                self.seen.insert(id, state);
                continue;
            }
            self.seen.insert(id.clone(), state);
            let mut text = format!(
                "{:>7}  [{percent:>3.0}%]  {id}  {status}",
                render::duration(elapsed)
            );
            if attempt > 1 {
                text.push_str(&format!("  attempt {attempt}"));
            }
            let span = (
                render::timestamp(&step["started_at"]),
                render::timestamp(&step["completed_at"]),
            );
            if let (Some(from), Some(to)) = span {
                let seconds = (to - from).num_milliseconds() as f64 / 1000.0;
                text.push_str(&format!("  {}", render::duration(seconds)));
            }
            if waiting {
                text.push_str(&format!(
                    "  waiting for event {}",
                    step["external_workflow_id"].as_str().unwrap_or("?")
                ));
            }
            if let Some(reason) = step["skip_reason"].as_str() {
                text.push_str(&format!("  ({reason})"));
            }
            if let Some(error) = step["error"].as_str() {
                text.push_str(&format!("  error: {error}"));
            }
            println!("{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_follow_the_declared_types() {
        let doc = json!({"parameters": [
            {"name": "label", "type": "string"},
            {"name": "cluster", "type": "cluster_ref"},
            {"name": "count", "type": "integer"},
            {"name": "config", "type": "object"},
        ]});
        let given: Vec<(String, String)> = [
            ("label", "42"),
            ("cluster", "true"),
            ("count", "3"),
            ("config", r#"{"replicas": 2}"#),
            ("extra", "hello"),
            ("flag", "false"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(
            Value::Object(parameters(&doc, &given)),
            json!({"label": "42", "cluster": "true", "count": 3,
                   "config": {"replicas": 2}, "extra": "hello", "flag": false})
        );
    }
}
