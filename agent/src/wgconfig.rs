//! From the network map and our prefs to what the datapath runs on: the peer list (order =
//! core::wg peer index), the cryptokey route table, the inbound packet filter, and the kernel
//! routes into the TUN device. Pure functions, so the choices are unit-tested without a network.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tinytail_core::control::noise;
use tinytail_core::filter::Filter;
use tinytail_core::key::{DiscoPublic, NodePublic, PrivateKey};
use tinytail_core::route::PeerIndex;
use tinytail_core::wg::PeerRoutes;
use tinytail_hal::net::{TAILNET_V4, TAILNET_V6};

use crate::netmap::NetMap;
use crate::prefix::Prefix;
use crate::state::Prefs;
use crate::tailcfg::DerpRegion;

/// What the datapath needs of one peer.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerConfig {
    pub key: NodePublic,
    pub disco: DiscoPublic,
    pub name: String,
    pub addresses: Vec<Prefix>,
    /// Prefixes routed to this peer (its addresses, plus its subnets with --accept-routes).
    pub routed: Vec<Prefix>,
    /// Where control says it can be reached directly.
    pub endpoints: Vec<SocketAddr>,
    pub home_derp: u32,
}

/// Everything the datapath runs on; rebuilt on every netmap or prefs change.
pub struct Config {
    pub node_private: PrivateKey,
    pub disco_private: PrivateKey,
    /// Their public halves, derived once here (each is a Curve25519 scalar multiplication).
    pub node_public: NodePublic,
    pub disco_public: DiscoPublic,
    pub addresses: Vec<Prefix>,
    pub peers: Vec<PeerConfig>,
    pub derp_regions: Vec<DerpRegion>,
    pub home_derp: u32,
    /// Kernel routes into the TUN device (the tailnet ranges, accepted subnets).
    pub tun_routes: Vec<Prefix>,
    /// Forward between the TUN and the LAN/WAN (we advertise routes or an exit node).
    pub forwarding: bool,
    pub snat: bool,
    /// The control plane's packet filter, compiled.
    pub filter: Arc<Filter>,
    /// Filter rules that did not fit or parse (reported, not fatal).
    pub filter_errors: Vec<String>,
}

/// Builds the datapath configuration, or `None` while the map lacks our own node. Peers
/// `allowed` refuses (tailnet lock) get no config at all: no packets either way.
pub fn build(
    netmap: &NetMap,
    prefs: &Prefs,
    node_private: &PrivateKey,
    disco_private: &PrivateKey,
    home_derp: u32,
    allowed: impl Fn(&NodePublic) -> bool,
) -> Option<Config> {
    let self_node = netmap.self_node.as_ref()?;
    let mut peers = Vec::with_capacity(netmap.peers.len());
    for node in &netmap.peers {
        // Peers without a disco key cannot be reached by magicsock (protocol.md §3.1); expired
        // peers are not talked to (tailscaled drops them from the WireGuard config), nor are
        // peers tailnet lock refuses.
        if node.disco_key == DiscoPublic::default() || node.expired || !allowed(&node.key) {
            continue;
        }
        let mut routed = node.addresses.clone();
        if prefs.accept_routes {
            // Default routes only matter to a node that uses this peer as its exit node, which a
            // router does not; so only subnets are taken.
            routed.extend(node.primary_routes.iter().filter(|p| p.bits != 0 && !node.addresses.contains(p)));
        }
        peers.push(PeerConfig {
            key: node.key,
            disco: node.disco_key,
            name: node.name.trim_end_matches('.').to_string(),
            addresses: node.addresses.clone(),
            routed,
            endpoints: node.endpoints.iter().filter_map(|e| e.parse().ok()).collect(),
            home_derp: node.home_derp,
        });
    }
    let mut tun_routes = vec![
        Prefix { addr: TAILNET_V4.0, bits: TAILNET_V4.1 },
        Prefix { addr: TAILNET_V6.0, bits: TAILNET_V6.1 },
    ];
    for p in peers.iter().flat_map(|p| &p.routed) {
        let inside_tailnet = tun_routes[..2].iter().any(|t| t.covers(p));
        if !inside_tailnet && !tun_routes.contains(p) {
            tun_routes.push(*p);
        }
    }
    let (filter, filter_errors) = compile_filter(netmap, prefs, &self_node.addresses);
    Some(Config {
        node_private: node_private.clone(),
        disco_private: disco_private.clone(),
        node_public: NodePublic(noise::public_key(node_private)),
        disco_public: DiscoPublic(noise::public_key(disco_private)),
        addresses: self_node.addresses.clone(),
        peers,
        derp_regions: netmap.derp_regions.values().cloned().collect(),
        home_derp,
        tun_routes,
        forwarding: !prefs.advertise_routes.is_empty() || prefs.advertise_exit_node,
        snat: prefs.snat_subnet_routes,
        filter: Arc::new(filter),
        filter_errors,
    })
}

