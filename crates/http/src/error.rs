//! The error answer: a status code plus a clear message, sent as the Ace Stream envelope
//! `{"response": null, "error": "…"}` (or as plain text on stream routes, where a player reads
//! no JSON).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An HTTP error: status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Status code.
    pub status: StatusCode,
    /// What went wrong, for people.
    pub message: String,
    /// Answer as plain text instead of the JSON envelope.
    pub plain: bool,
}

impl ApiError {
    /// An error with this status and message (JSON envelope).
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            plain: false,
        }
    }

    /// 400: a bad or missing parameter.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// The same error as plain text (for stream routes) when `plain` is true.
    pub fn plain_if(mut self, plain: bool) -> Self {
        self.plain = plain;
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.plain {
            let mut r = (self.status, format!("{}\n", self.message)).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return r;
        }
        let body = json!({ "response": null, "error": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}

/// The success envelope `{"response": value, "error": null}`.
pub fn ok_envelope(value: serde_json::Value) -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "response": value, "error": null }))
}
