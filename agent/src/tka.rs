//! Tailnet lock in the agent: the authority (the AUM chain, verified by `tinytail_core::tka`)
//! mirrored to the store, which peers it lets through, and what `lock status` and `lock log`
//! show. No I/O here: the sync with control and the verbs that change the lock are in
//! [`crate::lock`].
//!
//! Store layout: one `tka-aum` record per AUM (named by its base32 hash; the value is the
//! commit time, 8 bytes little-endian, then the AUM's CBOR) and one `tka-state` record with
//! the AUM the chain starts at and the state IDs `lock local-disable` refused.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tinytail_core::key::{NlPublic, NodePublic};
use tinytail_core::tka::filter::{filter_peers, Peer, PeerVerdict};
use tinytail_core::tka::store::MemoryStore;
use tinytail_core::tka::{
    Aum, AumHash, AumKind, AumStore, Authority, NodeKeySignature, SigKind, COMPACTION_DEFAULTS,
};

use crate::control::http1::base64;
use crate::netmap::{NetMap, Node};

/// `lock log` without `--limit` (`ts:cmd/tailscale/cli/tailnet-lock.go`).
pub const DEFAULT_LOG_LIMIT: usize = 50;
/// The commit time recorded for AUMs stored while our clock is not set (crate::clock): the far
/// future, so age-based compaction never takes them for old history once the clock is set.
pub const UNKNOWN_COMMIT_TIME: u64 = u64::MAX;
/// How far `lock log` walks back at most, whatever the limit.
const MAX_LOG_LIMIT: usize = 10_000;
/// The health message tailscale shows when our own signature fails (`ts:health/healthmsg`).
pub const LOCKED_OUT_MESSAGE: &str = "this node is locked out; it will not have connectivity until it is \
     signed. For more info, see https://tailscale.com/s/locked-out";

/// The tailnet-lock state of this node.
#[derive(Default)]
pub struct Lock {
    store: MemoryStore,
    authority: Option<Authority>,
    /// AUMs known to be in flash.
    persisted: BTreeSet<AumHash>,
    /// AUMs committed to `store` but not yet to flash.
    unsaved: Vec<AumHash>,
    /// AUMs compaction dropped that flash still holds.
    purged: Vec<AumHash>,
    /// Flash holds AUMs that are no longer wanted (lock disabled): delete them all.
    purge_all: bool,
    /// (StateID1, StateID2) of authorities `lock local-disable` turned off: never bootstrapped
    /// again (tailscale's `DisallowedTKAStateIDs`).
    disallowed: Vec<(u64, u64)>,
    /// Peers the lock drops and whether our own signature verifies, from the last netmap.
    pub verdicts: Verdicts,
    /// The last sync failure, for status (cleared by a successful sync).
    pub last_error: Option<String>,
    /// Fingerprint of what the last verdicts were computed from (head, keys, signatures): most
    /// map updates change endpoints or online state only, and 1000 signature checks cost
    /// ~0.7 s on an armv7 router core.
    judged: Option<u64>,
}

/// What the filter decided for the current netmap.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdicts {
    /// Peers with no WireGuard config because their signature failed, and why.
    pub filtered: BTreeMap<NodePublic, PeerVerdict>,
    /// `Some(false)` when lock is on and our own node-key signature does not verify.
    pub self_signed: Option<bool>,
}

/// The `tka-state` record.
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Meta {
    /// Base32 hash of the AUM the chain starts at; empty when lock is off.
    oldest: String,
    /// `"StateID1:StateID2"` pairs, as tailscale writes them.
    disallowed: Vec<String>,
}

/// Changes for the store, from [`Lock::take_changes`].
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub puts: Vec<(String, Vec<u8>)>,
    pub deletes: Vec<String>,
    pub meta: Option<Vec<u8>>,
}

