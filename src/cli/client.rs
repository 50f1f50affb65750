//! The HTTP client of the command line: where the service is, which token
//! to send, and errors a person can act on.
//!
//! The service is `--url`, else `BUDPIPELINE_URL`, else
//! `http://127.0.0.1:$APP_PORT` (8010 by default, where `make run` serves).
//! The token is `--token`, else `BUDPIPELINE_TOKEN`, else `APP_API_TOKEN`
//! (the service's own variable, so a shell that started the service can talk
//! to it), else the file `make run` writes, `target/dev-app-api-token`.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::Remote;

/// Where `make run` keeps the token it generates (relative to the checkout).
pub(crate) const DEV_TOKEN_FILE: &str = "target/dev-app-api-token";

/// Why a command could not do its work; each maps to an exit status.
#[derive(Debug)]
pub(crate) enum CliError {
    /// The command line or a file: exit 2.
    Usage(String),
    /// No answer from the service (refused, timed out, DNS): exit 2.
    Unreachable { url: String, reason: String },
    /// The service refused the token: exit 2.
    Forbidden { token_from: Option<&'static str> },
    /// The service answered with an error (404, 409, 422, …): exit 1.
    Api {
        status: u16,
        detail: String,
        errors: Vec<String>,
    },
    /// Ctrl-C while watching: exit 130, like a shell.
    Interrupted,
}

impl CliError {
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            Self::Api { status, .. } if *status < 500 => ExitCode::from(1),
            Self::Interrupted => ExitCode::from(130),
            _ => ExitCode::from(2),
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Usage(message) => write!(f, "{message}"),
            Self::Unreachable { url, reason } => write!(
                f,
                "cannot reach budpipeline at {url} ({reason}).\n\
                 Is it running? `make run` starts it; --url or BUDPIPELINE_URL point elsewhere."
            ),
            Self::Forbidden { token_from: None } => write!(
                f,
                "the service wants a token (403 Forbidden) and none was given.\n\
                 Pass --token or set BUDPIPELINE_TOKEN to the service's APP_API_TOKEN \
                 (`make run` prints it, and keeps it in {DEV_TOKEN_FILE})."
            ),
            Self::Forbidden {
                token_from: Some(source),
            } => write!(
                f,
                "the service refused the token from {source} (403 Forbidden).\n\
                 It must equal the service's APP_API_TOKEN (`make run` prints it, and keeps it in {DEV_TOKEN_FILE})."
            ),
            Self::Api {
                status,
                detail,
                errors,
            } => {
                write!(f, "{detail} ({status})")?;
                for e in errors {
                    write!(f, "\n  - {e}")?;
                }
                Ok(())
            }
            Self::Interrupted => write!(f, "interrupted"),
        }
    }
}

/// A client of one service.
#[derive(Clone)]
pub(crate) struct Client {
    pub base: String,
    token: Option<String>,
    /// Where the token came from, to say so when it is refused.
    token_from: Option<&'static str>,
    http: reqwest::Client,
}

impl Client {
    pub(crate) fn new(remote: &Remote) -> Result<Self, CliError> {
        Self::with_lookup(remote, |name| std::env::var(name).ok())
    }

