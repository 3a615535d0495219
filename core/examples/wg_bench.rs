//! Per-packet cost of the datapath: route lookup + encrypt on one side, decrypt + cryptokey
//! check + packet filter on the other, for 1400-byte TCP packets and 32-byte pings (the size
//! wireguard-go's BenchmarkThroughput sends). Single thread, no I/O. bench/mips.sh runs it under
//! qemu-mipsel next to wireguard-go's own benchmark.
//!
//!   cargo run --release -p tinytail-core --features wg --example wg_bench -- [PACKETS]

use std::time::Instant;

use tinytail_core::wg::Output;

#[path = "../tests/support/wg_pair.rs"]
#[allow(dead_code)] // shared with the tests, which use more of it
mod wg_pair;
use wg_pair::{connected_pair, icmp_echo, tcp_packet, ACK};

fn main() {
    let packets: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let mut pair = connected_pair();
    let (mut wire, mut plain) = (vec![0u8; 2048], vec![0u8; 2048]);
    for (name, packet) in [
        ("tcp-1400", tcp_packet([100, 64, 0, 2], [192, 0, 2, 10], 80, ACK, 1400)),
        ("ping-32", icmp_echo([100, 64, 0, 2], [192, 0, 2, 10], 32)),
    ] {
        let start = Instant::now();
        for _ in 0..packets {
            let (_, out) = pair.client.outbound(&packet, &mut wire).expect("encrypt");
            let Output::ToPeer { len } = out else { panic!("no data message") };
            let out =
                pair.router.inbound(pair.client_at_router, None, &wire[..len], &mut plain).expect("decrypt");
            assert_eq!(out, Output::ToTun { len: packet.len() });
        }
        let elapsed = start.elapsed();
        let ns = elapsed.as_nanos() as f64 / packets as f64;
        println!("wg_bench {name} packets={packets} ns_per_packet={ns:.0} packets_per_s={:.0}", 1e9 / ns);
    }
}
