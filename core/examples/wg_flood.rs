//! A flood of forged WireGuard handshake initiations for bench/flood.sh: 148-byte messages of
//! type 1 with random contents (so a random mac1), each one different, sent from one UDP socket
//! as fast as it goes or at a fixed rate. Prints what it sent when the time is up.
//!
//!   cargo run --release -p tinytail-core --example wg_flood -- ADDR:PORT SECONDS [PPS]
//!
//! PPS 0 (the default) sends as fast as one thread can write.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Handshake initiation: type and reserved 4, sender index 4, ephemeral 32, static 32+16,
/// timestamp 12+16, mac1 16, mac2 16 (whitepaper section 5.4.2).
const INITIATION_LEN: usize = 148;
const HANDSHAKE_INITIATION: u8 = 1;
/// Rate checks happen once per this many datagrams.
const BATCH: u64 = 32;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = || -> ! {
        eprintln!("usage: wg_flood ADDR:PORT SECONDS [PPS]");
        std::process::exit(2)
    };
    let target: SocketAddr = args.get(1).and_then(|a| a.parse().ok()).unwrap_or_else(|| usage());
    let seconds: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or_else(|| usage());
    let pps: u64 = args.get(3).map_or(Some(0), |a| a.parse().ok()).unwrap_or_else(|| usage());

    let bind = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let socket = UdpSocket::bind(bind).and_then(|s| s.connect(target).map(|()| s)).unwrap_or_else(|e| {
        eprintln!("wg_flood: {target}: {e}");
        std::process::exit(1)
    });
    let mut message = [0u8; INITIATION_LEN];
    message[0] = HANDSHAKE_INITIATION;
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
    let (mut sent, mut refused) = (0u64, 0u64);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    loop {
        for _ in 0..BATCH {
            // New random bytes after the type: index, keys, timestamp and mac1 (mac2 stays 0).
            for chunk in message[4..INITIATION_LEN - 16].chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
            }
            match socket.send(&message) {
                Ok(_) => sent += 1,
                // ECONNREFUSED from an earlier ICMP, or a full queue: keep going.
                Err(_) => refused += 1,
            }
        }
        let now = Instant::now();
        if now >= until {
            break;
        }
        if pps > 0 {
            let due = start + Duration::from_secs_f64((sent + refused) as f64 / pps as f64);
            if due > now {
                std::thread::sleep(due.min(until) - now);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("wg_flood: sent {sent} forged initiations to {target} in {secs:.2} s ({:.0}/s), {refused} send errors", sent as f64 / secs);
}
