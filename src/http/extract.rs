//! Extractors whose rejections are this service's JSON errors.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ApiError;
use super::server::BodyStalled;
use crate::causes::innermost;

/// `axum::Json` with errors that name the field and the right status:
/// 400 for a body that is not JSON at all (or nested deeper than
/// [`MAX_JSON_DEPTH`]), 422 for a body that is JSON but
/// not an object, has wrong types or misses fields, 413 for a body over the
/// limit, 415 for another content type.
///
/// The body is first parsed as any JSON value, so that a truncated document
/// is reported as such (400) rather than by whatever field the streaming
/// deserializer met first (`unknown field ...`).
pub(crate) struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::unsupported_media_type(
                "expected Content-Type: application/json",
            ));
        }
        let bytes = match Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(rejection) => return Err(bytes_rejection(rejection)),
        };
        parse_object(&bytes).map(Self)
    }
}

/// JSON object bytes into `T`: 400 when not JSON, 422 when not an object or
/// not of `T`'s shape (naming the field).
fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Err(e) if too_deep(&e) => {
            return Err(ApiError::bad_request(format!(
                "request body is nested too deeply: at most {MAX_JSON_DEPTH} levels of arrays and objects ({e})"
            )));
        }
        Err(e) => {
            return Err(ApiError::bad_request(format!(
                "request body is not valid JSON: {e}"
            )));
        }
        Ok(value) if !value.is_object() => {
            return Err(ApiError::invalid(
                "invalid request body: must be a JSON object",
            ));
        }
        Ok(_) => {}
    }
    match axum::Json::<T>::from_bytes(bytes) {
        Ok(axum::Json(value)) => Ok(value),
        Err(rejection) => Err(json_rejection(rejection)),
    }
}

/// How deep arrays and objects may nest: serde_json stops parsing at 128.
pub(crate) const MAX_JSON_DEPTH: usize = 127;

/// serde_json gave up at its recursion limit: the document may well be
/// valid JSON, just deeper than [`MAX_JSON_DEPTH`]. serde_json reports this
/// as a syntax error, told apart only by its message.
pub(crate) fn too_deep(e: &serde_json::Error) -> bool {
    e.is_syntax() && e.to_string().starts_with("recursion limit exceeded")
}

/// [`AppJson`] for bodies whose every field is optional: an empty body
/// without a Content-Type is `T::default()`.
pub(crate) struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let typed = json_content_type(req.headers());
        let declared = req.headers().contains_key(header::CONTENT_TYPE);
        let bytes = match Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(rejection) => return Err(bytes_rejection(rejection)),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) && !typed {
            return Ok(Self(T::default()));
        }
        if !typed {
            let detail = if declared {
                "expected Content-Type: application/json"
            } else {
                "expected Content-Type: application/json (or an empty body)"
            };
            return Err(ApiError::unsupported_media_type(detail));
        }
        parse_object(&bytes).map(Self)
    }
}

/// `application/json`, or `application/<anything>+json`, with any parameters.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.strip_prefix("application/") {
        Some(subtype) => subtype == "json" || subtype.ends_with("+json"),
        None => false,
    }
}

/// Reading the body failed: over the limit (413), the client stopped
/// sending it (408, see [`super::server`]) or the connection broke.
pub(crate) fn bytes_rejection(rejection: BytesRejection) -> ApiError {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::for_status(status, "request body is too large");
    }
    let mut source: Option<&dyn std::error::Error> = Some(&rejection);
    while let Some(e) = source {
        if let Some(stalled) = e.downcast_ref::<BodyStalled>() {
            let detail = format!(
                "the request body stopped arriving for {} s",
                stalled.0.as_secs_f64()
            );
            return ApiError::RequestTimeout(detail.into());
        }
        source = e.source();
    }
    ApiError::for_status(status, "the request body could not be read")
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let detail = match &rejection {
        JsonRejection::JsonDataError(e) => format!("invalid request body: {}", innermost(e)),
        JsonRejection::JsonSyntaxError(e) => {
            format!("request body is not valid JSON: {}", innermost(e))
        }
        JsonRejection::MissingJsonContentType(_) => {
            "expected Content-Type: application/json".to_owned()
        }
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => "request body is too large".to_owned(),
        other => other.body_text(),
    };
    ApiError::for_status(status, detail)
}

/// A UUID path segment; anything else is a 400 naming the segment.
pub(crate) struct Id(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<Uuid>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(id)) => Ok(Self(id)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                use axum::extract::path::ErrorKind;
                let value = match e.kind() {
                    ErrorKind::ParseErrorAtKey { value, .. }
                    | ErrorKind::ParseErrorAtIndex { value, .. }
                    | ErrorKind::ParseError { value, .. }
                    | ErrorKind::DeserializeError { value, .. } => Some(value.as_str()),
                    _ => None,
                };
                Err(not_a_uuid("id", value))
            }
            Err(other) => Err(ApiError::bad_request(other.body_text())),
        }
    }
}

/// `400 {"detail": "id: 'nope' is not a UUID"}`: short, naming the field and
/// the value (cut at 40 characters), instead of the parser's own sentence.
pub(crate) fn not_a_uuid(field: &str, value: Option<&str>) -> ApiError {
    let detail = match value {
        Some(v) if !v.is_empty() => {
            let head: String = v.chars().take(40).collect();
            let more = if v.chars().count() > 40 { "…" } else { "" };
            format!("{field}: '{head}{more}' is not a UUID")
        }
        _ => format!("{field}: not a UUID"),
    };
    ApiError::bad_request(detail)
}

/// Query strings with JSON errors.
pub(crate) struct AppQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let text = innermost(&e);
                // serde_urlencoded names the field first: `workflow_id: UUID parsing failed: …`.
                let field = text.split_once(": ").map(|(field, _)| field);
                let detail = match field {
                    Some(field) if text.contains("UUID parsing failed") => {
                        let given = axum::extract::Query::<
                            std::collections::HashMap<String, String>,
                        >::try_from_uri(&parts.uri)
                        .ok()
                        .and_then(|q| q.0.get(field).cloned());
                        return Err(not_a_uuid(field, given.as_deref()));
                    }
                    Some(field) if text.contains("invalid digit") => {
                        format!("{field}: must be an integer")
                    }
                    _ => format!("invalid query: {text}"),
                };
                Err(ApiError::bad_request(detail))
            }
            Err(other) => Err(ApiError::bad_request(other.body_text())),
        }
    }
}

/// `limit` (1 to 1000, 20 when absent) and `offset` (0 or more) of a list.
pub(crate) fn page_bounds(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(20);
    let offset = offset.unwrap_or(0);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit: must be between 1 and 1000"));
    }
    if offset < 0 {
        return Err(ApiError::bad_request("offset: must not be negative"));
    }
    Ok((limit, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_past_the_limit_is_told_apart_from_broken_json() {
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH + 1),
            "]".repeat(MAX_JSON_DEPTH + 1)
        );
        let e = serde_json::from_str::<serde_json::Value>(&deep).unwrap_err();
        assert!(too_deep(&e), "{e}");
        let at_limit = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH),
            "]".repeat(MAX_JSON_DEPTH)
        );
        assert!(serde_json::from_str::<serde_json::Value>(&at_limit).is_ok());
        let broken = serde_json::from_str::<serde_json::Value>("[[").unwrap_err();
        assert!(!too_deep(&broken), "{broken}");

        let body = format!("{{\"dag\": {deep}}}");
        let err = parse_object::<serde_json::Value>(body.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("nested too deeply"), "{err}");
    }
}
