//! The network map the rest of the agent consumes: ourselves, our peers, the DERP map, the packet
//! filter, tailnet-lock info and the tailnet's domain. Built from the first full `MapResponse`
//! and updated by deltas (protocol.md §3.3); keys and prefixes are parsed once here, so the
//! datapath never sees text.

use std::collections::BTreeMap;

use tinytail_core::key::{DiscoPublic, MachinePublic, NodePublic};

use crate::prefix::Prefix;
use crate::tailcfg::{self, DerpRegion, FilterRule, TkaInfo};

/// `tailcfg.DerpMagicIP`: the legacy `DERP` field is `"127.3.3.40:<region>"`
/// (`ts:tailcfg/tailcfg.go`).
const DERP_MAGIC_IP: &str = "127.3.3.40";
/// Name of the filter chunk the legacy `PacketFilter` field stands for (`ts:control/controlclient/map.go`).
const BASE_FILTER: &str = "base";
/// `PacketFilters` key that, with a null value, clears every chunk first.
const CLEAR_ALL_FILTERS: &str = "*";

/// One node, self or peer, in the compact form we keep.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    pub id: i64,
    pub stable_id: String,
    /// FQDN with the trailing dot, as control sends it.
    pub name: String,
    pub hostname: String,
    pub os: String,
    pub user: i64,
    pub key: NodePublic,
    /// RFC 3339, `None` = never expires.
    pub key_expiry: Option<String>,
    pub expired: bool,
    /// Base64 CBOR NodeKeySignature (tailnet lock); empty without one.
    pub key_signature: String,
    pub machine: MachinePublic,
    pub disco_key: DiscoPublic,
    pub addresses: Vec<Prefix>,
    /// What to route to this node; equal to `addresses` when control sent none (capver 112).
    pub allowed_ips: Vec<Prefix>,
    pub primary_routes: Vec<Prefix>,
    /// Routes the node advertises (`Hostinfo.RoutableIPs`), approved or not.
    pub advertised_routes: Vec<Prefix>,
    pub endpoints: Vec<String>,
    /// Home DERP region, 0 = none.
    pub home_derp: u32,
    pub online: Option<bool>,
    pub last_seen: Option<String>,
    pub tags: Vec<String>,
    pub machine_authorized: bool,
    /// Capability names, from `CapMap` and the legacy `Capabilities` list (tailscaled reads
    /// both the same way).
    pub caps: Vec<String>,
}

impl Node {
    /// Parses a wire node; malformed keys or prefixes are skipped with the count reported, never
    /// a panic: one bad entry must not cost us the whole map.
    pub fn from_wire(wire: tailcfg::Node) -> Result<Node, NetmapError> {
        let key =
            NodePublic::parse(&wire.key).map_err(|e| NetmapError(format!("node {}: key: {e}", wire.id)))?;
        let addresses = parse_prefixes(&wire.addresses);
        let allowed_ips = match &wire.allowed_ips {
            Some(list) => parse_prefixes(list),
            None => addresses.clone(),
        };
        let home_derp =
            if wire.home_derp != 0 { wire.home_derp } else { legacy_derp_region(&wire.legacy_derp) };
        let hostinfo = wire.hostinfo.unwrap_or_default();
        let mut caps = wire.capabilities;
        caps.extend(wire.cap_map.into_iter().flat_map(|m| m.into_keys()));
        caps.sort();
        caps.dedup();
        Ok(Node {
            id: wire.id,
            stable_id: wire.stable_id,
            name: wire.name,
            hostname: hostinfo.hostname,
            os: hostinfo.os,
            user: wire.user,
            key,
            key_expiry: wire.key_expiry.filter(|t| !is_zero_time(t)),
            expired: wire.expired,
            key_signature: wire.key_signature.unwrap_or_default(),
            machine: wire.machine.and_then(|m| MachinePublic::parse(&m).ok()).unwrap_or_default(),
            disco_key: wire.disco_key.and_then(|d| DiscoPublic::parse(&d).ok()).unwrap_or_default(),
            addresses,
            allowed_ips,
            primary_routes: parse_prefixes(&wire.primary_routes),
            advertised_routes: parse_prefixes(&hostinfo.routable_ips),
            endpoints: wire.endpoints,
            home_derp,
            online: wire.online,
            last_seen: wire.last_seen,
            tags: wire.tags,
            machine_authorized: wire.machine_authorized,
            caps,
        })
    }

