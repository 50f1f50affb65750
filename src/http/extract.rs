//! Extractors whose rejections are this service's JSON errors.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ApiError;

/// `axum::Json` with errors that name the field and the right status:
/// 400 for malformed JSON, 422 for wrong types or missing fields, 413 for
/// a body over the limit, 415 for another content type.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let detail = match &rejection {
        JsonRejection::JsonDataError(e) => format!("invalid request body: {}", source_text(e)),
        JsonRejection::JsonSyntaxError(e) => {
            format!("request body is not valid JSON: {}", source_text(e))
        }
        JsonRejection::MissingJsonContentType(_) => {
            "expected Content-Type: application/json".to_owned()
        }
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => "request body is too large".to_owned(),
        other => other.body_text(),
    };
    ApiError::new(status, detail)
}

/// serde's own message (it names the field), without axum's preamble.
fn source_text(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// A UUID path segment; anything else is a 400 naming the segment.
pub struct Id(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<Uuid>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(id)) => Ok(Self(id)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("id: not a valid UUID ({})", e.body_text()),
            )),
            Err(other) => Err(ApiError::new(StatusCode::BAD_REQUEST, other.body_text())),
        }
    }
}

/// Query strings with JSON errors.
pub struct AppQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("invalid query: {}", source_text(&e)),
            )),
            Err(other) => Err(ApiError::new(StatusCode::BAD_REQUEST, other.body_text())),
        }
    }
}

/// `limit`/`offset` paging with bounds.
#[derive(Debug, serde::Deserialize)]
pub struct Page {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl Page {
    pub fn bounds(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
        let limit = limit.unwrap_or(20);
        let offset = offset.unwrap_or(0);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "limit: must be between 1 and 1000",
            ));
        }
        if offset < 0 {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "offset: must not be negative",
            ));
        }
        Ok((limit, offset))
    }
}
