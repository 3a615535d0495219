//! NaCl box vectors sealed by the reference (tests/interop `box-vectors`, committed as
//! vectors/box.json): disco packets sealed by tailscale.com's key.DiscoShared, the ClientInfo frame
//! written by tailscale.com/derp's client and a ServerInfo box sealed with key.NodePrivate.SealTo.
//! core::disco and core::derp must open every one of them to what the reference put in, and seal
//! the same messages, with the same nonces, to the very same bytes. This is what catches the box
//! layout going wrong again (NaCl puts the 16-byte Poly1305 tag *before* the ciphertext).
//!
//! Regenerate: `cd tests/interop && go run ./cmd/tinytail-interop box-vectors
//! > ../../core/tests/vectors/box.json` (deterministic: fixed keys and nonces).

#[path = "support/vectors.rs"]
mod vectors;
use std::net::SocketAddr;
use vectors::{hex, unhex};

use crypto_box::SecretKey;
use serde::Deserialize;
use tinytail_core::derp::{self, Frame};
use tinytail_core::disco::{self, write_endpoint, DiscoBox, Endpoints, Envelope, Message};
use tinytail_core::key::{DiscoPublic, NodePublic};

#[derive(Deserialize)]
struct Vectors {
    tailscale: String,
    disco: DiscoVectors,
    derp: DerpVectors,
}

#[derive(Deserialize)]
struct KeyPair {
    private: String,
    public: String,
}

#[derive(Deserialize)]
struct DiscoVectors {
    /// Seals every packet.
    a: KeyPair,
    /// Opens them.
    b: KeyPair,
    packets: Vec<Packet>,
}

#[derive(Deserialize)]
struct Packet {
    name: String,
    nonce: String,
    plaintext: String,
    packet: String,
    message: Described,
}

/// A disco message as the vectors describe it (what tailscale.com/disco's Parse read back).
#[derive(Deserialize, Debug, PartialEq, Eq)]
struct Described {
    kind: String,
    #[serde(default)]
    tx_id: String,
    #[serde(default)]
    node_key: String,
    padding: usize,
    src: Option<SocketAddr>,
    #[serde(default)]
    endpoints: Vec<SocketAddr>,
}

#[derive(Deserialize)]
struct DerpVectors {
    client: KeyPair,
    server: KeyPair,
    client_info: DerpBox,
    server_info: DerpBox,
}

#[derive(Deserialize)]
struct DerpBox {
    nonce: String,
    json: String,
    frame: String,
}

fn vectors() -> Vectors {
    let vectors: Vectors = vectors::load("box.json");
    assert!(vectors.tailscale.starts_with('v'), "vectors name the tailscale.com version they came from");
    vectors
}

fn array<const N: usize>(s: &str) -> [u8; N] {
    unhex(s).try_into().unwrap_or_else(|_| panic!("{s} is not {N} bytes"))
}

/// The private key, after checking that it derives the reference's public key.
fn private(pair: &KeyPair) -> [u8; 32] {
    let private = array::<32>(&pair.private);
    let public = SecretKey::from_bytes(private).public_key();
    assert_eq!(hex(public.as_bytes()), pair.public, "public key derived as the reference derives it");
    private
}

fn describe(message: &Message<'_>) -> Described {
    let mut d = Described {
        kind: String::new(),
        tx_id: String::new(),
        node_key: String::new(),
        padding: 0,
        src: None,
        endpoints: Vec::new(),
    };
    match *message {
        Message::Ping { tx_id, node_key, padding } => {
            d.kind = "ping".into();
            d.tx_id = hex(&tx_id);
            d.node_key = node_key.map(|k| hex(&k.0)).unwrap_or_default();
            d.padding = padding;
        }
        Message::Pong { tx_id, src } => {
            d.kind = "pong".into();
            d.tx_id = hex(&tx_id);
            d.src = Some(src);
        }
        Message::CallMeMaybe(endpoints) => {
            d.kind = "call_me_maybe".into();
            d.endpoints = endpoints.collect();
        }
        Message::Other(kind) => d.kind = format!("other {kind:#04x}"),
    }
    d
}

/// Seals the described message from A to B with `nonce`, as core::disco would send it.
fn seal(
    from_private: &[u8; 32],
    from: &DiscoPublic,
    to: &DiscoPublic,
    nonce: [u8; 24],
    d: &Described,
) -> Vec<u8> {
    let wire: Vec<u8> = d.endpoints.iter().flat_map(|&e| write_endpoint(e)).collect();
    let message = match d.kind.as_str() {
        "ping" => Message::Ping {
            tx_id: array(&d.tx_id),
            node_key: (!d.node_key.is_empty()).then(|| NodePublic(array(&d.node_key))),
            padding: d.padding,
        },
        "pong" => Message::Pong { tx_id: array(&d.tx_id), src: d.src.expect("a pong has a source") },
        "call_me_maybe" => Message::CallMeMaybe(Endpoints::from_wire(&wire)),
        other => panic!("no such message kind in the vectors: {other}"),
    };
    let mut out = vec![0u8; 1500];
    let len = DiscoBox::new(from_private, to).seal(from, nonce, &message, &mut out).expect("seal");
    out.truncate(len);
    out
}

#[test]
fn test_keys_derive_the_reference_public_keys() {
    let v = vectors();
    for pair in [&v.disco.a, &v.disco.b, &v.derp.client, &v.derp.server] {
        private(pair);
    }
}

