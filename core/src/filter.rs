//! The control plane's packet filter, applied to packets arriving from the tailnet.
//!
//! Rules come from the netmap's `PacketFilter` (`tailcfg.FilterRule`); each allows some
//! protocols from some source addresses to some destination addresses and ports. What passes
//! follows tailscaled's inbound filter (`ts:wgengine/filter/filter.go`, `runIn4`/`runIn6`):
//! - the destination must be one of our local nets (our addresses and the routes we advertise);
//! - TCP: only connection openings (SYN without ACK) need a rule; the rest of a connection passes;
//! - UDP: a reply to a flow we sent out passes; anything else needs a rule;
//! - ICMP: echo replies and errors pass; other ICMP needs a rule for the destination IP (any port);
//! - TSMP (protocol 99, Tailscale's in-tunnel messages) passes;
//! - other protocols need a rule covering all ports; non-first fragments pass.
//!
//! Addresses are kept as inclusive ranges of 128-bit integers, IPv4 mapped into `::ffff:0:0/96`,
//! so one comparison serves both families. Capacities are fixed (see the `MAX_*` constants).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use heapless::Vec;

/// Rules in one packet filter. Headscale emits one rule per ACL entry; 256 is generous for a
/// home or office tailnet and costs a few KB.
pub const MAX_RULES: usize = 256;
/// Source ranges across all rules.
pub const MAX_SOURCES: usize = 1024;
/// Destination (range, ports) entries across all rules.
pub const MAX_DESTINATIONS: usize = 1024;
/// Our addresses plus the routes we advertise.
pub const MAX_LOCAL_NETS: usize = 64;
/// Outbound UDP flows remembered so their replies pass; tailscaled keeps 512 in an LRU.
pub const FLOW_SLOTS: usize = 512;

/// IP protocol numbers the filter tells apart (IANA).
pub mod proto {
    pub const ICMPV4: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
    /// Tailscale Message Protocol, carried inside WireGuard (`ts:types/ipproto`).
    pub const TSMP: u8 = 99;
    pub const SCTP: u8 = 132;
}

/// Why a rule could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FilterError {
    /// An address form that is none of `*`, IP, CIDR, `a-b` or `cap:…`.
    BadAddress,
    /// A CIDR with host bits set (the reference refuses these too).
    HostBitsSet,
    /// A range whose end is below its start, or mixes families.
    BadRange,
    /// A port range whose last port is below its first.
    BadPorts,
    /// The filter is full: more rules, sources, destinations or local nets than it holds.
    Full,
}

impl core::fmt::Display for FilterError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FilterError::BadAddress => "filter rule has an address that is not *, an IP, a CIDR or a range",
            FilterError::HostBitsSet => "filter rule has a CIDR with host bits set",
            FilterError::BadRange => "filter rule has an address range that ends before it starts",
            FilterError::BadPorts => "filter rule has a port range that ends before it starts",
            FilterError::Full => "packet filter is full",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FilterError {}

/// What happened to a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Verdict {
    Accept,
    Drop(DropReason),
}

/// Why a packet was dropped; each has a counter in [`DropCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DropReason {
    /// Not a well-formed IPv4/IPv6 packet.
    Malformed,
    /// The destination is none of our addresses or advertised routes.
    NotLocal,
    /// No rule allows it.
    NoRule,
}

/// Drops per reason, for `status` and the web page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounters {
    pub malformed: u64,
    pub not_local: u64,
    pub no_rule: u64,
}

/// An inclusive range of addresses, IPv4 mapped into `::ffff:0:0/96`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrRange {
    pub first: u128,
    pub last: u128,
}

impl AddrRange {
    const V4_MAPPED: u128 = 0xffff_0000_0000;
    const ALL_V4: AddrRange = AddrRange { first: Self::V4_MAPPED, last: Self::V4_MAPPED | 0xffff_ffff };
    const ALL_V6: AddrRange = AddrRange { first: 0, last: u128::MAX };

