//! Unit tests of the header rules of HTTP mode.

use super::*;

#[test]
fn hop_by_hop_headers_and_the_ones_connection_names_are_removed() {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("connection", "keep-alive, x-session-hop"),
        ("keep-alive", "timeout=5"),
        ("x-session-hop", "1"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("te", "trailers"),
        ("proxy-authorization", "Basic eA=="),
        ("content-type", "text/plain"),
        ("x-request-id", "42"),
    ] {
        headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    strip_hop_by_hop(&mut headers);
    let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
    left.sort();
    assert_eq!(left, ["content-type", "x-request-id"]);
}

#[test]
fn forwarding_lists_are_appended_to_on_one_line() {
    let mut headers = HeaderMap::new();
    append_list(&mut headers, "x-forwarded-for", "127.0.0.1");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
    append_list(&mut headers, "x-forwarded-for", "::1");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1, 10.0.0.2, ::1");
    assert_eq!(headers.get_all("x-forwarded-for").iter().count(), 1);
}

#[test]
fn forwarded_values_are_quoted_unless_they_are_tokens() {
    assert_eq!(quote("web.internal"), "web.internal");
    assert_eq!(quote("web.internal:8080"), "\"web.internal:8080\"");
    assert_eq!(quote("[::1]:80"), "\"[::1]:80\"");
    assert_eq!(quote("a\"b"), "\"a\\\"b\"");
    assert_eq!(quote(""), "\"\"");
}

#[test]
fn only_idempotent_methods_may_be_replayed() {
    for m in [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
    ] {
        assert!(is_idempotent(&m), "{m}");
    }
    for m in [Method::POST, Method::PATCH, Method::CONNECT] {
        assert!(!is_idempotent(&m), "{m}");
    }
}

#[test]
fn a_replayed_request_keeps_its_head_and_has_no_body() {
    let mut original: Request<ReqBody> = Request::new(Either::Right(Empty::new()));
    *original.method_mut() = Method::DELETE;
    *original.uri_mut() = Uri::from_static("/items/7?force=1");
    original
        .headers_mut()
        .insert(header::HOST, HeaderValue::from_static("web.internal"));
    let replay = Head::of(&original).into_request();
    assert_eq!(replay.method(), Method::DELETE);
    assert_eq!(replay.uri(), "/items/7?force=1");
    assert_eq!(replay.version(), Version::HTTP_11);
    assert_eq!(replay.headers()[header::HOST], "web.internal");
    assert!(replay.body().is_end_stream());
}
