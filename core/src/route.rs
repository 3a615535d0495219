//! Cryptokey routing: which peer a destination belongs to, by longest-prefix match over the peers'
//! AllowedIPs, and whether a peer may send from a source address.
//!
//! The table is built whole from a netmap and then only read: the datapath swaps in a new table
//! when the netmap changes instead of editing one in place. Entries live in fixed-capacity arrays,
//! grouped by prefix length (longest first) and sorted inside each group, so a lookup masks the
//! address once per distinct prefix length present and binary-searches that group:
//! O(lengths present x log n). A netmap has few distinct lengths (/32 and /128 host routes, a few
//! subnet lengths, /0 for an exit node), so this beats a bit-per-level trie in both memory (one
//! entry per prefix, no interior nodes) and cache behaviour.

use core::net::IpAddr;

use heapless::Vec;

/// Identifies a peer in the caller's peer table.
pub type PeerIndex = u16;

/// Why a table could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RouteError {
    /// More prefixes of one family than the table holds.
    Full { capacity: usize },
    /// A prefix length beyond the address size (33+ for IPv4, 129+ for IPv6).
    BadPrefixLength(u8),
}

impl core::fmt::Display for RouteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RouteError::Full { capacity } => write!(f, "route table full ({capacity} prefixes per family)"),
            RouteError::BadPrefixLength(bits) => write!(f, "prefix length {bits} is too long"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for RouteError {}

/// One family's entries: `(network as an integer, prefix length, peer)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry<A> {
    network: A,
    bits: u8,
    peer: PeerIndex,
}

/// A longest-prefix-match table with room for `V4` IPv4 and `V6` IPv6 prefixes.
#[derive(Debug, Clone)]
pub struct RouteTable<const V4: usize, const V6: usize> {
    v4: Family<u32, V4>,
    v6: Family<u128, V6>,
}

impl<const V4: usize, const V6: usize> Default for RouteTable<V4, V6> {
    fn default() -> Self {
        RouteTable { v4: Family::new(), v6: Family::new() }
    }
}

impl<const V4: usize, const V6: usize> RouteTable<V4, V6> {
    /// Builds a table from `(prefix address, prefix length, peer)`; host bits are ignored. When two
    /// peers claim the same prefix (control gives a subnet to one primary router, so this is rare),
    /// the lower peer index wins and the other is never returned.
    pub fn build(prefixes: impl IntoIterator<Item = (IpAddr, u8, PeerIndex)>) -> Result<Self, RouteError> {
        let mut table = Self::default();
        for (addr, bits, peer) in prefixes {
            match addr {
                IpAddr::V4(a) => table.v4.push(u32::from(a), bits, peer)?,
                IpAddr::V6(a) => table.v6.push(u128::from(a), bits, peer)?,
            }
        }
        table.v4.finish();
        table.v6.finish();
        Ok(table)
    }