    /// A prefix as a range; host bits must be zero.
    pub fn prefix(addr: IpAddr, bits: u8) -> Result<Self, FilterError> {
        let (value, width) = match addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32u8),
            IpAddr::V6(a) => (u128::from(a), 128u8),
        };
        if bits > width {
            return Err(FilterError::BadAddress);
        }
        let host_bits = u32::from(width - bits);
        let host_mask = 1u128.checked_shl(host_bits).map_or(u128::MAX, |v| v - 1);
        if value & host_mask != 0 {
            return Err(FilterError::HostBitsSet);
        }
        let offset = if width == 32 { Self::V4_MAPPED } else { 0 };
        Ok(AddrRange { first: offset | value, last: offset | value | host_mask })
    }

    fn contains(&self, addr: u128) -> bool {
        self.first <= addr && addr <= self.last
    }
}

/// Maps an address into the filter's 128-bit space.
fn key(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => AddrRange::V4_MAPPED | u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// One address form of a rule, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrSpec {
    /// `*`: every IPv4 and IPv6 address.
    Any,
    Range(AddrRange),
    /// `cap:…`: peers holding a node capability. A router cannot evaluate these; they match
    /// nothing, which fails closed.
    Capability,
}

impl AddrSpec {
    /// Parses `*`, `IP`, `IP/BITS`, `IP-IP` or `cap:NAME`.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        if text == "*" {
            return Ok(AddrSpec::Any);
        }
        if text.starts_with("cap:") {
            return Ok(AddrSpec::Capability);
        }
        if let Some((addr, bits)) = text.split_once('/') {
            let addr: IpAddr = addr.parse().map_err(|_| FilterError::BadAddress)?;
            if bits.is_empty() || bits.len() > 3 || !bits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(FilterError::BadAddress);
            }
            let bits: u8 = bits.parse().map_err(|_| FilterError::BadAddress)?;
            return AddrRange::prefix(addr, bits).map(AddrSpec::Range);
        }
        if let Some((first, last)) = text.split_once('-') {
            let first: IpAddr = first.parse().map_err(|_| FilterError::BadAddress)?;
            let last: IpAddr = last.parse().map_err(|_| FilterError::BadAddress)?;
            if first.is_ipv4() != last.is_ipv4() || key(last) < key(first) {
                return Err(FilterError::BadRange);
            }
            return Ok(AddrSpec::Range(AddrRange { first: key(first), last: key(last) }));
        }
        let addr: IpAddr = text.parse().map_err(|_| FilterError::BadAddress)?;
        Ok(AddrSpec::Range(AddrRange { first: key(addr), last: key(addr) }))
    }
}

/// A set of IP protocol numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProtoSet([u64; 4]);

impl ProtoSet {
    /// An empty list in a rule means TCP, UDP, ICMPv4 and ICMPv6 (`defaultProtos`).
    const DEFAULT: ProtoSet = {
        let mut bits = [0u64; 4];
        bits[0] = (1 << proto::ICMPV4) | (1 << proto::TCP) | (1 << proto::UDP) | (1 << proto::ICMPV6);
        ProtoSet(bits)
    };

    fn contains(&self, p: u8) -> bool {
        self.0[usize::from(p / 64)] & (1 << (p % 64)) != 0
    }

    fn insert(&mut self, p: u8) {
        self.0[usize::from(p / 64)] |= 1 << (p % 64);
    }
}

#[derive(Debug, Clone, Copy)]
struct Rule {
    protos: ProtoSet,
    sources: (u16, u16),
    destinations: (u16, u16),
}

#[derive(Debug, Clone, Copy)]
struct Destination {
    range: AddrRange,
    first_port: u16,
    last_port: u16,
}

/// A UDP flow as we sent it: (our address, our port, their address, their port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flow {
    local: u128,
    local_port: u16,
    remote: u128,
    remote_port: u16,
}

