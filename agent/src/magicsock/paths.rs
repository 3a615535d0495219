//! Path choice for one peer, as tailscaled makes it (protocol.md §6.2): DERP until a disco pong
//! proves a direct address, then that address while heartbeats keep it trusted, and both paths
//! again once trust lapses. Sans-I/O: the engine passes `now` and acts on the answers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Heartbeat pings to the chosen address while the peer is active (`heartbeatInterval`).
pub const HEARTBEAT: Duration = Duration::from_secs(3);
/// A pong makes an address trusted for this long (`trustUDPAddrDuration`).
pub const TRUST_DIRECT: Duration = Duration::from_millis(6500);
/// At most one discovery ping per candidate per this long (`discoPingInterval`).
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// A peer is active while it sent or received within this long (`sessionActiveTimeout`).
pub const SESSION_ACTIVE: Duration = Duration::from_secs(45);
/// Candidates we keep per peer (control's endpoints, CallMeMaybe, ping sources).
const MAX_CANDIDATES: usize = 16;

/// Where to send a WireGuard packet for this peer now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendPlan {
    pub direct: Option<SocketAddr>,
    /// Send through DERP as well (no trusted direct path).
    pub derp: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Best {
    pub addr: SocketAddr,
    pub latency: Duration,
    pub trusted_until: Instant,
}

/// One peer's paths.
#[derive(Debug, Default, Clone)]
pub struct PeerPaths {
    /// Control's endpoints for the peer (replaced on every netmap).
    from_control: Vec<SocketAddr>,
    /// Learned from CallMeMaybe and from pings that reached us directly.
    learned: Vec<SocketAddr>,
    last_ping: Vec<(SocketAddr, Instant)>,
    pub best: Option<Best>,
    /// The candidate the peer last reached us from over UDP while no path was trusted: a copy
    /// goes there until a pong proves a path (see [`PeerPaths::heard_from`]).
    heard: Option<SocketAddr>,
    pub last_active: Option<Instant>,
    last_call_me_maybe: Option<Instant>,
}

impl PeerPaths {
    pub fn set_control_endpoints(&mut self, endpoints: &[SocketAddr]) {
        self.from_control.clear();
        self.from_control.extend(endpoints.iter().take(MAX_CANDIDATES).copied());
        self.forget_stale_pings();
    }

    /// An address the peer told us about (CallMeMaybe) or pinged us from.
    pub fn learn(&mut self, addr: SocketAddr) {
        if self.from_control.contains(&addr) || self.learned.contains(&addr) {
            return;
        }
        if self.learned.len() >= MAX_CANDIDATES {
            self.learned.remove(0);
            self.forget_stale_pings();
        }
        self.learned.push(addr);
    }

    /// Ping times only of current candidates: ping sources are the peer's to choose, so without
    /// this every address it ever pinged us from would stay here.
    fn forget_stale_pings(&mut self) {
        let Self { from_control, learned, last_ping, .. } = self;
        last_ping.retain(|(a, _)| from_control.contains(a) || learned.contains(a));
    }

    /// Whether `addr` is one of the peer's candidate addresses.
    pub fn knows(&self, addr: SocketAddr) -> bool {
        self.from_control.contains(&addr) || self.learned.contains(&addr)
    }

    /// The peer's WireGuard reached us from `addr` (a message that authenticated, or data on a
    /// session our previous run held). Until disco proves a path, packets to the peer go there
    /// as well as through DERP: right after either side restarts, the peer may not yet know our
    /// new disco key (so no pong) nor be back on DERP, while this address plainly works. Only a
    /// candidate counts, so a forged source cannot point our copies elsewhere.
    pub fn heard_from(&mut self, addr: SocketAddr, now: Instant) {
        if self.trusted(now).is_none() && self.knows(addr) {
            self.heard = Some(addr);
        }
    }

    /// CallMeMaybe: ping every candidate now, whatever the interval says.
    pub fn reset_ping_timers(&mut self) {
        self.last_ping.clear();
    }

    pub fn trusted(&self, now: Instant) -> Option<SocketAddr> {
        self.best.filter(|b| now < b.trusted_until).map(|b| b.addr)
    }