#[test]
fn reference_disco_packets_open_to_the_reference_messages() {
    let v = vectors().disco;
    let (a_public, b_private) = (DiscoPublic(array(&v.a.public)), private(&v.b));
    let opener = DiscoBox::new(&b_private, &a_public);
    let mut kinds = Vec::new();
    for p in &v.packets {
        let packet = unhex(&p.packet);
        assert!(disco::looks_like_disco(&packet), "{}", p.name);
        let envelope = Envelope::parse(&packet).expect("envelope");
        assert_eq!(envelope.sender, a_public, "{}: sender key", p.name);
        assert_eq!(hex(&envelope.nonce), p.nonce, "{}: nonce", p.name);
        let mut plain = [0u8; 1500];
        let message = opener.open(&envelope, &mut plain).unwrap_or_else(|e| panic!("{}: {e}", p.name));
        assert_eq!(describe(&message), p.message, "{}: what opens is what the reference sealed", p.name);
        let mut again = [0u8; 1500];
        let n = message.write(&mut again).expect("write");
        assert_eq!(hex(&again[..n]), p.plaintext, "{}: plaintext as disco's AppendMarshal", p.name);
        kinds.push(p.message.kind.as_str());
    }
    for kind in ["ping", "pong", "call_me_maybe"] {
        assert!(kinds.contains(&kind), "the vectors cover {kind}");
    }
    let pongs: Vec<_> = v.packets.iter().filter_map(|p| p.message.src).collect();
    assert!(pongs.iter().any(SocketAddr::is_ipv4) && pongs.iter().any(SocketAddr::is_ipv6));
    assert!(v.packets.iter().any(|p| p.message.endpoints.len() >= 2));
    assert!(v.packets.iter().any(|p| !p.message.node_key.is_empty()));
}

#[test]
fn disco_packets_seal_byte_for_byte_as_the_reference() {
    let v = vectors().disco;
    let (a_private, a_public, b_public) =
        (private(&v.a), DiscoPublic(array(&v.a.public)), DiscoPublic(array(&v.b.public)));
    for p in &v.packets {
        let ours = seal(&a_private, &a_public, &b_public, array(&p.nonce), &p.message);
        let theirs = unhex(&p.packet);
        assert_eq!(ours.len(), theirs.len(), "{}: length", p.name);
        let (tag, body) =
            (disco::HEADER_LEN..disco::HEADER_LEN + disco::TAG_LEN, disco::HEADER_LEN + disco::TAG_LEN..);
        assert_eq!(
            ours[..disco::HEADER_LEN],
            theirs[..disco::HEADER_LEN],
            "{}: magic, sender, nonce",
            p.name
        );
        assert_eq!(
            hex(&ours[tag.clone()]),
            hex(&theirs[tag]),
            "{}: the Poly1305 tag comes right after the nonce (NaCl box layout)",
            p.name
        );
        assert_eq!(hex(&ours[body.clone()]), hex(&theirs[body]), "{}: ciphertext", p.name);
        assert_eq!(ours, theirs, "{}", p.name);
    }
}

#[test]
fn derp_client_info_is_byte_for_byte_the_reference_client() {
    let v = vectors().derp;
    let (client_private, server_private) = (private(&v.client), private(&v.server));
    let (client, server) = (NodePublic(array(&v.client.public)), NodePublic(array(&v.server.public)));
    let theirs = unhex(&v.client_info.frame);

    let mut ours = [0u8; 256];
    let n =
        derp::write_client_info(&mut ours, &client_private, &client, &server, array(&v.client_info.nonce))
            .expect("client info");
    assert_eq!(hex(&ours[..n]), hex(&theirs), "ClientInfo frame as tailscale.com/derp's client writes it");

    // And the reference's box opens on the server side with our opener (the same box).
    let (kind, len) = derp::read_header(&theirs).unwrap().expect("a whole header");
    assert_eq!((kind, len), (derp::kind::CLIENT_INFO, theirs.len() - derp::HEADER_LEN));
    let payload = &theirs[derp::HEADER_LEN..];
    assert_eq!(payload[..32], client.0);
    let mut json = [0u8; 256];
    let opened = derp::open_server_info(&payload[32..], &server_private, &client, &mut json).expect("opens");
    assert_eq!(opened, v.client_info.json.as_bytes());
    assert_eq!(opened, br#"{"version":2,"CanAckPings":true}"#);
}

#[test]
fn derp_server_info_from_the_reference_opens() {
    let v = vectors().derp;
    let client_private = private(&v.client);
    let server = NodePublic(array(&v.server.public));
    let frame = unhex(&v.server_info.frame);
    let (kind, len) = derp::read_header(&frame).unwrap().expect("a whole header");
    assert_eq!((kind, len), (derp::kind::SERVER_INFO, frame.len() - derp::HEADER_LEN));
    let Ok(Frame::ServerInfo(payload)) = Frame::parse(kind, &frame[derp::HEADER_LEN..]) else {
        panic!("not a ServerInfo frame");
    };
    assert_eq!(hex(&payload[..derp::NONCE_LEN]), v.server_info.nonce);
    let mut json = [0u8; 256];
    let opened = derp::open_server_info(payload, &client_private, &server, &mut json).expect("opens");
    assert_eq!(opened, v.server_info.json.as_bytes());
    assert_eq!(opened, br#"{"version":2}"#);

    // A flipped bit anywhere in the box, tag included, and it no longer opens.
    for at in [derp::NONCE_LEN, derp::NONCE_LEN + derp::TAG_LEN, payload.len() - 1] {
        let mut bad = payload.to_vec();
        bad[at] ^= 1;
        assert_eq!(
            derp::open_server_info(&bad, &client_private, &server, &mut json),
            Err(derp::DerpError::Unauthenticated),
            "byte {at} flipped"
        );
    }
}