/// The inbound packet filter; build it from the netmap with [`Filter::add_rule`] and
/// [`Filter::add_local_net`], then call [`Filter::check_inbound`] per packet and
/// [`Filter::note_outbound`] for packets we send.
#[derive(Debug, Clone)]
pub struct Filter {
    rules: Vec<Rule, MAX_RULES>,
    sources: Vec<AddrRange, MAX_SOURCES>,
    destinations: Vec<Destination, MAX_DESTINATIONS>,
    local_nets: Vec<AddrRange, MAX_LOCAL_NETS>,
    flows: [Option<Flow>; FLOW_SLOTS],
    pub drops: DropCounters,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            rules: Vec::new(),
            sources: Vec::new(),
            destinations: Vec::new(),
            local_nets: Vec::new(),
            flows: [None; FLOW_SLOTS],
            drops: DropCounters::default(),
        }
    }
}

impl Filter {
    /// Adds one rule. `protos` empty means the default set; numbers outside 0-255 are ignored, as
    /// the reference does. A failed rule leaves the filter as it was.
    pub fn add_rule<'a>(
        &mut self,
        sources: impl IntoIterator<Item = &'a str>,
        destinations: impl IntoIterator<Item = (&'a str, u16, u16)>,
        protos: impl IntoIterator<Item = i64>,
    ) -> Result<(), FilterError> {
        let (src_start, dst_start) = (self.sources.len(), self.destinations.len());
        let result = self.push_rule(sources, destinations, protos);
        if result.is_err() {
            self.sources.truncate(src_start);
            self.destinations.truncate(dst_start);
        }
        result
    }

    fn push_rule<'a>(
        &mut self,
        sources: impl IntoIterator<Item = &'a str>,
        destinations: impl IntoIterator<Item = (&'a str, u16, u16)>,
        protos: impl IntoIterator<Item = i64>,
    ) -> Result<(), FilterError> {
        let src_start = self.sources.len();
        for text in sources {
            self.push_sources(AddrSpec::parse(text)?)?;
        }
        let dst_start = self.destinations.len();
        for (text, first_port, last_port) in destinations {
            if last_port < first_port {
                return Err(FilterError::BadPorts);
            }
            let (first, second) = match AddrSpec::parse(text)? {
                AddrSpec::Any => (Some(AddrRange::ALL_V4), Some(AddrRange::ALL_V6)),
                AddrSpec::Range(r) => (Some(r), None),
                AddrSpec::Capability => (None, None),
            };
            for range in [first, second].into_iter().flatten() {
                let d = Destination { range, first_port, last_port };
                self.destinations.push(d).map_err(|_| FilterError::Full)?;
            }
        }
        let mut set = ProtoSet([0; 4]);
        let mut any = false;
        for p in protos {
            if let Ok(p) = u8::try_from(p) {
                set.insert(p);
                any = true;
            }
        }
        let rule = Rule {
            protos: if any { set } else { ProtoSet::DEFAULT },
            sources: (index(src_start)?, index(self.sources.len())?),
            destinations: (index(dst_start)?, index(self.destinations.len())?),
        };
        self.rules.push(rule).map_err(|_| FilterError::Full)
    }

    fn push_sources(&mut self, spec: AddrSpec) -> Result<(), FilterError> {
        let full = |_| FilterError::Full;
        match spec {
            AddrSpec::Any => {
                self.sources.push(AddrRange::ALL_V4).map_err(full)?;
                self.sources.push(AddrRange::ALL_V6).map_err(full)
            }
            AddrSpec::Range(r) => self.sources.push(r).map_err(full),
            AddrSpec::Capability => Ok(()),
        }
    }

    /// Takes over the remembered flows and drop counters of the filter this one replaces, so a
    /// new netmap neither breaks running UDP exchanges nor resets the counters.
    pub fn carry_over(&mut self, previous: &Filter) {
        self.flows = previous.flows;
        self.drops = previous.drops;
    }

