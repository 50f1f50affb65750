//! The `budpipeline` binary as a command line client of a running service
//! ([`Cli`]): run with arguments and read its exit status and output, with
//! its output piped (as in a script) or on a pseudo-terminal
//! ([`Cli::in_terminal`], through util-linux `script`), the way a person
//! sees it.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use uuid::Uuid;

use super::app::{Api, TOKEN};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_budpipeline");

/// How long one command may take before the test fails.
const LIMIT: Duration = Duration::from_secs(90);

/// What a finished command left.
#[derive(Debug)]
pub(crate) struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub(crate) fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// The id in the last `execution <uuid> …` of the output.
    pub(crate) fn execution_id(&self) -> Uuid {
        let text = &self.stdout;
        text.match_indices("execution ")
            .filter_map(|(at, word)| text.get(at + word.len()..at + word.len() + 36))
            .filter_map(|id| id.parse().ok())
            .last()
            .unwrap_or_else(|| panic!("no execution id in:\n{text}"))
    }
}

/// The client side of a test: where the service is and its token.
#[derive(Clone)]
pub(crate) struct Cli {
    pub url: String,
    pub token: Option<String>,
}

impl Cli {
    pub(crate) fn new(api: &Api) -> Self {
        Self {
            url: api.base.clone(),
            token: Some(TOKEN.to_owned()),
        }
    }

    /// The command, run from the repository (so `examples/…` resolves),
    /// with nothing from the test's environment but `PATH`, `HOME`, `LANG`.
    pub(crate) fn command(&self, program: &str, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_clear()
            .env("BUDPIPELINE_URL", &self.url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for keep in ["PATH", "HOME", "LANG"] {
            if let Ok(value) = std::env::var(keep) {
                command.env(keep, value);
            }
        }
        if let Some(token) = &self.token {
            command.env("BUDPIPELINE_TOKEN", token);
        }
        command
    }

    /// `budpipeline ARGS` with its output piped; waits for it to exit.
    pub(crate) async fn run(&self, args: &[&str]) -> Output {
        finish(self.command(BIN, args), args).await
    }

    /// Started, not awaited (to act on the service while it watches).
    pub(crate) fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        self.command(BIN, args).spawn().expect("start budpipeline")
    }

    /// `budpipeline ARGS` on a pseudo-terminal (`script -qfec CMD /dev/null`:
    /// quiet, flush as it goes, exit with the command's status), so that
    /// the program sees a terminal. Its size is unknown (0x0), as in many
    /// CI terminals, so the program falls back to 80 columns.
    pub(crate) async fn in_terminal(&self, args: &[&str]) -> Output {
        assert!(
            std::process::Command::new("script")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "the terminal tests need `script` (util-linux: apt-get install bsdutils)"
        );
        let line = std::iter::once(BIN)
            .chain(args.iter().copied())
            .map(shell_quote)
            .collect::<Vec<_>>()
            .join(" ");
        let command = self.command("script", &["-qfec", &line, "/dev/null"]);
        let mut output = finish(command, args).await;
        // The terminal turns each \n into \r\n.
        output.stdout = output.stdout.replace("\r\n", "\n");
        output
    }
}

async fn finish(mut command: tokio::process::Command, args: &[&str]) -> Output {
    let child = command.spawn().expect("start the command");
    let out = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("budpipeline {args:?} did not finish in {LIMIT:?}"))
        .expect("its output");
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One word for `sh -c`.
pub(crate) fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The text of a terminal output without its escape sequences.
pub(crate) fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameters, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Wait for a spawned command to exit.
pub(crate) async fn wait(child: tokio::process::Child, what: &str) -> Output {
    let out = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish in {LIMIT:?}"))
        .expect("its output");
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
