//! What the command line draws: an execution's steps as a tree, a progress
//! bar, durations; coloured only on a terminal.
//!
//! Lines are built from styled parts ([`Line`]) and cut to the terminal's
//! width before the escape sequences are added, so a redrawn frame never
//! wraps (a wrapped line would break moving the cursor back up over it).

use std::collections::HashMap;
use std::io::IsTerminal;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The colour of one part of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Paint {
    Plain,
    Bold,
    Dim,
    Green,
    Red,
    Yellow,
    Cyan,
    Magenta,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Self::Plain => "",
            Self::Bold => "\x1b[1m",
            Self::Dim => "\x1b[2m",
            Self::Green => "\x1b[32m",
            Self::Red => "\x1b[31m",
            Self::Yellow => "\x1b[33m",
            Self::Cyan => "\x1b[36m",
            Self::Magenta => "\x1b[35m",
        }
    }
}

/// One line of output, as styled parts.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Line {
    parts: Vec<(String, Paint)>,
}

impl Line {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(mut self, text: impl Into<String>, paint: Paint) -> Self {
        self.parts.push((text.into(), paint));
        self
    }

    /// The text without styles.
    #[cfg(test)]
    pub(crate) fn text(&self) -> String {
        self.parts.iter().map(|(t, _)| t.as_str()).collect()
    }

    /// The line cut to `width` characters (when given), with escape
    /// sequences when `colour`.
    pub(crate) fn render(&self, width: Option<usize>, colour: bool) -> String {
        let mut left = width.unwrap_or(usize::MAX);
        let mut out = String::new();
        for (text, paint) in &self.parts {
            if left == 0 {
                break;
            }
            let count = text.chars().count();
            let piece: String = if count > left {
                text.chars().take(left).collect()
            } else {
                text.clone()
            };
            left -= piece.chars().count();
            if colour && *paint != Paint::Plain {
                out.push_str(paint.code());
                out.push_str(&piece);
                out.push_str("\x1b[0m");
            } else {
                out.push_str(&piece);
            }
        }
        out
    }
}

/// Whether standard output gets colours: a terminal, and `NO_COLOR` unset.
pub(crate) fn colour_stdout() -> bool {
    crate::telemetry::colours_wanted(std::io::stdout().is_terminal())
}

/// The terminal's columns and rows, when standard output is one that says.
#[cfg(unix)]
#[allow(unsafe_code)]
pub(crate) fn terminal_size() -> Option<(usize, usize)> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we own and
    // pass by pointer; on any error the call fails and we ignore the struct.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0 && size.ws_row > 0)
        .then(|| (usize::from(size.ws_col), usize::from(size.ws_row)))
}

#[cfg(not(unix))]
pub fn terminal_size() -> Option<(usize, usize)> {
    None
}

/// `0.25s`, `12.3s`, `4m05s`, `2h03m`.
pub(crate) fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 1.0 {
        format!("{s:.2}s")
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

pub(crate) fn timestamp(value: &Value) -> Option<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Seconds from `from` to `to` (or to `now` while `to` is not set).
fn span(from: &Value, to: &Value, now: DateTime<Utc>) -> Option<f64> {
    let start = timestamp(from)?;
    let end = timestamp(to).unwrap_or(now);
    Some((end - start).num_milliseconds() as f64 / 1000.0)
}

pub(crate) fn is_terminal_status(status: &str) -> bool {
    matches!(status, "COMPLETED" | "FAILED" | "CANCELLED")
}

pub(crate) fn status_paint(status: &str) -> Paint {
    match status {
        "COMPLETED" => Paint::Green,
        "FAILED" | "TIMEOUT" => Paint::Red,
        "RUNNING" => Paint::Cyan,
        "CANCELLED" => Paint::Magenta,
        "SKIPPED" => Paint::Dim,
        _ => Paint::Yellow,
    }
}

fn glyph(status: &str, waiting: bool) -> &'static str {
    match status {
        "COMPLETED" => "✓",
        "FAILED" | "TIMEOUT" => "✗",
        "RUNNING" if waiting => "◷",
        "RUNNING" => "●",
        "SKIPPED" => "-",
        "CANCELLED" => "⊘",
        _ => "○",
    }
}

