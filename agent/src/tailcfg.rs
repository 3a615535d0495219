//! The JSON shapes of `tailscale.com/tailcfg` that the control client sends and reads: only the
//! fields tinytail uses. Field names are the Go field names (Go's encoder writes them as-is);
//! unknown fields are ignored, missing ones default. Keys stay in their text forms here and are
//! parsed into typed keys when the netmap is built.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// `time.Unix(123, 0)`: a past `Expiry` in a RegisterRequest means "log out"
/// (`ts:control/controlclient/direct.go` `doLogin`).
pub const LOGOUT_EXPIRY: &str = "1970-01-01T00:02:03Z";

/// `tailcfg.RegisterRequest` (`ts:tailcfg/tailcfg.go`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterRequest<'a> {
    pub version: u16,
    pub node_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_node_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<RegisterAuth<'a>>,
    /// RFC 3339; omitted = zero time = no request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiry: Option<&'static str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub followup: &'a str,
    pub hostinfo: &'a Hostinfo,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
    /// Our tailnet-lock public key (`nlpub:`), which control keeps for `lock init` and signing.
    #[serde(rename = "NLKey", skip_serializing_if = "Option::is_none")]
    pub nl_key: Option<String>,
}

/// `RegisterRequest.Auth`: only the pre-auth key is used.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterAuth<'a> {
    pub auth_key: &'a str,
}

impl std::fmt::Debug for RegisterAuth<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegisterAuth({})", tinytail_core::key::Redacted(self.auth_key))
    }
}

/// `tailcfg.RegisterResponse`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RegisterResponse {
    pub user: User,
    pub login: Login,
    pub node_key_expired: bool,
    pub machine_authorized: bool,
    #[serde(rename = "AuthURL")]
    pub auth_url: String,
    pub error: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct User {
    #[serde(rename = "ID")]
    pub id: i64,
    pub display_name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Login {
    pub login_name: String,
}

/// `tailcfg.Hostinfo`: what a router tells control about itself (protocol.md §2.4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Hostinfo {
    #[serde(rename = "IPNVersion", skip_serializing_if = "String::is_empty")]
    pub ipn_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(rename = "OS", skip_serializing_if = "String::is_empty")]
    pub os: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub machine: String,
    #[serde(
        rename = "RoutableIPs",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub routable_ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_info: Option<NetInfo>,
}

/// `tailcfg.NetInfo`: only the home DERP region is reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetInfo {
    #[serde(rename = "PreferredDERP")]
    pub preferred_derp: u32,
}

/// `tailcfg.MapRequest` (protocol.md §3.1).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MapRequest<'a> {
    pub version: u16,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub compress: &'static str,
    pub keep_alive: bool,
    pub node_key: String,
    pub disco_key: String,
    pub stream: bool,
    pub hostinfo: &'a Hostinfo,
    /// Where peers may reach our UDP socket directly (`ip:port`).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub endpoints: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub omit_peers: bool,
    /// Our tailnet-lock head (base32), empty without lock.
    #[serde(rename = "TKAHead", skip_serializing_if = "String::is_empty")]
    pub tka_head: String,
}

/// `tailcfg.MapResponse` (protocol.md §3.3). `None` means "unchanged" for every delta field.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MapResponse {
    pub keep_alive: bool,
    pub ping_request: Option<PingRequest>,
    #[serde(rename = "PopBrowserURL")]
    pub pop_browser_url: String,
    pub node: Option<Node>,
    #[serde(rename = "DERPMap")]
    pub derp_map: Option<DerpMap>,
    pub peers: Option<Vec<Node>>,
    pub peers_changed: Option<Vec<Node>>,
    pub peers_removed: Option<Vec<i64>>,
    pub peers_changed_patch: Option<Vec<PeerChange>>,
    pub online_change: Option<BTreeMap<String, bool>>,
    pub peer_seen_change: Option<BTreeMap<String, bool>>,
    pub packet_filter: Option<Vec<FilterRule>>,
    pub packet_filters: Option<BTreeMap<String, Option<Vec<FilterRule>>>>,
    pub domain: String,
    pub control_time: Option<String>,
    #[serde(rename = "TKAInfo")]
    pub tka_info: Option<TkaInfo>,
    /// DNS settings; we read only the names we may get certificates for.
    #[serde(rename = "DNSConfig")]
    pub dns_config: Option<DnsConfig>,
}

/// `tailcfg.DNSConfig`, the part tinytail uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DnsConfig {
    /// The names `tinytail cert` may ask for (`ts:tailcfg/tailcfg.go` `CertDomains`).
    pub cert_domains: Vec<String>,
}

/// `tailcfg.SetDNSRequest`: control publishes an ACME DNS-01 TXT record for us.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SetDnsRequest {
    pub version: u16,
    pub node_key: String,
    pub name: String,
    #[serde(rename = "Type")]
    pub record_type: &'static str,
    pub value: String,
}