    /// Approved routes: what control routes to this node beyond its own addresses.
    pub fn enabled_routes(&self) -> Vec<Prefix> {
        self.allowed_ips.iter().filter(|p| !self.addresses.contains(p)).copied().collect()
    }
}

/// A map entry control sent that we could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetmapError(pub String);

impl std::fmt::Display for NetmapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The whole network map.
#[derive(Debug, Clone, Default)]
pub struct NetMap {
    pub self_node: Option<Node>,
    /// Sorted by `id`.
    pub peers: Vec<Node>,
    pub derp_regions: BTreeMap<u32, DerpRegion>,
    /// Named filter chunks; the effective filter is their concatenation in key order.
    pub packet_filters: BTreeMap<String, Vec<FilterRule>>,
    pub tka: Option<TkaInfo>,
    pub domain: String,
    pub control_time: Option<String>,
    /// `DNSConfig.CertDomains`: the names `tinytail cert` may ask for.
    pub cert_domains: Vec<String>,
}

/// What an update changed, for logs and for waking consumers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub peers_added: usize,
    pub peers_removed: usize,
    pub peers_patched: usize,
    /// Entries that were malformed and skipped.
    pub skipped: Vec<String>,
}

impl NetMap {
    /// Applies one non-keep-alive map response. The first response of a stream must be full
    /// (carry `Node`); later ones are deltas where absent fields mean "unchanged".
    pub fn apply(&mut self, resp: tailcfg::MapResponse) -> Applied {
        let mut applied = Applied::default();
        if let Some(node) = resp.node {
            match Node::from_wire(node) {
                Ok(n) => self.self_node = Some(n),
                Err(e) => applied.skipped.push(e.0),
            }
        }
        if let Some(derp) = resp.derp_map {
            if let Some(regions) = derp.regions {
                // The map key is the region's ID (`tailcfg.DERPMap`); a body that says otherwise
                // takes the key, so lookups by key and by `region_id` agree.
                self.derp_regions = regions
                    .into_iter()
                    .filter_map(|(id, region)| {
                        let (id, mut region) = (id.parse().ok()?, region?);
                        region.region_id = id;
                        Some((id, region))
                    })
                    .collect();
            }
        }
        if let Some(peers) = resp.peers {
            applied.peers_removed = self.peers.len();
            self.peers.clear();
            for wire in peers {
                match Node::from_wire(wire) {
                    Ok(n) => {
                        self.upsert_peer(n);
                    }
                    Err(e) => applied.skipped.push(e.0),
                }
            }
            applied.peers_added = self.peers.len();
        } else {
            for wire in resp.peers_changed.unwrap_or_default() {
                match Node::from_wire(wire) {
                    Ok(n) => {
                        if !self.upsert_peer(n) {
                            applied.peers_added += 1;
                        } else {
                            applied.peers_patched += 1;
                        }
                    }
                    Err(e) => applied.skipped.push(e.0),
                }
            }
            for id in resp.peers_removed.unwrap_or_default() {
                if let Ok(i) = self.peers.binary_search_by_key(&id, |p| p.id) {
                    self.peers.remove(i);
                    applied.peers_removed += 1;
                }
            }
        }
        for change in resp.peers_changed_patch.unwrap_or_default() {
            if self.patch_peer(change, &mut applied.skipped) {
                applied.peers_patched += 1;
            }
        }
        for (id, online) in resp.online_change.unwrap_or_default() {
            if let Some(peer) = self.peer_mut_by_text_id(&id) {
                peer.online = Some(online);
            }
        }
        for (id, seen) in resp.peer_seen_change.unwrap_or_default() {
            if let Some(peer) = self.peer_mut_by_text_id(&id) {
                // true = "seen now": we keep control's last timestamp as is; false = gone.
                if !seen {
                    peer.last_seen = None;
                }
            }
        }
        if let Some(rules) = resp.packet_filter {
            self.packet_filters.insert(BASE_FILTER.to_string(), rules);
        }
        if let Some(filters) = resp.packet_filters {
            if filters.get(CLEAR_ALL_FILTERS).is_some_and(Option::is_none) {
                self.packet_filters.clear();
            }
            for (name, rules) in filters {
                match rules {
                    Some(r) => {
                        self.packet_filters.insert(name, r);
                    }
                    None => {
                        self.packet_filters.remove(&name);
                    }
                }
            }
        }
        if !resp.domain.is_empty() {
            self.domain = resp.domain;
        }
        if let Some(dns) = resp.dns_config {
            self.cert_domains = dns.cert_domains;
        }
        if resp.tka_info.is_some() {
            self.tka = resp.tka_info;
        }
        if resp.control_time.is_some() {
            self.control_time = resp.control_time;
        }
        applied
    }

