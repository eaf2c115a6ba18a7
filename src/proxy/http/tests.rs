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
fn a_header_that_connection_names_goes_even_without_other_hop_by_hop_headers() {
    // `Connection` itself is hop-by-hop, so the quick look finds it and its names go too.
    let mut headers = HeaderMap::new();
    headers.insert(header::CONNECTION, HeaderValue::from_static("x-hop"));
    headers.insert("x-hop", HeaderValue::from_static("1"));
    headers.insert("x-end", HeaderValue::from_static("2"));
    strip_hop_by_hop(&mut headers);
    let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
    assert_eq!(left, ["x-end"]);
}

#[test]
fn forwarding_lists_are_appended_to_on_one_line() {
    let mut headers = HeaderMap::new();
    append_list(
        &mut headers,
        X_FORWARDED_FOR,
        HeaderValue::from_static("127.0.0.1"),
    );
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
    append_list(
        &mut headers,
        X_FORWARDED_FOR,
        HeaderValue::from_static("::1"),
    );
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

#[test]
fn the_peer_is_written_once_per_connection_in_both_forwarding_forms() {
    let v4 = Peer::new("127.0.0.9:4000".parse().unwrap());
    assert_eq!(v4.ip, "127.0.0.9");
    assert_eq!(v4.forwarded, "for=127.0.0.9;proto=http");
    let v6 = Peer::new("[::1]:4000".parse().unwrap());
    assert_eq!(v6.ip, "::1");
    assert_eq!(v6.forwarded, "for=\"[::1]\";proto=http");
    // An IPv4 client on a dual-stack socket is written as IPv4.
    let mapped = Peer::new("[::ffff:10.0.0.7]:4000".parse().unwrap());
    assert_eq!(mapped.ip, "10.0.0.7");
    assert_eq!(mapped.forwarded, "for=10.0.0.7;proto=http");
}

#[test]
fn the_forwarded_element_follows_the_host_each_request_asks_for() {
    let peer = Peer::new("127.0.0.9:4000".parse().unwrap());
    let a = HeaderValue::from_static("web.internal");
    let b = HeaderValue::from_static("web.internal:8080");
    assert_eq!(
        peer.forwarded_for(Some(&a)),
        "for=127.0.0.9;proto=http;host=web.internal"
    );
    assert_eq!(
        peer.forwarded_for(Some(&a)),
        "for=127.0.0.9;proto=http;host=web.internal"
    );
    assert_eq!(
        peer.forwarded_for(Some(&b)),
        "for=127.0.0.9;proto=http;host=\"web.internal:8080\""
    );
    assert_eq!(peer.forwarded_for(None), "for=127.0.0.9;proto=http");
    assert_eq!(
        peer.forwarded_for(Some(&a)),
        "for=127.0.0.9;proto=http;host=web.internal"
    );
}
