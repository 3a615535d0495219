//! Random flash images into the store's recovery: it must never panic and never loop (run with
//! libFuzzer's `-timeout`), and a store it opens must take a write that survives a reopen
//! without changing any other record. The property lives in `tinytail_hal::store::sim` so that
//! `hal/tests/store_fuzz_corpus.rs` replays this corpus in every `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tinytail_hal::store::sim::check_recovery_of_image(data));
