//! ACME server answers (and the stored account): the bytes through every response parser of
//! `cert::acme` and the one-line error texts made from them. The body lives in
//! `tinytail_agent::fuzzing` so that `agent/tests/fuzz_corpus.rs` replays this corpus in every
//! `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tinytail_agent::fuzzing::acme_response(data));