impl Lock {
    /// Rebuilds the lock from the store's records. Records that do not decode or whose name is
    /// not their hash are skipped and reported; a chain that no longer verifies is dropped
    /// (control's bootstrap brings it back).
    pub fn load(meta: Option<&[u8]>, aums: &[(String, Vec<u8>)]) -> (Lock, Vec<String>) {
        let mut warnings = Vec::new();
        let meta: Meta = meta
            .and_then(|m| {
                serde_json::from_slice(m).map_err(|e| warnings.push(format!("tka-state: {e}"))).ok()
            })
            .unwrap_or_default();
        let mut lock = Lock {
            disallowed: meta.disallowed.iter().filter_map(|t| parse_state_ids(t)).collect(),
            ..Lock::default()
        };
        for (name, value) in aums {
            let Some(hash) = AumHash::parse(name) else {
                warnings.push(format!("tka-aum {name}: not an AUM hash"));
                continue;
            };
            let Some((committed_at, bytes)) = split_record(value) else {
                warnings.push(format!("tka-aum {name}: truncated"));
                continue;
            };
            let parent = Aum::decode(bytes).ok().map(|aum| aum.parent());
            match parent.map(|p| lock.store.insert_loaded(hash, p, bytes, committed_at)) {
                Some(Ok(())) => {
                    lock.persisted.insert(hash);
                }
                _ => warnings.push(format!("tka-aum {name}: does not match its name")),
            }
        }
        if let Some(oldest) = AumHash::parse(&meta.oldest) {
            match Authority::open(&lock.store, oldest) {
                Ok(authority) => lock.authority = Some(authority),
                Err(e) => {
                    warnings.push(format!("stored chain dropped: {e}"));
                    lock.clear();
                }
            }
        } else if !lock.persisted.is_empty() {
            lock.clear();
        }
        (lock, warnings)
    }

    pub fn authority(&self) -> Option<&Authority> {
        self.authority.as_ref()
    }

    pub fn store(&self) -> &MemoryStore {
        &self.store
    }

    pub fn enabled(&self) -> bool {
        self.authority.is_some()
    }

    /// Our head in text form (`MapRequest.TKAHead`, the sync requests), empty without lock.
    pub fn head_text(&self) -> String {
        self.authority.as_ref().map(|a| a.head().to_string()).unwrap_or_default()
    }

    /// Starts the authority from control's bootstrap AUM, unless `local-disable` refused its
    /// state IDs.
    pub fn bootstrap(&mut self, genesis: &[u8], now: u64) -> Result<(), String> {
        let aum = Aum::decode(genesis).map_err(|e| format!("bootstrap AUM: {e}"))?;
        if let Some(state) = aum.state {
            if self.disallowed.contains(&(state.state_id1, state.state_id2)) {
                return Err("this tailnet-lock state was disabled locally (lock local-disable)".into());
            }
        }
        self.clear();
        self.store.set_now(now);
        let authority =
            Authority::bootstrap(&mut self.store, genesis).map_err(|e| format!("bootstrap: {e}"))?;
        self.unsaved.push(authority.head());
        self.authority = Some(authority);
        Ok(())
    }

    /// Verifies and applies AUMs from control (oldest first); nothing changes if one fails.
    pub fn inform(&mut self, aums: &[Vec<u8>], now: u64) -> Result<(), String> {
        let authority = self.authority.as_mut().ok_or("tailnet lock is not enabled")?;
        let refs: Vec<&[u8]> = aums.iter().map(Vec::as_slice).collect();
        let before: Vec<AumHash> =
            aums.iter().filter_map(|a| Aum::decode(a).ok().map(|a| a.hash())).collect();
        self.store.set_now(now);
        authority.inform(&mut self.store, &refs).map_err(|e| e.to_string())?;
        for hash in before {
            if !self.persisted.contains(&hash) && !self.unsaved.contains(&hash) {
                self.unsaved.push(hash);
            }
        }
        Ok(())
    }

    /// Drops history the reference would drop (`Compact` with `CompactionDefaults`: at least
    /// 24 AUMs back from the head to a checkpoint, and everything younger than 14 days).
    /// Returns how many AUMs went.
    pub fn compact(&mut self, now: u64) -> Result<usize, String> {
        let authority = self.authority.as_mut().ok_or("tailnet lock is not enabled")?;
        let purged =
            authority.compact(&mut self.store, now, &COMPACTION_DEFAULTS).map_err(|e| e.to_string())?;
        for hash in &purged {
            self.unsaved.retain(|h| h != hash);
            if self.persisted.contains(hash) {
                self.purged.push(*hash);
            }
        }
        Ok(purged.len())
    }

    /// Forgets the authority (lock disabled with a valid secret): every AUM leaves flash.
    pub fn clear(&mut self) {
        self.store = MemoryStore::new();
        self.authority = None;
        self.unsaved.clear();
        self.purged.clear();
        self.judged = None;
        self.purge_all = !self.persisted.is_empty();
        self.verdicts = Verdicts::default();
    }

    /// `lock local-disable`: stop enforcing this authority here, and never bootstrap it again.
    pub fn local_disable(&mut self) -> Result<(), String> {
        let state = self.authority.as_ref().ok_or("tailnet-lock is not active")?.state();
        let ids = (state.state_id1, state.state_id2);
        if !self.disallowed.contains(&ids) {
            self.disallowed.push(ids);
        }
        self.clear();
        self.purge_all = true;
        Ok(())
    }