    /// The peer whose AllowedIPs hold `dst` most specifically.
    pub fn lookup(&self, dst: IpAddr) -> Option<PeerIndex> {
        match dst {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }

    /// True when `src` is inside one of `peer`'s prefixes, i.e. the peer may send from it. A
    /// packet from a source that routes to another peer (a more specific prefix) is refused too,
    /// as WireGuard's cryptokey routing does.
    pub fn allows_source(&self, peer: PeerIndex, src: IpAddr) -> bool {
        self.lookup(src) == Some(peer)
    }

    /// Number of prefixes held (both families).
    pub fn len(&self) -> usize {
        self.v4.entries.len() + self.v6.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The address arithmetic a family needs.
trait Bits: Copy + Ord + core::fmt::Debug {
    const WIDTH: u8;
    fn mask(self, bits: u8) -> Self;
}

impl Bits for u32 {
    const WIDTH: u8 = 32;
    fn mask(self, bits: u8) -> Self {
        // `checked_shl` covers bits == 0, where a plain shift by 32 would overflow.
        self & u32::MAX.checked_shl(u32::from(32 - bits)).unwrap_or(0)
    }
}

impl Bits for u128 {
    const WIDTH: u8 = 128;
    fn mask(self, bits: u8) -> Self {
        self & u128::MAX.checked_shl(u32::from(128 - bits)).unwrap_or(0)
    }
}

#[derive(Debug, Clone)]
struct Family<A, const N: usize> {
    /// Sorted by prefix length descending, then network ascending; duplicates removed.
    entries: Vec<Entry<A>, N>,
}

impl<A: Bits, const N: usize> Family<A, N> {
    fn new() -> Self {
        Family { entries: Vec::new() }
    }

    fn push(&mut self, addr: A, bits: u8, peer: PeerIndex) -> Result<(), RouteError> {
        if bits > A::WIDTH {
            return Err(RouteError::BadPrefixLength(bits));
        }
        self.entries
            .push(Entry { network: addr.mask(bits), bits, peer })
            .map_err(|_| RouteError::Full { capacity: N })
    }

    fn finish(&mut self) {
        // Equal prefixes end up adjacent with the lowest peer first; dedup keeps that one.
        self.entries.sort_unstable_by(|a, b| {
            b.bits.cmp(&a.bits).then(a.network.cmp(&b.network)).then(a.peer.cmp(&b.peer))
        });
        let mut kept = 0;
        for i in 0..self.entries.len() {
            let e = self.entries[i];
            if kept > 0
                && self.entries[kept - 1].bits == e.bits
                && self.entries[kept - 1].network == e.network
            {
                continue;
            }
            self.entries[kept] = e;
            kept += 1;
        }
        self.entries.truncate(kept);
    }

    fn lookup(&self, addr: A) -> Option<PeerIndex> {
        let mut rest = &self.entries[..];
        while let Some(first) = rest.first() {
            let bits = first.bits;
            let group_len = rest.partition_point(|e| e.bits == bits);
            let (group, tail) = rest.split_at(group_len);
            let key = addr.mask(bits);
            if let Ok(i) = group.binary_search_by(|e| e.network.cmp(&key)) {
                return Some(group[i].peer);
            }
            rest = tail;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
    }
    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
    }

    type Table = RouteTable<16, 16>;

    #[test]
    fn longest_prefix_wins() {
        let t = Table::build([
            (v4("0.0.0.0"), 0, 9),
            (v4("192.0.2.0"), 24, 1),
            (v4("192.0.2.128"), 25, 2),
            (v4("100.64.0.7"), 32, 3),
        ])
        .unwrap();
        assert_eq!(t.lookup(v4("192.0.2.200")), Some(2));
        assert_eq!(t.lookup(v4("192.0.2.5")), Some(1));
        assert_eq!(t.lookup(v4("100.64.0.7")), Some(3));
        assert_eq!(t.lookup(v4("100.64.0.8")), Some(9), "the exit node's /0 catches the rest");
    }

    #[test]
    fn no_match_without_default_route() {
        let t = Table::build([(v4("192.0.2.0"), 24, 1)]).unwrap();
        assert_eq!(t.lookup(v4("198.51.100.1")), None);
        assert_eq!(t.lookup(v6("fd7a:115c:a1e0::1")), None);
    }

    #[test]
    fn host_bits_in_a_prefix_are_ignored() {
        let t = Table::build([(v4("192.0.2.77"), 24, 4)]).unwrap();
        assert_eq!(t.lookup(v4("192.0.2.1")), Some(4));
    }

    #[test]
    fn ipv6_prefixes() {
        let t = Table::build([
            (v6("fd7a:115c:a1e0::"), 48, 1),
            (v6("fd7a:115c:a1e0::5"), 128, 2),
            (v6("::"), 0, 3),
        ])
        .unwrap();
        assert_eq!(t.lookup(v6("fd7a:115c:a1e0::5")), Some(2));
        assert_eq!(t.lookup(v6("fd7a:115c:a1e0::6")), Some(1));
        assert_eq!(t.lookup(v6("2001:db8::1")), Some(3));
        assert_eq!(t.lookup(v4("192.0.2.1")), None, "families are separate");
    }

    #[test]
    fn lowest_peer_wins_a_shared_prefix() {
        let t = Table::build([(v4("192.0.2.0"), 24, 2), (v4("192.0.2.0"), 24, 1)]).unwrap();
        assert_eq!(t.lookup(v4("192.0.2.9")), Some(1));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn source_must_route_back_to_the_sending_peer() {
        let t =
            Table::build([(v4("100.64.0.2"), 32, 1), (v4("192.0.2.0"), 24, 1), (v4("100.64.0.3"), 32, 2)])
                .unwrap();
        assert!(t.allows_source(1, v4("192.0.2.10")));
        assert!(t.allows_source(1, v4("100.64.0.2")));
        assert!(!t.allows_source(1, v4("100.64.0.3")), "spoofing another peer's address");
        assert!(!t.allows_source(1, v4("203.0.113.1")), "outside every AllowedIP");
    }

    #[test]
    fn capacity_and_bad_lengths_are_errors() {
        let many = (0..5u8).map(|i| (v4("10.0.0.0"), 8 + i, 1));
        assert_eq!(RouteTable::<4, 1>::build(many).unwrap_err(), RouteError::Full { capacity: 4 });
        assert_eq!(Table::build([(v4("10.0.0.0"), 33, 1)]).unwrap_err(), RouteError::BadPrefixLength(33));
        assert_eq!(Table::build([(v6("::"), 129, 1)]).unwrap_err(), RouteError::BadPrefixLength(129));
    }

    /// Against a brute-force model: the longest matching prefix over a pseudo-random table.
    #[test]
    fn agrees_with_a_linear_scan() {
        let mut seed = 0x2545_f491_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let mut prefixes: Vec<(u32, u8, PeerIndex), 64> = Vec::new();
        for i in 0..64 {
            let bits = [0, 8, 16, 24, 28, 32][(next() % 6) as usize];
            // Keep addresses in a small space so prefixes overlap.
            let addr = (next() & 0x0303_0303) | 0x0a00_0000;
            prefixes.push((addr, bits, i)).unwrap();
        }
        let t = RouteTable::<64, 1>::build(prefixes.iter().map(|&(a, b, p)| (IpAddr::V4(a.into()), b, p)))
            .unwrap();
        for _ in 0..2000 {
            let probe = (next() & 0x0303_0303) | 0x0a00_0000;
            let expected = prefixes
                .iter()
                .filter(|&&(a, b, _)| a.mask(b) == probe.mask(b))
                // Longest length wins; among equals, the lowest peer (= the first given here).
                .fold(None::<(u8, PeerIndex)>, |best, &(_, b, p)| match best {
                    Some((bb, _)) if bb >= b => best,
                    _ => Some((b, p)),
                })
                .map(|(_, p)| p);
            assert_eq!(t.lookup(IpAddr::V4(probe.into())), expected, "probe {probe:#x}");
        }
    }
}
