//! WireGuard session lifetime under a controlled clock: the initiator rekeys after
//! REKEY_AFTER_TIME (120 s) and both sides move to the new session; without a rekey the old
//! session is refused after REJECT_AFTER_TIME (180 s). Timer values are wireguard-go's
//! `device/constants.go`, which boringtun's `noise/timers.rs` repeats.
//!
//! Run: `cargo test -p tinytail-core --features mock-clock --test rekey`
//!
//! `mock-clock` makes boringtun read `mock_instant`'s clock, which is per thread and starts at
//! zero, so each test owns its clock. The tests tick both sides once per simulated second, as the
//! agent's timer loop does (more often, in fact), since boringtun only notices time in `tick`.

use std::time::Duration;

use mock_instant::MockClock;
use tinytail_core::wg::{DatapathError, Output, Refusal};

#[path = "support/wg_pair.rs"]
#[allow(dead_code)] // shared with the wg_bench example, which uses more of it
mod wg_pair;
use wg_pair::{connected_pair, tcp_packet, Pair, ACK};

/// WireGuard message types (first byte; the next three are zero).
const HANDSHAKE_INITIATION: u8 = 1;
const HANDSHAKE_RESPONSE: u8 = 2;
const DATA: u8 = 4;

const REKEY_AFTER_TIME: u64 = 120;
const REJECT_AFTER_TIME: u64 = 180;

#[test]
fn initiator_rekeys_after_120_s_and_both_sides_move_to_the_new_session() {
    let mut pair = connected_pair();
    let mut buf = Buffers::new();
    // Timestamps in boringtun are taken at tick time: a data packet counts as sent "after" the
    // session was made only once a tick has moved the clock past the handshake.
    advance_to(&mut pair, &mut buf, 1);
    let old_at_router = client_sends(&mut pair, &mut buf).expect("data before the rekey");
    let old_at_client = router_sends(&mut pair, &mut buf).expect("reply before the rekey");

    // Nothing until 120 s; then the client (the original initiator) starts a new handshake.
    let sent = advance_to(&mut pair, &mut buf, REKEY_AFTER_TIME - 1);
    assert!(sent.is_empty(), "nothing to send before REKEY_AFTER_TIME, got {sent:?}");
    let sent = advance_to(&mut pair, &mut buf, REKEY_AFTER_TIME);
    let [(Side::Client, initiation)] = &sent[..] else { panic!("expected one initiation, got {sent:?}") };
    assert_eq!(message_type(initiation), HANDSHAKE_INITIATION);
    assert_eq!(initiation.len(), 148);

    // While the handshake is in flight the old session still carries data.
    assert_eq!(
        client_sends(&mut pair, &mut buf).expect("data during the rekey").receiver,
        old_at_router.receiver
    );

    // Deliver the handshake: response, then the client's keepalive on the new session.
    let Pair { client, router, router_at_client, client_at_router } = &mut pair;
    let out = router.inbound(*client_at_router, None, initiation, &mut buf.b).unwrap();
    let Output::ToPeer { len } = out else { panic!("expected a handshake response, got {out:?}") };
    assert_eq!(message_type(&buf.b[..len]), HANDSHAKE_RESPONSE);
    let out = client.inbound(*router_at_client, None, &buf.b[..len], &mut buf.a).unwrap();
    let Output::ToPeer { len } = out else { panic!("expected a keepalive, got {out:?}") };
    let keepalive = Data::read(&buf.a[..len]);
    assert_eq!((message_type(&buf.a[..len]), len), (DATA, 32), "an empty data message");
    assert_ne!(keepalive.receiver, old_at_router.receiver, "the keepalive uses the new session");
    assert_eq!(client.flush(*router_at_client, &mut buf.a), Ok(Output::Nothing), "nothing was queued");
    assert_eq!(router.inbound(*client_at_router, None, &buf.a[..len], &mut buf.b), Ok(Output::Nothing));

    // Data both ways on the new session: new receiver indices, counters starting again.
    let new_at_router = client_sends(&mut pair, &mut buf).expect("data after the rekey");
    assert_eq!(new_at_router.receiver, keepalive.receiver);
    assert_eq!(new_at_router.counter, 1, "the second message of the new session (after the keepalive)");
    let new_at_client = router_sends(&mut pair, &mut buf).expect("reply after the rekey");
    assert_ne!(new_at_client.receiver, old_at_client.receiver, "the router moved to the new session");
    assert_eq!(new_at_client.counter, 0, "the router's first message on the new session");

    // Past the old session's REJECT_AFTER_TIME, data still flows: it is on the new one. (Ticks
    // in between send nothing: the new session is fresh and both sides sent and received.)
    let sent = advance_to(&mut pair, &mut buf, REJECT_AFTER_TIME + 5);
    assert!(sent.is_empty(), "unexpected messages {sent:?}");
    assert_eq!(client_sends(&mut pair, &mut buf).expect("data at 185 s").receiver, new_at_router.receiver);
    assert_eq!(router_sends(&mut pair, &mut buf).expect("reply at 185 s").receiver, new_at_client.receiver);
}