    /// What flash must learn since the last call; the caller writes it with
    /// `FlashState::save_tka` and calls [`Lock::saved`] on success.
    pub fn take_changes(&mut self) -> Changes {
        let mut changes = Changes::default();
        // An AUM written again (the same genesis bootstrapped after the old chain was dropped)
        // must not also be deleted: flash applies deletes after puts.
        let gone = if self.purge_all {
            self.persisted.iter().collect::<Vec<_>>()
        } else {
            self.purged.iter().collect()
        };
        changes.deletes =
            gone.into_iter().filter(|h| !self.unsaved.contains(h)).map(ToString::to_string).collect();
        for hash in &self.unsaved {
            if let (Some(bytes), Some(time)) = (self.store.get(hash), self.store.committed_at(hash)) {
                let mut value = time.to_le_bytes().to_vec();
                value.extend_from_slice(bytes);
                changes.puts.push((hash.to_string(), value));
            }
        }
        let meta = Meta {
            oldest: self.authority.as_ref().map(|a| a.oldest().to_string()).unwrap_or_default(),
            disallowed: self.disallowed.iter().map(|(a, b)| format!("{a}:{b}")).collect(),
        };
        changes.meta = serde_json::to_vec(&meta).ok();
        changes
    }

    /// The changes from the last [`Lock::take_changes`] are in flash.
    pub fn saved(&mut self) {
        if self.purge_all {
            self.persisted.retain(|h| self.unsaved.contains(h));
            self.purge_all = false;
        }
        for hash in self.purged.drain(..) {
            self.persisted.remove(&hash);
        }
        for hash in self.unsaved.drain(..) {
            self.persisted.insert(hash);
        }
    }