    /// [`Client::new`] with the environment given (for tests).
    pub(crate) fn with_lookup(
        remote: &Remote,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, CliError> {
        let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let base = match non_empty(remote.url.clone()).or_else(|| non_empty(env("BUDPIPELINE_URL")))
        {
            Some(url) => url,
            None => {
                let port = non_empty(env("APP_PORT")).unwrap_or_else(|| "8010".into());
                format!("http://127.0.0.1:{port}")
            }
        };
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CliError::Usage(format!(
                "--url must start with http:// or https://, not '{base}'"
            )));
        }
        let (token, token_from) = if let Some(t) = non_empty(remote.token.clone()) {
            (Some(t), Some("--token"))
        } else if let Some(t) = non_empty(env("BUDPIPELINE_TOKEN")) {
            (Some(t), Some("BUDPIPELINE_TOKEN"))
        } else if let Some(t) = non_empty(env("APP_API_TOKEN")) {
            (Some(t), Some("APP_API_TOKEN"))
        } else if let Some(t) = non_empty(std::fs::read_to_string(DEV_TOKEN_FILE).ok()) {
            (Some(t.trim().to_owned()), Some(DEV_TOKEN_FILE))
        } else {
            (None, None)
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("budpipeline-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Usage(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            base,
            token,
            token_from,
            http,
        })
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(Method::GET, path, &[], None).await
    }

    pub(crate) async fn get_query(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, CliError> {
        self.send(Method::GET, path, query, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Result<Value, CliError> {
        self.send(Method::POST, path, &[], Some(body)).await
    }

    pub(crate) async fn put(&self, path: &str, body: Value) -> Result<Value, CliError> {
        self.send(Method::PUT, path, &[], Some(body)).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("accept", "application/json");
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(token) = &self.token {
            request = request.header("dapr-api-token", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| CliError::Unreachable {
            url: self.base.clone(),
            reason: reason(&e),
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| CliError::Unreachable {
            url: self.base.clone(),
            reason: reason(&e),
        })?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(value);
        }
        if status == reqwest::StatusCode::FORBIDDEN {
            return Err(CliError::Forbidden {
                token_from: self.token_from,
            });
        }
        let detail = value
            .get("detail")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("request failed")
                    .to_owned()
            });
        let errors = value
            .get("errors")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Err(CliError::Api {
            status: status.as_u16(),
            detail,
            errors,
        })
    }
}

/// reqwest's error in a few words (its own text repeats the URL and nests
/// the cause).
fn reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let innermost = crate::causes::innermost(e);
    if e.is_connect() && innermost.to_ascii_lowercase().contains("refused") {
        "connection refused".into()
    } else {
        innermost
    }
}

/// Runs a client command on a small runtime of its own and turns its
/// outcome into the process's exit status, printing any error.
pub(crate) fn block_on(command: impl Future<Output = Result<ExitCode, CliError>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("budpipeline: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(e) => {
            if !matches!(e, CliError::Interrupted) {
                eprintln!("budpipeline: {e}");
            }
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(remote: Remote, env: &[(&str, &str)]) -> Result<Client, CliError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Client::with_lookup(&remote, move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn the_url_comes_from_the_flag_then_the_environment_then_app_port() {
        let flag = Remote {
            url: Some("http://flag:1/".into()),
            token: None,
        };
        assert_eq!(
            client(flag, &[("BUDPIPELINE_URL", "http://env:2")])
                .unwrap()
                .base,
            "http://flag:1"
        );
        assert_eq!(
            client(Remote::default(), &[("BUDPIPELINE_URL", "http://env:2")])
                .unwrap()
                .base,
            "http://env:2"
        );
        assert_eq!(
            client(Remote::default(), &[("APP_PORT", "9000")])
                .unwrap()
                .base,
            "http://127.0.0.1:9000"
        );
        assert!(matches!(
            client(
                Remote {
                    url: Some("localhost:8010".into()),
                    token: None
                },
                &[]
            ),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn the_token_comes_from_the_flag_then_budpipeline_token_then_app_api_token() {
        let both = [("BUDPIPELINE_TOKEN", "b"), ("APP_API_TOKEN", "a")];
        let c = client(
            Remote {
                url: None,
                token: Some("f".into()),
            },
            &both,
        )
        .unwrap();
        assert_eq!(
            (c.token.as_deref(), c.token_from),
            (Some("f"), Some("--token"))
        );
        let c = client(Remote::default(), &both).unwrap();
        assert_eq!(
            (c.token.as_deref(), c.token_from),
            (Some("b"), Some("BUDPIPELINE_TOKEN"))
        );
        let c = client(Remote::default(), &[("APP_API_TOKEN", "a")]).unwrap();
        assert_eq!(
            (c.token.as_deref(), c.token_from),
            (Some("a"), Some("APP_API_TOKEN"))
        );
    }

    #[test]
    fn errors_say_what_to_do_and_map_to_exit_codes() {
        let unreachable = CliError::Unreachable {
            url: "http://127.0.0.1:8010".into(),
            reason: "connection refused".into(),
        };
        assert!(unreachable.to_string().contains("make run"));
        assert_eq!(unreachable.exit_code(), ExitCode::from(2));
        let forbidden = CliError::Forbidden { token_from: None };
        assert!(forbidden.to_string().contains("--token"));
        assert_eq!(forbidden.exit_code(), ExitCode::from(2));
        let refused = CliError::Api {
            status: 422,
            detail: "DAG validation failed".into(),
            errors: vec!["steps: at least one step is required".into()],
        };
        assert_eq!(
            refused.to_string(),
            "DAG validation failed (422)\n  - steps: at least one step is required"
        );
        assert_eq!(refused.exit_code(), ExitCode::from(1));
    }
}
