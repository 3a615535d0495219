//! The status object `tinytail status --json` prints. Shaped after `tailscale status --json`
//! (`BackendState`, `Self`, `Peer` keyed by node key, `TailscaleIPs`), with route fields named as
//! the Tailscale API v2 device object names them (`advertisedRoutes`, `enabledRoutes`).

use serde_json::{json, Map, Value};

use crate::netmap::Node;
use crate::prefix::Prefix;
use crate::shared::Shared;
use crate::{clock, magicsock};

/// Tailnet lock as `lock status --json` shows it, plus the peers dropped per reason
/// (`FilteredCounts`) and the last sync error.
fn lock_json(s: &Shared) -> Value {
    let mut v = s.tka.status_json(&s.netmap, s.state.lock_public());
    v["FilteredCounts"] = json!(s.tka.filtered_counts());
    v["LastError"] = json!(s.tka.last_error);
    v
}

/// Builds the status object from the shared state.
pub fn json(s: &Shared) -> Value {
    let nm = &s.netmap;
    let now = clock::unix_now();
    // The date, if the clock is set; expiry by time is unknown until it is.
    let date = clock::is_sane(now).then_some(now);
    let self_node = nm.self_node.as_ref().map(|n| {
        let mut v = node_json(n, date);
        // Ours: what we advertise (our prefs) vs what control enabled for us.
        let advertised = crate::shared::hostinfo(&s.state.prefs, &s.version, 0).routable_ips;
        v["advertisedRoutes"] = json!(advertised);
        v
    });
    let engine = s.engine_status();
    let peers: Map<String, Value> = nm
        .peers
        .iter()
        .map(|p| {
            let mut v = node_json(p, date);
            if let Some(path) = engine.as_ref().and_then(|e| e.peers.get(&p.key)) {
                add_path(&mut v, path);
            }
            (p.key.to_string(), v)
        })
        .collect();
    let mut health = Vec::new();
    if date.is_none() {
        health.push(clock::not_set_message(now));
    }
    if let Some(since) = s.control.down_since {
        health.push(format!(
            "control server unreachable since {} ({}s); keeping the last network map",
            clock::rfc3339(since),
            now - since
        ));
    }
    if let Some(n) = &nm.self_node {
        if key_expired(n, date) {
            health.push("this node's key has expired; run `tinytail up` to log in again".into());
        }
    }
    if s.tka.verdicts.self_signed == Some(false) {
        health.push(crate::tka::LOCKED_OUT_MESSAGE.to_string());
    }
    json!({
        "Version": s.version,
        "BackendState": s.backend.name(),
        "AuthURL": s.auth_url.clone().unwrap_or_default(),
        "LoginServer": s.state.prefs.login_server,
        // The names `tinytail cert` may ask for, as tailscale's status names them.
        "CertDomains": s.netmap.cert_domains,
        "Prefs": {
            "Hostname": s.state.prefs.hostname,
            "AdvertiseRoutes": s.state.prefs.advertise_routes,
            "AdvertiseExitNode": s.state.prefs.advertise_exit_node,
            "SNATSubnetRoutes": s.state.prefs.snat_subnet_routes,
            "AcceptRoutes": s.state.prefs.accept_routes,
        },
        "Control": {
            "Connected": s.control.connected,
            "DownSince": s.control.down_since.map(clock::rfc3339),
            "LastError": s.control.last_error,
        },
        "Health": health,
        // Our wall clock, and whether it is set (not before clock::SANE_FLOOR).
        "Clock": { "Now": clock::rfc3339(now), "Set": date.is_some() },
        "NodeID": s.state.node_id,
        // Our node key as stored (Self.PublicKey needs a network map): the login a restart keeps.
        "NodeKey": s.state.node_key.as_ref().map(|k| {
            tinytail_core::key::NodePublic(tinytail_core::control::noise::public_key(k)).to_string()
        }),
        "DiscoKey": s.disco_public.to_string(),
        "Self": self_node,
        "Peer": peers,
        "MagicDNSSuffix": nm.domain,
        "DERPRegions": nm.derp_regions.values().map(|r| json!({
            "RegionID": r.region_id, "RegionCode": r.region_code,
            "Nodes": r.nodes.iter().map(|n| n.host_name.clone()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "PreferredDERP": s.preferred_derp,
        "PacketFilterRules": nm.packet_filter().count(),
        "TKA": nm.tka,
        "TailnetLock": lock_json(s),
        "ControlTime": nm.control_time,
        "Datapath": engine.as_ref().map(datapath_json),
    })
}

/// Where a peer's packets go, named as `tailscale status --json` names it.
fn add_path(v: &mut Value, path: &magicsock::PeerStatus) {
    v["CurAddr"] = json!(path.cur_addr.map(|a| a.to_string()).unwrap_or_default());
    v["Relay"] = json!(path.relay);
    v["RxBytes"] = json!(path.rx_bytes);
    v["TxBytes"] = json!(path.tx_bytes);
    v["Active"] = json!(path.active);
    v["SecondsSinceHandshake"] = json!(path.since_handshake.map(|d| d.as_secs()));
}

fn datapath_json(e: &magicsock::EngineStatus) -> Value {
    json!({
        "TUN": e.tun,
        "Port": e.port,
        "Endpoints": e.endpoints.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "HomeDERP": e.home_derp,
        "DERPConnected": e.derp.iter().map(|(r, up)| (r.to_string(), json!(up))).collect::<Map<_, _>>(),
        "FilterDrops": {
            "Malformed": e.filter_drops.malformed,
            "NotLocal": e.filter_drops.not_local,
            "NoRule": e.filter_drops.no_rule,
        },
        "Drops": {
            "NoRoute": e.drops.no_route,
            "SourceNotAllowed": e.drops.source_not_allowed,
            "UnknownPeer": e.drops.unknown_peer,
            "WireGuard": e.drops.wireguard,
            "BadMac1": e.drops.bad_mac1,
            "CookieReplies": e.drops.cookie_replies,
            "UnderLoad": e.drops.under_load,
            "QueueFull": e.drops.queue_full,
        },
        "Netcheck": e.netcheck.as_ref().map(|r| json!({
            "UDP": r.udp,
            "GlobalV4": r.global_v4.map(|a| a.to_string()),
            "GlobalV6": r.global_v6.map(|a| a.to_string()),
            "PreferredDERP": r.nearest,
            "RegionLatencyMs": r.latency.iter()
                .map(|(id, (_, _, d))| (id.to_string(), json!(d.as_secs_f64() * 1000.0)))
                .collect::<Map<_, _>>(),
        })),
    })
}

fn node_json(n: &Node, now: Option<i64>) -> Value {
    json!({
        "ID": n.id,
        "StableID": n.stable_id,
        "HostName": n.hostname,
        "DNSName": n.name,
        "OS": n.os,
        "PublicKey": n.key.to_string(),
        "DiscoKey": n.disco_key.to_string(),
        "HasKeySignature": !n.key_signature.is_empty(),
        "TailscaleIPs": n.addresses.iter().map(|p| p.addr.to_string()).collect::<Vec<_>>(),
        "AllowedIPs": strings(&n.allowed_ips),
        "PrimaryRoutes": strings(&n.primary_routes),
        "advertisedRoutes": strings(&n.advertised_routes),
        "enabledRoutes": strings(&n.enabled_routes()),
        "Endpoints": n.endpoints,
        "HomeDERP": n.home_derp,
        "Online": n.online.unwrap_or(false),
        "LastSeen": n.last_seen,
        "KeyExpiry": n.key_expiry,
        "Expired": key_expired(n, now),
        "Tags": n.tags,
    })
}

fn strings(prefixes: &[Prefix]) -> Vec<String> {
    prefixes.iter().map(ToString::to_string).collect()
}

/// Control's flag, or the expiry time has passed. `now` is `None` while the clock is not set
/// ([`clock::sane_now`]): then only control's flag counts (control's clock decided it), never
/// our guess of the date.
pub fn key_expired(n: &Node, now: Option<i64>) -> bool {
    n.expired
        || now.is_some_and(|now| {
            n.key_expiry.as_deref().and_then(clock::parse_rfc3339).is_some_and(|t| t <= now)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_expiry_waits_for_a_set_clock() {
        let node = Node { key_expiry: Some("2025-06-01T00:00:00Z".into()), ..Node::default() };
        let after = clock::parse_rfc3339("2025-07-01T00:00:00Z");
        assert!(key_expired(&node, after), "past its expiry by a set clock");
        assert!(!key_expired(&node, clock::parse_rfc3339("2025-05-01T00:00:00Z")));
        assert!(
            !key_expired(&node, None),
            "the clock is not set: the date is unknown, the key is not expired"
        );
        let flagged = Node { expired: true, ..node };
        assert!(key_expired(&flagged, None), "control's flag counts without a clock");
    }
}
