//! Bodies of the agent's fuzz targets (agent/fuzz), here so that `agent/tests/fuzz_corpus.rs`
//! replays the same code over the committed corpus in every `cargo test`. Not an API.
#![doc(hidden)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use tinytail_core::control::frame::{self, MAP_LENGTH_PREFIX};
use tinytail_core::key::PrivateKey;

use crate::control::session::zstd_decode;
use crate::magicsock::netcheck::Netcheck;
use crate::magicsock::paths::PeerPaths;
use crate::netmap::NetMap;
use crate::state::Prefs;
use crate::tailcfg::MapResponse;
use crate::{clock, status, wgconfig};

/// One map poll as control streams it, in either of two forms: JSON map responses one per line
/// (Go's encoder never writes a raw newline inside a value), or, when the input starts with a
/// length prefix and the zstd magic, the stream's wire form (little-endian u32 length, one zstd
/// frame per message) as `MapStream::next` reads it. The first message is normally a full map,
/// the rest deltas, patches and keep-alives. Each goes through what the daemon does with it:
/// parse into `MapResponse`, `NetMap::apply` (keep-alives only touch the control time), the
/// key-expiry check, then `wgconfig::build` and what the engine derives from the config (route
/// table, compiled filter, endpoints, STUN targets). Nothing may panic, and the map's
/// invariants must hold after every message.
pub fn map_responses(data: &[u8]) {
    replay(data);
}

/// [`map_responses`], returning the map it ends with (for tests of the two input forms).
pub fn replay(data: &[u8]) -> NetMap {
    if data.get(MAP_LENGTH_PREFIX..MAP_LENGTH_PREFIX + 4) == Some(&ZSTD_MAGIC[..]) {
        let mut messages = Vec::new();
        let mut rest = data;
        while let Ok(Some((frame, used))) = frame::next_map_message(rest) {
            match zstd_decode(frame) {
                Ok(json) => messages.push(json),
                Err(_) => break, // the stream ends there (MapStream::next fails)
            }
            rest = &rest[used..];
        }
        apply_all(messages.iter().map(Vec::as_slice))
    } else {
        apply_all(data.split(|&b| b == b'\n'))
    }
}

/// The first bytes of every zstd frame (RFC 8878 §3.1.1).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn apply_all<'a>(messages: impl Iterator<Item = &'a [u8]>) -> NetMap {
    let keys = (PrivateKey([1; 32]), PrivateKey([2; 32]));
    // Alternated per message: both ways a router is set up change what build takes from the map.
    let prefs = [
        Prefs { snat_subnet_routes: true, ..Prefs::default() },
        Prefs {
            accept_routes: true,
            advertise_routes: vec!["192.168.1.0/24".into(), "fd00:1::/64".into()],
            advertise_exit_node: true,
            ..Prefs::default()
        },
    ];
    let mut netmap = NetMap::default();
    for (i, json) in messages.enumerate() {
        let Ok(resp) = serde_json::from_slice::<MapResponse>(json) else { continue };
        if resp.keep_alive {
            if resp.control_time.is_some() {
                netmap.control_time = resp.control_time;
            }
            continue;
        }
        let home_derp = resp.node.as_ref().map_or(0, |n| n.home_derp);
        netmap.apply(resp);
        check_netmap(&netmap);
        if let Some(me) = &netmap.self_node {
            let _ = status::key_expired(me, Some(clock::unix_now()));
        }
        for peer in &netmap.peers {
            let _ = status::key_expired(peer, Some(0));
        }
        let Some(config) = wgconfig::build(&netmap, &prefs[i % 2], &keys.0, &keys.1, home_derp, |_| true)
        else {
            assert!(netmap.self_node.is_none(), "a map with our node gives a config");
            continue;
        };
        check_config(&netmap, &config);
    }
    netmap
}

fn check_netmap(netmap: &NetMap) {
    assert!(netmap.peers.windows(2).all(|w| w[0].id < w[1].id), "peers sorted by ID, no duplicates");
    assert!(netmap.derp_regions.iter().all(|(id, r)| *id == r.region_id), "regions keyed by their ID");
}

