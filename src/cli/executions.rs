//! `budpipeline executions show|list|watch|cancel|retry`.

use std::collections::HashMap;
use std::process::ExitCode;

use chrono::Utc;
use serde_json::{Value, json};

use super::client::{CliError, Client};
use super::render::{self, Line, Paint};
use super::run::{finish, follow, print_outputs};
use super::{ExecutionsCommand, Remote};

pub(crate) async fn command(remote: Remote, what: ExecutionsCommand) -> Result<ExitCode, CliError> {
    let client = Client::new(&remote)?;
    match what {
        ExecutionsCommand::Show { id, json } => {
            let execution = client
                .get(&format!("/executions/{}", checked(&id)?))
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&execution).unwrap_or_default()
                );
            } else {
                let workflow = workflow_of(&client, &execution).await;
                show(&execution, workflow.as_ref());
            }
            Ok(ExitCode::SUCCESS)
        }
        ExecutionsCommand::List {
            workflow,
            status,
            limit,
            json,
        } => list(&client, workflow, status, limit, json).await,
        ExecutionsCommand::Watch { id } => {
            let execution = client
                .get(&format!("/executions/{}", checked(&id)?))
                .await?;
            watch(&client, &execution).await
        }
        ExecutionsCommand::Cancel { id } => {
            let execution = client
                .post(&format!("/executions/{}/cancel", checked(&id)?), json!({}))
                .await?;
            let workflow = workflow_of(&client, &execution).await;
            show(&execution, workflow.as_ref());
            Ok(ExitCode::SUCCESS)
        }
        ExecutionsCommand::Retry { id, watch: follow } => {
            let execution = client
                .post(&format!("/executions/{}/retry", checked(&id)?), json!({}))
                .await?;
            if follow {
                watch(&client, &execution).await
            } else {
                let workflow = workflow_of(&client, &execution).await;
                show(&execution, workflow.as_ref());
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// An execution id as typed: a UUID, or a usage error before any request.
fn checked(id: &str) -> Result<String, CliError> {
    uuid::Uuid::parse_str(id.trim())
        .map(|u| u.to_string())
        .map_err(|_| CliError::Usage(format!("'{id}' is not an execution id (a UUID)")))
}

async fn watch(client: &Client, execution: &Value) -> Result<ExitCode, CliError> {
    let id = execution["execution_id"].as_str().unwrap_or_default();
    let workflow = workflow_of(client, execution).await;
    let title = format!(
        "{} · execution {id}",
        workflow_label(execution, workflow.as_ref())
    );
    let dag = workflow.as_ref().map(|w| &w["dag"]);
    let last = follow(client, id, dag, &title).await?;
    Ok(finish(&last))
}

/// The workflow at the version the execution runs, when it can still be
/// read (a deleted workflow cannot: its steps are then listed flat).
async fn workflow_of(client: &Client, execution: &Value) -> Option<Value> {
    let id = execution["workflow_id"].as_str()?;
    let version = execution["workflow_version"].as_i64()?;
    client
        .get_query(
            &format!("/workflows/{id}"),
            &[("version", version.to_string())],
        )
        .await
        .ok()
}

/// `name v2`, or the workflow's id when its name is not known.
fn workflow_label(execution: &Value, workflow: Option<&Value>) -> String {
    let version = execution["workflow_version"].as_i64().unwrap_or(0);
    match workflow.and_then(|w| w["name"].as_str()) {
        Some(name) => format!("{name} v{version}"),
        None => format!(
            "workflow {} v{version}",
            execution["workflow_id"].as_str().unwrap_or("?")
        ),
    }
}

fn when(value: &Value) -> String {
    render::timestamp(value).map_or_else(
        || "-".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string(),
    )
}

/// `executions show`: the execution, its steps as a tree, its outputs.
pub(crate) fn show(execution: &Value, workflow: Option<&Value>) {
    let colour = render::colour_stdout();
    let now = Utc::now();
    let status = execution["status"].as_str().unwrap_or("?");
    let (done, all) = render::step_counts(execution);
    let percent = execution["progress_percentage"].as_f64().unwrap_or(0.0);
    let mut lines = vec![
        Line::new()
            .push("execution  ", Paint::Dim)
            .push(
                execution["execution_id"].as_str().unwrap_or("?"),
                Paint::Bold,
            )
            .push("  ", Paint::Plain)
            .push(status, render::status_paint(status))
            .push(format!("  {percent:.0}%  {done}/{all} steps"), Paint::Plain),
        Line::new()
            .push("workflow   ", Paint::Dim)
            .push(workflow_label(execution, workflow), Paint::Plain)
            .push(
                format!("  ({})", execution["workflow_id"].as_str().unwrap_or("?")),
                Paint::Dim,
            ),
    ];
    let mut times = Line::new()
        .push("created    ", Paint::Dim)
        .push(when(&execution["created_at"]), Paint::Plain);
    if let (Some(from), Some(to)) = (
        render::timestamp(&execution["created_at"]),
        render::timestamp(&execution["completed_at"]),
    ) {
        let seconds = (to - from).num_milliseconds() as f64 / 1000.0;
        times = times
            .push("  finished ", Paint::Dim)
            .push(when(&execution["completed_at"]), Paint::Plain)
            .push(format!("  ({})", render::duration(seconds)), Paint::Plain);
    }
    lines.push(times);
    if execution["parameters"]
        .as_object()
        .is_some_and(|p| !p.is_empty())
    {
        lines.push(
            Line::new()
                .push("parameters ", Paint::Dim)
                .push(execution["parameters"].to_string(), Paint::Plain),
        );
    }
    if let Some(initiator) = execution["initiator"].as_str() {
        lines.push(
            Line::new()
                .push("initiator  ", Paint::Dim)
                .push(initiator, Paint::Plain),
        );
    }
    lines.push(Line::new());
    lines.extend(render::step_tree(
        execution,
        workflow.map(|w| &w["dag"]),
        now,
    ));
    for line in &lines {
        println!("{}", line.render(None, colour));
    }
    if let Some(error) = execution["error"].as_str() {
        println!();
        println!(
            "{}",
            Line::new()
                .push(format!("error: {error}"), Paint::Red)
                .render(None, colour)
        );
    }
    if execution["outputs"]
        .as_object()
        .is_some_and(|o| !o.is_empty())
    {
        println!();
    }
    print_outputs(&execution["outputs"]);
}

async fn list(
    client: &Client,
    workflow: Option<String>,
    status: Option<String>,
    limit: u32,
    json: bool,
) -> Result<ExitCode, CliError> {
    let mut query = vec![("limit", limit.to_string())];
    if let Some(w) = workflow {
        query.push(("workflow_id", workflow_id(client, &w).await?));
    }
    if let Some(s) = status {
        query.push(("status", s.to_ascii_uppercase()));
    }
    let answer = client.get_query("/executions", &query).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let executions: Vec<&Value> = answer["executions"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    if executions.is_empty() {
        println!("no executions");
        return Ok(ExitCode::SUCCESS);
    }
    // The name of each workflow, read once.
    let mut names: HashMap<String, String> = HashMap::new();
    for e in &executions {
        let Some(id) = e["workflow_id"].as_str() else {
            continue;
        };
        if !names.contains_key(id) {
            let name = match client.get(&format!("/workflows/{id}")).await {
                Ok(w) => w["name"].as_str().unwrap_or(id).to_owned(),
                Err(_) => format!("{} (deleted)", &id[..8.min(id.len())]),
            };
            names.insert(id.to_owned(), name);
        }
    }
    let colour = render::colour_stdout();
    let rows: Vec<[String; 5]> = executions
        .iter()
        .map(|e| {
            let name = names
                .get(e["workflow_id"].as_str().unwrap_or(""))
                .cloned()
                .unwrap_or_default();
            let took = match (
                render::timestamp(&e["created_at"]),
                render::timestamp(&e["completed_at"]),
            ) {
                (Some(from), Some(to)) => {
                    render::duration((to - from).num_milliseconds() as f64 / 1000.0)
                }
                _ => "-".into(),
            };
            [
                e["execution_id"].as_str().unwrap_or("?").to_owned(),
                e["status"].as_str().unwrap_or("?").to_owned(),
                format!("{:.0}%", e["progress_percentage"].as_f64().unwrap_or(0.0)),
                format!("{name} v{}", e["workflow_version"]),
                format!("{}  {took}", when(&e["created_at"])),
            ]
        })
        .collect();
    let headers = ["EXECUTION", "STATUS", "DONE", "WORKFLOW", "CREATED  TOOK"];
    let widths: Vec<usize> = (0..5)
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([headers[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut head = Line::new();
    for (c, h) in headers.iter().enumerate() {
        head = head.push(format!("{h:<w$}  ", w = widths[c]), Paint::Dim);
    }
    println!("{}", head.render(None, colour).trim_end());
    for row in &rows {
        let mut line = Line::new();
        for (c, cell) in row.iter().enumerate() {
            let paint = if c == 1 {
                render::status_paint(cell)
            } else {
                Paint::Plain
            };
            line = line.push(format!("{cell:<w$}  ", w = widths[c]), paint);
        }
        println!("{}", line.render(None, colour).trim_end());
    }
    let total = answer["total"].as_i64().unwrap_or(0);
    if total > rows.len() as i64 {
        println!("({} of {total}; --limit shows more)", rows.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// `--workflow` as given: an id, or the name of a live workflow.
async fn workflow_id(client: &Client, given: &str) -> Result<String, CliError> {
    if let Ok(id) = uuid::Uuid::parse_str(given) {
        return Ok(id.to_string());
    }
    let found = client
        .get_query(
            "/workflows",
            &[("name", given.to_owned()), ("limit", "100".to_owned())],
        )
        .await?;
    let list = found["workflows"].as_array().cloned().unwrap_or_default();
    let pick = list
        .iter()
        .find(|w| w["created_by"].is_null())
        .or(list.first());
    match pick {
        Some(w) => Ok(w["id"].as_str().unwrap_or_default().to_owned()),
        None => Err(CliError::Usage(format!("no workflow is named '{given}'"))),
    }
}