/// How many steps are finished (not PENDING or RUNNING), and how many there are.
pub(crate) fn step_counts(execution: &Value) -> (usize, usize) {
    let steps = execution["steps"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let done = steps
        .iter()
        .filter(|s| !matches!(s["status"].as_str(), Some("PENDING" | "RUNNING")))
        .count();
    (done, steps.len())
}

/// `[█████░░░░░]  50%  1/2 steps  RUNNING  1.2s`, the bar `bar` cells wide.
pub(crate) fn progress_line(execution: &Value, bar: usize, now: DateTime<Utc>) -> Line {
    let status = execution["status"].as_str().unwrap_or("?");
    let percent = execution["progress_percentage"].as_f64().unwrap_or(0.0);
    let filled = ((percent / 100.0) * bar as f64).round() as usize;
    let filled = filled.min(bar);
    let (done, all) = step_counts(execution);
    let mut line = Line::new()
        .push("[", Paint::Plain)
        .push("█".repeat(filled), status_paint(status))
        .push("░".repeat(bar - filled), Paint::Dim)
        .push("] ", Paint::Plain)
        .push(format!("{percent:>3.0}%"), Paint::Bold)
        .push(format!("  {done}/{all} steps  "), Paint::Plain)
        .push(status, status_paint(status));
    if let Some(seconds) = span(&execution["created_at"], &execution["completed_at"], now) {
        line = line.push(format!("  {}", duration(seconds)), Paint::Dim);
    }
    line
}

/// The steps of `execution` as a tree, each under its first dependency (the
/// others are named after it), in the DAG's declaration order; a flat list
/// when the DAG is not known. Each step shows its state, attempt, duration,
/// the event it waits for, its next retry, and its error on a line below.
pub(crate) fn step_tree(execution: &Value, dag: Option<&Value>, now: DateTime<Utc>) -> Vec<Line> {
    let steps: Vec<&Value> = execution["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let ids: Vec<&str> = steps
        .iter()
        .map(|s| s["step_id"].as_str().unwrap_or("?"))
        .collect();
    // depends_on of each step, from the DAG of the execution's version.
    let mut deps: HashMap<&str, Vec<&str>> = HashMap::new();
    if let Some(dag_steps) = dag.and_then(|d| d["steps"].as_array()) {
        for step in dag_steps {
            if let Some(id) = step["id"].as_str() {
                let list = step["depends_on"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter(|d| ids.contains(d) && d != &id)
                    .collect();
                deps.insert(id, list);
            }
        }
    }
    // Parent = first dependency; a step whose parent chain loops (not in a
    // validated DAG, but the input is data) is shown as a root.
    let parent_of = |id: &str| deps.get(id).and_then(|d| d.first().copied());
    let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        match parent_of(id) {
            Some(parent) if !loops(id, &parent_of, ids.len()) => {
                children.entry(parent).or_default().push(i)
            }
            _ => roots.push(i),
        }
    }
    let action_width = steps
        .iter()
        .map(|s| s["action"].as_str().unwrap_or("").chars().count())
        .max()
        .unwrap_or(0);
    // Depth-first, in declaration order: (step, its line's tree prefix, the
    // prefix of the lines below it). Roots start at the margin, children
    // hang from them with `├─` / `└─`.
    let mut order: Vec<(usize, String, String)> = Vec::new();
    let mut stack: Vec<(usize, String, bool, bool)> = roots
        .iter()
        .rev()
        .map(|&i| (i, String::new(), true, true))
        .collect();
    while let Some((i, prefix, last, root)) = stack.pop() {
        let (branch, below) = match (root, last) {
            (true, _) => ("", String::new()),
            (false, true) => ("└─ ", format!("{prefix}   ")),
            (false, false) => ("├─ ", format!("{prefix}│  ")),
        };
        let kids = children.get(ids[i]).cloned().unwrap_or_default();
        for (n, &k) in kids.iter().enumerate().rev() {
            stack.push((k, below.clone(), n + 1 == kids.len(), false));
        }
        order.push((i, format!("{prefix}{branch}"), below));
    }
    // The columns after the ids line up whatever the depth.
    let label_width = order
        .iter()
        .map(|(i, prefix, _)| prefix.chars().count() + ids[*i].chars().count())
        .max()
        .unwrap_or(0);
    let mut out = Vec::new();
    for (i, prefix, below) in &order {
        let step = steps[*i];
        let width = label_width - prefix.chars().count();
        out.push(step_line(step, prefix, width, action_width, &deps, now));
        // The error sits under the step, aligned with its children.
        if let Some(error) = step["error"].as_str().filter(|e| !e.is_empty()) {
            let has_kids = children.get(ids[*i]).is_some_and(|k| !k.is_empty());
            let bar = if has_kids { "│ " } else { "  " };
            let first_line = error.lines().next().unwrap_or(error);
            out.push(
                Line::new()
                    .push(format!("{below}{bar}"), Paint::Dim)
                    .push(format!("error: {first_line}"), Paint::Red),
            );
        }
    }
    out
}

/// Whether following first dependencies from `id` comes back to it.
fn loops<'a>(id: &'a str, parent_of: &impl Fn(&'a str) -> Option<&'a str>, max: usize) -> bool {
    let mut at = id;
    for _ in 0..=max {
        match parent_of(at) {
            Some(p) if p == id => return true,
            Some(p) => at = p,
            None => return false,
        }
    }
    true
}

fn step_line(
    step: &Value,
    prefix: &str,
    width: usize,
    action_width: usize,
    deps: &HashMap<&str, Vec<&str>>,
    now: DateTime<Utc>,
) -> Line {
    let id = step["step_id"].as_str().unwrap_or("?");
    let status = step["status"].as_str().unwrap_or("?");
    let waiting = step["awaiting_event"].as_bool().unwrap_or(false);
    let paint = status_paint(status);
    let mut line = Line::new()
        .push(prefix.to_owned(), Paint::Dim)
        .push(glyph(status, waiting), paint)
        .push(" ", Paint::Plain)
        .push(format!("{id:<width$}"), Paint::Bold)
        .push(
            format!(
                "  {:<action_width$}  ",
                step["action"].as_str().unwrap_or("")
            ),
            Paint::Dim,
        )
        .push(format!("{status:<9}"), paint);
    let attempt = step["attempt"].as_i64().unwrap_or(0);
    if attempt > 0 {
        line = line.push(format!("  attempt {attempt}"), Paint::Plain);
    }
    if let Some(seconds) = span(&step["started_at"], &step["completed_at"], now) {
        line = line.push(format!("  {}", duration(seconds)), Paint::Plain);
    }
    if waiting {
        let on = step["external_workflow_id"].as_str().unwrap_or("?");
        line = line.push(format!("  waiting for event {on}"), Paint::Yellow);
        if let Some(at) = timestamp(&step["timeout_at"]) {
            line = line.push(
                format!(" (until {})", at.format("%Y-%m-%d %H:%M:%S UTC")),
                Paint::Dim,
            );
        }
    }
    if let Some(at) = timestamp(&step["next_attempt_at"]) {
        let wait = (at - now).num_milliseconds() as f64 / 1000.0;
        line = line.push(format!("  retry in {}", duration(wait)), Paint::Yellow);
    }
    if let Some(reason) = step["skip_reason"].as_str() {
        line = line.push(format!("  ({reason})"), Paint::Dim);
    }
    if waiting {
        if let Some(stage) = step["stage"]["stage"].as_str() {
            line = line.push(format!("  stage {stage}"), Paint::Dim);
        }
        if let Some(minutes) = step["stage"]["eta_minutes"].as_i64() {
            line = line.push(format!("  eta {minutes} min"), Paint::Dim);
        }
    }
    if let Some(more) = deps.get(id).filter(|d| d.len() > 1) {
        line = line.push(format!("  (after {})", more.join(", ")), Paint::Dim);
    }
    line
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn now() -> DateTime<Utc> {
        timestamp(&json!("2026-01-01T00:00:10Z")).unwrap()
    }

    #[test]
    fn lines_are_cut_before_they_are_coloured() {
        let line = Line::new()
            .push("abc", Paint::Red)
            .push("def", Paint::Plain);
        assert_eq!(line.render(Some(4), false), "abcd");
        assert_eq!(line.render(Some(2), true), "\x1b[31mab\x1b[0m");
        assert_eq!(line.render(None, false), "abcdef");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(0.012), "0.01s");
        assert_eq!(duration(12.34), "12.3s");
        assert_eq!(duration(245.0), "4m05s");
        assert_eq!(duration(7380.0), "2h03m");
        assert_eq!(duration(-1.0), "0.00s");
    }

    #[test]
    fn the_tree_hangs_each_step_under_its_first_dependency() {
        let dag = json!({"steps": [
            {"id": "a", "depends_on": []},
            {"id": "b", "depends_on": ["a"]},
            {"id": "c", "depends_on": ["a"]},
            {"id": "d", "depends_on": ["b", "c"]},
            {"id": "e", "depends_on": []},
        ]});
        let step = |id: &str, status: &str| {
            json!({"step_id": id, "action": "log", "status": status, "attempt": 1,
                   "started_at": "2026-01-01T00:00:00Z", "completed_at": "2026-01-01T00:00:01.5Z"})
        };
        let mut waiting = step("e", "RUNNING");
        waiting["awaiting_event"] = json!(true);
        waiting["external_workflow_id"] = json!("bc-wf-1");
        waiting["completed_at"] = Value::Null;
        let mut failed = step("c", "FAILED");
        failed["error"] = json!("boom");
        let execution = json!({"steps": [
            step("a", "COMPLETED"), step("b", "COMPLETED"), failed,
            step("d", "SKIPPED"), waiting]});
        let lines: Vec<String> = step_tree(&execution, Some(&dag), now())
            .iter()
            .map(Line::text)
            .collect();
        assert_eq!(
            lines,
            vec![
                "✓ a        log  COMPLETED  attempt 1  1.5s",
                "├─ ✓ b     log  COMPLETED  attempt 1  1.5s",
                "│  └─ - d  log  SKIPPED    attempt 1  1.5s  (after b, c)",
                "└─ ✗ c     log  FAILED     attempt 1  1.5s",
                "     error: boom",
                "◷ e        log  RUNNING    attempt 1  10.0s  waiting for event bc-wf-1",
            ]
        );
        // Without the DAG: a flat list in declaration order.
        let flat = step_tree(&execution, None, now());
        assert_eq!(flat.len(), 6);
        assert!(flat[1].text().starts_with("✓ b"), "{:?}", flat[1]);
    }

    #[test]
    fn the_progress_bar_fills_with_the_percentage() {
        let execution = json!({"status": "RUNNING", "progress_percentage": 50.0,
            "created_at": "2026-01-01T00:00:00Z", "completed_at": null,
            "steps": [{"status": "COMPLETED"}, {"status": "RUNNING"}]});
        assert_eq!(
            progress_line(&execution, 10, now()).text(),
            "[█████░░░░░]  50%  1/2 steps  RUNNING  10.0s"
        );
    }
}
