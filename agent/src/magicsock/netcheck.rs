//! Netcheck: STUN binding requests from our one UDP socket to every DERP region's first STUN
//! node, over IPv4 and (when the socket speaks it) IPv6. The answers tell whether UDP works at all, which address:port the outside sees (a
//! direct endpoint beyond our interface addresses) and each region's round trip, from which the
//! nearest region becomes our home DERP (as tailscaled's netcheck decides it). Sans-I/O: the
//! engine sends the probes and feeds the answers in.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use tinytail_core::stun::{self, TxId};

use crate::random;
use crate::tailcfg::DerpRegion;

/// STUN's port when a DERP node says 0 (protocol.md §5.5).
pub const DEFAULT_STUN_PORT: u16 = 3478;
/// A probe round waits at most this long for answers.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Rounds run this often on their own (tailscaled re-checks every 20-26 s while active; a
/// router's network changes rarely).
pub const INTERVAL: Duration = Duration::from_secs(60);

/// One finished round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// At least one STUN answer came back.
    pub udp: bool,
    /// Our address as the STUN servers saw it over IPv4, and over IPv6.
    pub global_v4: Option<SocketAddr>,
    pub global_v6: Option<SocketAddr>,
    /// The socket speaks IPv6 (so the IPv6 probes were sent), whether or not they were answered.
    pub ipv6_socket: bool,
    /// Region -> (code, name, round trip) for regions that answered.
    pub latency: BTreeMap<u32, (String, String, Duration)>,
    /// Regions probed without an answer, and regions we could not probe (no usable address).
    pub unanswered: Vec<u32>,
    /// The region with the lowest round trip.
    pub nearest: Option<u32>,
}

#[derive(Default)]
pub struct Netcheck {
    /// Probes in flight: transaction id, region, sent at.
    pending: Vec<(TxId, u32, Instant)>,
    round: Option<(Instant, Report)>,
    /// Region -> (code, name) of the running round.
    names: BTreeMap<u32, (String, String)>,
    last: Option<Report>,
    last_started: Option<Instant>,
}

impl Netcheck {
    /// True when a new round is due (none yet, or the interval passed) and none runs.
    pub fn due(&self, now: Instant) -> bool {
        self.round.is_none() && self.last_started.is_none_or(|t| now.duration_since(t) >= INTERVAL)
    }

    /// Starts a round: returns the datagrams to send (destination and a STUN binding request),
    /// one per region and address family (`ipv6`: the socket speaks IPv6).
    pub fn start(&mut self, now: Instant, regions: &[DerpRegion], ipv6: bool) -> Vec<(SocketAddr, Vec<u8>)> {
        self.pending.clear();
        self.names.clear();
        self.last_started = Some(now);
        let mut report = Report { ipv6_socket: ipv6, ..Report::default() };
        let mut probes = Vec::new();
        for region in regions {
            // Listed as unanswered until an answer comes (or forever, without a usable node).
            report.unanswered.push(region.region_id);
            self.names.insert(region.region_id, (region.region_code.clone(), region.region_name.clone()));
            for target in stun_targets(region, ipv6) {
                let tx_id: TxId = random::bytes12();
                let mut request = vec![0u8; stun::BINDING_REQUEST_LEN];
                let Ok(len) = stun::write_binding_request(&tx_id, &mut request) else { continue };
                request.truncate(len);
                self.pending.push((tx_id, region.region_id, now));
                probes.push((target, request));
            }
        }
        self.round = Some((now, report));
        probes
    }