fn check_config(netmap: &NetMap, config: &wgconfig::Config) {
    assert!(config.peers.len() <= netmap.peers.len());
    let mut routes = config.tun_routes.clone();
    routes.sort();
    routes.dedup();
    assert_eq!(routes.len(), config.tun_routes.len(), "kernel routes are unique");
    if let Ok(table) = config.routes() {
        for (i, peer) in config.peers.iter().enumerate() {
            for p in &peer.routed {
                // Every routed prefix reaches some peer; a more specific one may win.
                let hit = table.lookup(p.addr);
                assert!(hit.is_some(), "{p} of peer {i} routes nowhere");
            }
        }
    }
    let mut filter = (*config.filter).clone();
    for src in [Ipv4Addr::new(100, 64, 0, 2), Ipv4Addr::new(10, 1, 2, 3)] {
        let _ = filter.check_inbound(&tcp_syn(src, Ipv4Addr::new(192, 168, 1, 10), 443));
    }
    let now = Instant::now();
    let mut paths = PeerPaths::default();
    for peer in &config.peers {
        paths.set_control_endpoints(&peer.endpoints);
        assert!(peer.addresses.iter().all(|a| a.bits <= if a.addr.is_ipv4() { 32 } else { 128 }));
    }
    let probes = Netcheck::default().start(now, &config.derp_regions, false);
    assert!(probes.len() <= config.derp_regions.len());
    assert!(probes.iter().all(|(to, _)| matches!(to.ip(), IpAddr::V4(_))), "an IPv4 socket STUNs over IPv4");
    let probes = Netcheck::default().start(now, &config.derp_regions, true);
    assert!(probes.len() <= 2 * config.derp_regions.len(), "one probe per region and family");
}

