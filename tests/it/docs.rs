//! The documentation cannot drift from the code: the generated pages equal
//! what this version generates, the action list equals what a running
//! service answers at `GET /actions`, every link between the pages (and
//! into the repository) resolves, every make target is documented, and the
//! rendered API page needs nothing from outside.

use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::Value;
use support::app::TestApp;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

#[test]
fn generated_docs_are_up_to_date() {
    for (name, expected) in budpipeline::cli::docs::generated() {
        let path = format!("docs/{name}");
        let committed = read(&path);
        if committed != expected {
            let line = committed
                .lines()
                .zip(expected.lines())
                .position(|(a, b)| a != b)
                .map_or_else(
                    || committed.lines().count().min(expected.lines().count()) + 1,
                    |i| i + 1,
                );
            panic!(
                "{path} is out of date (first difference at line {line}): run `make docs` \
                 (budpipeline docs write docs) and commit the result"
            );
        }
    }
}

/// The action types documented in docs/actions.md (`### \`type\``).
fn documented_actions() -> BTreeSet<String> {
    read("docs/actions.md")
        .lines()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[sqlx::test]
async fn the_action_docs_list_exactly_the_actions_the_service_serves(pool: sqlx::PgPool) {
    let app = TestApp::spawn(&pool).await;
    let (status, body) = app.api.get("/actions").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let served: BTreeSet<String> = body["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(documented_actions(), served, "run `make docs`");
    // And each one's parameters and outputs, as served.
    let docs = read("docs/actions.md");
    for action in body["actions"].as_array().unwrap() {
        let kind = action["type"].as_str().unwrap();
        let section = docs
            .split(&format!("### `{kind}`"))
            .nth(1)
            .and_then(|rest| rest.split("\n### ").next())
            .unwrap();
        for param in action["params"].as_array().unwrap() {
            let name = param["name"].as_str().unwrap();
            let required = if param["required"] == true {
                "yes"
            } else {
                "no"
            };
            let row = format!(
                "| `{name}` | {} | {required} |",
                param["type"].as_str().unwrap()
            );
            assert!(section.contains(&row), "{kind}: {row} in\n{section}");
        }
        for output in action["outputs"].as_array().unwrap() {
            let row = format!("| `{}` |", output["name"].as_str().unwrap());
            assert!(section.contains(&row), "{kind}: output {row}");
        }
    }
    app.stop().await;
}

#[sqlx::test]
async fn the_api_is_described_without_a_token_and_rendered_without_outside_assets(
    pool: sqlx::PgPool,
) {
    let app = TestApp::spawn(&pool).await;
    let http = reqwest::Client::new();
    // The document the service serves is the one in the repository.
    let served: Value = http
        .get(format!("{}/openapi.json", app.api.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let committed: Value = serde_json::from_str(&read("docs/openapi.json")).unwrap();
    assert_eq!(served, committed, "run `make docs`");
    // The page: HTML, no token, nothing from another origin.
    let page = http
        .get(format!("{}/docs", app.api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{headers:?}"
    );
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("fetch(\"openapi.json\""),
        "it reads the document"
    );
    for outside in ["src=\"http", "href=\"http", "@import", "url(http", "//cdn"] {
        assert!(!html.contains(outside), "the page loads {outside}…");
    }
    app.stop().await;
}

/// Markdown links `[text](target)` of a page, without images' or code's.
fn links(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Inline code spans do not hold links.
        let text: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join("");
        let mut rest = text.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
        let mut rest = line;
        while let Some(at) = rest.find("<a id=\"") {
            let after = &rest[at + 7..];
            let end = after.find('"').unwrap_or(after.len());
            out.insert(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_link_of_the_readme_and_the_docs_resolves_inside_the_repository() {
    let mut pages: Vec<PathBuf> = vec![repo().join("README.md")];
    for entry in std::fs::read_dir(repo().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        let name = page.strip_prefix(repo()).unwrap().display().to_string();
        assert!(
            !text.contains("../shared/") && !text.contains("/work/"),
            "{name} points outside the repository"
        );
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") {
                continue;
            }
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            assert!(
                target.exists(),
                "{name}: link {link} -> {} missing",
                target.display()
            );
            let inside = target.canonicalize().unwrap();
            assert!(
                inside.starts_with(repo().canonicalize().unwrap()),
                "{name}: {link} leaves the repository"
            );
            if !anchor.is_empty() && target.extension().is_some_and(|e| e == "md") {
                let found = anchors(&std::fs::read_to_string(&target).unwrap());
                assert!(
                    found.contains(anchor),
                    "{name}: {link}: no #{anchor} in {found:?}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} links checked");
}

#[test]
fn every_make_target_is_in_make_help_and_in_the_readme() {
    let makefile = read("Makefile");
    let phony = makefile
        .lines()
        .find_map(|l| l.strip_prefix(".PHONY:"))
        .expect("a .PHONY line");
    let targets: Vec<&str> = phony.split_whitespace().collect();
    // Every rule is declared phony (they are all commands, not files).
    for line in makefile.lines() {
        if let Some((name, _)) = line.split_once(':') {
            let is_rule = !name.is_empty()
                && !line.starts_with(['\t', '#', ' ', '.'])
                && !line.contains(":=")
                && !line.contains("?=")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if is_rule {
                assert!(targets.contains(&name), "{name} is not in .PHONY");
            }
        }
    }
    let help = std::process::Command::new("make")
        .args(["--no-print-directory", "-s", "help"])
        .current_dir(repo())
        .output()
        .expect("make runs");
    assert!(help.status.success(), "make help: {help:?}");
    let help = String::from_utf8(help.stdout).unwrap();
    let readme = read("README.md");
    for target in targets {
        let mention = format!("make {target}");
        assert!(
            help.contains(&mention),
            "`make help` lists {mention}:\n{help}"
        );
        assert!(readme.contains(&mention), "the README mentions {mention}");
    }
    assert!(!help.contains("bench.rs"), "{help}");
}
