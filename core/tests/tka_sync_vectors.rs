//! Tailnet-lock sync and compaction vectors decided by tailscale.com/tka (tests/interop
//! `tka-sync-vectors`): tinytail's offers, missing AUMs and compaction must match the reference.

#[path = "support/vectors.rs"]
#[allow(dead_code)] // hex is for the other vector tests
mod vectors;
use std::collections::HashMap;

use serde::Deserialize;
use tinytail_core::tka::store::MemoryStore;
use tinytail_core::tka::{
    missing_aums, sync_offer, Aum, AumHash, AumStore, Authority, SyncOffer, TkaError, COMPACTION_DEFAULTS,
};
use vectors::unhex;

#[derive(Deserialize)]
struct Offer {
    head: String,
    ancestors: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Sync {
    name: String,
    local: Vec<String>,
    local_offer: Offer,
    remote_offer: Offer,
    ok: bool,
    missing: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Compact {
    name: String,
    aums: Vec<String>,
    age_days: Vec<u64>,
    ok: bool,
    oldest: String,
    kept: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Vectors {
    reference: String,
    aums: HashMap<String, String>,
    sync: Vec<Sync>,
    compact: Vec<Compact>,
}

const NOW: u64 = 1_796_256_000; // 2026-12-03
const DAY: u64 = 24 * 60 * 60;

/// An authority over `hashes` (genesis first): short chains are bootstrapped and informed one
/// AUM at a time as the reference was (verifying every signature), long ones loaded unverified
/// (debug-build signature checks would take seconds; tka.json covers verification).
fn authority(
    v: &Vectors,
    hashes: &[String],
    committed_at: impl Fn(usize) -> u64,
) -> (MemoryStore, Authority) {
    let bytes: Vec<Vec<u8>> = hashes.iter().map(|h| unhex(&v.aums[h])).collect();
    let mut store = MemoryStore::new();
    if hashes.len() <= 120 {
        store.set_now(committed_at(0));
        let mut authority = Authority::bootstrap(&mut store, &bytes[0]).expect("bootstrap");
        for (i, b) in bytes.iter().enumerate().skip(1) {
            store.set_now(committed_at(i));
            authority.inform(&mut store, &[b]).expect("inform");
        }
        return (store, authority);
    }
    for (i, b) in bytes.iter().enumerate() {
        let aum = Aum::decode(b).expect("decode");
        store.insert_loaded(aum.hash(), aum.parent(), b, committed_at(i)).expect("load");
    }
    let genesis = AumHash::parse(&hashes[0]).expect("hash");
    let authority = Authority::open(&store, genesis).expect("open");
    (store, authority)
}

fn text(offer: &SyncOffer) -> (String, Vec<String>) {
    (offer.head.to_string(), offer.ancestors.iter().map(|a| a.to_string()).collect())
}

#[test]
fn sync_offers_and_missing_aums_match_the_reference() {
    let v: Vectors = vectors::load("tka_sync.json");
    assert!(v.reference.starts_with("tailscale.com "));
    assert!(v.sync.len() >= 15);
    for c in &v.sync {
        let name = &c.name;
        let (store, authority) = authority(&v, &c.local, |_| 0);
        let ours = sync_offer(&store, &authority).expect("offer");
        let want = (c.local_offer.head.clone(), c.local_offer.ancestors.clone().unwrap_or_default());
        assert_eq!(text(&ours), want, "{name}: our offer");

        let remote_ancestors = c.remote_offer.ancestors.clone().unwrap_or_default();
        let remote = SyncOffer::from_text(&c.remote_offer.head, remote_ancestors.iter().map(|s| s.as_str()))
            .expect("remote offer");
        let mut got = Vec::new();
        let result = missing_aums(&store, &authority, &remote, |h, bytes| {
            assert_eq!(Aum::decode(bytes).map(|a| a.hash()), Ok(*h));
            got.push(h.to_string());
            Ok(())
        });
        if c.ok {
            assert_eq!(result, Ok(()), "{name}");
            assert_eq!(got, c.missing.clone().unwrap_or_default(), "{name}: missing AUMs");
        } else {
            assert_eq!(result, Err(TkaError::NoIntersection), "{name}");
        }
    }
}

#[test]
fn compaction_matches_the_reference() {
    let v: Vectors = vectors::load("tka_sync.json");
    assert!(v.compact.len() >= 8);
    for c in &v.compact {
        let name = &c.name;
        assert!(c.ok, "{name}: every compaction vector succeeds in the reference");
        let (mut store, mut authority) = authority(&v, &c.aums, |i| NOW - c.age_days[i] * DAY);
        let head = authority.head();
        let purged = authority.compact(&mut store, NOW, &COMPACTION_DEFAULTS).expect(name);
        assert_eq!(authority.oldest().to_string(), c.oldest, "{name}: new oldest");
        let mut kept: Vec<String> = store.entries().map(|e| e.0.to_string()).collect();
        kept.sort();
        assert_eq!(&kept, c.kept.as_ref().expect("kept"), "{name}: kept AUMs");
        assert_eq!(purged.len() + kept.len(), c.aums.len(), "{name}: purged");
        assert!(purged.iter().all(|h| store.get(h).is_none()), "{name}");
        // The compacted chain opens from its new oldest at the same head.
        let reopened = Authority::open(&store, authority.oldest()).expect(name);
        assert_eq!(reopened.head(), head, "{name}: head after reopening");
        assert_eq!(reopened.state(), authority.state(), "{name}: state after reopening");
    }
}
