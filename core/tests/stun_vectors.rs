//! STUN vectors written by tailscale.com/net/stun (tests/interop `stun-vector`, committed as
//! vectors/stun.json): core::stun must write the same request and response bytes, and read the
//! same transaction id and address from every reference response.
//!
//! Regenerate: `cd tests/interop && go build ./cmd/tinytail-interop && ./tinytail-interop stun-vector
//! > ../../core/tests/vectors/stun.json`.

#[path = "support/vectors.rs"]
#[allow(dead_code)] // hex is for the other vector tests
mod vectors;
use std::net::SocketAddr;
use vectors::unhex;

use serde::Deserialize;
use tinytail_core::stun::{
    is_stun, parse_binding_response, write_binding_request, write_binding_response, Message, TxId,
    MAX_BINDING_RESPONSE_LEN,
};

#[derive(Deserialize)]
struct Vectors {
    tailscale: String,
    requests: Vec<Request>,
    responses: Vec<Response>,
}

#[derive(Deserialize)]
struct Request {
    txid: String,
    request: String,
}

#[derive(Deserialize)]
struct Response {
    txid: String,
    addr: String,
    response: String,
    parsed: String,
}

fn vectors() -> Vectors {
    let vectors: Vectors = vectors::load("stun.json");
    assert!(vectors.tailscale.starts_with('v'), "vectors name the tailscale.com version they came from");
    vectors
}

fn tx_id(s: &str) -> TxId {
    unhex(s).try_into().expect("a 12-byte transaction id")
}

#[test]
fn requests_are_byte_for_byte_the_reference() {
    let vectors = vectors();
    assert!(vectors.requests.len() >= 3);
    for v in &vectors.requests {
        let mut out = [0u8; 64];
        let len = write_binding_request(&tx_id(&v.txid), &mut out).unwrap();
        assert_eq!(out[..len], unhex(&v.request)[..], "request for txid {}", v.txid);
        assert!(is_stun(&out[..len]));
        assert_eq!(Message::parse(&out[..len]).unwrap().tx_id(), tx_id(&v.txid));
    }
}

#[test]
fn reference_responses_parse_to_the_reference_addresses() {
    let vectors = vectors();
    let mut families = (0, 0);
    for v in &vectors.responses {
        let bytes = unhex(&v.response);
        let want: SocketAddr = v.parsed.parse().expect("parsed address");
        assert!(is_stun(&bytes), "{}", v.addr);
        assert_eq!(parse_binding_response(&bytes), Ok((tx_id(&v.txid), want)), "response for {}", v.addr);
        if want.is_ipv4() {
            families.0 += 1;
        } else {
            families.1 += 1;
        }
    }
    assert!(families.0 >= 3 && families.1 >= 3, "both families covered: {families:?}");
}

#[test]
fn responses_are_byte_for_byte_the_reference() {
    for v in &vectors().responses {
        let addr: SocketAddr = v.addr.parse().expect("address");
        let mut out = [0u8; MAX_BINDING_RESPONSE_LEN];
        let len = write_binding_response(&tx_id(&v.txid), addr, &mut out).unwrap();
        assert_eq!(out[..len], unhex(&v.response)[..], "response for {}", v.addr);
    }
}
