//! The dashboard at `/ui`: plain HTML, CSS and JavaScript embedded in the binary (no build step, no
//! CDN: it works offline), with uPlot vendored under `controller/ui/vendor/` (version, source and
//! licence in `controller/ui/README.md`). One page serves both views — `/ui` (every rollout) and
//! `/ui/rollouts/{name}` — and reads everything from the public API and its event streams.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fledge_core::rollout::validate_name;

use crate::error::ApiError;

const PAGE: &str = include_str!("../ui/index.html");

/// Name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../ui/app.js")),
    ("app.css", "text/css; charset=utf-8", include_bytes!("../ui/app.css")),
    ("uPlot.iife.min.js", "text/javascript; charset=utf-8", include_bytes!("../ui/vendor/uPlot.iife.min.js")),
    ("uPlot.min.css", "text/css; charset=utf-8", include_bytes!("../ui/vendor/uPlot.min.css")),
    ("uPlot.LICENSE", "text/plain; charset=utf-8", include_bytes!("../ui/vendor/uPlot.LICENSE")),
];

/// Scripts and styles only from here; data only from this API; no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /ui`: the list of rollouts.
pub async fn page() -> Response {
    html()
}

/// `GET /ui/rollouts/{name}`: one rollout (the same page; the script reads the path).
pub async fn rollout_page(Path(name): Path<String>) -> Result<Response, ApiError> {
    validate_name(&name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(html())
}

fn html() -> Response {
    let mut resp = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// `GET /ui/assets/{file}`: the page's script and styles, and the vendored chart library.
pub async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let (_, content_type, bytes) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or_else(|| ApiError::NotFound(format!("no dashboard asset {file:?}")))?;
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, *content_type)], *bytes).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(resp)
}
