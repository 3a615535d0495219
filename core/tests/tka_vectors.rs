//! Tailnet-lock vectors decided by tailscale.com/tka (tests/interop `tka-vectors`): for every
//! vector, tinytail must reach the reference's verdict and resulting state.

#[path = "support/vectors.rs"]
mod vectors;
use serde::Deserialize;
use tinytail_core::key::NodePublic;
use tinytail_core::tka::disablement::{kdf, DisablementSecret};
use tinytail_core::tka::sig::{node_key_authorized, unwrap_auth_key};
use tinytail_core::tka::store::MemoryStore;
use tinytail_core::tka::{Authority, NodeKeySignature, SigKind};
use vectors::{hex, unhex};

#[derive(Deserialize)]
struct VecKey {
    id: String,
    votes: u64,
}

#[derive(Deserialize)]
struct VecState {
    head: String,
    keys: Option<Vec<VecKey>>,
    disablement: Option<Vec<String>>,
    state_id1: u64,
    state_id2: u64,
}

#[derive(Deserialize)]
struct Batch {
    aums: Option<Vec<String>>,
    ok: bool,
    state: VecState,
}

#[derive(Deserialize)]
struct Chain {
    name: String,
    negative: bool,
    genesis: String,
    bootstrap_ok: bool,
    genesis_state: Option<VecState>,
    batches: Option<Vec<Batch>>,
}

#[derive(Deserialize)]
struct Nks {
    name: String,
    negative: bool,
    genesis: String,
    updates: Option<Vec<String>>,
    node_key: String,
    sig: String,
    ok: bool,
    prev_keys: Option<Vec<String>>,
    rotation: bool,
    initial_kind: u8,
    initial_wrapping: String,
    sig_string: String,
}

#[derive(Deserialize)]
struct Disable {
    name: String,
    negative: bool,
    genesis: String,
    secret: String,
    ok: bool,
}

#[derive(Deserialize)]
struct Kdf {
    secret: String,
    value: String,
}

#[derive(Deserialize)]
struct Wrapped {
    text: String,
    wrapped: bool,
    auth_key: String,
    credential: String,
    #[serde(rename = "priv")]
    priv_: Option<String>,
}

#[derive(Deserialize)]
struct Text {
    raw: String,
    nlpub: String,
    cli: String,
    aum_hash: String,
}

#[derive(Deserialize)]
struct Vectors {
    reference: String,
    chains: Vec<Chain>,
    nks: Vec<Nks>,
    disablement: Vec<Disable>,
    kdf: Vec<Kdf>,
    wrapped_auth_keys: Vec<Wrapped>,
    text: Vec<Text>,
}

fn vectors() -> Vectors {
    let vectors: Vectors = vectors::load("tka.json");
    vectors
}

fn assert_state(name: &str, authority: &Authority, want: &VecState) {
    let state = authority.state();
    assert_eq!(authority.head().to_string(), want.head, "{name}: head");
    let keys: Vec<(String, u64)> = state.keys.iter().map(|k| (hex(k.id()), u64::from(k.votes))).collect();
    let want_keys: Vec<(String, u64)> = want.keys.iter().flatten().map(|k| (k.id.clone(), k.votes)).collect();
    assert_eq!(keys, want_keys, "{name}: keys");
    let dis: Vec<String> = state.disablement_values.iter().map(|d| hex(d)).collect();
    assert_eq!(&dis, want.disablement.as_ref().unwrap_or(&Vec::new()), "{name}: disablement values");
    assert_eq!((state.state_id1, state.state_id2), (want.state_id1, want.state_id2), "{name}: state IDs");
}

fn bootstrap(genesis: &str, updates: &[String]) -> (MemoryStore, Authority) {
    let mut store = MemoryStore::new();
    let mut authority = Authority::bootstrap(&mut store, &unhex(genesis)).expect("bootstrap");
    if !updates.is_empty() {
        let raw: Vec<Vec<u8>> = updates.iter().map(|u| unhex(u)).collect();
        let refs: Vec<&[u8]> = raw.iter().map(|r| r.as_slice()).collect();
        authority.inform(&mut store, &refs).expect("updates");
    }
    (store, authority)
}

#[test]
fn chains_reach_the_reference_verdicts_and_states() {
    let v = vectors();
    assert!(v.reference.starts_with("tailscale.com v"), "{}", v.reference);
    let (mut checked, mut reencoded) = (0, 0);
    for c in &v.chains {
        let mut store = MemoryStore::new();
        let boot = Authority::bootstrap(&mut store, &unhex(&c.genesis));
        assert_eq!(boot.is_ok(), c.bootstrap_ok, "{}: bootstrap verdict ({:?})", c.name, boot.err());
        let Ok(mut authority) = boot else { continue };
        if let Some(s) = &c.genesis_state {
            assert_state(&c.name, &authority, s);
        }
        for (i, b) in c.batches.iter().flatten().enumerate() {
            let raw: Vec<Vec<u8>> = b.aums.iter().flatten().map(|u| unhex(u)).collect();
            let refs: Vec<&[u8]> = raw.iter().map(|r| r.as_slice()).collect();
            // Inputs made by the reference's own Serialize re-encode byte for byte.
            if !c.name.starts_with("encoding:") {
                for r in &refs {
                    if let Ok(aum) = tinytail_core::tka::Aum::decode(r) {
                        let mut out = Vec::new();
                        aum.encode(&mut out, true);
                        assert_eq!(hex(&out), hex(r), "{} batch {i}: re-encoding", c.name);
                        reencoded += 1;
                    }
                }
            }
            let result = authority.inform(&mut store, &refs);
            assert_eq!(result.is_ok(), b.ok, "{} batch {i}: verdict ({:?})", c.name, result.err());
            assert_state(&format!("{} batch {i}", c.name), &authority, &b.state);
            // Resuming from the store recomputes the same head by the fork rules.
            let reopened = Authority::open(&store, authority.oldest()).expect("reopen");
            assert_eq!(reopened.head(), authority.head(), "{} batch {i}: reopened head", c.name);
            assert_eq!(reopened.state(), authority.state(), "{} batch {i}: reopened state", c.name);
        }
        checked += 1;
    }
    let negatives = v.chains.iter().filter(|c| c.negative).count();
    assert!(checked > 0 && negatives >= 40, "{checked} chains, {negatives} negative");
    assert!(reencoded > 400, "{reencoded} AUMs re-encoded");
}