    /// Marks a prefix as ours (an address of this node or a route it advertises).
    pub fn add_local_net(&mut self, addr: IpAddr, bits: u8) -> Result<(), FilterError> {
        // Host bits are masked off rather than refused: an address given with its network's
        // length (100.64.0.1/10) still names our network.
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.min(width);
        let host = 1u128.checked_shl(u32::from(width - bits)).map_or(u128::MAX, |v| v - 1);
        let base = key(addr) & !host;
        self.local_nets.push(AddrRange { first: base, last: base | host }).map_err(|_| FilterError::Full)
    }

    /// Records an outbound UDP packet so its replies pass. Call it for every packet we send into
    /// the tunnel; anything that is not UDP is ignored.
    pub fn note_outbound(&mut self, packet: &[u8]) {
        if let Ok(p) = Packet::parse(packet) {
            if p.proto == proto::UDP && !p.later_fragment {
                let flow = Flow {
                    local: key(p.src),
                    local_port: p.src_port,
                    remote: key(p.dst),
                    remote_port: p.dst_port,
                };
                self.flows[flow_slot(&flow)] = Some(flow);
            }
        }
    }

    /// Decides an inbound packet and counts drops.
    pub fn check_inbound(&mut self, packet: &[u8]) -> Verdict {
        let verdict = self.decide(packet);
        if let Verdict::Drop(reason) = verdict {
            let c = &mut self.drops;
            match reason {
                DropReason::Malformed => c.malformed += 1,
                DropReason::NotLocal => c.not_local += 1,
                DropReason::NoRule => c.no_rule += 1,
            }
        }
        verdict
    }

    fn decide(&self, packet: &[u8]) -> Verdict {
        let Ok(p) = Packet::parse(packet) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let (src, dst) = (key(p.src), key(p.dst));
        if !self.local_nets.iter().any(|n| n.contains(dst)) {
            return Verdict::Drop(DropReason::NotLocal);
        }
        if p.later_fragment {
            return Verdict::Accept;
        }
        let allowed = match p.proto {
            proto::TCP if !p.tcp_syn_only => true,
            proto::TCP => self.rule_allows(p.proto, src, dst, Some(p.dst_port)),
            proto::UDP | proto::SCTP => {
                let reply = Flow { local: dst, local_port: p.dst_port, remote: src, remote_port: p.src_port };
                (p.proto == proto::UDP && self.flows[flow_slot(&reply)] == Some(reply))
                    || self.rule_allows(p.proto, src, dst, Some(p.dst_port))
            }
            proto::ICMPV4 | proto::ICMPV6 if p.icmp_reply_or_error => true,
            proto::ICMPV4 | proto::ICMPV6 => self.rule_allows(p.proto, src, dst, None),
            proto::TSMP => true,
            other => self.rule_allows_all_ports(other, src, dst),
        };
        if allowed {
            Verdict::Accept
        } else {
            Verdict::Drop(DropReason::NoRule)
        }
    }

    /// A rule for `proto` from `src` to `dst`, on `port` (or on any port when `None`).
    fn rule_allows(&self, proto: u8, src: u128, dst: u128, port: Option<u16>) -> bool {
        self.matching_destinations(proto, src, dst)
            .any(|d| port.is_none_or(|port| d.first_port <= port && port <= d.last_port))
    }

    fn rule_allows_all_ports(&self, proto: u8, src: u128, dst: u128) -> bool {
        self.matching_destinations(proto, src, dst).any(|d| d.first_port == 0 && d.last_port == u16::MAX)
    }

    fn matching_destinations(&self, proto: u8, src: u128, dst: u128) -> impl Iterator<Item = &Destination> {
        self.rules
            .iter()
            .filter(move |r| r.protos.contains(proto))
            .filter(move |r| {
                self.sources[usize::from(r.sources.0)..usize::from(r.sources.1)]
                    .iter()
                    .any(|s| s.contains(src))
            })
            .flat_map(move |r| {
                self.destinations[usize::from(r.destinations.0)..usize::from(r.destinations.1)].iter()
            })
            .filter(move |d| d.range.contains(dst))
    }
}