    /// The effective packet filter: every chunk, in key order.
    pub fn packet_filter(&self) -> impl Iterator<Item = &FilterRule> {
        self.packet_filters.values().flatten()
    }

    /// Inserts or replaces by id; returns true when it replaced.
    fn upsert_peer(&mut self, node: Node) -> bool {
        match self.peers.binary_search_by_key(&node.id, |p| p.id) {
            Ok(i) => {
                self.peers[i] = node;
                true
            }
            Err(i) => {
                self.peers.insert(i, node);
                false
            }
        }
    }

    fn peer_mut_by_text_id(&mut self, id: &str) -> Option<&mut Node> {
        let id: i64 = id.parse().ok()?;
        let i = self.peers.binary_search_by_key(&id, |p| p.id).ok()?;
        self.peers.get_mut(i)
    }

    /// Applies a `PeerChange`; unknown node IDs are ignored (protocol.md §3.3).
    fn patch_peer(&mut self, change: tailcfg::PeerChange, skipped: &mut Vec<String>) -> bool {
        let Ok(i) = self.peers.binary_search_by_key(&change.node_id, |p| p.id) else { return false };
        let peer = &mut self.peers[i];
        if change.derp_region != 0 {
            peer.home_derp = change.derp_region;
        }
        if let Some(endpoints) = change.endpoints {
            peer.endpoints = endpoints;
        }
        if let Some(key) = change.key {
            match NodePublic::parse(&key) {
                Ok(k) => peer.key = k,
                Err(e) => skipped.push(format!("patch of node {}: key: {e}", change.node_id)),
            }
        }
        if let Some(sig) = change.key_signature {
            peer.key_signature = sig;
        }
        if let Some(disco) = change.disco_key {
            match DiscoPublic::parse(&disco) {
                Ok(k) => peer.disco_key = k,
                Err(e) => skipped.push(format!("patch of node {}: disco key: {e}", change.node_id)),
            }
        }
        if let Some(online) = change.online {
            peer.online = Some(online);
        }
        if let Some(seen) = change.last_seen {
            peer.last_seen = Some(seen);
        }
        if let Some(expiry) = change.key_expiry {
            peer.key_expiry = Some(expiry).filter(|t| !is_zero_time(t));
        }
        true
    }
}

fn parse_prefixes(list: &[String]) -> Vec<Prefix> {
    list.iter().filter_map(|p| Prefix::parse(p).ok()).collect()
}

/// Region from the legacy `"127.3.3.40:<region>"` string; 0 when absent or malformed.
fn legacy_derp_region(derp: &str) -> u32 {
    derp.strip_prefix(DERP_MAGIC_IP)
        .and_then(|rest| rest.strip_prefix(':'))
        .and_then(|region| region.parse().ok())
        .unwrap_or(0)
}