    /// Judges every peer of `netmap` (and ourselves) against the current state.
    pub fn filter(&mut self, netmap: &NetMap) {
        let Some(authority) = &self.authority else {
            self.verdicts = Verdicts::default();
            self.judged = None;
            return;
        };
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            authority.head().0.hash(&mut h);
            for node in netmap.self_node.iter().chain(&netmap.peers) {
                (node.key.0, &node.key_signature).hash(&mut h);
            }
            netmap.self_node.is_some().hash(&mut h);
            h.finish()
        };
        if self.judged == Some(fingerprint) {
            return;
        }
        self.judged = Some(fingerprint);
        let signatures: Vec<Vec<u8>> =
            netmap.peers.iter().map(|n| decode_signature(&n.key_signature)).collect();
        let peers: Vec<Peer<'_>> = netmap
            .peers
            .iter()
            .zip(&signatures)
            .map(|(n, sig)| Peer { node_key: n.key, key_signature: sig, unsigned_peer_api_only: false })
            .collect();
        let (self_key, self_sig) = match &netmap.self_node {
            Some(n) => (n.key, decode_signature(&n.key_signature)),
            None => (NodePublic::default(), Vec::new()),
        };
        let mut verdicts = Verdicts::default();
        match filter_peers(authority.state(), &self_key, &self_sig, &peers) {
            Ok(result) => {
                for (peer, verdict) in netmap.peers.iter().zip(&result.verdicts) {
                    if !verdict.allowed() {
                        verdicts.filtered.insert(peer.key, *verdict);
                    }
                }
                verdicts.self_signed = netmap.self_node.as_ref().map(|_| !result.self_locked_out);
            }
            Err(_) => {
                // More peers than one filter call judges: fail closed, every peer dropped.
                for peer in &netmap.peers {
                    verdicts.filtered.insert(peer.key, PeerVerdict::BadSignature);
                }
                verdicts.self_signed = Some(false);
            }
        }
        self.verdicts = verdicts;
    }

    /// Whether the datapath may talk to this peer.
    pub fn allows(&self, key: &NodePublic) -> bool {
        !self.verdicts.filtered.contains_key(key)
    }

    /// Peers dropped, per reason (status --json `TailnetLock.FilteredPeers`).
    pub fn filtered_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for verdict in self.verdicts.filtered.values() {
            *counts.entry(verdict_name(*verdict)).or_insert(0) += 1;
        }
        counts
    }

    /// The authority's disablement values (KDF outputs of the secrets).
    pub fn disablement_values(&self) -> Vec<[u8; 32]> {
        self.authority.as_ref().map(|a| a.state().disablement_values.to_vec()).unwrap_or_default()
    }

    /// Whether `key` is trusted by the current authority.
    pub fn trusts(&self, key: &NlPublic) -> bool {
        self.authority.as_ref().is_some_and(|a| a.state().key_by_id(&key.0).is_some())
    }

    /// `lock status --json` (schema 1, `ts:cmd/tailscale/cli/jsonoutput`).
    pub fn status_json(&self, netmap: &NetMap, ours: Option<NlPublic>) -> Value {
        let self_node = netmap.self_node.as_ref();
        let mut out = json!({ "SchemaVersion": "1", "Enabled": self.enabled() });
        if let Some(key) = ours {
            out["PublicKey"] = json!(key.cli().to_string());
        }
        if let Some(node) = self_node {
            out["NodeKey"] = json!(node.key.to_string());
        }
        let Some(authority) = &self.authority else { return out };
        let state = authority.state();
        out["Head"] = json!(authority.head().to_string());
        out["NodeKeySigned"] = json!(self.verdicts.self_signed == Some(true));
        out["NodeKeySignature"] = self_node.map_or(Value::Null, |n| signature_json(&n.key_signature));
        out["TrustedKeys"] = state
            .keys
            .iter()
            .filter_map(|k| k.nl_public())
            .zip(state.keys.iter())
            .map(|(public, k)| json!({"Kind": "25519", "Votes": k.votes, "Public": public.cli().to_string()}))
            .collect();
        out["VisiblePeers"] = netmap
            .peers
            .iter()
            .filter(|p| self.allows(&p.key))
            .map(|p| {
                let mut v = peer_json(p);
                v["NodeKeySignature"] = signature_json(&p.key_signature);
                v
            })
            .collect();
        out["FilteredPeers"] = netmap.peers.iter().filter(|p| !self.allows(&p.key)).map(peer_json).collect();
        out["State"] = json!(state.state_id1);
        out
    }

    /// `lock status` as text (`ts:cmd/tailscale/cli/tailnet-lock.go` `runNetworkLockStatus`).
    pub fn status_text(&self, netmap: &NetMap, ours: Option<NlPublic>) -> String {
        let mut out = String::new();
        let Some(authority) = &self.authority else {
            out.push_str("Tailnet Lock is NOT enabled.\n");
            if let Some(key) = ours {
                out.push_str(&format!("\nThis node's tailnet-lock key: {}\n", key.cli()));
            }
            return out;
        };
        out.push_str("Tailnet Lock is ENABLED.\n\n");
        if let Some(node) = &netmap.self_node {
            if self.verdicts.self_signed == Some(true) {
                out.push_str("This node is accessible under Tailnet Lock. Node signature:\n");
                out.push_str(&signature_text(&decode_signature(&node.key_signature)));
            } else {
                out.push_str(
                    "This node is LOCKED OUT by Tailnet Lock, and action is required to establish connectivity.\n",
                );
                out.push_str("Run the following command on a node with a trusted key:\n");
                let rotation = ours.map(|k| format!(" {}", k.cli())).unwrap_or_default();
                out.push_str(&format!("\ttailscale lock sign {}{rotation}\n", node.key));
            }
            out.push('\n');
        }
        if let Some(key) = ours {
            out.push_str(&format!("This node's tailnet-lock key: {}\n\n", key.cli()));
        }
        out.push_str("Trusted signing keys:\n");
        for key in &authority.state().keys {
            let Some(public) = key.nl_public() else { continue };
            let me = if Some(public) == ours { "\t(self)" } else { "" };
            out.push_str(&format!("\t{}\t{}{me}\n", public.cli(), key.votes));
        }
        let filtered: Vec<&Node> = netmap.peers.iter().filter(|p| !self.allows(&p.key)).collect();
        if !filtered.is_empty() {
            out.push_str(
                "\nThe following nodes are locked out by tailnet lock and cannot connect to other nodes:\n",
            );
            for p in filtered {
                let ips: Vec<String> = p.addresses.iter().map(|a| a.addr.to_string()).collect();
                out.push_str(&format!("\t{}\t{}\t{}\t{}\n", p.name, ips.join(","), p.stable_id, p.key));
            }
        }
        out
    }

    /// The chain from the head back, newest first, at most `limit` AUMs.
    pub fn log(&self, limit: usize) -> Vec<(AumHash, &[u8])> {
        let mut out = Vec::new();
        let Some(authority) = &self.authority else { return out };
        let mut cursor = Some(authority.head());
        while let Some(hash) = cursor {
            if out.len() >= limit.min(MAX_LOG_LIMIT) {
                break;
            }
            let Some(bytes) = self.store.get(&hash) else { break };
            out.push((hash, bytes));
            if hash == authority.oldest() {
                break;
            }
            cursor = self.store.parent_of(&hash);
        }
        out
    }

    /// `lock log --json` (schema 1).
    pub fn log_json(&self, limit: usize) -> Value {
        let messages: Vec<Value> = self
            .log(limit)
            .into_iter()
            .map(|(hash, bytes)| {
                let aum = Aum::decode(bytes).map(|a| aum_json(&a)).unwrap_or(Value::Null);
                json!({"Hash": hash.to_string(), "AUM": aum, "Raw": base64_url(bytes)})
            })
            .collect();
        json!({"SchemaVersion": "1", "Messages": messages})
    }

    /// `lock log` as text: one stanza per AUM, newest first.
    pub fn log_text(&self, limit: usize) -> String {
        let mut out = String::new();
        for (hash, bytes) in self.log(limit) {
            let Ok(aum) = Aum::decode(bytes) else { continue };
            out.push_str(&format!("update {hash} ({})\n", aum.kind.name()));
            match aum.kind {
                AumKind::AddKey => {
                    if let Some(key) = aum.key.and_then(|k| k.public).and_then(|p| p.to_array::<32>()) {
                        out.push_str(&format!("Type: 25519\nKeyID: {}\n", NlPublic(key).cli()));
                    }
                }
                AumKind::RemoveKey | AumKind::UpdateKey => {
                    if let Some(id) = aum.key_id.and_then(|p| p.to_array::<32>()) {
                        out.push_str(&format!("KeyID: {}\n", NlPublic(id).cli()));
                    }
                    if let Some(votes) = aum.votes {
                        out.push_str(&format!("Votes: {votes}\n"));
                    }
                }
                AumKind::Checkpoint => {
                    if let Some(state) = aum.state {
                        out.push_str("Disablement values:\n");
                        for v in state.disablement_values().flatten() {
                            out.push_str(&format!(" - {}\n", hex(&v.iter().collect::<Vec<u8>>())));
                        }
                        out.push_str("Keys:\n");
                        for k in state.keys() {
                            if let Some(key) = k.public.and_then(|p| p.to_array::<32>()) {
                                out.push_str(&format!("  Type: 25519\n  KeyID: {}\n", NlPublic(key).cli()));
                            }
                        }
                    }
                }
                _ => {}
            }
            out.push('\n');
        }
        out
    }
}

