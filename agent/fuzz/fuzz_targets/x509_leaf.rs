//! Certificates from a CA or the flash store: the bytes as a leaf's DER through the DER walker
//! and, armored as PEM, as the leaf of a chain through the whole status check (key, name,
//! validity, webpki). The body lives in `tinytail_agent::fuzzing` so that
//! `agent/tests/fuzz_corpus.rs` replays this corpus in every `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tinytail_agent::fuzzing::x509_leaf(data));
