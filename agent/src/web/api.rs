//! The local JSON API, in the shape of the Tailscale API v2 device object
//! (../shared/seeds/001: `GET /api/v2/device/{id}`, `…/routes`). Here the only device is this
//! router, spelled `self`. Pure functions from a [`DeviceSource`] to JSON; the I/O is in
//! `web::mod`.
//!
//! Differences from the hosted API, on purpose or for now:
//! - `POST …/routes` sets the routes this router *advertises* (the hosted API sets the ones
//!   control *enables*; only the tailnet admin can do that); the reply has both lists.
//! - `created` is null: the map's `Node.Created` is not kept by the agent yet.
//! - `clientConnectivity` comes from the running datapath: `endpoints` are magicsock's (what we
//!   send control), `latency` the last netcheck round keyed by region name as the seed has it
//!   (`{"New York City": {"latencyMs": 31.3, "preferred": true}}`, `preferred` only on our home
//!   region), `clientSupports.udp` whether netcheck got a STUN answer. While the datapath is
//!   stopped (or before the first netcheck round) `latency` is `{}` and `endpoints` what control
//!   has for us. `mappingVariesByDestIP` and the other `clientSupports` values are null: we do
//!   not measure them. Nothing is made up.
//! - `user`, `tags`, `isExternal`, `updateAvailable` are left out (not known to the node).
//! - `tailnetLockKey` and `tailnetLockError` are newer than the seed's copy of the object; we
//!   give them as the current API does, in the default field set. `tailnetLockKey` is our
//!   tailnet-lock public key in its wire form, `nlpub:<hex>` (the hosted API marshals the key as
//!   Go's `key.NLPublic` does; `lock status` and the page show the same key as `tlpub:<hex>`, and
//!   `tailscale lock sign` takes either), present whether or not lock is on. `tailnetLockError`
//!   is empty when all is well, else why tailnet lock keeps this node out: tailscale's
//!   locked-out message while our own signature fails, or the last failed sync with control.
//! - `tlsCertificates` is ours (the hosted API has no such field), in the default field set: one
//!   entry per name this node may or did get a certificate for (control's CertDomains and the
//!   stored ones), `{"domain", "status", "notAfter", "renewAt", "lastError"}`, `status` in the
//!   words the admin console uses: `Valid`, `Invalid`, `Certificate expired`, `No certificate
//!   found`. Times are RFC 3339, `""` when unknown, as `lastError` is when all is well.

use serde_json::{json, Value};

use crate::magicsock::netcheck::Report;
use crate::magicsock::EngineStatus;
use crate::netmap::Node;
use crate::prefix::Prefix;

/// The routes `0.0.0.0/0` and `::/0` together mean "exit node" (as in `tailscale up`).
pub const EXIT_ROUTES: [&str; 2] = ["0.0.0.0/0", "::/0"];
/// Go's zero time: what the API shows for `expires` when key expiry is disabled.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Which optional field groups to include (`?fields=`): the API's `default` leaves out
/// `enabledRoutes`, `advertisedRoutes` and `clientConnectivity`; `all` has them; a comma list
/// is the union of its entries; no parameter means `default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    pub all: bool,
}

impl Fields {
    pub fn parse(param: Option<&str>) -> Result<Fields, String> {
        let mut all = false;
        for option in param.unwrap_or("default").split(',').map(str::trim) {
            match option {
                "all" => all = true,
                "default" | "" => {}
                other => {
                    return Err(format!(
                        "unknown fields option \"{}\": use default, all, or both separated by commas",
                        other.chars().take(40).collect::<String>()
                    ))
                }
            }
        }
        Ok(Fields { all })
    }
}

