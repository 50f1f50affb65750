//! The command line client as a person uses it: the real binary as the
//! service, the same binary as the client, its output read on a
//! pseudo-terminal (`script`) where it redraws a live view, and piped where
//! it prints plain lines. Also: creating versus updating by name, cancel and
//! retry, the list, and the errors and exit statuses.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;
use support::app::{ServiceProcess, database_url};
use support::cli::{Cli, strip_ansi, wait};

async fn service(pool: &PgPool) -> (ServiceProcess, Cli) {
    let service = ServiceProcess::start(&database_url(pool), &[]).await;
    let cli = Cli::new(&service.api);
    (service, cli)
}

/// The frames a terminal output drew: the text between "back to the top of
/// the frame and clear" sequences, escape sequences removed.
fn frames(output: &str) -> Vec<String> {
    let mut frames = Vec::new();
    let mut rest = output;
    while let Some(at) = rest.find("\x1b[J") {
        frames.push(strip_ansi(&rest[..at]));
        rest = &rest[at + 3..];
    }
    frames.push(strip_ansi(rest));
    frames
}

#[sqlx::test]
async fn run_in_a_terminal_redraws_the_progress_view_until_the_final_state(pool: PgPool) {
    let (_service, cli) = service(&pool).await;
    let out = cli
        .in_terminal(&["run", "examples/fan-out.yaml", "--param", "pause_seconds=2"])
        .await;
    assert_eq!(out.code(), 0, "{out:#?}");
    let raw = &out.stdout;
    // Colours, and the view redrawn in place several times while the timer ran.
    assert!(raw.contains("\x1b[32m"), "coloured on a terminal: {raw:?}");
    let redraws = raw.matches("F\x1b[J").count();
    assert!(redraws >= 4, "{redraws} redraws in 2 s: {raw:?}");
    let frames = frames(raw);
    // An early frame: the timer step waits, the final step has not started.
    // A frame while the timer waits: the three quick steps are done, the
    // final one has not started.
    let waiting = frames
        .iter()
        .find(|f| f.contains("◷ pause") && f.contains("3/5 steps"))
        .unwrap_or_else(|| panic!("no frame shows the timer waiting: {frames:#?}"));
    assert!(waiting.contains("○ report"), "{waiting}");
    assert!(waiting.contains(" 60%  3/5 steps  RUNNING"), "{waiting}");
    assert!(waiting.contains("waiting for event"), "{waiting}");
    // The progress grows from frame to frame, never back.
    let percents: Vec<u32> = frames
        .iter()
        .filter_map(|f| {
            let at = f.find("%  ")?;
            f[..at].rsplit(' ').next()?.trim().parse().ok()
        })
        .collect();
    assert!(percents.len() >= 4, "{percents:?}");
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
    // The last frame is the final state, then the summary and the outputs.
    let last = frames.last().unwrap();
    assert!(last.contains("100%  5/5 steps  COMPLETED"), "{last}");
    for step in ["✓ count", "✓ sorted", "✓ total", "✓ pause", "✓ report"] {
        assert!(last.contains(step), "{step} in {last}");
    }
    assert!(
        last.contains("(after count, sorted, total, pause)") || last.contains("(after count"),
        "{last}"
    );
    assert!(last.contains("COMPLETED in"), "{last}");
    assert!(last.contains("\"sum\": 6"), "{last}");
    // Each frame fits the (unknown, so 80-column) terminal: no line wraps.
    for frame in &frames {
        for line in frame.lines() {
            assert!(line.chars().count() < 80, "{line:?} is too wide");
        }
    }
}

#[sqlx::test]
async fn run_piped_prints_one_plain_line_per_step_change(pool: PgPool) {
    let (_service, cli) = service(&pool).await;
    let out = cli.run(&["run", "examples/hello.yaml"]).await;
    assert_eq!(out.code(), 0, "{out:#?}");
    assert!(
        !out.stdout.contains('\x1b'),
        "no escape sequences: {:?}",
        out.stdout
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("created workflow hello ("),
        "{lines:#?}"
    );
    assert!(lines[1].starts_with("hello v1 · execution "), "{lines:#?}");
    for step in ["greet", "shout", "french", "summary"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("]  {step}  COMPLETED"))),
            "{step} COMPLETED in {lines:#?}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("execution ") && l.contains(" COMPLETED in ")),
        "{lines:#?}"
    );
}

