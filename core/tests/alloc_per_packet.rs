//! Zero heap allocations per forwarded packet: 100k packets through route lookup, filter,
//! encryption and decryption between two datapaths, with a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;

use tinytail_core::filter::Filter;
use tinytail_core::key::NodePublic;
use tinytail_core::wg::{BufferPool, Datapath, Output, PeerRoutes};

struct CountingAllocator;

thread_local! {
    // Per thread: the test harness runs other tests (which allocate freely) on other threads.
    // A const initializer, so reading it never allocates.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_allocation() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const PACKETS: usize = 100_000;
const PAYLOAD: usize = 1400;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn public(private: &[u8; 32]) -> NodePublic {
    let secret = boringtun::x25519::StaticSecret::from(*private);
    NodePublic(boringtun::x25519::PublicKey::from(&secret).to_bytes())
}

/// An IPv4 TCP packet (ACK set: an established connection) of `len` bytes.
fn tcp_packet(src: [u8; 4], dst: [u8; 4], dst_port: u16, len: usize) -> Vec<u8> {
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
    p[33] = 0x10; // ACK
    p
}

#[test]
fn no_allocation_per_packet() {
    let (router_key, client_key) = ([0x11u8; 32], [0x22u8; 32]);

    // The router serves 192.0.2.0/24; the client may reach port 80 there.
    let mut router_filter = Box::<Filter>::default();
    router_filter.add_local_net(ip("100.64.0.1"), 32).unwrap();
    router_filter.add_local_net(ip("192.0.2.0"), 24).unwrap();
    router_filter.add_rule(["100.64.0.2"], [("192.0.2.0/24", 80, 80)], []).unwrap();
    let router_routes = Box::new(PeerRoutes::build([(ip("100.64.0.2"), 32, 0)]).unwrap());
    let mut router = Datapath::new(router_routes, router_filter);
    let client_at_router = router.add_peer(&router_key, public(&client_key), 1);

    let mut client_filter = Box::<Filter>::default();
    client_filter.add_local_net(ip("100.64.0.2"), 32).unwrap();
    let client_routes =
        Box::new(PeerRoutes::build([(ip("100.64.0.1"), 32, 0), (ip("192.0.2.0"), 24, 0)]).unwrap());
    let mut client = Datapath::new(client_routes, client_filter);
    let router_at_client = client.add_peer(&client_key, public(&router_key), 2);

    let mut pool = BufferPool::new(4);
    let (a, b) = (pool.take().unwrap(), pool.take().unwrap());
    let request = tcp_packet([100, 64, 0, 2], [192, 0, 2, 10], 80, PAYLOAD);
    let reply = tcp_packet([192, 0, 2, 10], [100, 64, 0, 2], 40000, PAYLOAD);

    // Handshake: the first packet from the client starts it and waits inside boringtun.
    let (peer, out) = client.outbound(&request, pool.get_mut(&a)).unwrap();
    assert_eq!(peer, router_at_client);
    let Output::ToPeer { len } = out else { panic!("expected a handshake initiation, got {out:?}") };
    let initiation = pool.get_mut(&a)[..len].to_vec();
    let out = router.inbound(client_at_router, None, &initiation, pool.get_mut(&b)).unwrap();
    let Output::ToPeer { len } = out else { panic!("expected a handshake response, got {out:?}") };
    let response = pool.get_mut(&b)[..len].to_vec();
    // The client completes the handshake and may answer with a keepalive; then it sends the
    // packet that waited.
    let mut delivered = 0;
    let mut to_router = Vec::new();
    if let Output::ToPeer { len } =
        client.inbound(router_at_client, None, &response, pool.get_mut(&a)).unwrap()
    {
        to_router.push(pool.get_mut(&a)[..len].to_vec());
    }
    while let Output::ToPeer { len } = client.flush(router_at_client, pool.get_mut(&a)).unwrap() {
        to_router.push(pool.get_mut(&a)[..len].to_vec());
    }
    for datagram in &to_router {
        if let Output::ToTun { len } =
            router.inbound(client_at_router, None, datagram, pool.get_mut(&b)).unwrap()
        {
            assert_eq!(&pool.get_mut(&b)[..len], &request[..]);
            delivered += 1;
        }
    }
    assert_eq!(delivered, 1, "the packet that waited for the handshake arrives once");

    // Steady state: count allocations over PACKETS round trips' worth of packets.
    // The counter itself must see allocations, or a zero below would prove nothing.
    let probe = allocations();
    drop(std::hint::black_box(vec![0u8; 16]));
    assert_eq!(allocations(), probe + 1, "the counting allocator does not count");
    let before = allocations();
    let mut forwarded = 0usize;
    for i in 0..PACKETS {
        let (from, to, from_peer, to_peer, packet) = if i % 2 == 0 {
            (&mut client, &mut router, router_at_client, client_at_router, &request)
        } else {
            (&mut router, &mut client, client_at_router, router_at_client, &reply)
        };
        let (wire, plain) = pool.pair_mut(&a, &b).unwrap();
        let (peer, out) = from.outbound(packet, wire).unwrap();
        assert_eq!(peer, from_peer);
        let Output::ToPeer { len } = out else { panic!("packet {i}: expected a data message") };
        match to.inbound(to_peer, None, &wire[..len], plain).unwrap() {
            Output::ToTun { len } if len == PAYLOAD => forwarded += 1,
            other => panic!("packet {i}: unexpected {other:?}"),
        }
    }
    let allocations = allocations() - before;
    println!(
        "alloc_per_packet: {forwarded} packets of {PAYLOAD} bytes forwarded, {allocations} heap allocations"
    );
    assert_eq!(forwarded, PACKETS);
    assert_eq!(allocations, 0, "heap allocations in the packet path");
}

#[test]
fn spoofed_sources_and_filtered_ports_are_dropped() {
    let (router_key, client_key) = ([0x33u8; 32], [0x44u8; 32]);
    let mut router_filter = Box::<Filter>::default();
    router_filter.add_local_net(ip("192.0.2.0"), 24).unwrap();
    router_filter.add_rule(["100.64.0.2"], [("192.0.2.0/24", 80, 80)], []).unwrap();
    let mut router =
        Datapath::new(Box::new(PeerRoutes::build([(ip("100.64.0.2"), 32, 0)]).unwrap()), router_filter);
    let client_at_router = router.add_peer(&router_key, public(&client_key), 1);
    let mut client_filter = Box::<Filter>::default();
    client_filter.add_local_net(ip("100.64.0.2"), 32).unwrap();
    let mut client =
        Datapath::new(Box::new(PeerRoutes::build([(ip("0.0.0.0"), 0, 0)]).unwrap()), client_filter);
    let router_at_client = client.add_peer(&client_key, public(&router_key), 2);

    let (mut a, mut b) = (vec![0u8; 2048], vec![0u8; 2048]);
    // Handshake with a first packet, as above.
    let first = tcp_packet([100, 64, 0, 2], [192, 0, 2, 10], 80, 100);
    let (_, Output::ToPeer { len }) = client.outbound(&first, &mut a).unwrap() else { panic!() };
    let Output::ToPeer { len } = router.inbound(client_at_router, None, &a[..len].to_vec(), &mut b).unwrap()
    else {
        panic!()
    };
    let response = b[..len].to_vec();
    let _ = client.inbound(router_at_client, None, &response, &mut a).unwrap();
    while let Output::ToPeer { len } = client.flush(router_at_client, &mut a).unwrap() {
        let _ = router.inbound(client_at_router, None, &a[..len].to_vec(), &mut b);
    }

    let send = |client: &mut Datapath, router: &mut Datapath, packet: &[u8]| {
        let (mut a, mut b) = (vec![0u8; 2048], vec![0u8; 2048]);
        let (_, Output::ToPeer { len }) = client.outbound(packet, &mut a).unwrap() else { panic!() };
        router.inbound(client_at_router, None, &a[..len], &mut b)
    };
    assert_eq!(send(&mut client, &mut router, &first), Ok(Output::ToTun { len: 100 }));
    // A source outside the client's AllowedIPs (100.64.0.2/32).
    let spoofed = tcp_packet([100, 64, 0, 9], [192, 0, 2, 10], 80, 100);
    assert_eq!(
        send(&mut client, &mut router, &spoofed),
        Err(tinytail_core::wg::DatapathError::SourceNotAllowed)
    );
    // A new connection to a port the filter does not allow.
    let mut ssh = tcp_packet([100, 64, 0, 2], [192, 0, 2, 10], 22, 100);
    ssh[33] = 0x02; // SYN
    assert_eq!(send(&mut client, &mut router, &ssh), Err(tinytail_core::wg::DatapathError::Filtered));
}
