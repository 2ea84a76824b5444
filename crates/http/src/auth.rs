//! The access-token check: when a token is configured, every request carries it as `?token=T` or
//! `Authorization: Bearer T`, compared in constant time; otherwise 401 (a browser opening a page
//! gets the login page, [`crate::pages::login`]). The vendored scripts under `/assets/` need
//! none.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Middleware: lets the request through when no token is set or it carries the right one.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(want) = state.config().access_token.as_deref() else {
        return next.run(request).await;
    };
    if carries_token(&request, want) || crate::pages::is_public(&request) {
        return next.run(request).await;
    }
    if crate::pages::is_page(&request) {
        let tried = request.uri().query().is_some_and(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .take(64)
                .any(|(k, _)| k == "token")
        });
        return crate::pages::login(tried);
    }
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "access token required: add ?token=… or an Authorization: Bearer header",
    )
    .into_response()
}

fn carries_token(request: &Request, want: &str) -> bool {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|t| ct_eq(t.trim().as_bytes(), want.as_bytes())) {
        return true;
    }
    let query = request.uri().query().unwrap_or("");
    url::form_urlencoded::parse(query.as_bytes())
        .take(64)
        .any(|(k, v)| k == "token" && ct_eq(v.as_bytes(), want.as_bytes()))
}

/// Constant-time equality (the time depends on the lengths only).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    a.iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        .eq(&0)
}

#[cfg(test)]
mod tests {
    use super::ct_eq;

    #[test]
    fn compare() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(!ct_eq(b"", b""));
    }
}
