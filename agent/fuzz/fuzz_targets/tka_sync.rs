//! Control's tailnet-lock answers (a bootstrap, then sync/offer answers, one JSON object per line)
//! through the lock's bootstrap, inform, missing-AUM computation, compaction and store round trip.
//! The body lives in `tinytail_agent::fuzzing` so that `agent/tests/fuzz_corpus.rs` replays this
//! corpus in every `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tinytail_agent::fuzzing::tka_sync(data));
