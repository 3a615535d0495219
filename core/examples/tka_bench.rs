//! Tailnet-lock timing: verifying a chain of 1000 AUMs from genesis (decode, re-encode, hash,
//! ZIP-215 signature check, apply), and one signature check of each kind. A benchmark, not a
//! test: it prints numbers and asserts only that the work succeeded.
//!
//! `cargo run --release -p tinytail-core --example tka_bench --features std`

use std::time::Instant;

use tinytail_core::key::{NlPublic, NodePublic};
use tinytail_core::tka::aum::build::{self, Change};
use tinytail_core::tka::sig::{self, node_key_authorized};
use tinytail_core::tka::store::MemoryStore;
use tinytail_core::tka::{verify, Aum, Authority};

const CHAIN: usize = 1000;

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
}
