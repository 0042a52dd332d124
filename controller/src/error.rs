//! The one error type every handler returns: a status and a JSON body naming the problem, and the
//! body extractor that turns a too-large or unreadable body into one.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::machine::StateError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than the {limit} bytes this endpoint accepts")]
    TooLarge { limit: usize },
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut resp = (status, Json(json!({ "error": { "code": code, "message": self.to_string() } }))).into_response();
        if matches!(self, ApiError::TooLarge { .. }) {
            // The body may have been cut off unread (past the drain limit): this connection carries
            // no further request.
            resp.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        }
        resp
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Invalid(e) => ApiError::Invalid(e.to_string()),
            other => ApiError::Conflict(other.to_string()),
        }
    }
}

/// Parses a JSON body with serde's own message, which names unknown fields and wrong types.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::BadRequest(format!("malformed JSON: {e}")),
            Category::Data => ApiError::Invalid(e.to_string()),
        }
    })
}

/// A request body, read up to [`crate::api::MAX_BODY`]; beyond it a 413 with a JSON error.
///
/// The rest of an oversized body is read and thrown away (up to [`DRAIN_LIMIT`]) before the answer, so
/// that an ordinary client still writing its body gets the 413 instead of a reset connection; a body
/// past even that is cut off. Nothing beyond the limit is kept in memory.
pub struct Body(pub Bytes);

/// How much of an oversized body is drained before the connection is given up.
pub const DRAIN_LIMIT: usize = 16 << 20;

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        use http_body_util::BodyExt;
        let limit = crate::api::MAX_BODY;
        let mut body = req.into_body();
        let mut kept: Vec<u8> = Vec::new();
        let mut seen: usize = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
            let Ok(data) = frame.into_data() else { continue };
            seen = seen.saturating_add(data.len());
            if seen <= limit {
                kept.extend_from_slice(&data);
            } else {
                kept = Vec::new();
                if seen > DRAIN_LIMIT {
                    break;
                }
            }
        }
        if seen > limit {
            return Err(ApiError::TooLarge { limit });
        }
        Ok(Body(Bytes::from(kept)))
    }
}
