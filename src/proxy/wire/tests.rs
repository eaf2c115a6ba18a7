use super::*;

fn who() -> Forwarding {
    Forwarding::new("192.0.2.7".parse().unwrap())
}

fn prepared(raw: &str) -> (Request, String) {
    let mut out = Vec::new();
    let r = prepare_request(raw.as_bytes(), &mut who(), Some("x-real-ip"), &mut out);
    (r, String::from_utf8(out).unwrap())
}

#[test]
fn a_plain_get_is_forwarded_with_the_forwarding_fields_added() {
    let raw = "GET /a?b=1 HTTP/1.1\r\nHost: web\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n";
    let (r, out) = prepared(raw);
    let Request::Plain(p) = r else {
        panic!("{r:?}")
    };
    assert_eq!(p.head_len, raw.len());
    assert_eq!(
        (p.body_len, p.keep_alive, p.replayable, p.head_method),
        (0, true, true, false)
    );
    assert_eq!(
        out,
        "GET /a?b=1 HTTP/1.1\r\nHost: web\r\nAccept: */*\r\n\
         x-forwarded-for: 192.0.2.7\r\nforwarded: for=192.0.2.7;proto=http;host=web\r\n\r\n"
    );
}

#[test]
fn earlier_forwarding_lines_are_folded_into_one_list() {
    let raw = "POST / HTTP/1.1\r\nHost: a b\r\nX-Forwarded-For: 10.0.0.1\r\nx-forwarded-for: 10.0.0.2\r\nForwarded: for=10.0.0.1\r\nContent-Length: 3\r\nX-Real-IP: 10.9.9.9\r\nConnection: close\r\n\r\nabc";
    let (r, out) = prepared(raw);
    let Request::Plain(p) = r else {
        panic!("{r:?}")
    };
    assert_eq!((p.body_len, p.keep_alive, p.replayable), (3, false, false));
    assert_eq!(p.client, Some("10.9.9.9".parse().unwrap()));
    assert!(
        out.contains("x-forwarded-for: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\n"),
        "{out}"
    );
    assert!(
        out.contains("forwarded: for=10.0.0.1, for=192.0.2.7;proto=http;host=\"a b\"\r\n"),
        "{out}"
    );
    assert!(!out.to_ascii_lowercase().contains("connection"), "{out}");
}

#[test]
fn anything_unusual_goes_to_the_general_path() {
    for raw in [
        "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
        "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: x-secret\r\n\r\n",
        "GET / HTTP/1.1\nHost: a\n\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",
        "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
    ] {
        assert_eq!(prepared(raw).0, Request::General, "{raw:?}");
    }
    let many: String = (0..MAX_HEADERS + 1)
        .map(|i| format!("X-{i}: v\r\n"))
        .collect();
    assert_eq!(
        prepared(&format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n")).0,
        Request::General
    );
    let long = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}", "v".repeat(MAX_HEAD));
    assert_eq!(prepared(&long).0, Request::General);
    assert_eq!(
        prepared("GET / HTTP/1.1\r\nHost: a\r\n").0,
        Request::Partial
    );
}

fn answer(raw: &str, head_method: bool, close: bool) -> (Response, String) {
    let mut out = Vec::new();
    let r = read_response(raw.as_bytes(), head_method, close, &mut out);
    (r, String::from_utf8(out).unwrap())
}

#[test]
fn answers_are_framed_as_rfc_9112_section_6_3_says() {
    let cases = [
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            false,
            Framing::Length(5),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            true,
            Framing::Empty,
            true,
        ),
        (
            "HTTP/1.1 204 No Content\r\n\r\n",
            false,
            Framing::Empty,
            true,
        ),
        (
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            false,
            Framing::Empty,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
            false,
            Framing::Chunked,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            false,
            Framing::Close,
            false,
        ),
        ("HTTP/1.1 200 OK\r\n\r\n", false, Framing::Close, false),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n",
            false,
            Framing::Length(2),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
            false,
            Framing::Length(2),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n",
            false,
            Framing::Length(2),
            true,
        ),
    ];
    for (raw, head, framing, reusable) in cases {
        let (r, out) = answer(raw, head, false);
        let Response::Final(a) = r else {
            panic!("{raw:?}: {r:?}")
        };
        assert_eq!((a.framing, a.reusable), (framing, reusable), "{raw:?}");
        assert!(!a.close_client, "{raw:?}");
        assert_eq!(a.rechunk, framing == Framing::Close, "{raw:?}");
        assert!(out.starts_with("HTTP/1.1 "), "{out}");
        if framing == Framing::Chunked {
            assert!(
                out.contains("transfer-encoding: chunked\r\n") && !out.contains("Content-Length"),
                "{out}"
            );
        }
        assert!(!out.contains("connection: close"), "{out}");
    }
    let (r, _) = answer(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n",
        false,
        false,
    );
    assert_eq!(r, Response::Interim(25));
    for bad in [
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
    ] {
        assert!(
            matches!(answer(bad, false, false).0, Response::Bad(_)),
            "{bad:?}"
        );
    }
}

#[test]
fn hop_by_hop_fields_of_an_answer_stay_behind() {
    let raw = "HTTP/1.1 200 OK\r\nConnection: x-hop, keep-alive\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-End: 2\r\nContent-Length: 0\r\n\r\n";
    let (r, out) = answer(raw, false, true);
    let Response::Final(a) = r else {
        panic!("{r:?}")
    };
    assert!(a.close_client && a.reusable);
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nX-End: 2\r\nContent-Length: 0\r\nconnection: close\r\n\r\n"
    );
}

#[test]
fn chunked_bodies_end_exactly_where_the_coding_says() {
    let body = b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\nGET /next";
    // Byte by byte and at once find the same end.
    let end = body.len() - b"GET /next".len();
    let mut c = Chunks::default();
    assert_eq!(c.advance(body), Ok((end, true)));
    let mut c = Chunks::default();
    let mut seen = 0;
    for (i, b) in body.iter().enumerate() {
        let (n, done) = c.advance(std::slice::from_ref(b)).unwrap();
        seen += n;
        if done {
            assert_eq!(i + 1, end);
            break;
        }
    }
    assert_eq!(seen, end);
    for bad in [
        &b"zz\r\n"[..],
        b"\r\n",
        b"5\nhello",
        b"1\r\nab\r\n",
        b"-1\r\n",
        b"ffffffffffffffff1\r\n",
        b"0\r\n\n",
    ] {
        assert_eq!(
            Chunks::default().advance(bad),
            Err(BadChunk),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}