impl Config {
    /// The cryptokey route table: every peer's routed prefixes, pointing at its index.
    pub fn routes(&self) -> Result<PeerRoutes, String> {
        let entries = self.peers.iter().enumerate().flat_map(|(i, p)| {
            let index = PeerIndex::try_from(i).unwrap_or(PeerIndex::MAX);
            p.routed.iter().map(move |r| (r.addr, r.bits, index))
        });
        PeerRoutes::build(entries).map_err(|e| format!("peer routes: {e:?}"))
    }
}

/// The inbound filter: control's rules, and as "ours" our addresses, the routes we advertise and,
/// as an exit node, everything (tailscaled's `localNets`).
fn compile_filter(netmap: &NetMap, prefs: &Prefs, addresses: &[Prefix]) -> (Filter, Vec<String>) {
    let mut filter = Filter::default();
    let mut errors = Vec::new();
    let mut local: Vec<Prefix> =
        addresses.iter().map(|a| Prefix { addr: a.addr, bits: host_bits(a.addr) }).collect();
    local.extend(prefs.advertise_routes.iter().filter_map(|r| Prefix::parse_route(r).ok()));
    if prefs.advertise_exit_node {
        local.push(Prefix { addr: IpAddr::V4(0.into()), bits: 0 });
        local.push(Prefix { addr: IpAddr::V6(0.into()), bits: 0 });
    }
    for p in local {
        if let Err(e) = filter.add_local_net(p.addr, p.bits) {
            errors.push(format!("local net {p}: {e:?}"));
        }
    }
    for rule in netmap.packet_filter() {
        let destinations = rule.dst_ports.iter().map(|d| (d.ip.as_str(), d.ports.first, d.ports.last));
        let protos = rule.ip_proto.iter().map(|&p| i64::from(p));
        if let Err(e) = filter.add_rule(rule.src_ips.iter().map(String::as_str), destinations, protos) {
            errors.push(format!("rule from {:?}: {e:?}", rule.src_ips));
        }
    }
    (filter, errors)
}

