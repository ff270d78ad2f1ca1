//! Only gRPC is served: a request whose content-type is not gRPC gets
//! HTTP 415, as the gRPC over HTTP/2 specification asks, so that no other
//! HTTP client takes an answer with status 200 for a success. The answer
//! also carries `grpc-status` INTERNAL, as gRPC's own servers send, for
//! gRPC clients that sent a wrong content-type.

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::Response,
};

/// Passes gRPC requests on; answers others 415.
pub(crate) async fn grpc_only(request: Request, next: Next) -> Response {
    let content_type = request.headers().get(header::CONTENT_TYPE);
    if content_type.is_some_and(is_grpc) {
        return next.run(request).await;
    }
    let given = match content_type {
        Some(value) => truce_domain::quote(&String::from_utf8_lossy(value.as_bytes())),
        None => "none".to_owned(),
    };
    let message = format!("this is a gRPC server: content-type must be application/grpc, not {given}");
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    let headers = response.headers_mut();
    headers.insert("grpc-status", HeaderValue::from_static("13"));
    if let Ok(value) = HeaderValue::from_str(&percent_encode(&message)) {
        headers.insert("grpc-message", value);
    }
    response
}

/// `application/grpc`, alone or with a `+format` or parameters (not
/// gRPC-Web, which is not served).
fn is_grpc(value: &HeaderValue) -> bool {
    let Some(rest) = value.as_bytes().strip_prefix(b"application/grpc") else {
        return false;
    };
    matches!(rest.first(), None | Some(b'+' | b';'))
}

/// `grpc-message` encoding: printable ASCII but `%` as is, the rest as
/// `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types_pass_and_others_do_not() {
        for good in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc;charset=utf-8",
        ] {
            assert!(is_grpc(&HeaderValue::from_static(good)), "{good}");
        }
        for bad in [
            "application/json",
            "application/grpc-web",
            "application/grpcx",
            "text/plain",
            "",
        ] {
            assert!(!is_grpc(&HeaderValue::from_static(bad)), "{bad}");
        }
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(percent_encode("a 100% \"é\""), "a 100%25 \"%C3%A9\"");
    }
}