#[sqlx::test]
async fn executions_show_draws_the_dag_as_a_tree_with_states_attempts_and_errors(pool: PgPool) {
    let (_service, cli) = service(&pool).await;
    let run = cli
        .run(&[
            "run",
            "examples/failure-handling.yaml",
            "--param",
            "strict=true",
        ])
        .await;
    assert_eq!(run.code(), 1, "{run:#?}");
    let id = run.execution_id().to_string();

    let shown = cli.in_terminal(&["executions", "show", &id]).await;
    assert_eq!(shown.code(), 0, "{shown:#?}");
    assert!(
        shown.stdout.contains("\x1b[31m"),
        "failures in red: {:?}",
        shown.stdout
    );
    let text = strip_ansi(&shown.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(&format!("execution  {id}  FAILED  100%  4/4 steps")),
        "{text}"
    );
    assert!(
        lines[1].starts_with("workflow   failure-handling v1"),
        "{text}"
    );
    assert!(text.contains("parameters {\"strict\":true}"), "{text}");
    let tree: Vec<&str> = lines
        .iter()
        .copied()
        .skip_while(|l| !l.is_empty())
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    let expected = [
        ("✗ optional", "fail  FAILED     attempt 1"),
        ("│ error: the optional check found nothing", ""),
        ("├─ - required", "log   SKIPPED    (condition)"),
        (
            "│  └─ - report",
            "log   SKIPPED    (upstream_failed)  (after required, required_strict)",
        ),
        ("└─ ✗ required_strict", "fail  FAILED     attempt 1"),
        ("     error: strict mode: the required step failed", ""),
    ];
    assert_eq!(tree.len(), expected.len(), "{text}");
    for (line, (start, part)) in tree.iter().zip(expected) {
        assert!(
            line.starts_with(start),
            "{line:?} starts with {start:?}\n{text}"
        );
        assert!(line.contains(part), "{line:?} contains {part:?}\n{text}");
    }
    // The columns line up whatever the depth.
    let column = |l: &str| {
        let at = l.find("  fail").or_else(|| l.find("  log"))?;
        Some(l[..at].chars().count())
    };
    assert_eq!(column(tree[0]), column(tree[3]), "{text}");
    assert!(
        text.contains("error: step 'required_strict' failed"),
        "{text}"
    );
    assert!(text.contains("\"report\": \"not reached\""), "{text}");

    // Piped: the same text without colours; --json: the API's document.
    let piped = cli.run(&["executions", "show", &id]).await;
    assert_eq!(piped.stdout, text);
    let json = cli.run(&["show", &id, "--json"]).await;
    let doc: Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(doc["status"], "FAILED");
}