fn host_bits(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netmap::Node;
    use crate::tailcfg::{FilterRule, NetPortRange, PortRange};

    fn prefix(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }

    fn peer(id: i64, addr: &str, routes: &[&str]) -> Node {
        let addresses = vec![prefix(addr)];
        let mut allowed = addresses.clone();
        allowed.extend(routes.iter().map(|r| prefix(r)));
        Node {
            id,
            name: format!("peer{id}.tail.example."),
            key: NodePublic([id as u8; 32]),
            disco_key: DiscoPublic([id as u8; 32]),
            addresses,
            allowed_ips: allowed.clone(),
            primary_routes: routes.iter().map(|r| prefix(r)).collect(),
            endpoints: vec!["198.18.0.20:41641".into(), "not an endpoint".into()],
            home_derp: 999,
            ..Node::default()
        }
    }

    fn map() -> NetMap {
        let mut nm = NetMap {
            self_node: Some(Node { addresses: vec![prefix("100.64.0.1/32")], ..Node::default() }),
            ..NetMap::default()
        };
        nm.peers.push(peer(2, "100.64.0.2/32", &["10.20.0.0/16", "0.0.0.0/0"]));
        let mut no_disco = peer(3, "100.64.0.3/32", &[]);
        no_disco.disco_key = DiscoPublic::default();
        nm.peers.push(no_disco);
        nm.packet_filters.insert(
            "base".into(),
            vec![FilterRule {
                src_ips: vec!["100.64.0.2".into()],
                dst_ports: vec![NetPortRange {
                    ip: "192.0.2.0/24".into(),
                    ports: PortRange { first: 80, last: 80 },
                }],
                ip_proto: vec![],
            }],
        );
        nm
    }

    #[test]
    fn peers_tailnet_lock_refuses_get_no_config_and_no_routes() {
        let keys = (PrivateKey([1; 32]), PrivateKey([2; 32]));
        let prefs = Prefs { accept_routes: true, ..Prefs::default() };
        let nm = map();
        let refused = nm.peers[0].key;
        let c = build(&nm, &prefs, &keys.0, &keys.1, 999, |k| *k != refused).unwrap();
        assert!(c.peers.iter().all(|p| p.key != refused), "a locked-out peer got a config");
        assert!(!c.tun_routes.contains(&prefix("10.20.0.0/16")), "its subnet is still routed");
    }

    #[test]
    fn peers_without_disco_keys_are_left_out_and_subnets_need_accept_routes() {
        let keys = (PrivateKey([1; 32]), PrivateKey([2; 32]));
        let prefs = Prefs::default();
        let c = build(&map(), &prefs, &keys.0, &keys.1, 999, |_| true).unwrap();
        assert_eq!(c.peers.len(), 1);
        assert_eq!(c.peers[0].routed, vec![prefix("100.64.0.2/32")]);
        assert_eq!(c.peers[0].endpoints, vec!["198.18.0.20:41641".parse::<SocketAddr>().unwrap()]);
        assert_eq!(c.peers[0].name, "peer2.tail.example");
        assert_eq!(c.tun_routes, vec![prefix("100.64.0.0/10"), prefix("fd7a:115c:a1e0::/48")]);
        assert!(!c.forwarding);

        let prefs = Prefs { accept_routes: true, ..Prefs::default() };
        let c = build(&map(), &prefs, &keys.0, &keys.1, 999, |_| true).unwrap();
        // The subnet is taken, the default route is not.
        assert_eq!(c.peers[0].routed, vec![prefix("100.64.0.2/32"), prefix("10.20.0.0/16")]);
        assert_eq!(c.tun_routes.last(), Some(&prefix("10.20.0.0/16")));
        let routes = c.routes().unwrap();
        assert_eq!(routes.lookup("10.20.3.4".parse().unwrap()), Some(0));
        assert_eq!(routes.lookup("8.8.8.8".parse().unwrap()), None);
    }

    #[test]
    fn filter_admits_what_control_allows_into_what_we_serve() {
        let keys = (PrivateKey([1; 32]), PrivateKey([2; 32]));
        let prefs = Prefs { advertise_routes: vec!["192.0.2.0/24".into()], ..Prefs::default() };
        let c = build(&map(), &prefs, &keys.0, &keys.1, 999, |_| true).unwrap();
        assert!(c.forwarding);
        assert!(c.filter_errors.is_empty(), "{:?}", c.filter_errors);
        let mut filter = (*c.filter).clone();
        let syn = |port: u16| {
            let mut p = vec![0u8; 40];
            p[0] = 0x45;
            p[2..4].copy_from_slice(&40u16.to_be_bytes());
            p[9] = 6;
            p[12..16].copy_from_slice(&[100, 64, 0, 2]);
            p[16..20].copy_from_slice(&[192, 0, 2, 10]);
            p[22..24].copy_from_slice(&port.to_be_bytes());
            p[32] = 5 << 4;
            p[33] = 0x02;
            p
        };
        use tinytail_core::filter::Verdict;
        assert_eq!(filter.check_inbound(&syn(80)), Verdict::Accept);
        assert!(matches!(filter.check_inbound(&syn(22)), Verdict::Drop(_)));
    }

    #[test]
    fn no_self_node_no_config() {
        let keys = (PrivateKey([1; 32]), PrivateKey([2; 32]));
        assert!(build(&NetMap::default(), &Prefs::default(), &keys.0, &keys.1, 0, |_| true).is_none());
    }
}