#[test]
fn without_a_rekey_the_old_session_is_refused_after_180_s() {
    let mut pair = connected_pair();
    let mut buf = Buffers::new();
    advance_to(&mut pair, &mut buf, 1);
    let old = client_sends(&mut pair, &mut buf).expect("data on the first session");
    router_sends(&mut pair, &mut buf).expect("reply on the first session");
    // Two data messages made now on the old session, delivered late (a slow path, or a replay
    // by someone who recorded them).
    let request = tcp_packet([100, 64, 0, 2], [192, 0, 2, 10], 80, ACK, 100);
    let mut held = Vec::new();
    for _ in 0..2 {
        let (_, out) = pair.client.outbound(&request, &mut buf.a).unwrap();
        let Output::ToPeer { len } = out else { panic!("expected a data message, got {out:?}") };
        assert_eq!(message_type(&buf.a[..len]), DATA);
        held.push(buf.a[..len].to_vec());
    }

    // The client tries to rekey from 120 s on; every attempt is lost.
    let dropped = advance_to(&mut pair, &mut buf, REJECT_AFTER_TIME - 1);
    assert!(!dropped.is_empty(), "the client should have tried to rekey");
    for (side, message) in &dropped {
        assert_eq!((*side, message_type(message)), (Side::Client, HANDSHAKE_INITIATION));
    }

    // At 179 s the old session still works both ways, including for a held message.
    assert_eq!(client_sends(&mut pair, &mut buf).expect("data at 179 s").receiver, old.receiver);
    let delivered = pair.router.inbound(pair.client_at_router, None, &held[0], &mut buf.b);
    assert_eq!(delivered, Ok(Output::ToTun { len: 100 }));

    // At 181 s it is gone. (Meanwhile the client retried its handshake, and the router, having
    // just received data, sent a passive keepalive at 180 s: the old session's last message.)
    let dropped = advance_to(&mut pair, &mut buf, REJECT_AFTER_TIME + 1);
    for (side, message) in &dropped {
        match side {
            Side::Client => assert_eq!(message_type(message), HANDSHAKE_INITIATION),
            Side::Router => assert_eq!((message_type(message), message.len()), (DATA, 32), "a keepalive"),
        }
    }
    let Pair { client, router, router_at_client, client_at_router } = &mut pair;
    // The client queues the packet for the handshake it is already retrying: no data message.
    assert_eq!(client.outbound(&request, &mut buf.a), Ok((*router_at_client, Output::Nothing)));
    // The router, which never initiated, must now start a handshake of its own to send anything.
    let reply = tcp_packet([192, 0, 2, 10], [100, 64, 0, 2], 40000, ACK, 100);
    let (_, out) = router.outbound(&reply, &mut buf.b).unwrap();
    let Output::ToPeer { len } = out else { panic!("expected a handshake initiation, got {out:?}") };
    assert_eq!(message_type(&buf.b[..len]), HANDSHAKE_INITIATION);
    // A message made on the old session is refused.
    assert_eq!(
        router.inbound(*client_at_router, None, &held[1], &mut buf.b),
        Err(DatapathError::WireGuard(Refusal::NoSession))
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Router,
}

/// Input and output buffers for one step.
struct Buffers {
    a: Vec<u8>,
    b: Vec<u8>,
}

impl Buffers {
    fn new() -> Self {
        Buffers { a: vec![0u8; 2048], b: vec![0u8; 2048] }
    }
}

/// The fields of a data message that tell sessions apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Data {
    /// The receiver's index for the session (it picks a new one per handshake).
    receiver: u32,
    /// Per-session counter, from 0.
    counter: u64,
}