/// A minimal IPv4 TCP SYN, enough for the filter's header parsing.
fn tcp_syn(src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> [u8; 40] {
    let mut p = [0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[22..24].copy_from_slice(&port.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = 0x02;
    p
}

/// Control's tailnet-lock answers, one JSON object per line: the first a `/machine/tka/bootstrap`
/// answer, the rest `/machine/tka/sync/offer` answers. Each goes through what the sync does with
/// it (`lock::sync`): decoding, `Lock::bootstrap` / `Lock::inform`, our missing AUMs for control,
/// compaction, the store round trip, the peer filter and the status and log views. Nothing may
/// panic; a chain reloaded from what was written must have the same head.
pub fn tka_sync(data: &[u8]) {
    use crate::tailcfg::{TkaBootstrapResponse, TkaSyncOfferResponse};
    use crate::tka::{decode_base64_std, Lock};
    use tinytail_core::tka::{missing_aums, SyncOffer};

    let mut lines = data.split(|&b| b == b'\n');
    let Some(first) = lines.next() else { return };
    let mut lock = Lock::default();
    let Ok(boot) = serde_json::from_slice::<TkaBootstrapResponse>(first) else { return };
    let Some(genesis) = decode_base64_std(&boot.genesis_aum) else { return };
    if lock.bootstrap(&genesis, 1).is_err() {
        return;
    }
    let _ = decode_base64_std(&boot.disablement_secret);
    let mut flash = std::collections::BTreeMap::new();
    let mut meta = None;
    // What `lock::persist` does, into a map standing in for flash.
    let mut persist = |lock: &mut Lock| {
        let changes = lock.take_changes();
        for (name, value) in changes.puts {
            flash.insert(name, value);
        }
        for name in changes.deletes {
            flash.remove(&name);
        }
        meta = changes.meta;
        lock.saved();
    };
    persist(&mut lock);
    for (i, line) in lines.take(8).enumerate() {
        let Ok(resp) = serde_json::from_slice::<TkaSyncOfferResponse>(line) else { continue };
        let aums: Option<Vec<Vec<u8>>> = resp.missing_aums.iter().map(|a| decode_base64_std(a)).collect();
        if let Some(aums) = aums.filter(|a| !a.is_empty()) {
            let _ = lock.inform(&aums, 2 + i as u64);
        }
        if let (Ok(remote), Some(authority)) =
            (SyncOffer::from_text(&resp.head, resp.ancestors.iter().map(String::as_str)), lock.authority())
        {
            let _ = missing_aums(lock.store(), authority, &remote, |_, _| Ok(()));
        }
        let _ = lock.compact(30 * 86_400 * (i as u64 + 1));
        persist(&mut lock);
    }
    let records: Vec<(String, Vec<u8>)> = flash.into_iter().collect();
    let (reloaded, _) = Lock::load(meta.as_deref(), &records);
    assert_eq!(reloaded.head_text(), lock.head_text(), "the stored chain lost its head");
    let netmap = NetMap::default();
    let _ = lock.status_json(&netmap, None);
    let _ = lock.log_json(64);
    let _ = lock.log_text(64);
}

/// Seeds for [`tka_sync`]: real chains made with core's builders, as control would send them
/// (a bootstrap, then sync answers adding, removing and no-op'ing keys, with a checkpoint).
pub fn tka_sync_seeds() -> Vec<(String, Vec<u8>)> {
    use tinytail_core::key::NlPublic;
    use tinytail_core::tka::aum::build::{self as aum_build, Change};
    use tinytail_core::tka::{verify, Aum, AumHash};

    let seed = [7u8; 32];
    let ours = NlPublic(verify::public_of(&seed));
    let other = NlPublic(verify::public_of(&[9u8; 32]));
    let sign = |prev: Option<&AumHash>, change: &Change<'_>| -> Vec<u8> {
        let mut buf = vec![0u8; 4096];
        let Ok(n) = aum_build::unsigned(&mut buf, prev, change) else { return Vec::new() };
        let Ok(aum) = Aum::decode(&buf[..n]) else { return Vec::new() };
        let sig = verify::sign(&seed, &aum.sig_hash());
        let Ok(n) = aum_build::signed(&mut buf, prev, change, &[(ours.0, sig)]) else { return Vec::new() };
        buf.truncate(n);
        buf
    };
    let hash = |aum: &[u8]| Aum::decode(aum).map(|a| a.hash()).unwrap_or_default();
    let b64 = crate::control::http1::base64;
    let keys = [(ours, 1)];
    let genesis = sign(
        None,
        &Change::Checkpoint { keys: &keys, disablement_values: &[[1; 32]], state_id1: 1, state_id2: 2 },
    );
    let mut chain = vec![genesis.clone()];
    for i in 0..40 {
        let prev = hash(chain.last().map(Vec::as_slice).unwrap_or_default());
        let change = match i % 4 {
            0 => Change::AddKey { key: other, votes: 2, meta: &[("purpose", "seed")] },
            1 => Change::RemoveKey { key: other },
            2 if i == 22 => {
                Change::Checkpoint { keys: &keys, disablement_values: &[[1; 32]], state_id1: 1, state_id2: 2 }
            }
            _ => Change::NoOp,
        };
        chain.push(sign(Some(&prev), &change));
    }
    let boot = |aum: &[u8]| serde_json::json!({"GenesisAUM": b64(aum)}).to_string();
    let offer = |aums: &[Vec<u8>]| {
        let head = aums.last().map(|a| hash(a).to_string()).unwrap_or_default();
        serde_json::json!({
            "Head": head,
            "Ancestors": [hash(&genesis).to_string()],
            "MissingAUMs": aums.iter().map(|a| b64(a)).collect::<Vec<_>>(),
        })
        .to_string()
    };
    let mut seeds = vec![
        ("seed-bootstrap-only".to_string(), boot(&genesis).into_bytes()),
        ("seed-one-offer".to_string(), format!("{}\n{}", boot(&genesis), offer(&chain[1..5])).into_bytes()),
        (
            "seed-long-chain-compacted".to_string(),
            format!("{}\n{}\n{}", boot(&genesis), offer(&chain[1..20]), offer(&chain[20..])).into_bytes(),
        ),
        (
            "seed-disabled".to_string(),
            serde_json::json!({"DisablementSecret": b64(&[1; 32])}).to_string().into_bytes(),
        ),
    ];
    // A forged AUM: the last one with a flipped signature byte.
    let mut forged = chain[4].clone();
    if let Some(b) = forged.last_mut() {
        *b ^= 1;
    }
    seeds.push((
        "seed-forged-aum".to_string(),
        format!(
            "{}\n{}",
            boot(&genesis),
            offer(&[chain[1].clone(), chain[2].clone(), chain[3].clone(), forged])
        )
        .into_bytes(),
    ));
    seeds
}

/// A certificate as a CA or the flash store might hand it over: the bytes as a leaf's DER
/// (`x509::parse_leaf`), as a PEM chain, and armored as the leaf of a chain ending in the test
/// CA (`x509::check` with the test leaf's key, as the status and renewal flow call it). Nothing
/// may panic; a leaf that parses must be the leaf `check` reports, and only a parsed leaf can
/// be Valid or Expired.
pub fn x509_leaf(data: &[u8]) {
    use crate::cert::{x509, CertStatus};
    const KEY: &[u8] = include_bytes!("cert/fixtures/leaf.key.der");
    const CA: &[u8] = include_bytes!("cert/fixtures/ca.pem");
    const DOMAIN: &str = "router.tail1234.ts.net";
    const NOW: i64 = 1_780_272_000; // 2026-06-01, inside the test CA's validity

    let parsed = x509::parse_leaf(data);
    let _ = x509::check(data, KEY, DOMAIN, NOW, None);
    let mut pem = x509::key_pem(data).replace("PRIVATE KEY", "CERTIFICATE").into_bytes();
    pem.extend_from_slice(CA);
    let checked = x509::check(&pem, KEY, DOMAIN, NOW, None);
    assert_eq!(checked.leaf, parsed.ok(), "check's leaf differs from parse_leaf's");
    if matches!(checked.status, CertStatus::Valid | CertStatus::Expired) {
        assert!(checked.leaf.is_some(), "{:?} without a leaf", checked.status);
    }
}

/// An ACME server's answer: the bytes through every response parser of `cert::acme` (directory,
/// order, authorization, problem document, renewal information, stored account) and the error
/// texts made from them.
pub fn acme_response(data: &[u8]) {
    crate::cert::acme::fuzz_parse(data);
}