/// Go's zero `time.Time` ("0001-01-01T00:00:00Z") means "not set".
fn is_zero_time(t: &str) -> bool {
    t.starts_with("0001-01-01")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> String {
        format!("nodekey:{}", format!("{n:02x}").repeat(32))
    }

    fn wire_node(id: i64, host: &str) -> serde_json::Value {
        serde_json::json!({
            "ID": id, "Name": format!("{host}.tailnet.test."), "Key": key(id as u8),
            "DiscoKey": format!("discokey:{}", "ab".repeat(32)),
            "Addresses": [format!("100.64.0.{id}/32")],
            "Hostinfo": {"Hostname": host, "RoutableIPs": ["192.0.2.0/24"]},
            "HomeDERP": 999, "Online": true,
        })
    }

    fn response(v: serde_json::Value) -> tailcfg::MapResponse {
        serde_json::from_value(v).unwrap()
    }

    fn full() -> NetMap {
        let mut nm = NetMap::default();
        nm.apply(response(serde_json::json!({
            "Node": wire_node(1, "router"),
            "Peers": [wire_node(3, "c"), wire_node(2, "b")],
            "DERPMap": {"Regions": {"999": {"RegionID": 999, "RegionCode": "rig", "Nodes": [{"Name": "999a", "HostName": "control.tinytail.test", "DERPPort": 443}]}, "5": null}},
            "PacketFilters": {"base": [{"SrcIPs": ["*"], "DstPorts": [{"IP": "*", "Ports": {"First": 0, "Last": 65535}}]}]},
            "Domain": "tailnet.test",
        })));
        nm
    }

    #[test]
    fn full_response_builds_the_map() {
        let nm = full();
        let me = nm.self_node.as_ref().unwrap();
        assert_eq!(me.hostname, "router");
        assert_eq!(me.allowed_ips, me.addresses, "nil AllowedIPs means Addresses");
        assert_eq!(nm.peers.iter().map(|p| p.id).collect::<Vec<_>>(), [2, 3], "peers sorted by ID");
        assert_eq!(nm.derp_regions.keys().copied().collect::<Vec<_>>(), [999], "null regions dropped");
        assert_eq!(nm.packet_filter().count(), 1);
        assert_eq!(nm.domain, "tailnet.test");
        assert_eq!(nm.peers[0].advertised_routes[0].to_string(), "192.0.2.0/24");
    }

    #[test]
    fn delta_adds_replaces_and_removes_peers() {
        let mut nm = full();
        let mut changed = wire_node(3, "c-renamed");
        changed["Online"] = serde_json::json!(false);
        let applied = nm.apply(response(serde_json::json!({
            "PeersChanged": [wire_node(4, "d"), changed],
            "PeersRemoved": [2, 77],
        })));
        assert_eq!(applied.peers_added, 1);
        assert_eq!(applied.peers_patched, 1);
        assert_eq!(applied.peers_removed, 1);
        assert_eq!(nm.peers.iter().map(|p| p.hostname.as_str()).collect::<Vec<_>>(), ["c-renamed", "d"]);
        assert_eq!(nm.peers[0].online, Some(false));
        assert!(nm.self_node.is_some(), "a delta without Node keeps self");
        assert_eq!(nm.derp_regions.len(), 1, "a delta without DERPMap keeps it");
        assert_eq!(nm.packet_filter().count(), 1, "a delta without filters keeps them");
    }

    #[test]
    fn full_peer_list_overrides_changed_and_removed() {
        let mut nm = full();
        nm.apply(response(serde_json::json!({"Peers": [wire_node(9, "z")], "PeersRemoved": [9]})));
        assert_eq!(nm.peers.iter().map(|p| p.id).collect::<Vec<_>>(), [9]);
    }

    #[test]
    fn patch_updates_fields_and_ignores_unknown_ids() {
        let mut nm = full();
        let applied = nm.apply(response(serde_json::json!({"PeersChangedPatch": [
            {"NodeID": 2, "DERPRegion": 7, "Endpoints": ["198.18.0.20:41641"], "Online": false,
             "Key": key(0x42), "KeyExpiry": "2030-01-01T00:00:00Z"},
            {"NodeID": 404, "Online": true},
        ]})));
        assert_eq!(applied.peers_patched, 1);
        let peer = &nm.peers[0];
        assert_eq!(peer.home_derp, 7);
        assert_eq!(peer.endpoints, ["198.18.0.20:41641"]);
        assert_eq!(peer.online, Some(false));
        assert_eq!(peer.key.to_string(), key(0x42));
        assert_eq!(peer.key_expiry.as_deref(), Some("2030-01-01T00:00:00Z"));
    }

    #[test]
    fn online_change_map_is_keyed_by_text_ids() {
        let mut nm = full();
        nm.apply(response(serde_json::json!({"OnlineChange": {"3": false, "x": true}})));
        assert_eq!(nm.peers[1].online, Some(false));
    }

    #[test]
    fn packet_filter_chunks_replace_delete_and_clear() {
        let mut nm = full();
        let rule = serde_json::json!([{"SrcIPs": ["100.64.0.2"], "DstPorts": []}]);
        nm.apply(response(serde_json::json!({"PacketFilters": {"extra": rule}})));
        assert_eq!(nm.packet_filter().count(), 2);
        nm.apply(response(serde_json::json!({"PacketFilters": {"base": null}})));
        assert_eq!(nm.packet_filters.keys().collect::<Vec<_>>(), ["extra"]);
        nm.apply(response(serde_json::json!({"PacketFilters": {"*": null, "new": []}})));
        assert_eq!(nm.packet_filters.keys().collect::<Vec<_>>(), ["new"]);
        assert_eq!(nm.packet_filter().count(), 0, "non-nil empty means deny all");
        nm.apply(response(serde_json::json!({"PacketFilter": rule})));
        assert_eq!(nm.packet_filters.keys().collect::<Vec<_>>(), ["base", "new"]);
    }

    #[test]
    fn derp_region_ids_follow_the_map_keys() {
        let mut nm = full();
        nm.apply(response(serde_json::json!({"DERPMap": {"Regions": {
            "7": {"RegionID": 0, "RegionCode": "zero"},
            "8": {"RegionID": 9, "RegionCode": "other"},
            "x": {"RegionID": 10},
            "-1": {"RegionID": 11},
        }}})));
        let ids: Vec<_> = nm.derp_regions.iter().map(|(k, r)| (*k, r.region_id)).collect();
        assert_eq!(ids, [(7, 7), (8, 8)], "non-numeric and negative keys are dropped");
    }

    #[test]
    fn derp_map_without_regions_keeps_the_old_regions() {
        let mut nm = full();
        nm.apply(response(serde_json::json!({"DERPMap": {"HomeParams": {}}})));
        assert_eq!(nm.derp_regions.len(), 1);
    }

    #[test]
    fn legacy_derp_string_gives_the_home_region() {
        let mut wire = wire_node(5, "old");
        wire["HomeDERP"] = serde_json::json!(0);
        wire["DERP"] = serde_json::json!("127.3.3.40:12");
        let node = Node::from_wire(serde_json::from_value(wire).unwrap()).unwrap();
        assert_eq!(node.home_derp, 12);
        assert_eq!(legacy_derp_region("10.0.0.1:3"), 0);
    }

    #[test]
    fn approved_routes_are_allowed_ips_beyond_addresses() {
        let mut wire = wire_node(1, "router");
        wire["AllowedIPs"] = serde_json::json!(["100.64.0.1/32", "192.0.2.0/24"]);
        wire["PrimaryRoutes"] = serde_json::json!(["192.0.2.0/24"]);
        let node = Node::from_wire(serde_json::from_value(wire).unwrap()).unwrap();
        assert_eq!(
            node.enabled_routes().iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["192.0.2.0/24"]
        );
    }

    #[test]
    fn malformed_peer_is_skipped_not_fatal() {
        let mut nm = NetMap::default();
        let mut bad = wire_node(8, "bad");
        bad["Key"] = serde_json::json!("nodekey:zz");
        let applied = nm.apply(response(
            serde_json::json!({"Node": wire_node(1, "me"), "Peers": [bad, wire_node(2, "ok")]}),
        ));
        assert_eq!(applied.skipped.len(), 1);
        assert_eq!(nm.peers.len(), 1);
    }

    #[test]
    fn zero_key_expiry_means_never() {
        let mut wire = wire_node(1, "me");
        wire["KeyExpiry"] = serde_json::json!("0001-01-01T00:00:00Z");
        assert_eq!(Node::from_wire(serde_json::from_value(wire).unwrap()).unwrap().key_expiry, None);
    }
}
