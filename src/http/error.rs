//! The one error type at the HTTP boundary. Each kind of error is a named
//! variant, and [`ApiError::status`] is the only place that says which
//! status it answers. Every error is JSON: `{"detail": "...", "errors"?:
//! [...]}`, or `{"detail": {...}}` on the original's routes (COMPAT.md).
//! Internal causes are never sent to the client; the response carries them
//! to the request middleware ([`Cause`]), which logs them with the route.

use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::causes::chain;
use crate::engine::control::ControlError;

/// What an error says to the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Detail {
    /// `{"detail": text}`, with `errors` (every problem) when there are several.
    Text {
        text: String,
        errors: Option<Vec<String>>,
    },
    /// `{"detail": {...}}`: the shape budapp's `invoke_service` reads
    /// (`detail.error` or `detail.message`, plus `detail.errors`).
    Object(Value),
}

impl From<String> for Detail {
    fn from(text: String) -> Self {
        Self::Text { text, errors: None }
    }
}

impl From<&str> for Detail {
    fn from(text: &str) -> Self {
        text.to_owned().into()
    }
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text { text, .. } => f.write_str(text),
            Self::Object(value) => write!(f, "{value}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (a bad id, query or cursor).
    #[error("{0}")]
    BadRequest(Detail),
    /// 401: a webhook called without its secret, or with a wrong one.
    #[error("{0}")]
    Unauthorized(Detail),
    /// 403: no or a wrong `dapr-api-token`, or another user's resource.
    #[error("{0}")]
    Forbidden(Detail),
    /// 404: no such resource or route.
    #[error("{0}")]
    NotFound(Detail),
    /// 405: the route exists, the method does not.
    #[error("{0}")]
    MethodNotAllowed(Detail),
    /// 408: the request body stopped arriving.
    #[error("{0}")]
    RequestTimeout(Detail),
    /// 409: the request conflicts with what is stored (a name taken, a
    /// pipeline that cannot run).
    #[error("{0}")]
    Conflict(Detail),
    /// 413: the body is over the limit.
    #[error("{0}")]
    PayloadTooLarge(Detail),
    /// 415: not JSON.
    #[error("{0}")]
    UnsupportedMediaType(Detail),
    /// 422: well-formed, but not valid: every problem at once.
    #[error("{0}")]
    Invalid(Detail),
    /// 429: over a rate limit.
    #[error("{0}")]
    TooManyRequests(Detail),
    /// 503: the database (or another dependency) is unreachable: worth a retry.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow_like::Error),
    /// 500: a fault of ours.
    #[error("internal error")]
    Internal(#[source] anyhow_like::Error),
}

/// A boxed error with its source chain, without pulling in `anyhow`.
pub(crate) mod anyhow_like {
    pub(crate) type Error = Box<dyn std::error::Error + Send + Sync + 'static>;
}

/// The cause of a 5xx, attached to the response for the request middleware
/// to log (with the request's method and route, inside its span).
#[derive(Debug, Clone)]
pub(crate) struct Cause {
    /// The error and its sources, `a: b: c`.
    pub chain: Arc<str>,
    /// A fault of ours (logged as an error), or a dependency away (a warning).
    pub internal: bool,
}

impl ApiError {
    /// The one mapping from kind of error to HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error for a status chosen by someone else (an axum rejection):
    /// the inverse of [`ApiError::status`]; any other 4xx is a 400.
    pub fn for_status(status: StatusCode, detail: impl Into<Detail>) -> Self {
        let detail = detail.into();
        match status {
            StatusCode::UNAUTHORIZED => Self::Unauthorized(detail),
            StatusCode::NOT_FOUND => Self::NotFound(detail),
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed(detail),
            StatusCode::REQUEST_TIMEOUT => Self::RequestTimeout(detail),
            StatusCode::CONFLICT => Self::Conflict(detail),
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge(detail),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType(detail),
            StatusCode::UNPROCESSABLE_ENTITY => Self::Invalid(detail),
            StatusCode::TOO_MANY_REQUESTS => Self::TooManyRequests(detail),
            StatusCode::FORBIDDEN => Self::Forbidden(detail),
            s if s.is_server_error() => Self::Internal(detail.to_string().into()),
            _ => Self::BadRequest(detail),
        }
    }

    pub fn bad_request(detail: impl Into<Detail>) -> Self {
        Self::BadRequest(detail.into())
    }

    pub fn invalid(detail: impl Into<Detail>) -> Self {
        Self::Invalid(detail.into())
    }

    pub fn conflict(detail: impl Into<Detail>) -> Self {
        Self::Conflict(detail.into())
    }

    /// A 422 with every problem in `errors`.
    pub fn invalid_with(text: impl Into<String>, errors: Vec<String>) -> Self {
        Self::Invalid(Detail::Text {
            text: text.into(),
            errors: Some(errors),
        })
    }

    /// A 404 in the caller's words.
    pub fn not_found_detail(detail: impl Into<Detail>) -> Self {
        Self::NotFound(detail.into())
    }

    pub fn unsupported_media_type(detail: impl Into<Detail>) -> Self {
        Self::UnsupportedMediaType(detail.into())
    }

    /// `{what} not found`.
    pub fn not_found(what: &str) -> Self {
        Self::NotFound(format!("{what} not found").into())
    }

    pub fn forbidden() -> Self {
        Self::Forbidden("Forbidden".into())
    }

    fn detail_mut(&mut self) -> Option<&mut Detail> {
        match self {
            Self::BadRequest(d)
            | Self::Unauthorized(d)
            | Self::Forbidden(d)
            | Self::NotFound(d)
            | Self::MethodNotAllowed(d)
            | Self::RequestTimeout(d)
            | Self::Conflict(d)
            | Self::PayloadTooLarge(d)
            | Self::UnsupportedMediaType(d)
            | Self::Invalid(d)
            | Self::TooManyRequests(d) => Some(d),
            Self::Unavailable(_) | Self::Internal(_) => None,
        }
    }

    /// The same error with its problems where budapp looks for them:
    /// `{"detail": {"error": <summary>, "errors": [...]}}`.
    pub fn for_budapp(mut self) -> Self {
        if let Some(detail) = self.detail_mut()
            && let Detail::Text {
                text,
                errors: Some(errors),
            } = detail
        {
            *detail = Detail::Object(json!({ "error": text, "errors": errors }));
        }
        self
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
                Self::invalid(
                    "invalid request: text values must not contain the NUL character (\\u0000)",
                )
            }
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| c.as_ref() == "54000") => {
                Self::invalid("invalid request: a value is too large to be stored")
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
            ControlError::NotRunnable(status) => Self::conflict(not_runnable(&status)),
            ControlError::Invalid(errors) => Self::invalid_with("invalid parameters", errors),
            ControlError::Conflict(detail) => Self::conflict(detail),
            ControlError::Engine(e) => e.into(),
        }
    }
}

/// Why a pipeline in `status` cannot start.
pub(crate) fn not_runnable(status: &str) -> String {
    match status {
        "draft" => "the pipeline is a draft (it has no steps): add steps before running it".into(),
        other => format!("the pipeline is {other}: only active pipelines run"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(mut self) -> Response {
        let status = self.status();
        let cause = match &self {
            Self::Unavailable(e) => Some(Cause {
                chain: chain(e.as_ref()).into(),
                internal: false,
            }),
            Self::Internal(e) => Some(Cause {
                chain: chain(e.as_ref()).into(),
                internal: true,
            }),
            _ => None,
        };
        let body = match self.detail_mut() {
            Some(Detail::Text { text, errors: None }) => json!({ "detail": text }),
            Some(Detail::Text {
                text,
                errors: Some(errors),
            }) => json!({ "detail": text, "errors": errors }),
            Some(Detail::Object(detail)) => json!({ "detail": detail }),
            None if status == StatusCode::SERVICE_UNAVAILABLE => {
                json!({ "detail": "service temporarily unavailable; retry later" })
            }
            None => json!({ "detail": "internal error" }),
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(cause) = cause {
            response.extensions_mut().insert(cause);
        }
        response
    }
}