/// What the device object is built from (a snapshot of the agent's shared state).
#[derive(Debug, Clone, Default)]
pub struct DeviceSource {
    /// Ourselves as the map last described us; `None` before the first map.
    pub self_node: Option<Node>,
    /// `mkey:…` of our machine key, if we have one.
    pub machine_key: Option<String>,
    /// `nodekey:…` of our node key, if we have one (the map's, else our own).
    pub node_key: Option<String>,
    /// What we advertise, exit routes included (`Hostinfo.RoutableIPs`).
    pub advertised_routes: Vec<String>,
    pub hostname: String,
    pub client_version: String,
    /// Connected to control right now.
    pub connected: bool,
    /// Now, RFC 3339 (for `lastSeen` while connected).
    pub now: String,
    /// Region code of our home DERP, empty if none.
    pub derp: String,
    /// The datapath's status, `None` while it is not running.
    pub engine: Option<EngineStatus>,
    /// `nlpub:…` of our tailnet-lock key, if we have one.
    pub tailnet_lock_key: Option<String>,
    /// Why tailnet lock keeps us out, empty if it does not (see the module docs).
    pub tailnet_lock_error: String,
    /// Each name's certificate status, as `tinytail cert --status` has it
    /// (`certify::status_list`: `{Domain, Status, NotAfter?, RenewAt?, LastError?, …}`).
    pub certificates: Vec<Value>,
}

/// `GET /api/v2/device/self`.
pub fn device(src: &DeviceSource, fields: Fields) -> Value {
    let node = src.self_node.as_ref();
    let addresses: Vec<String> =
        node.map(|n| n.addresses.iter().map(|p| p.addr.to_string()).collect()).unwrap_or_default();
    let key_expiry = node.and_then(|n| n.key_expiry.clone());
    let last_seen =
        if src.connected { Some(src.now.clone()) } else { node.and_then(|n| n.last_seen.clone()) };
    let mut v = json!({
        "addresses": addresses,
        "id": node.map(|n| n.id.to_string()).unwrap_or_default(),
        "nodeId": node.map(|n| n.stable_id.clone()).unwrap_or_default(),
        "name": node.map(|n| n.name.trim_end_matches('.').to_string()).unwrap_or_default(),
        "hostname": node.map(|n| n.hostname.clone()).filter(|h| !h.is_empty()).unwrap_or_else(|| src.hostname.clone()),
        "clientVersion": src.client_version,
        "os": std::env::consts::OS,
        "created": Value::Null,
        "lastSeen": last_seen,
        "keyExpiryDisabled": node.is_some() && key_expiry.is_none(),
        "expires": key_expiry.or_else(|| node.map(|_| ZERO_TIME.to_string())),
        "authorized": node.is_some_and(|n| n.machine_authorized),
        "machineKey": src.machine_key.clone().unwrap_or_default(),
        "nodeKey": node.map(|n| n.key.to_string()).or_else(|| src.node_key.clone()).unwrap_or_default(),
        "blocksIncomingConnections": false,
        "tailnetLockKey": src.tailnet_lock_key.clone().unwrap_or_default(),
        "tailnetLockError": src.tailnet_lock_error,
        "tlsCertificates": tls_certificates(&src.certificates),
    });
    if fields.all {
        let routes = routes(src);
        v["advertisedRoutes"] = routes["advertisedRoutes"].clone();
        v["enabledRoutes"] = routes["enabledRoutes"].clone();
        let engine = src.engine.as_ref();
        let endpoints: Vec<String> = match engine {
            Some(e) => e.endpoints.iter().map(ToString::to_string).collect(),
            None => node.map(|n| n.endpoints.clone()).unwrap_or_default(),
        };
        let report = engine.and_then(|e| e.netcheck.as_ref().map(|r| (r, e.home_derp)));
        v["clientConnectivity"] = json!({
            "endpoints": endpoints,
            "derp": src.derp,
            "mappingVariesByDestIP": Value::Null,
            "latency": report.map_or_else(|| json!({}), |(r, home)| latency(r, home)),
            "clientSupports": {
                "hairPinning": Value::Null, "ipv6": Value::Null, "pcp": Value::Null,
                "pmp": Value::Null, "udp": report.map(|(r, _)| r.udp), "upnp": Value::Null,
            },
        });
    }
    v
}

/// `tlsCertificates` from the status list of `tinytail cert --status` (see the module docs).
pub fn tls_certificates(list: &[Value]) -> Value {
    let text = |v: &Value, field: &str| v.get(field).and_then(Value::as_str).unwrap_or_default().to_string();
    list.iter()
        .map(|c| {
            json!({
                "domain": text(c, "Domain"),
                "status": text(c, "Status"),
                "notAfter": text(c, "NotAfter"),
                "renewAt": text(c, "RenewAt"),
                "lastError": text(c, "LastError"),
            })
        })
        .collect()
}