#[sqlx::test]
async fn run_creates_then_reuses_then_updates_the_workflow_by_name(pool: PgPool) {
    let (service, cli) = service(&pool).await;
    let first = cli.run(&["run", "examples/hello.yaml"]).await;
    assert!(
        first.stdout.contains("created workflow hello ("),
        "{first:#?}"
    );
    let again = cli.run(&["run", "examples/hello.yaml"]).await;
    assert!(
        again.stdout.contains("version 1 is up to date"),
        "{again:#?}"
    );
    // The same name with another DAG: a new version of the same workflow.
    let dir = std::env::temp_dir().join(format!("bp-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let changed = dir.join("hello.json");
    std::fs::write(
        &changed,
        r#"{"name": "hello", "steps": [{"id": "only", "action": "log", "params": {"message": "v2"}}]}"#,
    )
    .unwrap();
    let updated = cli.run(&["run", changed.to_str().unwrap()]).await;
    assert_eq!(updated.code(), 0, "{updated:#?}");
    assert!(updated.stdout.contains("to version 2"), "{updated:#?}");
    let (_, listed) = service.api.get("/workflows?name=hello").await;
    assert_eq!(listed["total"], 1, "{listed:#}");
    assert_eq!(listed["workflows"][0]["version"], 2);
    // --name stores it under another name; --no-watch returns at once.
    let named = cli
        .run(&[
            "run",
            "examples/hello.yaml",
            "--name",
            "hello-2",
            "--no-watch",
        ])
        .await;
    assert_eq!(named.code(), 0, "{named:#?}");
    assert!(
        named.stdout.contains("created workflow hello-2"),
        "{named:#?}"
    );
    assert!(named.stdout.contains("executions watch "), "{named:#?}");
    let id = named.execution_id();
    service.api.wait_terminal(id, Duration::from_secs(30)).await;
    let watched = cli.run(&["executions", "watch", &id.to_string()]).await;
    assert_eq!(watched.code(), 0, "{watched:#?}");
    assert!(watched.stdout.contains("COMPLETED in"), "{watched:#?}");
    std::fs::remove_dir_all(dir).ok();
}

#[sqlx::test]
async fn cancel_stops_a_run_and_retry_runs_it_again_to_completion(pool: PgPool) {
    let (service, cli) = service(&pool).await;
    let run = cli.spawn(&["run", "examples/fan-out.yaml", "--param", "pause_seconds=3"]);
    // Wait for the execution to exist, then cancel it while its timer waits.
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let (_, listed) = service.api.get("/executions?limit=1").await;
        if let Some(id) = listed["executions"][0]["execution_id"].as_str() {
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "no execution started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let cancelled = cli.run(&["executions", "cancel", &id]).await;
    assert_eq!(cancelled.code(), 0, "{cancelled:#?}");
    assert!(cancelled.stdout.contains("CANCELLED"), "{cancelled:#?}");
    // The run that was watching it ends with the final state: exit 1.
    let watched = wait(run, "budpipeline run").await;
    assert_eq!(watched.code(), 1, "{watched:#?}");
    assert!(
        watched
            .stdout
            .contains(&format!("execution {id} CANCELLED")),
        "{watched:#?}"
    );
    // Cancelling again is refused by the service: exit 1 with its message.
    let again = cli.run(&["cancel", &id]).await;
    assert_eq!(again.code(), 1, "{again:#?}");
    assert!(again.stderr.contains("already CANCELLED"), "{again:#?}");
    // Retry watches the execution to its end.
    let retried = cli.run(&["executions", "retry", &id]).await;
    assert_eq!(retried.code(), 0, "{retried:#?}");
    assert!(
        retried
            .stdout
            .contains(&format!("execution {id} COMPLETED")),
        "{retried:#?}"
    );
}

#[sqlx::test]
async fn list_shows_recent_executions_with_their_workflow_and_filters(pool: PgPool) {
    let (_service, cli) = service(&pool).await;
    assert_eq!(
        cli.run(&["executions", "list"]).await.stdout,
        "no executions\n"
    );
    cli.run(&["run", "examples/hello.yaml"]).await;
    let failed = cli
        .run(&[
            "run",
            "examples/failure-handling.yaml",
            "--param",
            "strict=true",
        ])
        .await;
    let listed = cli.run(&["executions", "list"]).await;
    assert_eq!(listed.code(), 0, "{listed:#?}");
    let lines: Vec<&str> = listed.stdout.lines().collect();
    assert!(lines[0].starts_with("EXECUTION"), "{lines:#?}");
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[1].contains("FAILED") && lines[1].contains("failure-handling v1"),
        "{lines:#?}"
    );
    assert!(
        lines[2].contains("COMPLETED") && lines[2].contains("hello v1"),
        "{lines:#?}"
    );
    let only = cli
        .run(&[
            "list",
            "--status",
            "failed",
            "--workflow",
            "failure-handling",
        ])
        .await;
    let rows: Vec<&str> = only.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{only:#?}");
    assert!(
        rows[0].starts_with(&failed.execution_id().to_string()),
        "{only:#?}"
    );
}

#[sqlx::test]
async fn errors_say_what_to_do_and_exit_with_the_documented_status(pool: PgPool) {
    let (service, cli) = service(&pool).await;
    let no_service = Cli {
        url: "http://127.0.0.1:9".into(),
        token: None,
    };
    let wrong_token = Cli {
        url: service.api.base.clone(),
        token: Some("wrong".into()),
    };
    let unknown = uuid::Uuid::new_v4().to_string();
    let cases: Vec<(&Cli, Vec<&str>, i32, &str)> = vec![
        (&cli, vec!["run"], 2, "run needs a workflow file"),
        (
            &cli,
            vec!["run", "examples/nope.yaml"],
            2,
            "examples/nope.yaml",
        ),
        (&cli, vec!["frobnicate"], 2, "unknown arguments: frobnicate"),
        (
            &cli,
            vec!["show", "nope"],
            2,
            "'nope' is not an execution id",
        ),
        (&cli, vec!["show", &unknown], 1, "execution not found (404)"),
        (
            &no_service,
            vec!["list"],
            2,
            "cannot reach budpipeline at http://127.0.0.1:9",
        ),
        (
            &wrong_token,
            vec!["list"],
            2,
            "refused the token from BUDPIPELINE_TOKEN",
        ),
        (
            &cli,
            vec!["list", "--status", "bogus"],
            1,
            "status: must be one of",
        ),
    ];
    for (client, args, code, message) in cases {
        let out = client.run(&args).await;
        assert_eq!(out.code(), code, "{args:?}: {out:#?}");
        assert!(out.stderr.contains(message), "{args:?}: {out:#?}");
    }
    // A document the service refuses: each problem listed, exit 1.
    let dir = std::env::temp_dir().join(format!("bp-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "name: bad\nsteps:\n  - {id: a, action: nope}\n").unwrap();
    let out = cli.run(&["run", bad.to_str().unwrap()]).await;
    assert_eq!(out.code(), 1, "{out:#?}");
    assert!(
        out.stderr.contains("DAG validation failed (422)"),
        "{out:#?}"
    );
    assert!(
        out.stderr
            .contains("- steps.a.action: unknown action 'nope'"),
        "{out:#?}"
    );
    std::fs::remove_dir_all(dir).ok();
}