impl Data {
    fn read(message: &[u8]) -> Self {
        assert_eq!(message_type(message), DATA, "not a data message: {message:02x?}");
        Data {
            receiver: u32::from_le_bytes(message[4..8].try_into().unwrap()),
            counter: u64::from_le_bytes(message[8..16].try_into().unwrap()),
        }
    }
}

fn message_type(message: &[u8]) -> u8 {
    assert_eq!(&message[1..4], &[0, 0, 0], "reserved bytes of a WireGuard message");
    message[0]
}

/// Moves the mock clock one second at a time up to `until` seconds, ticking both sides at each
/// step. Returns what they asked to send, undelivered, in order.
fn advance_to(pair: &mut Pair, buf: &mut Buffers, until: u64) -> Vec<(Side, Vec<u8>)> {
    let mut sent = Vec::new();
    while MockClock::time() < Duration::from_secs(until) {
        MockClock::advance(Duration::from_secs(1));
        for (side, datapath, peer) in [
            (Side::Client, &mut pair.client, pair.router_at_client),
            (Side::Router, &mut pair.router, pair.client_at_router),
        ] {
            match datapath.tick(peer, &mut buf.a).expect("tick") {
                Output::ToPeer { len } => sent.push((side, buf.a[..len].to_vec())),
                Output::Nothing => {}
                other => panic!("a tick cannot yield {other:?}"),
            }
        }
    }
    sent
}

/// The client sends a request to the LAN host; the router must deliver it. Returns the data
/// message's session fields, or `None` if the client sent no data message.
fn client_sends(pair: &mut Pair, buf: &mut Buffers) -> Option<Data> {
    let request = tcp_packet([100, 64, 0, 2], [192, 0, 2, 10], 80, ACK, 100);
    let (_, out) = pair.client.outbound(&request, &mut buf.a).unwrap();
    let Output::ToPeer { len } = out else { return None };
    let data = Data::read(&buf.a[..len]);
    let delivered = pair.router.inbound(pair.client_at_router, None, &buf.a[..len], &mut buf.b);
    assert_eq!(delivered, Ok(Output::ToTun { len: request.len() }));
    assert_eq!(&buf.b[..request.len()], &request[..]);
    Some(data)
}

/// The LAN host's reply goes back through the router to the client.
fn router_sends(pair: &mut Pair, buf: &mut Buffers) -> Option<Data> {
    let reply = tcp_packet([192, 0, 2, 10], [100, 64, 0, 2], 40000, ACK, 100);
    let (_, out) = pair.router.outbound(&reply, &mut buf.b).unwrap();
    let Output::ToPeer { len } = out else { return None };
    let data = Data::read(&buf.b[..len]);
    let delivered = pair.client.inbound(pair.router_at_client, None, &buf.b[..len], &mut buf.a);
    assert_eq!(delivered, Ok(Output::ToTun { len: reply.len() }));
    assert_eq!(&buf.a[..reply.len()], &reply[..]);
    Some(data)
}