/// `tailcfg.PingRequest` (protocol.md §3.8).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PingRequest {
    #[serde(rename = "URL")]
    pub url: String,
    #[serde(rename = "URLIsNoise")]
    pub url_is_noise: bool,
    pub log: bool,
    pub types: String,
    #[serde(rename = "IP")]
    pub ip: String,
    /// For `Types: "c2n"`: the HTTP/1.1 request to serve (base64 in JSON, Go's []byte).
    #[serde(with = "base64_bytes")]
    pub payload: Vec<u8>,
}

/// Go's `[]byte` in JSON: standard base64, `null` for nil.
mod base64_bytes {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        match text {
            None => Ok(Vec::new()),
            Some(t) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(t).map_err(serde::de::Error::custom)
            }
        }
    }
}

/// `tailcfg.Node` (protocol.md §3.4).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: i64,
    #[serde(rename = "StableID")]
    pub stable_id: String,
    pub name: String,
    pub user: i64,
    pub key: String,
    pub key_expiry: Option<String>,
    pub key_signature: Option<String>,
    pub machine: Option<String>,
    pub disco_key: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub addresses: Vec<String>,
    #[serde(rename = "AllowedIPs")]
    pub allowed_ips: Option<Vec<String>>,
    #[serde(deserialize_with = "null_as_default")]
    pub endpoints: Vec<String>,
    #[serde(rename = "DERP")]
    pub legacy_derp: String,
    #[serde(rename = "HomeDERP")]
    pub home_derp: u32,
    pub hostinfo: Option<Hostinfo>,
    pub cap: u32,
    #[serde(deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub primary_routes: Vec<String>,
    pub last_seen: Option<String>,
    pub online: Option<bool>,
    pub machine_authorized: bool,
    pub expired: bool,
    /// Legacy capability list (tailscale's testcontrol puts the default caps here).
    #[serde(deserialize_with = "null_as_default")]
    pub capabilities: Vec<String>,
    /// Capabilities by name; only the names are read.
    #[serde(rename = "CapMap")]
    pub cap_map: Option<BTreeMap<String, serde::de::IgnoredAny>>,
}

/// `tailcfg.PeerChange`: a patch to one peer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PeerChange {
    #[serde(rename = "NodeID")]
    pub node_id: i64,
    #[serde(rename = "DERPRegion")]
    pub derp_region: u32,
    pub cap: u32,
    pub endpoints: Option<Vec<String>>,
    pub key: Option<String>,
    pub key_signature: Option<String>,
    pub disco_key: Option<String>,
    pub online: Option<bool>,
    pub last_seen: Option<String>,
    pub key_expiry: Option<String>,
}

/// `tailcfg.DERPMap` (protocol.md §5.5). Region entries may be `null` (Headscale was seen
/// sending them); they are dropped.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DerpMap {
    pub regions: Option<BTreeMap<String, Option<DerpRegion>>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DerpRegion {
    #[serde(rename = "RegionID")]
    pub region_id: u32,
    pub region_code: String,
    pub region_name: String,
    #[serde(deserialize_with = "null_as_default")]
    pub nodes: Vec<DerpNode>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DerpNode {
    pub name: String,
    pub host_name: String,
    #[serde(rename = "IPv4", skip_serializing_if = "String::is_empty")]
    pub ipv4: String,
    #[serde(rename = "IPv6", skip_serializing_if = "String::is_empty")]
    pub ipv6: String,
    #[serde(rename = "STUNPort")]
    pub stun_port: i32,
    #[serde(rename = "DERPPort")]
    pub derp_port: u16,
    pub insecure_for_tests: bool,
}

/// `tailcfg.FilterRule` (protocol.md §3.6); kept as sent for core's filter to compile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct FilterRule {
    #[serde(rename = "SrcIPs", deserialize_with = "null_as_default")]
    pub src_ips: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub dst_ports: Vec<NetPortRange>,
    #[serde(rename = "IPProto", skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub ip_proto: Vec<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetPortRange {
    #[serde(rename = "IP")]
    pub ip: String,
    pub ports: PortRange,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

/// `tailcfg.TKAInfo`: the tailnet-lock head control knows, or "disabled".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TkaInfo {
    pub head: String,
    pub disabled: bool,
}

/// The capability that turns tailnet-lock sync on (`tailcfg.CapabilityTailnetLock`).
pub const CAP_TAILNET_LOCK: &str = "https://tailscale.com/cap/tailnet-lock";

/// `/machine/tka/bootstrap` (`ts:tailcfg/tka.go`). Byte fields are standard base64 in JSON.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TkaBootstrapRequest {
    pub version: u16,
    pub node_key: String,
    pub head: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TkaBootstrapResponse {
    #[serde(rename = "GenesisAUM")]
    pub genesis_aum: String,
    pub disablement_secret: String,
}