fn index(i: usize) -> Result<u16, FilterError> {
    u16::try_from(i).map_err(|_| FilterError::Full)
}

/// A slot for a flow: FNV-1a over the tuple. A newer flow overwrites an older one in the same
/// slot, which makes the table a cheap approximation of an LRU.
fn flow_slot(flow: &Flow) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    mix(&flow.local.to_le_bytes());
    mix(&flow.local_port.to_le_bytes());
    mix(&flow.remote.to_le_bytes());
    mix(&flow.remote_port.to_le_bytes());
    (h % FLOW_SLOTS as u64) as usize
}

/// The fields of an IP packet the filter needs, read without copying the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP with SYN set and ACK clear: a connection opening.
    pub tcp_syn_only: bool,
    /// ICMP echo reply, or an ICMP error (destination unreachable, time exceeded, ...).
    pub icmp_reply_or_error: bool,
    /// An IPv4 fragment other than the first (its transport header is elsewhere).
    pub later_fragment: bool,
}

impl Packet {
    /// Parses an IPv4 or IPv6 packet (IPv6 extension headers are not walked: the next-header
    /// value is taken as the protocol, as tailscaled's parser does).
    pub fn parse(buf: &[u8]) -> Result<Packet, DropReason> {
        let version = buf.first().ok_or(DropReason::Malformed)? >> 4;
        let (src, dst, proto, l4, later_fragment) = match version {
            4 => {
                let ihl = usize::from(buf[0] & 0x0f) * 4;
                if ihl < 20 || buf.len() < ihl {
                    return Err(DropReason::Malformed);
                }
                let total = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
                if total < ihl || total > buf.len() {
                    return Err(DropReason::Malformed);
                }
                let frag_offset = u16::from_be_bytes([buf[6], buf[7]]) & 0x1fff;
                let src = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
                let dst = Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]);
                (IpAddr::V4(src), IpAddr::V4(dst), buf[9], &buf[ihl..total], frag_offset != 0)
            }
            6 => {
                if buf.len() < 40 {
                    return Err(DropReason::Malformed);
                }
                let payload = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
                let end = 40 + payload;
                if end > buf.len() {
                    return Err(DropReason::Malformed);
                }
                let addr = |at: usize| {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&buf[at..at + 16]);
                    IpAddr::V6(Ipv6Addr::from(a))
                };
                (addr(8), addr(24), buf[6], &buf[40..end], false)
            }
            _ => return Err(DropReason::Malformed),
        };
        let mut p = Packet {
            src,
            dst,
            proto,
            src_port: 0,
            dst_port: 0,
            tcp_syn_only: false,
            icmp_reply_or_error: false,
            later_fragment,
        };
        if later_fragment {
            return Ok(p);
        }
        match proto {
            proto::TCP | proto::UDP | proto::SCTP => {
                let needed = if proto == proto::TCP { 14 } else { 4 };
                if l4.len() < needed {
                    return Err(DropReason::Malformed);
                }
                p.src_port = u16::from_be_bytes([l4[0], l4[1]]);
                p.dst_port = u16::from_be_bytes([l4[2], l4[3]]);
                if proto == proto::TCP {
                    const SYN: u8 = 0x02;
                    const ACK: u8 = 0x10;
                    p.tcp_syn_only = l4[13] & (SYN | ACK) == SYN;
                }
            }
            proto::ICMPV4 => {
                let kind = *l4.first().ok_or(DropReason::Malformed)?;
                // 0 echo reply; 3 unreachable, 5 redirect, 11 time exceeded, 12 parameter problem.
                p.icmp_reply_or_error = matches!(kind, 0 | 3 | 5 | 11 | 12);
            }
            proto::ICMPV6 => {
                let kind = *l4.first().ok_or(DropReason::Malformed)?;
                // 1-4 are errors; 129 echo reply.
                p.icmp_reply_or_error = matches!(kind, 1..=4 | 129);
            }
            _ => {}
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTER: &str = "100.64.0.1";
    const CLIENT: &str = "100.64.0.2";
    const LAN_HOST: &str = "192.0.2.10";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Builds a packet: IPv4 (or IPv6 when the addresses are), protocol `proto`, ports or ICMP type.
    fn packet(
        src: &str,
        dst: &str,
        proto: u8,
        src_port: u16,
        dst_port: u16,
        tcp_flags: u8,
    ) -> heapless::Vec<u8, 128> {
        let mut l4: heapless::Vec<u8, 64> = heapless::Vec::new();
        match proto {
            proto::TCP => {
                let mut h = [0u8; 20];
                h[0..2].copy_from_slice(&src_port.to_be_bytes());
                h[2..4].copy_from_slice(&dst_port.to_be_bytes());
                h[12] = 5 << 4;
                h[13] = tcp_flags;
                l4.extend_from_slice(&h).unwrap();
            }
            proto::UDP => {
                let mut h = [0u8; 8];
                h[0..2].copy_from_slice(&src_port.to_be_bytes());
                h[2..4].copy_from_slice(&dst_port.to_be_bytes());
                l4.extend_from_slice(&h).unwrap();
            }
            // ICMP: `dst_port` carries the type.
            _ => l4.extend_from_slice(&[dst_port as u8, 0, 0, 0, 0, 0, 0, 0]).unwrap(),
        }
        let mut out = heapless::Vec::new();
        match (ip(src), ip(dst)) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut h = [0u8; 20];
                h[0] = 0x45;
                h[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
                h[8] = 64;
                h[9] = proto;
                h[12..16].copy_from_slice(&s.octets());
                h[16..20].copy_from_slice(&d.octets());
                out.extend_from_slice(&h).unwrap();
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut h = [0u8; 40];
                h[0] = 0x60;
                h[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
                h[6] = proto;
                h[7] = 64;
                h[8..24].copy_from_slice(&s.octets());
                h[24..40].copy_from_slice(&d.octets());
                out.extend_from_slice(&h).unwrap();
            }
            _ => unreachable!("mixed families"),
        }
        out.extend_from_slice(&l4).unwrap();
        out
    }

    /// A router at 100.64.0.1 advertising 192.0.2.0/24 and fd7a:115c:a1e0::1; the client may
    /// reach port 80 on the LAN and anything ICMP.
    fn router_filter() -> Filter {
        let mut f = Filter::default();
        f.add_local_net(ip(ROUTER), 32).unwrap();
        f.add_local_net(ip("fd7a:115c:a1e0::1"), 128).unwrap();
        f.add_local_net(ip("192.0.2.0"), 24).unwrap();
        f.add_rule(
            [CLIENT, "fd7a:115c:a1e0::2"],
            [("192.0.2.0/24", 80, 80), ("fd7a:115c:a1e0::1", 80, 80)],
            [],
        )
        .unwrap();
        f
    }

    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;

    #[test]
    fn tcp_syn_needs_a_rule_for_its_port() {
        let mut f = router_filter();
        assert_eq!(f.check_inbound(&packet(CLIENT, LAN_HOST, proto::TCP, 40000, 80, SYN)), Verdict::Accept);
        assert_eq!(
            f.check_inbound(&packet(CLIENT, LAN_HOST, proto::TCP, 40000, 22, SYN)),
            Verdict::Drop(DropReason::NoRule)
        );
        assert_eq!(f.drops.no_rule, 1);
    }

    #[test]
    fn established_tcp_passes_without_a_rule() {
        let mut f = router_filter();
        assert_eq!(f.check_inbound(&packet(CLIENT, LAN_HOST, proto::TCP, 40000, 22, ACK)), Verdict::Accept);
        assert_eq!(
            f.check_inbound(&packet(CLIENT, LAN_HOST, proto::TCP, 40000, 22, SYN | ACK)),
            Verdict::Accept
        );
    }

    #[test]
    fn destination_must_be_local() {
        let mut f = router_filter();
        assert_eq!(
            f.check_inbound(&packet(CLIENT, "198.51.100.7", proto::TCP, 1, 80, SYN)),
            Verdict::Drop(DropReason::NotLocal)
        );
        assert_eq!(f.drops.not_local, 1);
    }

    #[test]
    fn other_sources_are_dropped() {
        let mut f = router_filter();
        assert_eq!(
            f.check_inbound(&packet("100.64.0.9", LAN_HOST, proto::TCP, 40000, 80, SYN)),
            Verdict::Drop(DropReason::NoRule)
        );
    }

    #[test]
    fn udp_replies_to_our_flows_pass() {
        let mut f = router_filter();
        let inbound = packet("100.64.0.9", LAN_HOST, proto::UDP, 53, 5353, 0);
        assert_eq!(f.check_inbound(&inbound), Verdict::Drop(DropReason::NoRule));
        f.note_outbound(&packet(LAN_HOST, "100.64.0.9", proto::UDP, 5353, 53, 0));
        assert_eq!(f.check_inbound(&inbound), Verdict::Accept);
        // Another port of the same peer is still refused.
        assert_eq!(
            f.check_inbound(&packet("100.64.0.9", LAN_HOST, proto::UDP, 54, 5353, 0)),
            Verdict::Drop(DropReason::NoRule)
        );
    }

    #[test]
    fn icmp_replies_pass_and_echo_requests_need_a_rule() {
        let mut f = router_filter();
        assert_eq!(f.check_inbound(&packet("100.64.0.9", LAN_HOST, proto::ICMPV4, 0, 0, 0)), Verdict::Accept);
        assert_eq!(
            f.check_inbound(&packet("100.64.0.9", LAN_HOST, proto::ICMPV4, 0, 8, 0)),
            Verdict::Drop(DropReason::NoRule)
        );
        // The client has a rule to the LAN (port 80): ICMP to that IP is allowed on any port.
        assert_eq!(f.check_inbound(&packet(CLIENT, LAN_HOST, proto::ICMPV4, 0, 8, 0)), Verdict::Accept);
    }

    #[test]
    fn ipv6_rules_apply() {
        let mut f = router_filter();
        let c6 = "fd7a:115c:a1e0::2";
        assert_eq!(
            f.check_inbound(&packet(c6, "fd7a:115c:a1e0::1", proto::TCP, 1, 80, SYN)),
            Verdict::Accept
        );
        assert_eq!(
            f.check_inbound(&packet(c6, "fd7a:115c:a1e0::1", proto::TCP, 1, 81, SYN)),
            Verdict::Drop(DropReason::NoRule)
        );
        assert_eq!(
            f.check_inbound(&packet(c6, "fd7a:115c:a1e0::1", proto::ICMPV6, 0, 129, 0)),
            Verdict::Accept
        );
    }

    #[test]
    fn allow_all_rule() {
        let mut f = Filter::default();
        f.add_local_net(ip(ROUTER), 32).unwrap();
        f.add_rule(["*"], [("*", 0, 65535)], []).unwrap();
        assert_eq!(f.check_inbound(&packet("100.100.1.1", ROUTER, proto::TCP, 1, 22, SYN)), Verdict::Accept);
        // Protocol 47 (GRE) is not in the default set.
        let mut gre = packet("100.100.1.1", ROUTER, proto::UDP, 1, 2, 0);
        gre[9] = 47;
        assert_eq!(f.check_inbound(&gre), Verdict::Drop(DropReason::NoRule));
        f.add_rule(["*"], [("*", 0, 65535)], [47]).unwrap();
        assert_eq!(f.check_inbound(&gre), Verdict::Accept);
    }

    #[test]
    fn tsmp_always_passes() {
        let mut f = router_filter();
        let mut p = packet("100.64.0.9", ROUTER, proto::UDP, 1, 2, 0);
        p[9] = proto::TSMP;
        assert_eq!(f.check_inbound(&p), Verdict::Accept);
    }

    #[test]
    fn ranges_and_explicit_protocols() {
        let mut f = Filter::default();
        f.add_local_net(ip("192.0.2.0"), 24).unwrap();
        f.add_rule(
            ["100.64.0.10-100.64.0.20"],
            [("192.0.2.10", 1000, 2000)],
            [i64::from(proto::UDP), 300, -1],
        )
        .unwrap();
        assert_eq!(
            f.check_inbound(&packet("100.64.0.15", LAN_HOST, proto::UDP, 9, 1500, 0)),
            Verdict::Accept
        );
        assert_eq!(
            f.check_inbound(&packet("100.64.0.15", LAN_HOST, proto::TCP, 9, 1500, SYN)),
            Verdict::Drop(DropReason::NoRule),
            "only UDP was listed"
        );
        assert_eq!(
            f.check_inbound(&packet("100.64.0.21", LAN_HOST, proto::UDP, 9, 1500, 0)),
            Verdict::Drop(DropReason::NoRule)
        );
    }

    #[test]
    fn capability_sources_match_nothing() {
        let mut f = Filter::default();
        f.add_local_net(ip(ROUTER), 32).unwrap();
        f.add_rule(["cap:https://tailscale.com/cap/x"], [("*", 0, 65535)], []).unwrap();
        assert_eq!(
            f.check_inbound(&packet(CLIENT, ROUTER, proto::TCP, 1, 22, SYN)),
            Verdict::Drop(DropReason::NoRule)
        );
    }

    #[test]
    fn bad_rules_are_refused_and_leave_no_trace() {
        let mut f = router_filter();
        let before = (f.rules.len(), f.sources.len(), f.destinations.len());
        assert_eq!(f.add_rule(["192.0.2.1/24"], [("*", 0, 1)], []), Err(FilterError::HostBitsSet));
        assert_eq!(f.add_rule(["*"], [("nonsense", 0, 1)], []), Err(FilterError::BadAddress));
        assert_eq!(f.add_rule(["*"], [("*", 9, 1)], []), Err(FilterError::BadPorts));
        assert_eq!(f.add_rule(["100.64.0.9-100.64.0.1"], [("*", 0, 1)], []), Err(FilterError::BadRange));
        assert_eq!(f.add_rule(["100.64.0.1-fd7a::1"], [("*", 0, 1)], []), Err(FilterError::BadRange));
        assert_eq!(f.add_rule(["10.0.0.0/33"], [("*", 0, 1)], []), Err(FilterError::BadAddress));
        assert_eq!(f.add_rule(["10.0.0.0/"], [("*", 0, 1)], []), Err(FilterError::BadAddress));
        assert_eq!(before, (f.rules.len(), f.sources.len(), f.destinations.len()));
    }

    #[test]
    fn malformed_packets_are_dropped_not_panicked_on() {
        let mut f = router_filter();
        let good = packet(CLIENT, LAN_HOST, proto::TCP, 40000, 80, SYN);
        for len in 0..good.len() {
            assert_ne!(f.check_inbound(&good[..len]), Verdict::Accept, "truncated to {len}");
        }
        let mut bad_ihl = good.clone();
        bad_ihl[0] = 0x44;
        assert_eq!(f.check_inbound(&bad_ihl), Verdict::Drop(DropReason::Malformed));
        assert_eq!(f.check_inbound(&[0x70, 0, 0, 0]), Verdict::Drop(DropReason::Malformed));
        assert!(f.drops.malformed > 0);
    }

    #[test]
    fn later_fragments_pass_to_local_destinations() {
        let mut f = router_filter();
        let mut frag = packet(CLIENT, LAN_HOST, proto::TCP, 40000, 22, SYN);
        frag[6] = 0x00;
        frag[7] = 0x10; // offset 16 * 8 bytes
        assert_eq!(f.check_inbound(&frag), Verdict::Accept);
    }
}