/// `tailnetLockError`: tailscale's locked-out message while lock is on and our own signature
/// fails (`self_signed` is `Some(false)`), else the last failed sync, else empty.
pub fn tailnet_lock_error(enabled: bool, self_signed: Option<bool>, last_error: Option<&str>) -> String {
    if enabled && self_signed == Some(false) {
        return crate::tka::LOCKED_OUT_MESSAGE.to_string();
    }
    last_error.unwrap_or_default().to_string()
}

/// `clientConnectivity.latency`: region name (its code if the map gives no name) ->
/// `{"latencyMs": …}`, with `"preferred": true` on the home region (netcheck's nearest until
/// the engine has a home).
fn latency(report: &Report, home: u32) -> Value {
    let preferred = if home != 0 { Some(home) } else { report.nearest };
    let map: serde_json::Map<String, Value> = report
        .latency
        .iter()
        .map(|(id, (code, name, rtt))| {
            let key =
                [name, code].into_iter().find(|s| !s.is_empty()).cloned().unwrap_or_else(|| id.to_string());
            let mut entry = json!({ "latencyMs": rtt.as_secs_f64() * 1000.0 });
            if preferred == Some(*id) {
                entry["preferred"] = Value::Bool(true);
            }
            (key, entry)
        })
        .collect();
    Value::Object(map)
}

