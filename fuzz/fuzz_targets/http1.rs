//! Bytes through the proxy's own HTTP/1.1 path ([`aliasd::proxy::wire`]): as a client's request,
//! as a member's answer, and as a chunked body. It may refuse or hand the bytes to hyper, but
//! never panic, and what it does pass on must be exactly what it judged:
//! - a request it takes as plain re-reads as one complete request with the same method, target
//!   and length, and no field that could frame it differently (Transfer-Encoding) or a second
//!   length;
//! - an answer's head for the client re-reads with the same status and the framing it chose;
//! - a chunked body ends at the same byte whether it arrives at once or byte by byte.
#![no_main]

use aliasd::proxy::wire::{self, Chunks, Forwarding, Framing};
use libfuzzer_sys::fuzz_target;

fn headers<'h, 'b>(h: &'h [httparse::Header<'b>], name: &str) -> Vec<&'h httparse::Header<'b>> {
    h.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).collect()
}

fuzz_target!(|bytes: &[u8]| {
    let mut who = Forwarding::new("192.0.2.1".parse().unwrap());
    let mut out = Vec::new();
    if let wire::Request::Plain(plain) =
        wire::prepare_request(bytes, &mut who, Some("x-real-ip"), &mut out)
    {
        assert!(plain.head_len <= bytes.len());
        let mut theirs = [httparse::EMPTY_HEADER; 128];
        let mut original = httparse::Request::new(&mut theirs);
        let Ok(httparse::Status::Complete(n)) = original.parse(bytes) else {
            panic!("taken as plain but httparse does not read a whole head");
        };
        assert_eq!(n, plain.head_len);
        let mut ours = [httparse::EMPTY_HEADER; 128];
        let mut forwarded = httparse::Request::new(&mut ours);
        let Ok(httparse::Status::Complete(m)) = forwarded.parse(&out) else {
            panic!("the head for the member does not re-read: {:?}", String::from_utf8_lossy(&out));
        };
        assert_eq!(m, out.len());
        assert_eq!(forwarded.method, original.method);
        assert_eq!(forwarded.path, original.path);
        assert_eq!(forwarded.version, Some(1));
        assert!(headers(forwarded.headers, "transfer-encoding").is_empty());
        let lengths = headers(forwarded.headers, "content-length");
        assert!(lengths.len() <= 1);
        let length = lengths
            .first()
            .map_or(0, |h| std::str::from_utf8(h.value).unwrap().parse::<u64>().unwrap());
        assert_eq!(length, plain.body_len);
        assert_eq!(headers(forwarded.headers, "host").len(), 1);
    }

    for head_method in [false, true] {
        if let wire::Response::Final(answer) = wire::read_response(bytes, head_method, false, &mut out) {
            assert!(answer.head_len <= bytes.len());
            let mut ours = [httparse::EMPTY_HEADER; 128];
            let mut res = httparse::Response::new(&mut ours);
            let Ok(httparse::Status::Complete(m)) = res.parse(&out) else {
                panic!("the head for the client does not re-read: {:?}", String::from_utf8_lossy(&out));
            };
            assert_eq!(m, out.len());
            assert_eq!(res.code, Some(answer.status));
            // Chunked as the member sent it, or made so for a body that ends by close.
            let chunked = !headers(res.headers, "transfer-encoding").is_empty();
            assert_eq!(chunked, answer.framing == Framing::Chunked || answer.rechunk);
            assert_eq!(answer.rechunk, answer.framing == Framing::Close);
            if chunked {
                assert!(headers(res.headers, "content-length").is_empty());
            }
            if answer.framing == Framing::Close {
                assert!(!answer.reusable);
            }
        }
    }

    let whole = Chunks::default().advance(bytes);
    let mut by_byte = Chunks::default();
    let mut seen = 0;
    let mut ended = false;
    let mut failed = false;
    for b in bytes {
        match by_byte.advance(std::slice::from_ref(b)) {
            Ok((n, done)) => {
                seen += n;
                if done {
                    ended = true;
                    break;
                }
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    match whole {
        Ok((n, done)) => {
            assert!(!failed, "at once it passes, byte by byte it fails");
            assert_eq!(done, ended);
            assert_eq!(n, if done { seen } else { bytes.len() });
        }
        Err(_) => assert!(failed, "at once it fails, byte by byte it passes"),
    }
});
