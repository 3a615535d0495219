//! Two connected datapaths for tests and benchmarks: a client (100.64.0.2) whose default route is
//! the router, and a router (100.64.0.1) serving the LAN 192.0.2.0/24, where the client may open
//! connections to port 80. `connected_pair` runs the handshake and delivers the first packet.

use std::net::IpAddr;

use tinytail_core::filter::Filter;
use tinytail_core::key::NodePublic;
use tinytail_core::route::PeerIndex;
use tinytail_core::wg::{Datapath, Output, PeerRoutes};

pub struct Pair {
    pub client: Datapath,
    pub router: Datapath,
    /// The router, as a peer of the client.
    pub router_at_client: PeerIndex,
    /// The client, as a peer of the router.
    pub client_at_router: PeerIndex,
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn public(private: &[u8; 32]) -> NodePublic {
    let secret = boringtun::x25519::StaticSecret::from(*private);
    NodePublic(boringtun::x25519::PublicKey::from(&secret).to_bytes())
}

/// An IPv4 TCP packet of `len` bytes (at least 40) with the given flags (0x10 ACK, 0x02 SYN).
pub fn tcp_packet(src: [u8; 4], dst: [u8; 4], dst_port: u16, flags: u8, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&dst_port.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = flags;
    p
}

pub const ACK: u8 = 0x10;
pub const SYN: u8 = 0x02;

pub fn connected_pair() -> Pair {
    let (router_key, client_key) = ([0x11u8; 32], [0x22u8; 32]);

    let mut router_filter = Box::<Filter>::default();
    router_filter.add_local_net(ip("100.64.0.1"), 32).unwrap();
    router_filter.add_local_net(ip("192.0.2.0"), 24).unwrap();
    router_filter.add_rule(["100.64.0.2"], [("192.0.2.0/24", 80, 80)], []).unwrap();
    let router_routes = Box::new(PeerRoutes::build([(ip("100.64.0.2"), 32, 0)]).unwrap());
    let mut router = Datapath::new(&router_key, router_routes, router_filter);
    let client_at_router = router.add_peer(public(&client_key));

    let mut client_filter = Box::<Filter>::default();
    client_filter.add_local_net(ip("100.64.0.2"), 32).unwrap();
    let client_routes = Box::new(PeerRoutes::build([(ip("0.0.0.0"), 0, 0)]).unwrap());
    let mut client = Datapath::new(&client_key, client_routes, client_filter);
    let router_at_client = client.add_peer(public(&router_key));

    let (mut a, mut b) = (vec![0u8; 2048], vec![0u8; 2048]);
    let first = tcp_packet([100, 64, 0, 2], [192, 0, 2, 10], 80, SYN, 60);
    // The first packet starts the handshake and waits inside boringtun.
    let (peer, out) = client.outbound(&first, &mut a).unwrap();
    assert_eq!(peer, router_at_client);
    let Output::ToPeer { len } = out else { panic!("expected a handshake initiation, got {out:?}") };
    let out = router.inbound(client_at_router, None, &a[..len], &mut b).unwrap();
    let Output::ToPeer { len } = out else { panic!("expected a handshake response, got {out:?}") };
    let response = b[..len].to_vec();
    // The client completes the handshake (perhaps answering with a keepalive), then sends the
    // packet that waited.
    let mut to_router = Vec::new();
    if let Output::ToPeer { len } = client.inbound(router_at_client, None, &response, &mut a).unwrap() {
        to_router.push(a[..len].to_vec());
    }
    while let Output::ToPeer { len } = client.flush(router_at_client, &mut a).unwrap() {
        to_router.push(a[..len].to_vec());
    }
    let mut delivered = 0;
    for datagram in &to_router {
        if let Output::ToTun { len } = router.inbound(client_at_router, None, datagram, &mut b).unwrap() {
            assert_eq!(&b[..len], &first[..]);
            delivered += 1;
        }
    }
    assert_eq!(delivered, 1, "the packet that waited for the handshake arrives once");
    Pair { client, router, router_at_client, client_at_router }
}

/// An IPv4 ICMP echo request of `len` bytes (at least 28); 32 is wireguard-go's benchmark ping.
pub fn icmp_echo(src: [u8; 4], dst: [u8; 4], len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 1;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p[20] = 8; // echo request
    p
}
