//! Tailnet-lock timing: verifying a chain of 1000 AUMs from genesis (decode, re-encode, hash,
//! ZIP-215 signature check, apply), one signature check of each kind, and filtering a 1000-peer
//! netmap (every peer Direct-signed; and every peer unsigned). A benchmark, not a test: it prints
//! numbers and asserts only that the work succeeded.
//!
//! `cargo run --release -p tinytail-core --example tka_bench --features std`

use std::time::Instant;

use tinytail_core::key::{NlPublic, NodePublic};
use tinytail_core::tka::aum::build::{self, Change};
use tinytail_core::tka::filter::{filter_peers, Peer, PeerVerdict};
use tinytail_core::tka::sig::{self, node_key_authorized};
use tinytail_core::tka::store::MemoryStore;
use tinytail_core::tka::{verify, Aum, Authority};

const CHAIN: usize = 1000;
const PEERS: usize = 1000;

fn seed(n: u8) -> [u8; 32] {
    [n; 32]
}

fn signed(prev: Option<&tinytail_core::tka::AumHash>, change: &Change<'_>, by: &[u8; 32]) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = build::unsigned(&mut buf, prev, change).expect("build");
    let h = Aum::decode(&buf[..n]).expect("decode").sig_hash();
    let n = build::signed(&mut buf, prev, change, &[(verify::public_of(by), verify::sign(by, &h))])
        .expect("build");
    buf.truncate(n);
    buf
}

fn main() {
    let (a, b) = (seed(1), seed(2));
    let keys = [(NlPublic(verify::public_of(&a)), 2), (NlPublic(verify::public_of(&b)), 1)];
    let genesis = signed(
        None,
        &Change::Checkpoint { keys: &keys, disablement_values: &[[9; 32]], state_id1: 1, state_id2: 2 },
        &a,
    );
    let mut chain = Vec::with_capacity(CHAIN);
    let mut head = Aum::decode(&genesis).expect("genesis").hash();
    for i in 0..CHAIN {
        let aum = if i % 50 == 49 {
            signed(
                Some(&head),
                &Change::Checkpoint {
                    keys: &keys,
                    disablement_values: &[[9; 32]],
                    state_id1: 1,
                    state_id2: 2,
                },
                &a,
            )
        } else {
            signed(Some(&head), &Change::NoOp, if i % 2 == 0 { &a } else { &b })
        };
        head = Aum::decode(&aum).expect("aum").hash();
        chain.push(aum);
    }
    let refs: Vec<&[u8]> = chain.iter().map(|c| c.as_slice()).collect();

    let runs = 5;
    let mut best = f64::MAX;
    for _ in 0..runs {
        let mut store = MemoryStore::new();
        let start = Instant::now();
        let mut authority = Authority::bootstrap(&mut store, &genesis).expect("bootstrap");
        authority.inform(&mut store, &refs).expect("inform");
        best = best.min(start.elapsed().as_secs_f64());
        assert_eq!(authority.head(), head);
    }
    println!("chain_1000_aums_ms {:.1}", best * 1e3);

    // Recomputing the active chain from the store (what a restart does).
    let mut store = MemoryStore::new();
    let mut authority = Authority::bootstrap(&mut store, &genesis).expect("bootstrap");
    authority.inform(&mut store, &refs).expect("inform");
    let start = Instant::now();
    let reopened = Authority::open(&store, authority.oldest()).expect("open");
    println!("reopen_1000_aums_ms {:.1}", start.elapsed().as_secs_f64() * 1e3);
    assert_eq!(reopened.head(), head);

    let msg = [0x5a; 32];
    let sig = verify::sign(&a, &msg);
    let public = verify::public_of(&a);
    let per = |name: &str, f: &dyn Fn() -> bool| {
        let n = 200;
        let start = Instant::now();
        for _ in 0..n {
            assert!(f());
        }
        println!("{name}_us {:.1}", start.elapsed().as_secs_f64() * 1e6 / f64::from(n));
    };
    per("verify_zip215", &|| verify::zip215(&public, &msg, &sig));
    per("verify_go_stdlib", &|| verify::go_stdlib(&public, &msg, &sig));

    let state = authority.state().clone();
    let node = NodePublic([3; 32]);
    let mut buf = [0u8; 1024];
    let n = sig::build::direct(&mut buf, &a, &node, Some(&NlPublic(verify::public_of(&seed(7)))))
        .expect("direct");
    let direct = buf[..n].to_vec();
    per("node_key_direct", &|| node_key_authorized(&state, &node, &direct).is_ok());
    let node2 = NodePublic([4; 32]);
    let n = sig::build::rotation(&mut buf, &seed(7), &node2, &direct).expect("rotation");
    let rotation = buf[..n].to_vec();
    per("node_key_rotation", &|| node_key_authorized(&state, &node2, &rotation).is_ok());

    // A 1000-peer netmap under lock, as the agent filters it on every map update: each peer with
    // its own Direct signature by a trusted key (and its own rotation key, as control asks for),
    // then the same peers unsigned. Best of 5.
    let self_key = NodePublic([5; 32]);
    let n = sig::build::direct(&mut buf, &a, &self_key, None).expect("direct");
    let self_sig = buf[..n].to_vec();
    let peer_keys: Vec<NodePublic> = (0..PEERS)
        .map(|i| {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            k[31] = 0x40;
            NodePublic(k)
        })
        .collect();
    let peer_sigs: Vec<Vec<u8>> = peer_keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let rotation = NlPublic(verify::public_of(&[(i % 251) as u8 + 1; 32]));
            let n = sig::build::direct(&mut buf, if i % 2 == 0 { &a } else { &b }, k, Some(&rotation))
                .expect("direct");
            buf[..n].to_vec()
        })
        .collect();
    let filter = |name: &str, peers: &[Peer<'_>], want: PeerVerdict| {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let start = Instant::now();
            let result = filter_peers(&state, &self_key, &self_sig, peers).expect("filter");
            best = best.min(start.elapsed().as_secs_f64());
            assert!(!result.self_locked_out);
            assert!(result.verdicts.iter().all(|v| *v == want), "{name}: {:?}", &result.verdicts[..3]);
        }
        println!("{name}_ms {:.2}", best * 1e3);
    };
    let signed: Vec<Peer<'_>> = peer_keys
        .iter()
        .zip(&peer_sigs)
        .map(|(k, s)| Peer { node_key: *k, key_signature: s, unsigned_peer_api_only: false })
        .collect();
    filter("filter_1000_peers", &signed, PeerVerdict::Authorized);
    let unsigned: Vec<Peer<'_>> = peer_keys
        .iter()
        .map(|k| Peer { node_key: *k, key_signature: &[], unsigned_peer_api_only: false })
        .collect();
    filter("filter_1000_unsigned", &unsigned, PeerVerdict::Unsigned);
}
