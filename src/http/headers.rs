//! Headers every answer gets right: API answers are never cached or sniffed, and a client's
//! `X-Request-Id` is kept only when it is short, visible ASCII (it goes into every log line).

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// Longest client request id kept; a longer one is replaced by a generated id.
const MAX_REQUEST_ID_CHARS: usize = 128;

/// Whether a client's request id is fit to keep and log.
fn usable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_CHARS
        && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// Drops an unusable `X-Request-Id`, so the request id layer generates one instead.
pub async fn keep_usable_request_id(mut request: Request, next: Next) -> Response {
    let unusable = request
        .headers()
        .get_all("x-request-id")
        .iter()
        .any(|v| !usable_request_id(v));
    let repeated = request.headers().get_all("x-request-id").iter().count() > 1;
    if unusable || repeated {
        request.headers_mut().remove("x-request-id");
    }
    next.run(request).await
}

/// `/api/…` and `/admin/…` answers carry tenant data: no cache may keep them, and no browser
/// may read them as anything but their declared type.
pub async fn protect_api_answers(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let api = path.starts_with("/api/") || path.starts_with("/admin/");
    let mut response = next.run(request).await;
    if api {
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_visible_ascii_request_ids_are_kept() {
        let ok = |s: &str| usable_request_id(&HeaderValue::from_str(s).unwrap());
        assert!(ok("req-42_abc.DEF:1"));
        assert!(ok(&"a".repeat(128)));
        assert!(!ok(&"a".repeat(129)));
        assert!(!ok("two words"));
        assert!(!ok(""));
        assert!(!usable_request_id(
            &HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()
        ));
    }
}