    /// A STUN datagram arrived; returns false if it was not one of ours.
    pub fn on_response(&mut self, datagram: &[u8], now: Instant) -> bool {
        let Ok((tx_id, addr)) = stun::parse_binding_response(datagram) else { return false };
        let Some(at) = self.pending.iter().position(|(t, _, _)| *t == tx_id) else { return false };
        let (_, region, sent) = self.pending.swap_remove(at);
        let Some((_, report)) = self.round.as_mut() else { return true };
        report.udp = true;
        // On our dual-stack socket an IPv4 server may report a v4-mapped address.
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        match addr.ip() {
            IpAddr::V4(_) => report.global_v4 = Some(addr),
            IpAddr::V6(_) => report.global_v6 = Some(addr),
        }
        let (code, name) = self.names.get(&region).cloned().unwrap_or_default();
        // A region's round trip is its faster family's.
        let rtt = now.duration_since(sent);
        let entry = report.latency.entry(region).or_insert((code, name, rtt));
        entry.2 = entry.2.min(rtt);
        report.unanswered.retain(|r| *r != region);
        true
    }

    /// Ends the round when every probe answered or the timeout passed; returns its report.
    pub fn finish(&mut self, now: Instant) -> Option<Report> {
        let (started, _) = self.round.as_ref()?;
        if !self.pending.is_empty() && now.duration_since(*started) < PROBE_TIMEOUT {
            return None;
        }
        let (_, mut report) = self.round.take()?;
        self.pending.clear();
        report.nearest = report.latency.iter().min_by_key(|(_, (_, _, d))| *d).map(|(r, _)| *r);
        self.last = Some(report.clone());
        Some(report)
    }

    pub fn running(&self) -> bool {
        self.round.is_some()
    }

    pub fn last(&self) -> Option<&Report> {
        self.last.as_ref()
    }

    /// Drops the last report and any round in flight (our addresses changed: what they found
    /// no longer holds), so a new round is due at once.
    pub fn forget(&mut self) {
        self.pending.clear();
        self.round = None;
        self.last = None;
        self.last_started = None;
    }
}

