//! Peer bookkeeping of core::wg: a datagram from an unknown address finds its peer, and a new
//! netmap re-orders peers without losing their sessions.
#![cfg(feature = "wg")]

use tinytail_core::key::NodePublic;
use tinytail_core::route::PeerIndex;
use tinytail_core::wg::{Datapath, Origin, Output};

#[path = "support/wg_pair.rs"]
#[allow(dead_code)]
mod wg_pair;
use wg_pair::{connected_pair, tcp_packet, ACK};

/// The peer a datagram from the client's address names, if any.
fn named(router: &mut Datapath, datagram: &[u8]) -> Option<PeerIndex> {
    let mut out = [0u8; 64];
    match router.peer_for_datagram(wg_pair::ip("198.18.0.20"), datagram, &mut out) {
        Ok(Origin::Peer(peer)) => Some(peer),
        _ => None,
    }
}

#[test]
fn data_and_handshakes_name_their_peer() {
    let mut pair = connected_pair();
    let (mut a, mut b) = (vec![0u8; 2048], vec![0u8; 2048]);
    let packet = tcp_packet([100, 64, 0, 2], [192, 0, 2, 10], 80, ACK, 100);
    let (_, out) = pair.client.outbound(&packet, &mut a).unwrap();
    let Output::ToPeer { len } = out else { panic!("expected a data message, got {out:?}") };
    assert_eq!(a[0], 4, "a data message");
    assert_eq!(named(&mut pair.router, &a[..len]), Some(pair.client_at_router));

    // A stranger's bytes, a truncated message and garbage name nobody.
    assert_eq!(named(&mut pair.router, &a[..10]), None);
    let mut foreign = a[..len].to_vec();
    foreign[4..8].copy_from_slice(&0x7f00_0000u32.to_le_bytes());
    assert_eq!(named(&mut pair.router, &foreign), None);
    assert_eq!(named(&mut pair.router, b"\x01 not a handshake"), None);

    // A fresh handshake initiation from the client identifies it by its static key.
    let mut fresh = connected_pair();
    fresh.client.set_peers(&[]);
    fresh.client.set_peers(&[pair.client.peer(pair.router_at_client).unwrap().node_key]);
    let (_, out) = fresh.client.outbound(&packet, &mut b).unwrap();
    let Output::ToPeer { len } = out else { panic!("expected a handshake initiation, got {out:?}") };
    assert_eq!(b[0], 1, "a handshake initiation");
    assert_eq!(named(&mut pair.router, &b[..len]), Some(pair.client_at_router));
}

#[test]
fn set_peers_keeps_sessions_of_peers_that_stay() {
    let mut pair = connected_pair();
    let client_key = pair.router.peer(pair.client_at_router).unwrap().node_key;
    pair.router.set_peers(&[NodePublic([9; 32]), client_key]);
    assert_eq!(pair.router.peer_count(), 2);
    assert_eq!(pair.router.peer(1).unwrap().node_key, client_key);

    let (mut a, mut b) = (vec![0u8; 2048], vec![0u8; 2048]);
    let packet = tcp_packet([100, 64, 0, 2], [192, 0, 2, 10], 80, ACK, 100);
    let (_, out) = pair.client.outbound(&packet, &mut a).unwrap();
    let Output::ToPeer { len } = out else { panic!("expected a data message, got {out:?}") };
    assert_eq!(a[0], 4, "still a data message: no new handshake");
    assert_eq!(named(&mut pair.router, &a[..len]), Some(1));
    // The route table still points at index 0, so refresh it as the agent does.
    let routes = tinytail_core::wg::PeerRoutes::build([(wg_pair::ip("100.64.0.2"), 32, 1)]).unwrap();
    pair.router.set_routes(Box::new(routes));
    let out = pair.router.inbound(1, None, &a[..len], &mut b).unwrap();
    assert_eq!(out, Output::ToTun { len: packet.len() });
    assert_eq!(&b[..packet.len()], &packet[..]);

    // Dropping the peer drops its session: the datagram names nobody now.
    pair.router.set_peers(&[NodePublic([9; 32])]);
    assert_eq!(named(&mut pair.router, &a[..len]), None);
}

#[test]
fn peers_that_never_talk_have_no_tunnel_to_tick() {
    let mut pair = connected_pair();
    let client_key = pair.router.peer(pair.client_at_router).unwrap().node_key;
    let idle: Vec<NodePublic> = (1..=200u8).map(|i| NodePublic([i; 32])).collect();
    let mut keys = idle.clone();
    keys.push(client_key);
    pair.router.set_peers(&keys);
    let mut out = vec![0u8; 2048];
    for i in 0..idle.len() {
        let index = i as u16;
        assert_eq!(pair.router.peer(index).unwrap().stats(), (None, 0, 0));
        assert_eq!(pair.router.tick(index, &mut out), Ok(Output::Nothing));
    }
    // The talking peer kept its session and what it received.
    let (since, tx, rx) = pair.router.peer(200).unwrap().stats();
    assert!(since.is_some() && rx > 0, "{since:?} {tx} {rx}");
}

/// After a restart the router holds no session while the client still sends on the old one: the
/// router starts the handshake itself (the agent does so when the client disco-pings it), once,
/// and the client's packets flow as soon as the client has the router's keepalive.
#[test]
fn a_restarted_router_initiates_to_a_peer_on_the_old_session() {
    let mut pair = connected_pair();
    let (client_at_router, router_at_client) = (pair.client_at_router, pair.router_at_client);
    let client_key = pair.router.peer(client_at_router).unwrap().node_key;
    pair.router.set_peers(&[]);
    pair.router.set_peers(&[client_key]); // a new process: the peer without its session
    let (mut a, mut b) = (vec![0u8; 2048], vec![0u8; 2048]);
    let packet = tcp_packet([100, 64, 0, 2], [192, 0, 2, 10], 80, ACK, 100);
    let (_, out) = pair.client.outbound(&packet, &mut a).unwrap();
    let Output::ToPeer { len } = out else { panic!("expected a data message, got {out:?}") };
    assert!(
        pair.router.inbound(client_at_router, None, &a[..len], &mut b).is_err(),
        "the old session is gone"
    );

    let Output::ToPeer { len } = pair.router.initiate(client_at_router, &mut a).unwrap() else {
        panic!("expected a handshake initiation")
    };
    assert_eq!((a[0], len), (1, 148), "a handshake initiation");
    let initiation = a[..len].to_vec();
    assert_eq!(pair.router.initiate(client_at_router, &mut a).unwrap(), Output::Nothing, "one at a time");

    let Output::ToPeer { len } = pair.client.inbound(router_at_client, None, &initiation, &mut b).unwrap()
    else {
        panic!("expected a handshake response")
    };
    let Output::ToPeer { len } = pair.router.inbound(client_at_router, None, &b[..len], &mut a).unwrap()
    else {
        panic!("expected the router's keepalive")
    };
    assert_eq!(pair.client.inbound(router_at_client, None, &a[..len], &mut b).unwrap(), Output::Nothing);

    let (_, out) = pair.client.outbound(&packet, &mut a).unwrap();
    let Output::ToPeer { len } = out else { panic!("expected a data message, got {out:?}") };
    let out = pair.router.inbound(client_at_router, None, &a[..len], &mut b).unwrap();
    assert_eq!(out, Output::ToTun { len: packet.len() });
    assert_eq!(pair.router.initiate(client_at_router, &mut a).unwrap(), Output::Nothing, "a session exists");
    assert!(pair.router.initiate(7, &mut a).is_err(), "no such peer");
}
