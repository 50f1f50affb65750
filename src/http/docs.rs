//! `GET /docs`: the OpenAPI document rendered for people, in one page that
//! needs nothing from outside this service (inline CSS and script, no CDN),
//! so it works in a cluster without internet access. The page fetches
//! `./openapi.json` and renders every route, its parameters, bodies and
//! answers, and the schemas.

use axum::http::header;
use axum::response::IntoResponse;

/// The page itself (`src/http/docs.html`).
pub(crate) const PAGE: &str = include_str!("docs.html");

/// The page may run its own inline script and style and fetch from this
/// origin, nothing else.
const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                      connect-src 'self'; img-src 'self' data:";

/// This API's documentation as a web page.
#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "this API rendered as one self-contained HTML page (no token needed)", content_type = "text/html")))]
pub(crate) async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}
