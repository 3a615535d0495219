//! WireGuard's defences against handshake floods (whitepaper section 5.3): a datagram from the
//! UDP socket has its mac1 checked before any Diffie-Hellman, and past
//! [`HANDSHAKES_PER_SECOND`] handshake messages without a valid mac2 get a cookie reply instead
//! of a handshake. The initiator here is a bare boringtun `Tunn` (a peer as wireguard-go or
//! tailscaled would be), so the test can make it resend with the cookie at once.
#![cfg(feature = "wg")]

use std::net::IpAddr;

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use tinytail_core::filter::Filter;
use tinytail_core::key::NodePublic;
use tinytail_core::route::PeerIndex;
use tinytail_core::wg::{
    Datapath, DatapathError, Origin, Output, PeerRoutes, Refusal, COOKIE_REPLY_LEN, HANDSHAKES_PER_SECOND,
};

#[path = "support/wg_pair.rs"]
#[allow(dead_code)]
mod wg_pair;
use wg_pair::ip;

/// Handshake initiation layout (whitepaper section 5.4.2): 148 bytes, mac1 at 116, mac2 at 132.
const INITIATION_LEN: usize = 148;
const INITIATION_MAC1: usize = 116;
const INITIATION_MAC2: usize = 132;
/// Message types (first byte; the next three are zero).
const HANDSHAKE_INITIATION: u8 = 1;
const HANDSHAKE_RESPONSE: u8 = 2;
const COOKIE_REPLY: u8 = 3;

const ROUTER_KEY: [u8; 32] = [0x11; 32];
const CLIENT_KEY: [u8; 32] = [0x22; 32];

fn public(private: &[u8; 32]) -> PublicKey {
    PublicKey::from(&StaticSecret::from(*private))
}

/// A router with one peer, the client, and that client as a bare boringtun tunnel.
fn router_and_client() -> (Datapath, PeerIndex, Tunn) {
    let routes = Box::new(PeerRoutes::build([(ip("100.64.0.2"), 32, 0)]).unwrap());
    let mut router = Datapath::new(&ROUTER_KEY, routes, Box::<Filter>::default());
    let at_router = router.add_peer(NodePublic(public(&CLIENT_KEY).to_bytes()));
    let client = Tunn::new(StaticSecret::from(CLIENT_KEY), public(&ROUTER_KEY), None, None, 7, None);
    (router, at_router, client)
}

/// The client's next handshake initiation (`force`: even while one is in progress).
fn initiation(client: &mut Tunn, force: bool) -> Vec<u8> {
    let mut buf = [0u8; 256];
    match client.format_handshake_initiation(&mut buf, force) {
        TunnResult::WriteToNetwork(p) => p.to_vec(),
        other => panic!("expected a handshake initiation, got {other:?}"),
    }
}

fn client_addr() -> IpAddr {
    ip("198.18.0.20")
}

#[test]
fn forged_initiations_are_refused_before_any_diffie_hellman() {
    let (mut router, at_router, mut client) = router_and_client();
    let mut out = [0u8; 256];
    let genuine = initiation(&mut client, false);
    assert_eq!((genuine.len(), genuine[0]), (INITIATION_LEN, HANDSHAKE_INITIATION));

    // The client's own initiation with one bit of mac1 flipped: everything a Diffie-Hellman
    // would read is intact (before the mac1 check, this named the client: Some(0)).
    let mut flipped = genuine.clone();
    flipped[INITIATION_MAC1] ^= 1;
    assert_eq!(
        router.peer_for_datagram(client_addr(), &flipped, &mut out),
        Err(DatapathError::WireGuard(Refusal::BadMac1))
    );
    // A genuine initiation meant for another node's key.
    let mut elsewhere = Tunn::new(StaticSecret::from(CLIENT_KEY), public(&[0x33; 32]), None, None, 8, None);
    let other = initiation(&mut elsewhere, false);
    assert_eq!(
        router.peer_for_datagram(client_addr(), &other, &mut out),
        Err(DatapathError::WireGuard(Refusal::BadMac1))
    );
    // A flood of forged initiations: random bodies behind a valid type, as a generator sends.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..1000 {
        let mut forged = [0u8; INITIATION_LEN];
        for b in &mut forged[4..] {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        forged[0] = HANDSHAKE_INITIATION;
        assert_eq!(
            router.peer_for_datagram(client_addr(), &forged, &mut out),
            Err(DatapathError::WireGuard(Refusal::BadMac1))
        );
    }
    assert_eq!(router.initiations_opened(), 0, "a refused initiation was opened with a Diffie-Hellman");

    // The genuine one is opened (once) and names the client: the counter does count.
    assert_eq!(router.peer_for_datagram(client_addr(), &genuine, &mut out), Ok(Origin::Peer(at_router)));
    assert_eq!(router.initiations_opened(), 1);
}