/// `GET /api/v2/device/self/routes`: what we advertise and what control enabled for us.
pub fn routes(src: &DeviceSource) -> Value {
    let enabled: Vec<String> = src
        .self_node
        .as_ref()
        .map(|n| n.enabled_routes().iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    json!({ "advertisedRoutes": src.advertised_routes, "enabledRoutes": enabled })
}

/// The body of `POST /api/v2/device/self/routes`, checked: the subnet routes to advertise and
/// whether to be an exit node (both exit routes given), or a message for a 400.
pub fn parse_routes_body(body: &[u8]) -> Result<(Vec<String>, bool), String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        routes: Vec<String>,
    }
    let body: Body = serde_json::from_slice(body).map_err(|e| format!("bad request body: {e}"))?;
    let mut subnets = Vec::new();
    let mut exit = [false; 2];
    for text in &body.routes {
        let route = Prefix::parse_route(text.trim()).map_err(|e| e.to_string())?;
        match EXIT_ROUTES.iter().position(|r| *r == route.to_string()) {
            Some(i) => exit[i] = true,
            None => subnets.push(route.to_string()),
        }
    }
    if exit[0] != exit[1] {
        return Err(
            "0.0.0.0/0 and ::/0 are advertised together (that makes an exit node), or not at all".into()
        );
    }
    subnets.sort();
    subnets.dedup();
    Ok((subnets, exit[0]))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use tinytail_core::key::NodePublic;

    /// The device body of `GET /api/v2/device/12345?fields=all` in the seed document, kept as
    /// the fixture our shape is checked against.
    const SEED_DEVICE_ALL: &str = include_str!("fixtures/device_all.json");
    /// The seed's `GET …/routes` and `POST …/routes` replies.
    const SEED_ROUTES_GET: &str = include_str!("fixtures/routes_get.json");
    const SEED_ROUTES_POST_BODY: &str = include_str!("fixtures/routes_post_body.json");
    const SEED_ROUTES_POST_REPLY: &str = include_str!("fixtures/routes_post_reply.json");
    /// Fields the seed shows that a node cannot know about itself (see the module docs).
    const NOT_KNOWN_TO_THE_NODE: [&str; 3] = ["user", "isExternal", "updateAvailable"];
    const GROUPS_ONLY_IN_ALL: [&str; 3] = ["enabledRoutes", "advertisedRoutes", "clientConnectivity"];
    /// Fields of the current API's device object that the seed's older copy lacks (strings both).
    const NEWER_THAN_THE_SEED: [&str; 2] = ["tailnetLockError", "tailnetLockKey"];
    /// Fields of ours that no Tailscale API has (see the module docs).
    const TINYTAIL_ONLY: [&str; 1] = ["tlsCertificates"];
    const LOCK_KEY_HEX: &str = "5f2c1e0d9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f3021120304ff";

    fn source() -> DeviceSource {
        let node = Node {
            id: 7,
            stable_id: "nStable7".into(),
            name: "router.tailnet.test.".into(),
            hostname: "router".into(),
            os: "linux".into(),
            key: NodePublic([1; 32]),
            key_expiry: Some("2027-05-19T20:56:49Z".into()),
            addresses: vec![
                Prefix::parse("100.64.0.3/32").unwrap(),
                Prefix::parse("fd7a:115c:a1e0::3/128").unwrap(),
            ],
            allowed_ips: vec![
                Prefix::parse("100.64.0.3/32").unwrap(),
                Prefix::parse("fd7a:115c:a1e0::3/128").unwrap(),
                Prefix::parse("192.0.2.0/24").unwrap(),
            ],
            endpoints: vec!["198.18.0.2:41641".into()],
            machine_authorized: true,
            ..Node::default()
        };
        DeviceSource {
            self_node: Some(node),
            machine_key: Some(format!("mkey:{}", "ab".repeat(32))),
            node_key: None,
            advertised_routes: vec!["192.0.2.0/24".into(), "198.51.100.0/24".into()],
            hostname: "router".into(),
            client_version: "0.1.0".into(),
            connected: true,
            now: "2026-11-26T09:00:00Z".into(),
            derp: "rig".into(),
            engine: None,
            tailnet_lock_key: Some(format!("nlpub:{LOCK_KEY_HEX}")),
            tailnet_lock_error: String::new(),
            certificates: Vec::new(),
        }
    }

    /// A running datapath after a netcheck round: two regions answered, 999 is home.
    fn engine() -> EngineStatus {
        let latency = BTreeMap::from([
            (998, ("far".to_string(), String::new(), Duration::from_millis(80))),
            (999, ("rig".to_string(), "Rig Lab".to_string(), Duration::from_micros(1_500))),
        ]);
        EngineStatus {
            tun: "tailscale0".into(),
            port: 41641,
            endpoints: vec!["203.0.113.7:41641".parse().unwrap(), "192.0.2.1:41641".parse().unwrap()],
            derp: BTreeMap::from([(999, true)]),
            home_derp: 999,
            netcheck: Some(Report {
                udp: true,
                global_v4: Some("203.0.113.7:41641".parse().unwrap()),
                global_v6: None,
                ipv6_socket: true,
                latency,
                unanswered: vec![997],
                nearest: Some(999),
            }),
            ..EngineStatus::default()
        }
    }

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    /// Same JSON type, recursively for objects (keys of `ours` must be a subset where the
    /// seed's object is open-ended, as `latency`).
    fn assert_same_kind(path: &str, seed: &Value, ours: &Value) {
        match (seed, ours) {
            (_, Value::Null) => {} // documented as not known yet
            (Value::String(_), Value::String(_))
            | (Value::Bool(_), Value::Bool(_))
            | (Value::Number(_), Value::Number(_))
            | (Value::Array(_), Value::Array(_)) => {}
            (Value::Object(s), Value::Object(o)) => {
                for (k, v) in o {
                    if let Some(sv) = s.get(k) {
                        assert_same_kind(&format!("{path}.{k}"), sv, v);
                    }
                }
            }
            _ => panic!("{path}: seed has {seed}, we have {ours}"),
        }
    }

    #[test]
    fn fields_parameter_as_the_api_defines_it() {
        assert_eq!(Fields::parse(None), Ok(Fields { all: false }));
        assert_eq!(Fields::parse(Some("default")), Ok(Fields { all: false }));
        assert_eq!(Fields::parse(Some("all")), Ok(Fields { all: true }));
        assert_eq!(Fields::parse(Some("default,all")), Ok(Fields { all: true }), "union");
        assert_eq!(Fields::parse(Some("all, default")), Ok(Fields { all: true }));
        assert!(Fields::parse(Some("everything")).unwrap_err().contains("everything"));
    }

    #[test]
    fn device_all_has_the_seed_shape() {
        let seed: Value = serde_json::from_str(SEED_DEVICE_ALL).unwrap();
        let ours = device(&source(), Fields { all: true });
        let mut expected: Vec<String> =
            keys(&seed).into_iter().filter(|k| !NOT_KNOWN_TO_THE_NODE.contains(&k.as_str())).collect();
        expected.push("nodeId".into());
        expected.extend(NEWER_THAN_THE_SEED.iter().map(|k| k.to_string()));
        expected.extend(TINYTAIL_ONLY.iter().map(|k| k.to_string()));
        expected.sort();
        assert_eq!(keys(&ours), expected);
        assert_same_kind("", &seed, &ours);
        for field in NEWER_THAN_THE_SEED {
            assert!(seed.get(field).is_none(), "the seed's copy has {field}: check it against the seed");
            assert!(ours[field].is_string(), "{field} is a string in the current API");
        }
        assert_eq!(ours["tailnetLockKey"], format!("nlpub:{LOCK_KEY_HEX}"));
        assert_eq!(ours["tailnetLockError"], "");
        assert_eq!(keys(&ours["clientConnectivity"]), keys(&seed["clientConnectivity"]));
        assert_eq!(
            keys(&ours["clientConnectivity"]["clientSupports"]),
            keys(&seed["clientConnectivity"]["clientSupports"])
        );
        assert_eq!(ours["id"], "7");
        assert_eq!(ours["name"], "router.tailnet.test");
        assert_eq!(ours["addresses"], json!(["100.64.0.3", "fd7a:115c:a1e0::3"]));
        assert_eq!(ours["nodeKey"], NodePublic([1; 32]).to_string());
        assert_eq!(ours["expires"], "2027-05-19T20:56:49Z");
        assert_eq!(ours["keyExpiryDisabled"], false);
        assert_eq!(ours["authorized"], true);
        assert_eq!(ours["lastSeen"], "2026-11-26T09:00:00Z");
        assert_eq!(ours["enabledRoutes"], json!(["192.0.2.0/24"]));
        assert_eq!(ours["advertisedRoutes"], json!(["192.0.2.0/24", "198.51.100.0/24"]));
        assert_eq!(ours["clientConnectivity"]["derp"], "rig");
        // Datapath stopped: control's endpoints, nothing measured, nothing invented.
        assert_eq!(ours["clientConnectivity"]["endpoints"], json!(["198.18.0.2:41641"]));
        assert_eq!(ours["clientConnectivity"]["latency"], json!({}));
        assert_eq!(ours["clientConnectivity"]["clientSupports"]["udp"], Value::Null);
    }

    #[test]
    fn client_connectivity_from_the_running_datapath() {
        let seed: Value = serde_json::from_str(SEED_DEVICE_ALL).unwrap();
        let ours = device(&DeviceSource { engine: Some(engine()), ..source() }, Fields { all: true });
        assert_same_kind("", &seed, &ours);
        let cc = &ours["clientConnectivity"];
        assert_eq!(
            cc["endpoints"],
            json!(["203.0.113.7:41641", "192.0.2.1:41641"]),
            "magicsock's, not control's"
        );
        assert_eq!(
            cc["latency"],
            json!({"Rig Lab": {"latencyMs": 1.5, "preferred": true}, "far": {"latencyMs": 80.0}}),
            "keyed by region name (code without one); preferred only on the home region"
        );
        // Every entry has the seed's entry shape: latencyMs, and preferred only where true.
        let seed_preferred = &seed["clientConnectivity"]["latency"]["New York City"];
        for (region, entry) in cc["latency"].as_object().unwrap() {
            assert_same_kind(region, seed_preferred, entry);
            assert!(
                entry["latencyMs"].is_f64() && entry.get("preferred").is_none_or(|p| *p == true),
                "{entry}"
            );
        }
        assert_eq!(cc["clientSupports"]["udp"], true);
        assert_eq!(cc["mappingVariesByDestIP"], Value::Null, "not measured");
        // Before the engine has a home, netcheck's nearest is the preferred one.
        let mut e = engine();
        e.home_derp = 0;
        if let Some(r) = e.netcheck.as_mut() {
            r.nearest = Some(998);
            r.udp = false;
        }
        let ours = device(&DeviceSource { engine: Some(e), ..source() }, Fields { all: true });
        assert_eq!(ours["clientConnectivity"]["latency"]["far"]["preferred"], true);
        assert!(ours["clientConnectivity"]["latency"]["Rig Lab"].get("preferred").is_none());
        assert_eq!(ours["clientConnectivity"]["clientSupports"]["udp"], false);
        // Running, no netcheck round yet: magicsock's endpoints, latency still empty.
        let e = EngineStatus { netcheck: None, ..engine() };
        let ours = device(&DeviceSource { engine: Some(e), ..source() }, Fields { all: true });
        assert_eq!(ours["clientConnectivity"]["latency"], json!({}));
        assert_eq!(ours["clientConnectivity"]["endpoints"][0], "203.0.113.7:41641");
        assert_eq!(ours["clientConnectivity"]["clientSupports"]["udp"], Value::Null);
    }

    #[test]
    fn device_default_leaves_out_the_optional_groups() {
        let seed: Value = serde_json::from_str(SEED_DEVICE_ALL).unwrap();
        let ours = device(&source(), Fields { all: false });
        for group in GROUPS_ONLY_IN_ALL {
            assert!(seed.get(group).is_some(), "the fixture has {group}");
            assert!(ours.get(group).is_none(), "default must leave out {group}");
        }
        for field in NEWER_THAN_THE_SEED {
            assert!(ours[field].is_string(), "default has {field}, as the current API does");
        }
        let all = device(&source(), Fields::parse(Some("default,all")).unwrap());
        assert_eq!(keys(&all).len(), keys(&ours).len() + GROUPS_ONLY_IN_ALL.len());
    }

    #[test]
    fn tailnet_lock_fields() {
        // Our key in the wire form, the same 32 bytes `lock status` shows as tlpub:.
        let key = tinytail_core::key::NlPublic::parse(&format!("tlpub:{LOCK_KEY_HEX}")).unwrap();
        assert_eq!(key.to_string(), format!("nlpub:{LOCK_KEY_HEX}"));
        // Fine: empty, whether lock is on or off.
        assert_eq!(tailnet_lock_error(false, None, None), "");
        assert_eq!(tailnet_lock_error(true, Some(true), None), "");
        // Locked out: tailscale's message, ahead of any sync error.
        let locked_out = tailnet_lock_error(true, Some(false), Some("sync/offer: 500"));
        assert_eq!(locked_out, crate::tka::LOCKED_OUT_MESSAGE);
        // A failed sync, with or without lock on here (a failed bootstrap leaves it off).
        assert_eq!(tailnet_lock_error(true, Some(true), Some("sync/offer: 500")), "sync/offer: 500");
        assert_eq!(tailnet_lock_error(false, None, Some("bootstrap: no genesis")), "bootstrap: no genesis");
        let src = DeviceSource { tailnet_lock_error: locked_out.clone(), ..source() };
        assert_eq!(device(&src, Fields { all: false })["tailnetLockError"], locked_out);
        // No key yet (logged out, first run): the field is there, empty.
        let src = DeviceSource { tailnet_lock_key: None, ..source() };
        assert_eq!(device(&src, Fields { all: false })["tailnetLockKey"], "");
    }

    #[test]
    fn tls_certificates_carry_the_status_words_of_the_admin_console() {
        use crate::cert::{self, x509, CertStatus, Renewal};
        let leaf = x509::LeafInfo {
            not_before: 0,
            not_after: 90 * 86400,
            dns_names: vec!["router.tail1234.ts.net".into()],
            common_name: None,
            serial: vec![1],
            authority_key_id: None,
            spki: Vec::new(),
        };
        let renewal = Renewal {
            due: Some(60 * 86400),
            last_error: Some("set-dns response: 500".into()),
            ..Renewal::default()
        };
        let checked = |status, leaf: Option<&x509::LeafInfo>| x509::Checked { status, leaf: leaf.cloned() };
        let list = vec![
            cert::status_json("a.ts.net", &checked(CertStatus::Valid, Some(&leaf)), Some(&renewal)),
            cert::status_json("b.ts.net", &checked(CertStatus::Invalid("name mismatch".into()), None), None),
            cert::status_json("c.ts.net", &checked(CertStatus::Expired, Some(&leaf)), None),
            cert::status_json("d.ts.net", &checked(CertStatus::Missing, None), None),
        ];
        let v = device(&DeviceSource { certificates: list, ..source() }, Fields { all: false });
        let certs = v["tlsCertificates"].as_array().unwrap();
        let words: Vec<&str> = certs.iter().map(|c| c["status"].as_str().unwrap()).collect();
        assert_eq!(words, ["Valid", "Invalid", "Certificate expired", "No certificate found"]);
        assert_eq!(
            certs[0],
            json!({
                "domain": "a.ts.net",
                "status": "Valid",
                "notAfter": "1970-04-01T00:00:00Z",
                "renewAt": "1970-03-02T00:00:00Z",
                "lastError": "set-dns response: 500",
            })
        );
        assert_eq!(
            certs[3],
            json!({"domain": "d.ts.net", "status": "No certificate found", "notAfter": "", "renewAt": "", "lastError": ""})
        );
        // No names at all (HTTPS not enabled for the tailnet): an empty list.
        assert_eq!(device(&source(), Fields { all: false })["tlsCertificates"], json!([]));
    }

    #[test]
    fn logged_out_device_is_empty_not_invented() {
        let src =
            DeviceSource { client_version: "0.1.0".into(), hostname: "gw".into(), ..DeviceSource::default() };
        let v = device(&src, Fields { all: true });
        assert_eq!(v["addresses"], json!([]));
        assert_eq!(v["authorized"], false);
        assert_eq!(v["expires"], Value::Null);
        assert_eq!(v["keyExpiryDisabled"], false);
        assert_eq!(v["hostname"], "gw");
        assert_eq!(v["enabledRoutes"], json!([]));
    }

    #[test]
    fn key_expiry_disabled_shows_the_zero_time() {
        let mut src = source();
        if let Some(n) = src.self_node.as_mut() {
            n.key_expiry = None;
        }
        let v = device(&src, Fields { all: false });
        assert_eq!(v["keyExpiryDisabled"], true);
        assert_eq!(v["expires"], ZERO_TIME);
    }

    #[test]
    fn routes_have_the_seed_shape() {
        let seed_get: Value = serde_json::from_str(SEED_ROUTES_GET).unwrap();
        let ours = routes(&source());
        assert_eq!(keys(&ours), keys(&seed_get));
        assert_same_kind("", &seed_get, &ours);
    }

    #[test]
    fn routes_post_body_of_the_seed_is_accepted() {
        let (subnets, exit) = parse_routes_body(SEED_ROUTES_POST_BODY.as_bytes()).unwrap();
        let reply: Value = serde_json::from_str(SEED_ROUTES_POST_REPLY).unwrap();
        let mut seed_routes: Vec<String> = reply["advertisedRoutes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        seed_routes.sort();
        assert_eq!(subnets, seed_routes);
        assert!(!exit);
        let src = DeviceSource { advertised_routes: subnets, ..source() };
        assert_eq!(keys(&routes(&src)), keys(&reply));
    }

    #[test]
    fn routes_post_body_errors() {
        assert!(parse_routes_body(b"{\"routes\":[\"192.0.2.1/24\"]}").unwrap_err().contains("192.0.2.1/24"));
        assert!(parse_routes_body(b"{\"routes\":[\"0.0.0.0/0\"]}").unwrap_err().contains("together"));
        assert!(parse_routes_body(b"{\"routes\":\"10.0.0.0/8\"}").is_err());
        assert!(parse_routes_body(b"{\"rutes\":[]}").is_err());
        assert!(parse_routes_body(b"not json").is_err());
        assert_eq!(
            parse_routes_body(b"{\"routes\":[\"::/0\",\"0.0.0.0/0\",\"10.0.0.0/8\"]}"),
            Ok((vec!["10.0.0.0/8".into()], true))
        );
        assert_eq!(parse_routes_body(b"{\"routes\":[]}"), Ok((vec![], false)));
    }
}