/// `/machine/tka/sync/offer`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TkaSyncOfferRequest {
    pub version: u16,
    pub node_key: String,
    pub head: String,
    pub ancestors: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TkaSyncOfferResponse {
    pub head: String,
    #[serde(deserialize_with = "null_as_default")]
    pub ancestors: Vec<String>,
    #[serde(rename = "MissingAUMs", deserialize_with = "null_as_default")]
    pub missing_aums: Vec<String>,
}

/// `/machine/tka/sync/send`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TkaSyncSendRequest {
    pub version: u16,
    pub node_key: String,
    pub head: String,
    #[serde(rename = "MissingAUMs")]
    pub missing_aums: Vec<String>,
    pub interactive: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TkaSyncSendResponse {
    pub head: String,
}

/// `/machine/tka/init/begin`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TkaInitBeginRequest {
    pub version: u16,
    pub node_key: String,
    #[serde(rename = "GenesisAUM")]
    pub genesis_aum: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TkaInitBeginResponse {
    #[serde(deserialize_with = "null_as_default")]
    pub need_signatures: Vec<TkaSignInfo>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TkaSignInfo {
    #[serde(rename = "NodeID")]
    pub node_id: i64,
    pub node_public: String,
    /// Raw ed25519 key (base64), the key allowed to rotate the node's signature.
    pub rotation_pubkey: Option<String>,
}

/// `/machine/tka/init/finish`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TkaInitFinishRequest {
    pub version: u16,
    pub node_key: String,
    pub signatures: BTreeMap<String, String>,
}

/// `/machine/tka/disable`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TkaDisableRequest {
    pub version: u16,
    pub node_key: String,
    pub head: String,
    pub disablement_secret: String,
}

/// `/machine/tka/sign`: `node_key` is the caller's, the signature names the node signed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TkaSubmitSignatureRequest {
    pub version: u16,
    pub node_key: String,
    pub signature: String,
}

/// `/machine/tka/affected-sigs`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TkaSignaturesUsingKeyRequest {
    pub version: u16,
    pub node_key: String,
    #[serde(rename = "KeyID")]
    pub key_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TkaSignaturesUsingKeyResponse {
    #[serde(deserialize_with = "null_as_default")]
    pub signatures: Vec<String>,
}

/// `tailcfg.OverTLSPublicKeyResponse`, the `/key` answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct KeyResponse {
    #[serde(rename = "publicKey")]
    pub public_key: String,
}

/// `tailcfg.EarlyNoise`: the server's challenge; read but unused, as in the Go client.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EarlyNoise {
    #[serde(rename = "nodeKeyChallenge")]
    pub node_key_challenge: String,
}

/// Go's encoder writes a nil slice as `null` unless the field is `omitempty` (a node without
/// addresses comes as `"Addresses":null`), and Go's decoder takes `null` as the zero value. Serde
/// would refuse it and lose the whole map response, so list fields read `null` as empty.
fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Go's encoder writes a node it knows only the ID and key of (taken from its output), a
    /// region without nodes, and a filter rule without lists.
    #[test]
    fn go_nulls_for_nil_slices_read_as_empty() {
        let json = r#"{"Peers":[{"ID":5,"StableID":"","Name":"","User":0,
            "Key":"nodekey:a008d5bc2066bac8ec174a9c14649bf7878cb937f37df7d98b249fc5fb600238","Addresses":null}],
            "DERPMap":{"Regions":{"7":{"RegionID":7,"Nodes":null}}},
            "PacketFilter":[{"SrcIPs":null,"DstPorts":null,"IPProto":null}],
            "Node":{"ID":1,"Addresses":null,"Endpoints":null,"Tags":null,"PrimaryRoutes":null,
                "Hostinfo":{"RoutableIPs":null}}}"#;
        let resp: MapResponse = serde_json::from_str(json).unwrap();
        let peers = resp.peers.unwrap();
        assert_eq!(peers[0].id, 5);
        assert!(peers[0].addresses.is_empty());
        let regions = resp.derp_map.unwrap().regions.unwrap();
        assert!(regions["7"].as_ref().unwrap().nodes.is_empty());
        assert_eq!(resp.packet_filter.unwrap(), [FilterRule::default()]);
        assert!(resp.node.unwrap().hostinfo.unwrap().routable_ips.is_empty());
    }

    #[test]
    fn a_wrong_type_is_an_error_not_a_panic() {
        for bad in [r#"{"Peers":[{"ID":"x"}]}"#, r#"{"Peers":[null]}"#, r#"{"Node":{"Addresses":[1]}}"#, "["]
        {
            assert!(serde_json::from_str::<MapResponse>(bad).is_err(), "{bad}");
        }
    }
}
