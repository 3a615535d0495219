//! A map poll's messages (JSON, one per line) through MapResponse, NetMap::apply and
//! wgconfig::build: nothing may panic and the map's invariants must hold after each message.
//! The body lives in `tinytail_agent::fuzzing` so that `agent/tests/fuzz_corpus.rs` replays
//! this corpus in every `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tinytail_agent::fuzzing::map_responses(data));
