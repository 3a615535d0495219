//! Zero heap allocations per forwarded packet: 100k packets through route lookup, filter,
//! encryption and decryption between two datapaths, with a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use tinytail_core::wg::{BufferPool, DatapathError, Origin, Output, Refusal, HANDSHAKES_PER_SECOND};

#[path = "support/wg_pair.rs"]
#[allow(dead_code)] // shared with the wg_bench example, which uses more of it
mod wg_pair;
use wg_pair::{connected_pair, tcp_packet, Pair, ACK, SYN};

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

#[test]
fn no_allocation_per_packet() {
    let Pair { mut client, mut router, router_at_client, client_at_router } = connected_pair();
    let mut pool = BufferPool::new(4);
    let (a, b) = (pool.take().unwrap(), pool.take().unwrap());
    let request = tcp_packet([100, 64, 0, 2], [192, 0, 2, 10], 80, ACK, PAYLOAD);
    let reply = tcp_packet([192, 0, 2, 10], [100, 64, 0, 2], 40000, ACK, PAYLOAD);

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
        // As the agent does for a datagram from the UDP socket: find the peer, then decrypt.
        let origin = to.peer_for_datagram(wg_pair::ip("198.18.0.20"), &wire[..len], plain);
        assert_eq!(origin, Ok(Origin::Peer(to_peer)), "packet {i}");
        match to.inbound(to_peer, None, &wire[..len], plain).unwrap() {
            Output::ToTun { len } if len == PAYLOAD => forwarded += 1,
            other => panic!("packet {i}: unexpected {other:?}"),
        }
    }
    let counted = allocations() - before;
    println!(
        "alloc_per_packet: {forwarded} packets of {PAYLOAD} bytes forwarded, {counted} heap allocations"
    );
    assert_eq!(forwarded, PACKETS);
    assert_eq!(counted, 0, "heap allocations in the packet path");
}

#[test]
fn spoofed_sources_and_filtered_ports_are_dropped() {
    let Pair { mut client, mut router, client_at_router, .. } = connected_pair();
    let mut send = |packet: &[u8]| {
        let (mut a, mut b) = (vec![0u8; 2048], vec![0u8; 2048]);
        let (_, Output::ToPeer { len }) = client.outbound(packet, &mut a).unwrap() else { panic!() };
        router.inbound(client_at_router, None, &a[..len], &mut b)
    };
    assert_eq!(
        send(&tcp_packet([100, 64, 0, 2], [192, 0, 2, 10], 80, ACK, 100)),
        Ok(Output::ToTun { len: 100 })
    );
    // A source outside the client's AllowedIPs (100.64.0.2/32).
    let spoofed = tcp_packet([100, 64, 0, 9], [192, 0, 2, 10], 80, ACK, 100);
    assert_eq!(send(&spoofed), Err(DatapathError::SourceNotAllowed));
    // A new connection to a port the filter does not allow.
    let ssh = tcp_packet([100, 64, 0, 2], [192, 0, 2, 10], 22, SYN, 100);
    assert_eq!(send(&ssh), Err(DatapathError::Filtered));
}

#[test]
fn refused_handshakes_allocate_nothing() {
    let Pair { mut client, mut router, router_at_client, .. } = connected_pair();
    let from = wg_pair::ip("198.18.0.20");
    let (mut a, mut b) = (vec![0u8; 2048], vec![0u8; 2048]);
    // A genuine initiation: the client forgets the router and meets it again.
    let router_key = client.peer(router_at_client).unwrap().node_key;
    client.set_peers(&[]);
    client.set_peers(&[router_key]);
    let packet = tcp_packet([100, 64, 0, 2], [192, 0, 2, 10], 80, ACK, 100);
    let (_, Output::ToPeer { len }) = client.outbound(&packet, &mut a).unwrap() else { panic!() };
    let genuine = a[..len].to_vec();
    let mut forged = genuine.clone();
    forged[116] ^= 1; // mac1

    // Opening a genuine initiation allocates inside boringtun (its AEAD open copies the static
    // key's ciphertext): once per handshake, so these are outside the count. They bring the
    // router to its limit.
    for _ in 0..HANDSHAKES_PER_SECOND {
        assert!(matches!(router.peer_for_datagram(from, &genuine, &mut b), Ok(Origin::Peer(_))));
    }
    let before = allocations();
    for _ in 0..PACKETS / 10 {
        let refused = router.peer_for_datagram(from, &forged, &mut b);
        assert_eq!(refused, Err(DatapathError::WireGuard(Refusal::BadMac1)));
    }
    // Under load: cookie replies instead of handshakes.
    for _ in 0..PACKETS / 10 {
        let reply = router.peer_for_datagram(from, &genuine, &mut b);
        assert!(matches!(reply, Ok(Origin::CookieReply { .. })), "{reply:?}");
    }
    let counted = allocations() - before;
    println!("alloc_per_packet: refused handshakes and cookie replies, {counted} heap allocations");
    assert_eq!(counted, 0, "heap allocations refusing handshakes");
}
