//! The filter module this controller was built with, served so that a WasmPlugin can fetch it over
//! plain HTTP (`url: http://fledge.fledge-system:7070/v1/filter.wasm`, `sha256: …`) without a registry.
//!
//! The module is embedded at build time (see `build.rs`): controller and filter ship as one tested pair.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Response header carrying the module's sha256 (lower-case hex), as a WasmPlugin's `sha256` wants it.
pub const SHA256_HEADER: &str = "x-fledge-sha256";

static MODULE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/filter.wasm"));

/// The embedded module, or `None` when this controller was built without one.
pub fn module() -> Option<&'static [u8]> {
    (!MODULE.is_empty()).then_some(MODULE)
}

/// Lower-case hex sha256 of the embedded module, computed once.
pub fn sha256() -> Option<&'static str> {
    static HEX: OnceLock<String> = OnceLock::new();
    module().map(|m| HEX.get_or_init(|| Sha256::digest(m).iter().map(|b| format!("{b:02x}")).collect()).as_str())
}

fn missing() -> ApiError {
    ApiError::NotFound(
        "this controller was built without the filter module (build it with `make build`, which sets FLEDGE_FILTER_WASM)".into(),
    )
}

/// `GET /v1/filter.wasm`: the module, `application/wasm`, with its sha256 in [`SHA256_HEADER`].
pub async fn wasm() -> Result<Response, ApiError> {
    let (Some(m), Some(sum)) = (module(), sha256()) else { return Err(missing()) };
    let sum = HeaderValue::from_str(sum).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/wasm")), (header::HeaderName::from_static(SHA256_HEADER), sum)],
        m,
    )
        .into_response())
}

/// `GET /v1/filter.wasm.sha256`: the hex digest and a newline (what `sha256sum` prints first).
pub async fn wasm_sha256() -> Result<Response, ApiError> {
    let sum = sha256().ok_or_else(missing)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{sum}\n")).into_response())
}