#[test]
fn a_valid_initiation_completes_a_handshake() {
    let (mut router, at_router, mut client) = router_and_client();
    let (mut out, mut buf) = ([0u8; 256], [0u8; 256]);
    let init = initiation(&mut client, false);
    assert_eq!(router.peer_for_datagram(client_addr(), &init, &mut out), Ok(Origin::Peer(at_router)));
    let Ok(Output::ToPeer { len }) = router.inbound(at_router, Some(client_addr()), &init, &mut out) else {
        panic!("expected a handshake response");
    };
    assert_eq!(out[0], HANDSHAKE_RESPONSE);
    // The client completes the handshake and confirms it with a keepalive, which the router
    // finds by its receiver index and accepts as the new session's first message.
    let keepalive = match client.decapsulate(None, &out[..len], &mut buf) {
        TunnResult::WriteToNetwork(p) => p.to_vec(),
        other => panic!("expected a keepalive, got {other:?}"),
    };
    assert_eq!(router.peer_for_datagram(client_addr(), &keepalive, &mut out), Ok(Origin::Peer(at_router)));
    assert_eq!(router.inbound(at_router, Some(client_addr()), &keepalive, &mut out), Ok(Output::Nothing));
    assert!(router.peer(at_router).unwrap().stats().0.is_some(), "no session at the router");
}

#[test]
fn under_load_a_cookie_reply_is_sent_and_the_retry_with_mac2_is_accepted() {
    let (mut router, at_router, mut client) = router_and_client();
    let (mut out, mut buf) = ([0u8; 256], [0u8; 256]);
    let init = initiation(&mut client, false);
    assert_eq!(init[INITIATION_MAC2..], [0u8; 16], "no cookie yet, so no mac2");
    // Up to the limit, good-mac1 handshakes go through (the count is reset by a timer only).
    for i in 0..HANDSHAKES_PER_SECOND {
        let origin = router.peer_for_datagram(client_addr(), &init, &mut out);
        assert_eq!(origin, Ok(Origin::Peer(at_router)), "handshake {i}");
    }
    let opened = router.initiations_opened();

    // Past it, no Diffie-Hellman: a cookie reply to the sender's index.
    let Ok(Origin::CookieReply { len }) = router.peer_for_datagram(client_addr(), &init, &mut out) else {
        panic!("expected a cookie reply under load");
    };
    assert_eq!(router.initiations_opened(), opened);
    assert_eq!((len, out[0]), (COOKIE_REPLY_LEN, COOKIE_REPLY));
    assert_eq!(out[4..8], init[4..8], "the cookie reply names the initiation's sender index");
    // Bad mac1 is still refused first, without a cookie reply (that would cost us more).
    let mut flipped = init.clone();
    flipped[INITIATION_MAC1] ^= 1;
    assert_eq!(
        router.peer_for_datagram(client_addr(), &flipped, &mut out),
        Err(DatapathError::WireGuard(Refusal::BadMac1))
    );

    // The client takes the cookie and retries; its new initiation carries mac2.
    let Ok(Origin::CookieReply { len }) = router.peer_for_datagram(client_addr(), &init, &mut out) else {
        panic!("expected a cookie reply under load");
    };
    let cookie = out[..len].to_vec();
    assert!(matches!(client.decapsulate(Some(ip("198.18.0.2")), &cookie, &mut buf), TunnResult::Done));
    let retry = initiation(&mut client, true);
    assert_ne!(retry[INITIATION_MAC2..], [0u8; 16], "the retry carries mac2");
    // The cookie is bound to the client's address: from elsewhere it does not count.
    let Ok(Origin::CookieReply { .. }) = router.peer_for_datagram(ip("203.0.113.9"), &retry, &mut out) else {
        panic!("mac2 from another address accepted");
    };
    assert_eq!(router.peer_for_datagram(client_addr(), &retry, &mut out), Ok(Origin::Peer(at_router)));
    let Ok(Output::ToPeer { len }) = router.inbound(at_router, Some(client_addr()), &retry, &mut out) else {
        panic!("expected a handshake response to the retry");
    };
    assert_eq!(out[0], HANDSHAKE_RESPONSE);
    assert!(
        matches!(client.decapsulate(None, &out[..len], &mut buf), TunnResult::WriteToNetwork(_)),
        "the client completes the handshake"
    );
}

#[test]
fn short_output_buffer_is_an_error_not_a_panic() {
    let (mut router, _, mut client) = router_and_client();
    let init = initiation(&mut client, false);
    let mut small = [0u8; COOKIE_REPLY_LEN - 1];
    assert_eq!(
        router.peer_for_datagram(client_addr(), &init, &mut small),
        Err(DatapathError::BufferTooSmall)
    );
}

/// The limit is per second: a reset within the second changes nothing, one after it lifts the
/// load. (`mock-clock`: boringtun's clock is `mock_instant`'s, per thread, starting at zero.)
#[cfg(feature = "mock-clock")]
#[test]
fn the_handshake_count_resets_after_a_second() {
    use mock_instant::MockClock;
    use std::time::Duration;

    let (mut router, at_router, mut client) = router_and_client();
    let mut out = [0u8; 256];
    let init = initiation(&mut client, false);
    for _ in 0..HANDSHAKES_PER_SECOND {
        assert_eq!(router.peer_for_datagram(client_addr(), &init, &mut out), Ok(Origin::Peer(at_router)));
    }
    let under_load = |router: &mut Datapath, out: &mut [u8]| {
        matches!(router.peer_for_datagram(client_addr(), &init, out), Ok(Origin::CookieReply { .. }))
    };
    assert!(under_load(&mut router, &mut out));
    MockClock::advance(Duration::from_millis(900));
    router.reset_handshake_count();
    assert!(under_load(&mut router, &mut out), "reset before a second has passed");
    MockClock::advance(Duration::from_millis(100));
    router.reset_handshake_count();
    assert_eq!(router.peer_for_datagram(client_addr(), &init, &mut out), Ok(Origin::Peer(at_router)));
}