#[test]
fn node_key_signatures_reach_the_reference_verdicts() {
    let v = vectors();
    for n in &v.nks {
        let (_, authority) = bootstrap(&n.genesis, n.updates.as_deref().unwrap_or(&[]));
        let node = NodePublic::parse(&n.node_key).expect("node key");
        let sig = unhex(&n.sig);
        let result = node_key_authorized(authority.state(), &node, &sig);
        assert_eq!(result.is_ok(), n.ok, "{}: verdict ({:?})", n.name, result.as_ref().err());
        assert_eq!(authority.node_key_authorized(&node, &sig).is_ok(), n.ok, "{}", n.name);
        if let Ok(details) = result {
            assert_eq!(details.is_some(), n.rotation, "{}: rotation details", n.name);
            if let Some(d) = details {
                let prev: Vec<String> = d.prev_node_keys.iter().map(|k| k.to_string()).collect();
                assert_eq!(&prev, n.prev_keys.as_ref().unwrap_or(&Vec::new()), "{}: previous keys", n.name);
                assert_eq!(d.initial_kind, SigKind::from_u8(n.initial_kind), "{}: initial kind", n.name);
                let wrap = d.initial_wrapping_pubkey.map(|w| hex(&w)).unwrap_or_default();
                assert_eq!(wrap, n.initial_wrapping, "{}: initial wrapping key", n.name);
            }
        }
        if let Ok(decoded) = NodeKeySignature::decode(&sig) {
            assert_eq!(decoded.to_string(), n.sig_string, "{}: printed form", n.name);
        }
        // Signatures that decode re-encode byte for byte (the reference's own output).
        if let Ok(decoded) = NodeKeySignature::decode(&sig) {
            if !n.name.contains("header in two bytes") {
                let mut out = Vec::new();
                decoded.encode(&mut out, true);
                assert_eq!(hex(&out), n.sig, "{}: re-encoding", n.name);
            }
        }
    }
    assert!(v.nks.iter().any(|n| n.negative) && v.nks.iter().any(|n| !n.negative));
}

#[test]
fn wrapped_auth_keys_split_like_the_reference() {
    for w in vectors().wrapped_auth_keys {
        let mut buf = [0u8; 512];
        let got = unwrap_auth_key(&w.text, &mut buf);
        assert_eq!(got.is_some(), w.wrapped, "{}", w.text);
        match got {
            Some(k) => {
                assert_eq!(k.auth_key, w.auth_key);
                assert_eq!(hex(k.credential), w.credential);
                let seed_hex = hex(&k.wrapping_seed);
                assert!(w.priv_.is_none() || w.priv_.as_deref().is_some_and(|p| p.starts_with(&seed_hex)));
            }
            None => assert_eq!(w.auth_key, w.text),
        }
    }
}

#[test]
fn key_and_hash_text_forms_match_the_reference() {
    for t in vectors().text {
        let key = tinytail_core::key::NlPublic::parse(&t.nlpub).expect("nlpub");
        assert_eq!(hex(&key.0), t.raw);
        assert_eq!(key.to_string(), t.nlpub);
        assert_eq!(key.cli().to_string(), t.cli);
        let hash = tinytail_core::tka::AumHash::parse(&t.aum_hash).expect("hash text");
        assert_eq!(hash.to_string(), t.aum_hash);
    }
}

/// Argon2i at 16 MiB is slow under qemu-user; the KDF runs on the build host's architecture only.
#[test]
#[cfg_attr(not(target_arch = "x86_64"), ignore = "Argon2i at 16 MiB is too slow under qemu")]
fn disablement_secrets_check_like_the_reference() {
    let v = vectors();
    for k in &v.kdf {
        assert_eq!(hex(&kdf(&unhex(&k.secret))), k.value);
    }
    for d in &v.disablement {
        let (_, authority) = bootstrap(&d.genesis, &[]);
        let secret = DisablementSecret::parse(&d.secret).expect("secret text");
        assert_eq!(authority.valid_disablement(secret.expose()), d.ok, "{}", d.name);
        assert_eq!(
            secret.cli().to_string(),
            d.secret.to_uppercase().replace("DISABLEMENT-SECRET:", "disablement-secret:")
        );
        let _ = d.negative;
    }
}