/// A stored AUM record: commit time, then the AUM.
fn split_record(value: &[u8]) -> Option<(u64, &[u8])> {
    let (time, aum) = value.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*time), aum))
}

fn parse_state_ids(text: &str) -> Option<(u64, u64)> {
    let (a, b) = text.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The reason names of status --json.
pub fn verdict_name(verdict: PeerVerdict) -> &'static str {
    match verdict {
        PeerVerdict::Authorized => "Authorized",
        PeerVerdict::Exempt => "Exempt",
        PeerVerdict::Unsigned => "Unsigned",
        PeerVerdict::BadSignature => "BadSignature",
        PeerVerdict::ObsoleteByRotation => "ObsoleteByRotation",
    }
}

/// `Node.KeySignature` is standard base64 with padding (Go's `[]byte` in JSON); anything else
/// reads as no signature, which the filter then refuses.
pub fn decode_signature(text: &str) -> Vec<u8> {
    decode_base64_std(text).unwrap_or_default()
}

/// Standard base64 with or without padding; `None` if malformed.
pub fn decode_base64_std(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim_end_matches('=');
    if text.len() - trimmed.len() > 2 || (text.len() != trimmed.len() && !text.len().is_multiple_of(4)) {
        return None;
    }
    let mut out = vec![0u8; trimmed.len() * 3 / 4 + 1];
    let n = tinytail_core::tka::sig::base64_raw_std_decode(trimmed.as_bytes(), &mut out)?;
    out.truncate(n);
    Some(out)
}

