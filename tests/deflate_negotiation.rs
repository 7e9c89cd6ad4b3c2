//! permessage-deflate negotiation against the offers real clients send.
//!
//! Each case is a header value (or several header lines) as a client sends it, the answer line
//! the server writes, and what the agreement means for the codec. The request is parsed with
//! `httparse` as the server does, so header values arrive as borrowed raw bytes.

use wsecho::deflate::{negotiate, write_response_header, DeflateConfig, Negotiated, MAX_RESPONSE_HEADER};

const DEFAULT: DeflateConfig = DeflateConfig { enabled: true, context_takeover: false, window_bits: 15 };
const TAKEOVER: DeflateConfig = DeflateConfig { enabled: true, context_takeover: true, window_bits: 15 };

/// Parses a request with these extension header lines and negotiates.
fn offer(cfg: &DeflateConfig, lines: &[&str]) -> Option<Negotiated> {
    let mut req = String::from("GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
    for l in lines {
        req.push_str(&format!("Sec-WebSocket-Extensions: {l}\r\n"));
    }
    req.push_str("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Request::new(&mut headers);
    assert!(r.parse(req.as_bytes()).unwrap().is_complete());
    let values = r.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions")).map(|h| h.value);
    negotiate(cfg, values)
}

fn line(n: &Negotiated) -> String {
    let mut out = [0u8; MAX_RESPONSE_HEADER];
    let len = write_response_header(n, &mut out);
    assert!(len > 0 && len <= MAX_RESPONSE_HEADER);
    String::from_utf8(out[..len].to_vec()).unwrap()
}

fn answer(cfg: &DeflateConfig, lines: &[&str]) -> Option<String> {
    offer(cfg, lines).map(|n| line(&n))
}

const BOTH: &str =
    "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover";

#[test]
fn browsers_and_libraries() {
    // Chrome, Python websockets (ClientPerMessageDeflateFactory default), Node ws: a bare
    // client_max_window_bits.
    let bare = "permessage-deflate; client_max_window_bits";
    assert_eq!(answer(&DEFAULT, &[bare]).unwrap(), format!("{BOTH}; client_max_window_bits=15\r\n"));
    let n = offer(&DEFAULT, &[bare]).unwrap();
    assert!(n.passthrough());
    // Firefox, Safari: plain.
    assert_eq!(answer(&DEFAULT, &["permessage-deflate"]).unwrap(), format!("{BOTH}\r\n"));
    // Old Safari's deflate-frame draft is not ours: no extension.
    assert_eq!(answer(&DEFAULT, &["x-webkit-deflate-frame"]), None);
    // A client that sends the pre-RFC name and the RFC one.
    assert_eq!(answer(&DEFAULT, &["x-webkit-deflate-frame", "permessage-deflate"]).unwrap(), format!("{BOTH}\r\n"));
    // With context takeover allowed, the same offers are answered as they are.
    assert_eq!(
        answer(&TAKEOVER, &[bare]).unwrap(),
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=15\r\n"
    );
    assert_eq!(answer(&TAKEOVER, &["permessage-deflate"]).unwrap(), "Sec-WebSocket-Extensions: permessage-deflate\r\n");
    // A smaller configured window: asked of the client too (it offered the parameter).
    let small = DeflateConfig { window_bits: 11, ..DEFAULT };
    assert_eq!(
        answer(&small, &[bare]).unwrap(),
        format!("{BOTH}; server_max_window_bits=11; client_max_window_bits=11\r\n")
    );
    assert_eq!(answer(&small, &["permessage-deflate"]).unwrap(), format!("{BOTH}; server_max_window_bits=11\r\n"));
    // Disabled: nothing, whatever the offer.
    assert_eq!(answer(&DeflateConfig::default(), &[bare]), None);
}

/// Autobahn|Testsuite 12.x/13.x client offers: `client_no_context_takeover` and a bare
/// `client_max_window_bits` always (accept_no_context_takeover, accept_max_window_bits), then
/// `server_no_context_takeover` and `server_max_window_bits=N` as requested by the case.
#[test]
fn autobahn_offers() {
    let base = "permessage-deflate; client_no_context_takeover; client_max_window_bits";
    // 12.x and 13.1: no request.
    assert_eq!(answer(&DEFAULT, &[base]).unwrap(), format!("{BOTH}; client_max_window_bits=15\r\n"));
    // 13.2: server_no_context_takeover requested.
    let s = format!("{base}; server_no_context_takeover");
    assert_eq!(answer(&TAKEOVER, &[&s]).unwrap(), format!("{BOTH}; client_max_window_bits=15\r\n"));
    // 13.3 / 13.4: server window 8 and 15 requested; 13.5 / 13.6: also no context takeover.
    for (req, server_bits, client_bits) in [(8, 8, 9), (9, 9, 9), (12, 12, 12), (15, 15, 15)] {
        for extra in ["", "; server_no_context_takeover"] {
            let o = format!("{base}{extra}; server_max_window_bits={req}");
            let n = offer(&DEFAULT, &[&o]).unwrap();
            assert_eq!((n.server_max_window_bits, n.client_max_window_bits), (server_bits, client_bits), "{o}");
            assert_eq!(
                line(&n),
                format!("{BOTH}; server_max_window_bits={server_bits}; client_max_window_bits={client_bits}\r\n")
            );
            // Window 8 is answered with 8 (never 9: §7.1.2.1) and compressed Huffman-only; the
            // client's own data may use 512 bytes then, so it cannot be echoed verbatim.
            assert_eq!(n.passthrough(), req != 8, "{o}");
        }
    }
    // 13.7: several offers in one header, the first acceptable one wins.
    let multi = format!(
        "{base}; server_no_context_takeover; server_max_window_bits=8, \
         {base}; server_no_context_takeover, {base}"
    );
    assert_eq!(offer(&DEFAULT, &[&multi]).unwrap().server_max_window_bits, 8);
    // The brief's form: client window with a value.
    let o = "permessage-deflate; client_no_context_takeover; client_max_window_bits=9, permessage-deflate; client_max_window_bits";
    let n = offer(&DEFAULT, &[o]).unwrap();
    assert_eq!((n.server_max_window_bits, n.client_max_window_bits), (15, 9));
    assert_eq!(line(&n), format!("{BOTH}; client_max_window_bits=9\r\n"));
    assert!(n.passthrough());
}

#[test]
fn several_header_lines_and_odd_spelling() {
    let n =
        offer(&DEFAULT, &["foo, bar; baz=\"q,u;o\"", "PERMESSAGE-DEFLATE ; Server_Max_Window_Bits=\"10\""]).unwrap();
    assert_eq!(n.server_max_window_bits, 10);
    assert!(n.server_window_bits_in_offer && !n.client_window_bits_in_offer);
    assert_eq!(line(&n), format!("{BOTH}; server_max_window_bits=10\r\n"));
    // The first line's offer is declined, the second line's accepted.
    let n = offer(&DEFAULT, &["permessage-deflate; mystery", "permessage-deflate; client_max_window_bits=12"]).unwrap();
    assert_eq!(n.client_max_window_bits, 12);
}

#[test]
fn every_bad_form_is_declined_not_refused() {
    let bad = [
        // unknown parameter
        "permessage-deflate; x-unknown",
        "permessage-deflate; server_max_window_bits=10; foo=bar",
        // duplicated parameters
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=11",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        // window bits outside 8..15, leading zeros, not digits
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; server_max_window_bits=ten",
        "permessage-deflate; server_max_window_bits=-9",
        "permessage-deflate; server_max_window_bits=\"9.5\"",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; client_max_window_bits=\"16\"",
        // a value on the no_context_takeover flags
        "permessage-deflate; server_no_context_takeover=true",
        "permessage-deflate; client_no_context_takeover=\"\"",
        // server_max_window_bits without a value
        "permessage-deflate; server_max_window_bits",
    ];
    for b in bad {
        assert_eq!(offer(&DEFAULT, &[b]), None, "{b}");
        // Declining one offer does not decline the next.
        let next = format!("{b}, permessage-deflate; client_max_window_bits");
        assert!(offer(&DEFAULT, &[&next]).unwrap().client_window_bits_in_offer, "{b}");
    }
    // A value that does not parse declines the request's offers altogether.
    assert_eq!(offer(&DEFAULT, &["permessage-deflate", "permessage-deflate; server_max_window_bits=\"10"]), None);
}