    /// The plan for a packet sent now (and the peer counts as active).
    pub fn plan(&mut self, now: Instant) -> SendPlan {
        self.last_active = Some(now);
        match self.trusted(now) {
            Some(addr) => SendPlan { direct: Some(addr), derp: false },
            // An untrusted address still gets a copy: it may well work (tailscaled does so for
            // its best one). Where the peer was last heard from is fresher than a lapsed best.
            None => {
                let heard = self.heard.filter(|a| self.knows(*a));
                SendPlan { direct: heard.or(self.best.map(|b| b.addr)), derp: true }
            }
        }
    }

    pub fn is_active(&self, now: Instant) -> bool {
        self.last_active.is_some_and(|t| now.duration_since(t) < SESSION_ACTIVE)
    }

    /// Addresses to ping now: a heartbeat to the trusted address, or discovery of every
    /// candidate while there is none. Records the pings as sent.
    pub fn pings_due(&mut self, now: Instant, out: &mut Vec<SocketAddr>) {
        if let Some(addr) = self.trusted(now) {
            if self.due(addr, now, HEARTBEAT) {
                out.push(addr);
                self.note_ping(addr, now);
            }
            return;
        }
        let candidates: Vec<SocketAddr> = self.from_control.iter().chain(&self.learned).copied().collect();
        for addr in candidates {
            if self.due(addr, now, PING_INTERVAL) {
                out.push(addr);
                self.note_ping(addr, now);
            }
        }
    }

    /// Whether to send our endpoints via DERP now (no trusted path; at most every 5 s).
    pub fn call_me_maybe_due(&mut self, now: Instant) -> bool {
        if self.trusted(now).is_some() {
            return false;
        }
        if self.last_call_me_maybe.is_some_and(|t| now.duration_since(t) < PING_INTERVAL) {
            return false;
        }
        self.last_call_me_maybe = Some(now);
        true
    }

    fn due(&self, addr: SocketAddr, now: Instant, interval: Duration) -> bool {
        match self.last_ping.iter().find(|(a, _)| *a == addr) {
            Some((_, t)) => now.duration_since(*t) >= interval,
            None => true,
        }
    }

    fn note_ping(&mut self, addr: SocketAddr, now: Instant) {
        match self.last_ping.iter_mut().find(|(a, _)| *a == addr) {
            Some(entry) => entry.1 = now,
            None => self.last_ping.push((addr, now)),
        }
    }

