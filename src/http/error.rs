//! The one error type at the HTTP boundary. Every error is JSON
//! `{"detail": ..., "errors"?: [...]}`; internal causes are logged with
//! their chain and never sent to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::engine::control::ControlError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    Client {
        status: StatusCode,
        detail: String,
        errors: Option<Vec<String>>,
    },
    /// An error whose `detail` is an object: the shape budapp's
    /// `invoke_service` reads (`detail.error` or `detail.message`, plus
    /// `detail.errors`), for the original's routes (COMPAT.md).
    #[error("{detail}")]
    Structured {
        status: StatusCode,
        detail: serde_json::Value,
    },
    /// The database (or another dependency) is unreachable: worth a retry.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow_like::Error),
    #[error("internal error")]
    Internal(#[source] anyhow_like::Error),
}

/// A boxed error with its source chain, without pulling in `anyhow`.
pub mod anyhow_like {
    pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self::Client {
            status,
            detail: detail.into(),
            errors: None,
        }
    }

    pub fn with_errors(status: StatusCode, detail: impl Into<String>, errors: Vec<String>) -> Self {
        Self::Client {
            status,
            detail: detail.into(),
            errors: Some(errors),
        }
    }

    /// The same error with its problems where budapp looks for them:
    /// `{"detail": {"error": <summary>, "errors": [...]}}`.
    pub fn for_budapp(self) -> Self {
        match self {
            Self::Client {
                status,
                detail,
                errors: Some(errors),
            } => Self::Structured {
                status,
                detail: json!({ "error": detail, "errors": errors }),
            },
            other => other,
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden")
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(Box::new(e)),
            sqlx::Error::Database(ref db)
                if db
                    .code()
                    // 57P: shutting down; 08: connection; 3D000: no such
                    // database; 28: authentication; 53300: too many
                    // connections. All are the database being unavailable
                    // to this service, not a fault of the request.
                    .is_some_and(|c| {
                        c.starts_with("57P")
                            || c.starts_with("08")
                            || c.starts_with("28")
                            || matches!(c.as_ref(), "3D000" | "53300")
                    }) =>
            {
                Self::Unavailable(Box::new(e))
            }
            // Input that is valid JSON but that Postgres cannot store: a NUL
            // character (`\u0000`) in text or jsonb, or a value too large for
            // an index. The client sent it, so it is the client's error.
            sqlx::Error::Database(ref db)
                if db
                    .code()
                    .is_some_and(|c| matches!(c.as_ref(), "22P05" | "22021")) =>
            {
                Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid request: text values must not contain the NUL character (\\u0000)",
                )
            }
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| c.as_ref() == "54000") => {
                Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid request: a value is too large to be stored",
                )
            }
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<crate::engine::Error> for ApiError {
    fn from(e: crate::engine::Error) -> Self {
        match e {
            crate::engine::Error::Db(e) => e.into(),
            // Another writer kept the rows busy: worth a retry.
            crate::engine::Error::Contended(_) => Self::Unavailable(Box::new(e)),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotFound => Self::not_found("execution"),
            ControlError::WorkflowNotFound => Self::not_found("workflow"),
            ControlError::NotRunnable(status) => {
                Self::new(StatusCode::CONFLICT, not_runnable(&status))
            }
            ControlError::Invalid(errors) => Self::with_errors(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid parameters",
                errors,
            ),
            ControlError::Conflict(detail) => Self::new(StatusCode::CONFLICT, detail),
            ControlError::Engine(e) => e.into(),
        }
    }
}

/// Why a pipeline in `status` cannot start.
pub fn not_runnable(status: &str) -> String {
    match status {
        "draft" => "the pipeline is a draft (it has no steps): add steps before running it".into(),
        other => format!("the pipeline is {other}: only active pipelines run"),
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Client {
                status,
                detail,
                errors,
            } => {
                let body = match errors {
                    Some(errors) => json!({ "detail": detail, "errors": errors }),
                    None => json!({ "detail": detail }),
                };
                (status, Json(body)).into_response()
            }
            Self::Structured { status, detail } => {
                (status, Json(json!({ "detail": detail }))).into_response()
            }
            Self::Unavailable(e) => {
                tracing::warn!(error = %chain(e.as_ref()), "request failed: database unavailable");
                let body = json!({ "detail": "service temporarily unavailable; retry later" });
                (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
            }
            Self::Internal(e) => {
                tracing::error!(error = %chain(e.as_ref()), "request failed");
                let body = json!({ "detail": "internal error" });
                (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
            }
        }
    }
}