/// Base64 URL alphabet with padding, as `jsonoutput` prints signatures and raw AUMs.
fn base64_url(bytes: &[u8]) -> String {
    base64(bytes).replace('+', "-").replace('/', "_")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn peer_json(p: &Node) -> Value {
    json!({
        "ID": p.stable_id,
        "DNSName": p.name,
        "TailscaleIPs": p.addresses.iter().map(|a| a.addr.to_string()).collect::<Vec<_>>(),
        "NodeKey": p.key.to_string(),
    })
}

fn signature_json(text: &str) -> Value {
    let bytes = decode_signature(text);
    let Ok(sig) = NodeKeySignature::decode(&bytes) else { return Value::Null };
    let field = |f: Option<tinytail_core::tka::ByteField<'_>>| f.map(|b| b.iter().collect::<Vec<u8>>());
    json!({
        "SigKind": sig.kind.name(),
        "PublicKey": field(sig.pubkey).map(|p| format!("tlpub:{}", hex(&p))),
        "KeyID": field(sig.key_id).map(|k| format!("tlpub:{}", hex(&k))),
        "Signature": field(sig.signature).map(|s| base64_url(&s)),
        "WrappingPublicKey": field(sig.wrapping_pubkey).map(|k| format!("tlpub:{}", hex(&k))),
    })
}

/// `NodeKeySignature.String()`: kind, key, signer, wrapping key, one per line.
fn signature_text(bytes: &[u8]) -> String {
    let Ok(sig) = NodeKeySignature::decode(bytes) else { return String::from("(no valid signature)\n") };
    let mut out = format!("SigKind: {}\n", sig.kind.name());
    if let Some(p) = sig.pubkey.and_then(|p| p.iter().skip(2).collect::<Vec<u8>>().try_into().ok()) {
        out.push_str(&format!("Pubkey: {}\n", NodePublic(p).short()));
    }
    if let Some(k) = sig.key_id.and_then(|k| k.to_array::<32>()) {
        out.push_str(&format!("KeyID: {}\n", NlPublic(k).cli()));
    }
    if sig.kind != SigKind::Rotation {
        if let Some(w) = sig.wrapping_pubkey.and_then(|k| k.to_array::<32>()) {
            out.push_str(&format!("WrappingPubkey: {}\n", NlPublic(w).cli()));
        }
    }
    out
}

fn aum_json(aum: &Aum<'_>) -> Value {
    let bytes = |f: tinytail_core::tka::ByteField<'_>| f.iter().collect::<Vec<u8>>();
    let mut out = json!({
        "MessageKind": aum.kind.name(),
        "PrevAUMHash": aum.parent().map(|p| p.to_string()),
    });
    if let Some(key) = aum.key.and_then(|k| k.public) {
        out["Key"] = json!({"Kind": "25519", "Votes": aum.key.map_or(0, |k| k.votes), "Public": format!("tlpub:{}", hex(&bytes(key)))});
    }
    if let Some(id) = aum.key_id {
        out["KeyID"] = json!(format!("tlpub:{}", hex(&bytes(id))));
    }
    if let Some(v) = aum.votes {
        out["Votes"] = json!(v);
    }
    if let Some(sigs) = aum.signatures {
        out["Signatures"] = sigs
            .iter()
            .map(|s| {
                json!({
                    "KeyID": s.key_id.map(|k| format!("tlpub:{}", hex(&bytes(k)))),
                    "Signature": s.signature.map(|k| base64_url(&bytes(k))),
                })
            })
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinytail_core::tka::aum::build::{self as aum_build, Change};
    use tinytail_core::tka::sig::build as sig_build;
    use tinytail_core::tka::verify;

    const SEED_A: [u8; 32] = [7; 32];
    const SEED_B: [u8; 32] = [9; 32];

    fn signed(seed: &[u8; 32], prev: Option<&AumHash>, change: &Change<'_>) -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let n = aum_build::unsigned(&mut buf, prev, change).unwrap();
        let sig_hash = Aum::decode(&buf[..n]).unwrap().sig_hash();
        let sig = verify::sign(seed, &sig_hash);
        let n = aum_build::signed(&mut buf, prev, change, &[(verify::public_of(seed), sig)]).unwrap();
        buf.truncate(n);
        buf
    }

    fn genesis() -> Vec<u8> {
        let keys = [(NlPublic(verify::public_of(&SEED_A)), 1)];
        signed(
            &SEED_A,
            None,
            &Change::Checkpoint { keys: &keys, disablement_values: &[[1; 32]], state_id1: 5, state_id2: 6 },
        )
    }

    fn node(id: i64, key: u8, signature: &[u8]) -> Node {
        Node {
            id,
            key: NodePublic([key; 32]),
            name: format!("n{id}.ts.net."),
            key_signature: if signature.is_empty() { String::new() } else { base64(signature) },
            ..Node::default()
        }
    }

    fn direct(seed: &[u8; 32], key: u8) -> Vec<u8> {
        let mut buf = vec![0u8; 1024];
        let n = sig_build::direct(&mut buf, seed, &NodePublic([key; 32]), None).unwrap();
        buf.truncate(n);
        buf
    }

    /// Writes `changes` into a map standing in for flash, as `FlashState::save_tka` would.
    fn apply(flash: &mut BTreeMap<String, Vec<u8>>, meta: &mut Option<Vec<u8>>, changes: Changes) {
        for (name, value) in changes.puts {
            flash.insert(name, value);
        }
        for name in changes.deletes {
            flash.remove(&name);
        }
        *meta = changes.meta;
    }

    #[test]
    fn the_chain_survives_a_store_round_trip_and_a_disable_empties_it() {
        let mut lock = Lock::default();
        lock.bootstrap(&genesis(), 100).unwrap();
        let head = lock.authority().unwrap().head();
        let add = signed(
            &SEED_A,
            Some(&head),
            &Change::AddKey { key: NlPublic(verify::public_of(&SEED_B)), votes: 2, meta: &[] },
        );
        lock.inform(std::slice::from_ref(&add), 200).unwrap();
        let (mut flash, mut meta) = (BTreeMap::new(), None);
        apply(&mut flash, &mut meta, lock.take_changes());
        lock.saved();
        assert_eq!(flash.len(), 2);
        assert!(lock.take_changes().puts.is_empty(), "saved AUMs are not written again");

        let records: Vec<(String, Vec<u8>)> = flash.clone().into_iter().collect();
        let (loaded, warnings) = Lock::load(meta.as_deref(), &records);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(loaded.head_text(), lock.head_text());
        assert!(loaded.trusts(&NlPublic(verify::public_of(&SEED_B))));
        assert_eq!(loaded.log(10).len(), 2);

        // A record whose name is not its hash is skipped, not trusted.
        let mut forged = records.clone();
        forged[0].0 = AumHash([3; 32]).to_string();
        let (partial, warnings) = Lock::load(meta.as_deref(), &forged);
        assert!(!warnings.is_empty());
        assert!(!partial.enabled(), "a chain missing its start is dropped");

        let mut lock = loaded;
        lock.clear();
        apply(&mut flash, &mut meta, lock.take_changes());
        lock.saved();
        assert!(flash.is_empty());
        assert!(!Lock::load(meta.as_deref(), &[]).0.enabled());
    }

    #[test]
    fn compaction_drops_old_history_from_flash_and_the_rest_still_opens() {
        const DAY: u64 = 86_400;
        let mut lock = Lock::default();
        lock.bootstrap(&genesis(), 0).unwrap();
        let keys = [(NlPublic(verify::public_of(&SEED_A)), 1)];
        let mut head = lock.authority().unwrap().head();
        let mut aums = Vec::new();
        for i in 0..60 {
            let change = if i == 30 {
                Change::Checkpoint { keys: &keys, disablement_values: &[[1; 32]], state_id1: 5, state_id2: 6 }
            } else {
                Change::NoOp
            };
            let aum = signed(&SEED_A, Some(&head), &change);
            head = Aum::decode(&aum).unwrap().hash();
            aums.push(aum);
        }
        lock.inform(&aums, 0).unwrap();
        let (mut flash, mut meta) = (BTreeMap::new(), None);
        apply(&mut flash, &mut meta, lock.take_changes());
        lock.saved();
        assert_eq!(flash.len(), 61);

        assert_eq!(lock.compact(DAY).unwrap(), 0, "everything is younger than 14 days");
        let purged = lock.compact(30 * DAY).unwrap();
        assert!(purged > 0 && purged <= 61 - 24, "purged {purged}");
        let changes = lock.take_changes();
        assert_eq!(changes.deletes.len(), purged);
        apply(&mut flash, &mut meta, changes);
        lock.saved();
        assert_eq!(flash.len(), 61 - purged);

        let records: Vec<(String, Vec<u8>)> = flash.into_iter().collect();
        let (loaded, warnings) = Lock::load(meta.as_deref(), &records);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(loaded.head_text(), head.to_string());
        assert_ne!(loaded.authority().unwrap().oldest(), lock_genesis_hash(), "the start moved");
    }

    /// AUMs stored while our clock was not set carry [`UNKNOWN_COMMIT_TIME`]: once the clock is
    /// set, years later by its reading, they are still young, not history to drop.
    #[test]
    fn aums_stored_without_a_set_clock_are_not_compacted_as_old() {
        let mut lock = Lock::default();
        lock.bootstrap(&genesis(), UNKNOWN_COMMIT_TIME).unwrap();
        let keys = [(NlPublic(verify::public_of(&SEED_A)), 1)];
        let mut head = lock.authority().unwrap().head();
        let mut aums = Vec::new();
        for i in 0..60 {
            let change = if i == 30 {
                Change::Checkpoint { keys: &keys, disablement_values: &[[1; 32]], state_id1: 5, state_id2: 6 }
            } else {
                Change::NoOp
            };
            let aum = signed(&SEED_A, Some(&head), &change);
            head = Aum::decode(&aum).unwrap().hash();
            aums.push(aum);
        }
        lock.inform(&aums, UNKNOWN_COMMIT_TIME).unwrap();
        let (mut flash, mut meta) = (BTreeMap::new(), None);
        apply(&mut flash, &mut meta, lock.take_changes());
        lock.saved();
        let records: Vec<(String, Vec<u8>)> = flash.into_iter().collect();
        let (mut loaded, warnings) = Lock::load(meta.as_deref(), &records);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(loaded.compact(1_800_000_000).unwrap(), 0, "nothing is old by an unknown commit time");
        assert_eq!(loaded.head_text(), head.to_string());
    }

    fn lock_genesis_hash() -> AumHash {
        Aum::decode(&genesis()).unwrap().hash()
    }

    #[test]
    fn bootstrapping_the_same_genesis_again_keeps_it_in_flash() {
        let mut lock = Lock::default();
        lock.bootstrap(&genesis(), 1).unwrap();
        let (mut flash, mut meta) = (BTreeMap::new(), None);
        apply(&mut flash, &mut meta, lock.take_changes());
        lock.saved();
        // The stored chain is dropped (as a load that fails to verify does), and control hands
        // the same genesis back.
        lock.clear();
        lock.bootstrap(&genesis(), 2).unwrap();
        let changes = lock.take_changes();
        assert!(changes.deletes.is_empty(), "{:?}", changes.deletes);
        apply(&mut flash, &mut meta, changes);
        lock.saved();
        let records: Vec<(String, Vec<u8>)> = flash.into_iter().collect();
        assert_eq!(Lock::load(meta.as_deref(), &records).0.head_text(), lock.head_text());
    }

    #[test]
    fn an_aum_that_does_not_verify_changes_nothing() {
        let mut lock = Lock::default();
        lock.bootstrap(&genesis(), 100).unwrap();
        let head = lock.head_text();
        let by_stranger = signed(
            &SEED_B,
            lock.authority().map(|a| a.head()).as_ref(),
            &Change::AddKey { key: NlPublic(verify::public_of(&SEED_B)), votes: 1, meta: &[] },
        );
        assert!(lock.inform(&[by_stranger], 200).is_err());
        assert_eq!(lock.head_text(), head);
        assert_eq!(lock.take_changes().puts.len(), 1, "only the genesis waits for flash");
    }

    #[test]
    fn unsigned_and_badly_signed_peers_are_filtered_and_we_know_when_we_are_locked_out() {
        let mut lock = Lock::default();
        let mut netmap = NetMap {
            self_node: Some(node(1, 1, &direct(&SEED_A, 1))),
            peers: vec![node(2, 2, &direct(&SEED_A, 2)), node(3, 3, &[]), node(4, 4, &direct(&SEED_B, 4))],
            ..NetMap::default()
        };
        lock.filter(&netmap);
        assert!(lock.verdicts.filtered.is_empty(), "no lock, no filter");
        lock.bootstrap(&genesis(), 1).unwrap();
        lock.filter(&netmap);
        assert!(lock.allows(&NodePublic([2; 32])));
        assert_eq!(lock.verdicts.filtered.get(&NodePublic([3; 32])), Some(&PeerVerdict::Unsigned));
        assert_eq!(lock.verdicts.filtered.get(&NodePublic([4; 32])), Some(&PeerVerdict::BadSignature));
        assert_eq!(lock.verdicts.self_signed, Some(true));
        assert_eq!(lock.filtered_counts().get("Unsigned"), Some(&1));

        let status = lock.status_json(&netmap, Some(NlPublic(verify::public_of(&SEED_A))));
        assert_eq!(status["Enabled"], true);
        assert_eq!(status["FilteredPeers"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            status["TrustedKeys"][0]["Public"],
            NlPublic(verify::public_of(&SEED_A)).cli().to_string()
        );
        let text = lock.status_text(&netmap, Some(NlPublic(verify::public_of(&SEED_A))));
        assert!(text.contains("This node is accessible under Tailnet Lock"), "{text}");
        assert!(text.contains("(self)") && text.contains("n3.ts.net."), "{text}");

        netmap.self_node = Some(node(1, 1, &[]));
        lock.filter(&netmap);
        assert_eq!(lock.verdicts.self_signed, Some(false));
        let text = lock.status_text(&netmap, None);
        assert!(text.contains("LOCKED OUT") && text.contains(&NodePublic([1; 32]).to_string()), "{text}");
    }

    #[test]
    fn signatures_decode_as_go_writes_them_and_garbage_is_no_signature() {
        assert_eq!(decode_base64_std("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_base64_std("aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(decode_base64_std("aGVsbG8==="), None);
        assert_eq!(decode_base64_std("a=bc"), None);
        assert!(decode_signature("!!!").is_empty());
    }
}