    /// A pong for a ping we sent to `addr` at `sent`: the address becomes the best one when it
    /// is faster or the current best is no longer trusted; trust is renewed either way if it is
    /// the best.
    pub fn on_pong(&mut self, addr: SocketAddr, sent: Instant, now: Instant) {
        let latency = now.duration_since(sent);
        let replace = match self.best {
            None => true,
            Some(b) if b.addr == addr => true,
            Some(b) => now >= b.trusted_until || latency < b.latency,
        };
        if replace {
            self.best = Some(Best { addr, latency, trusted_until: now + TRUST_DIRECT });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn derp_until_a_pong_then_direct_until_trust_lapses() {
        let t0 = Instant::now();
        let mut p = PeerPaths::default();
        p.set_control_endpoints(&[addr("198.18.0.20:41641"), addr("10.0.0.5:41641")]);
        assert_eq!(p.plan(t0), SendPlan { direct: None, derp: true });
        let mut due = Vec::new();
        p.pings_due(t0, &mut due);
        assert_eq!(due.len(), 2, "discovery pings every candidate");
        assert!(p.call_me_maybe_due(t0));
        assert!(!p.call_me_maybe_due(t0 + Duration::from_secs(1)), "rate-limited");

        p.on_pong(addr("198.18.0.20:41641"), t0, t0 + Duration::from_millis(2));
        let t1 = t0 + Duration::from_millis(2);
        assert_eq!(p.plan(t1), SendPlan { direct: Some(addr("198.18.0.20:41641")), derp: false });
        assert!(!p.call_me_maybe_due(t1));

        // Only heartbeats to the chosen address while trusted.
        due.clear();
        p.pings_due(t1 + HEARTBEAT, &mut due);
        assert_eq!(due, vec![addr("198.18.0.20:41641")]);

        // No pong for the heartbeat: trust lapses and DERP carries a copy again.
        let t2 = t1 + TRUST_DIRECT;
        assert_eq!(p.plan(t2), SendPlan { direct: Some(addr("198.18.0.20:41641")), derp: true });
    }

    #[test]
    fn a_faster_address_wins_and_a_slower_one_does_not() {
        let t0 = Instant::now();
        let mut p = PeerPaths::default();
        p.on_pong(addr("203.0.113.5:1"), t0, t0 + Duration::from_millis(20));
        p.on_pong(addr("192.0.2.5:1"), t0, t0 + Duration::from_millis(30));
        assert_eq!(p.best.unwrap().addr, addr("203.0.113.5:1"));
        p.on_pong(addr("192.0.2.5:1"), t0 + Duration::from_millis(30), t0 + Duration::from_millis(31));
        assert_eq!(p.best.unwrap().addr, addr("192.0.2.5:1"));
    }

    #[test]
    fn learned_candidates_are_bounded_and_unique() {
        let mut p = PeerPaths::default();
        for i in 0..40u16 {
            p.learn(SocketAddr::from(([192, 0, 2, 1], i)));
            p.learn(SocketAddr::from(([192, 0, 2, 1], i)));
        }
        let mut due = Vec::new();
        p.pings_due(Instant::now(), &mut due);
        assert_eq!(due.len(), MAX_CANDIDATES);
    }

    #[test]
    fn knows_control_and_learned_candidates_only() {
        let mut p = PeerPaths::default();
        p.set_control_endpoints(&[addr("198.18.0.20:41641")]);
        p.learn(addr("10.0.0.5:41641"));
        assert!(p.knows(addr("198.18.0.20:41641")) && p.knows(addr("10.0.0.5:41641")));
        assert!(!p.knows(addr("198.18.0.20:41642")), "another port is another address");
        p.set_control_endpoints(&[]);
        assert!(!p.knows(addr("198.18.0.20:41641")), "replaced by the next netmap");
    }

    #[test]
    fn heard_from_a_candidate_gets_copies_until_a_path_is_trusted() {
        let t0 = Instant::now();
        let mut p = PeerPaths::default();
        p.set_control_endpoints(&[addr("198.18.0.20:41641")]);
        p.heard_from(addr("203.0.113.9:41641"), t0);
        assert_eq!(p.plan(t0), SendPlan { direct: None, derp: true }, "not a candidate: ignored");
        p.heard_from(addr("198.18.0.20:41641"), t0);
        assert_eq!(p.plan(t0), SendPlan { direct: Some(addr("198.18.0.20:41641")), derp: true });
        p.heard_from(addr("203.0.113.9:41641"), t0);
        assert_eq!(p.plan(t0).direct, Some(addr("198.18.0.20:41641")), "a stranger does not displace it");
        p.learn(addr("10.0.0.5:41641"));
        p.on_pong(addr("10.0.0.5:41641"), t0, t0);
        assert_eq!(p.plan(t0), SendPlan { direct: Some(addr("10.0.0.5:41641")), derp: false }, "a pong wins");
        p.set_control_endpoints(&[]);
        let later = t0 + TRUST_DIRECT;
        assert_eq!(
            p.plan(later),
            SendPlan { direct: Some(addr("10.0.0.5:41641")), derp: true },
            "no longer a candidate"
        );
    }

    #[test]
    fn ping_times_stay_bounded_when_sources_churn() {
        let t0 = Instant::now();
        let mut p = PeerPaths::default();
        let mut due = Vec::new();
        for i in 0..1000u16 {
            p.learn(SocketAddr::from(([198, 18, 0, 1], i)));
            if i % 100 == 0 {
                p.set_control_endpoints(&[SocketAddr::from(([192, 0, 2, 1], i))]);
            }
            p.pings_due(t0 + PING_INTERVAL * u32::from(i), &mut due);
        }
        assert!(p.last_ping.len() <= 2 * MAX_CANDIDATES, "{} ping times kept", p.last_ping.len());
        assert!(due.len() >= 1000, "every new candidate was pinged");
    }
}