/// The region's first STUN node's IPv4 address and (with `ipv6`) the first one's IPv6 address.
fn stun_targets(region: &DerpRegion, ipv6: bool) -> impl Iterator<Item = SocketAddr> + '_ {
    let port = |node: &crate::tailcfg::DerpNode| match node.stun_port {
        0 => Some(DEFAULT_STUN_PORT),
        p => u16::try_from(p).ok(), // -1: STUN off
    };
    let v4 = region.nodes.iter().find_map(move |node| {
        let ip: Ipv4Addr = node.ipv4.parse().ok()?;
        Some(SocketAddr::from((ip, port(node)?)))
    });
    let v6 = region.nodes.iter().filter(move |_| ipv6).find_map(move |node| {
        let ip: Ipv6Addr = node.ipv6.parse().ok()?;
        Some(SocketAddr::from((ip, port(node)?)))
    });
    v4.into_iter().chain(v6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tailcfg::DerpNode;

    fn region(id: u32, ipv4: &str, stun_port: i32) -> DerpRegion {
        DerpRegion {
            region_id: id,
            region_code: format!("r{id}"),
            region_name: format!("Region {id}"),
            nodes: vec![DerpNode { ipv4: ipv4.into(), stun_port, ..DerpNode::default() }],
        }
    }

    fn answer(request: &[u8], from: SocketAddr) -> Vec<u8> {
        let tx_id: TxId = request[8..20].try_into().unwrap();
        let mut out = vec![0u8; 64];
        let n = stun::write_binding_response(&tx_id, from, &mut out).unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn nearest_region_answers_fastest_and_silent_ones_are_listed() {
        let t0 = Instant::now();
        let mut nc = Netcheck::default();
        assert!(nc.due(t0));
        let regions = [
            region(1, "192.0.2.1", 0),
            region(2, "192.0.2.2", 3479),
            region(3, "", 0),
            region(4, "192.0.2.4", -1),
        ];
        let probes = nc.start(t0, &regions, false);
        assert_eq!(
            probes.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec!["192.0.2.1:3478".parse().unwrap(), "192.0.2.2:3479".parse().unwrap()]
        );
        assert!(!nc.due(t0), "a round is running");
        let seen: SocketAddr = "203.0.113.7:41641".parse().unwrap();
        assert!(nc.on_response(&answer(&probes[1].1, seen), t0 + Duration::from_millis(5)));
        assert!(nc.finish(t0 + Duration::from_millis(6)).is_none(), "region 1 may still answer");
        assert!(nc.on_response(&answer(&probes[0].1, seen), t0 + Duration::from_millis(9)));
        // A replayed answer is not ours any more.
        assert!(!nc.on_response(&answer(&probes[0].1, seen), t0 + Duration::from_millis(9)));
        let report = nc.finish(t0 + Duration::from_millis(10)).unwrap();
        assert!(report.udp);
        assert_eq!(report.global_v4, Some(seen));
        assert_eq!(report.nearest, Some(2));
        assert_eq!(report.latency[&2].2, Duration::from_millis(5));
        assert_eq!(report.unanswered, vec![3, 4]);
        assert!(!nc.due(t0 + Duration::from_secs(1)));
        assert!(nc.due(t0 + INTERVAL));
        // Our addresses changed: the report is stale, a round is due now, and an answer to the
        // old round's probes is not taken.
        let old_probes = nc.start(t0 + INTERVAL, &regions, false);
        nc.forget();
        assert!(nc.last().is_none());
        assert!(nc.due(t0 + INTERVAL));
        assert!(!nc.on_response(&answer(&old_probes[0].1, seen), t0 + INTERVAL));
    }

    #[test]
    fn no_answers_means_no_udp_after_the_timeout() {
        let t0 = Instant::now();
        let mut nc = Netcheck::default();
        nc.start(t0, &[region(1, "192.0.2.1", 0)], false);
        assert!(nc.finish(t0 + Duration::from_secs(1)).is_none());
        let report = nc.finish(t0 + PROBE_TIMEOUT).unwrap();
        assert!(!report.udp);
        assert_eq!(report.nearest, None);
        assert_eq!(report.unanswered, vec![1]);
    }

    #[test]
    fn a_dual_stack_socket_probes_both_families_and_learns_both_addresses() {
        let t0 = Instant::now();
        let mut nc = Netcheck::default();
        let mut dual = region(1, "192.0.2.1", 0);
        dual.nodes[0].ipv6 = "2001:db8::1".into();
        let v6_only = DerpRegion {
            nodes: vec![DerpNode { ipv6: "2001:db8::2".into(), ..DerpNode::default() }],
            ..region(2, "", 0)
        };
        assert_eq!(nc.start(t0, &[dual.clone(), v6_only.clone()], false).len(), 1, "IPv4 socket: IPv4 only");
        let probes = nc.start(t0, &[dual, v6_only], true);
        assert_eq!(
            probes.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![
                "192.0.2.1:3478".parse().unwrap(),
                "[2001:db8::1]:3478".parse().unwrap(),
                "[2001:db8::2]:3478".parse().unwrap()
            ]
        );
        // The IPv4 server answers with a v4-mapped address (as our dual-stack socket saw it).
        let v4_seen: SocketAddr = "[::ffff:203.0.113.7]:41641".parse().unwrap();
        let v6_seen: SocketAddr = "[2001:db8:18::2]:41641".parse().unwrap();
        assert!(nc.on_response(&answer(&probes[1].1, v6_seen), t0 + Duration::from_millis(3)));
        assert!(nc.on_response(&answer(&probes[0].1, v4_seen), t0 + Duration::from_millis(8)));
        let report = nc.finish(t0 + PROBE_TIMEOUT).unwrap();
        assert_eq!(report.global_v4, Some("203.0.113.7:41641".parse().unwrap()));
        assert_eq!(report.global_v6, Some(v6_seen));
        assert!(report.ipv6_socket);
        assert_eq!(report.latency[&1].2, Duration::from_millis(3), "the faster family's round trip");
        assert_eq!(report.unanswered, vec![2]);
    }

    #[test]
    fn garbage_is_not_consumed() {
        let mut nc = Netcheck::default();
        assert!(!nc.on_response(b"not stun at all", Instant::now()));
    }
}
