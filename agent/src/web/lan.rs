//! The subnets on the router's LAN side, offered on the page as one-click routes. Read from the
//! kernel's connected routes (`/proc/net/route`, `/proc/net/ipv6_route`: no netlink, no unsafe);
//! the parsing is pure and tested here, the reading is [`read`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::prefix::Prefix;

/// `RTF_UP` and `RTF_GATEWAY` from <linux/route.h>.
const RTF_UP: u32 = 0x1;
const RTF_GATEWAY: u32 = 0x2;

/// Connected subnets `(interface, prefix)` on `lan_interface`, or on whichever interface has a
/// subnet holding `listen` (the page's own address is on the LAN by definition), sorted.
pub fn read(lan_interface: &str, listen: Option<IpAddr>) -> Vec<(String, String)> {
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    lan_subnets(&connected_routes(&v4, &v6), lan_interface, listen)
}

/// Picks the LAN's subnets out of all connected routes.
pub fn lan_subnets(
    routes: &[(String, Prefix)],
    lan_interface: &str,
    listen: Option<IpAddr>,
) -> Vec<(String, String)> {
    let lan_ifaces: Vec<&str> = routes
        .iter()
        .filter(|(ifname, p)| ifname == lan_interface || listen.is_some_and(|ip| contains(p, ip)))
        .map(|(ifname, _)| ifname.as_str())
        .collect();
    let mut out: Vec<(String, String)> = routes
        .iter()
        .filter(|(ifname, _)| lan_ifaces.contains(&ifname.as_str()))
        .map(|(ifname, p)| (ifname.clone(), p.to_string()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every directly connected subnet (no gateway) from the two /proc tables; loopback, link-local,
/// multicast, default and host routes left out. Malformed lines are skipped.
pub fn connected_routes(route_v4: &str, route_v6: &str) -> Vec<(String, Prefix)> {
    let mut out = Vec::new();
    for line in route_v4.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [ifname, dst, _gw, flags, _, _, _, mask, ..] = f.as_slice() else { continue };
        let (Ok(dst), Ok(flags), Ok(mask)) =
            (u32::from_str_radix(dst, 16), u32::from_str_radix(flags, 16), u32::from_str_radix(mask, 16))
        else {
            continue;
        };
        // The kernel prints the addresses in host order of a little-endian read of network bytes.
        let bits = mask.count_ones() as u8;
        if flags & RTF_UP == 0 || flags & RTF_GATEWAY != 0 || bits == 0 || bits == 32 || *ifname == "lo" {
            continue;
        }
        let addr = IpAddr::V4(Ipv4Addr::from(dst.to_le_bytes()));
        if let Ok(p) = Prefix::parse_route(&format!("{addr}/{bits}")) {
            out.push((ifname.to_string(), p));
        }
    }
    for line in route_v6.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [dst, bits, _src, _srcbits, next_hop, _metric, _ref, _use, flags, ifname] = f.as_slice() else {
            continue;
        };
        let (Some(dst), Ok(bits), Ok(flags)) =
            (hex128(dst), u8::from_str_radix(bits, 16), u32::from_str_radix(flags, 16))
        else {
            continue;
        };
        let addr = Ipv6Addr::from(dst);
        let link_local_or_multicast =
            addr.segments()[0] & 0xffc0 == 0xfe80 || addr.segments()[0] & 0xff00 == 0xff00;
        if flags & RTF_UP == 0
            || flags & RTF_GATEWAY != 0
            || hex128(next_hop) != Some(0)
            || bits == 0
            || bits >= 128
            || *ifname == "lo"
            || link_local_or_multicast
        {
            continue;
        }
        if let Ok(p) = Prefix::parse_route(&format!("{addr}/{bits}")) {
            out.push((ifname.to_string(), p));
        }
    }
    out
}

fn hex128(text: &str) -> Option<u128> {
    (text.len() == 32).then(|| u128::from_str_radix(text, 16).ok()).flatten()
}

fn contains(p: &Prefix, ip: IpAddr) -> bool {
    match (p.addr, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(p.bits)).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(p.bits)).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The router namespace of the netns rig, as the kernel printed it.
    const ROUTE_V4: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
wan0\t000012C6\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
wan0\t007100CB\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
lan0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
wan0\t00000000\t010012C6\t0003\t0\t0\t0\t00000000\t0\t0\t0
tailscale0\t00004064\t00000000\t0001\t0\t0\t0\t0000C0FF\t0\t0\t0
garbage line
";
    const ROUTE_V6: &str = "\
20010db8000000010000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     lan0
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     lan0
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo
ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     lan0
";

    #[test]
    fn connected_routes_from_proc() {
        let routes = connected_routes(ROUTE_V4, ROUTE_V6);
        let text: Vec<String> = routes.iter().map(|(i, p)| format!("{i} {p}")).collect();
        assert_eq!(
            text,
            [
                "wan0 198.18.0.0/24",
                "wan0 203.0.113.0/24",
                "lan0 192.0.2.0/24",
                "tailscale0 100.64.0.0/10",
                "lan0 2001:db8:0:1::/64"
            ]
        );
    }

    #[test]
    fn lan_is_the_board_interface_or_where_the_page_listens() {
        let routes = connected_routes(ROUTE_V4, ROUTE_V6);
        let by_listen = lan_subnets(&routes, "eth1", Some("192.0.2.1".parse().unwrap()));
        assert_eq!(
            by_listen,
            [
                ("lan0".to_string(), "192.0.2.0/24".to_string()),
                ("lan0".to_string(), "2001:db8:0:1::/64".to_string())
            ]
        );
        let by_board = lan_subnets(&routes, "wan0", None);
        assert_eq!(by_board.len(), 2);
        assert!(lan_subnets(&routes, "eth1", Some("127.0.0.1".parse().unwrap())).is_empty());
    }
}
