//! Replays the `map_response` fuzz inputs through the fuzz target's body, so every input the
//! fuzzer kept (agent/fuzz/corpus/map_response, minimized with `cargo fuzz cmin`) and every seed
//! and crash it found once (agent/fuzz/seeds/map_response, kept readable and out of cmin's
//! reach) is checked by `cargo test` on every target, qemu included.

use std::fs;
use std::path::Path;

use tinytail_agent::fuzzing::{map_responses, replay};

#[test]
fn every_map_response_corpus_input_applies_without_panicking() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = Vec::new();
    for dir in [fuzz.join("seeds/map_response"), fuzz.join("corpus/map_response")] {
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        inputs.extend(entries.map(|entry| entry.expect("readable corpus entry").path()));
    }
    inputs.sort();
    for input in &inputs {
        let data = fs::read(input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        // Name the input that broke, not only the panic.
        let outcome = std::panic::catch_unwind(|| map_responses(&data));
        assert!(outcome.is_ok(), "{} panicked (replay: cargo fuzz run map_response <file>)", input.display());
    }
    println!("fuzz-corpus: replayed {} inputs", inputs.len());
    assert!(inputs.len() >= 1000, "the corpus went missing: {}", inputs.len());
}

/// The seeds in the stream's wire form (length prefix, zstd frame per message) reach the same
/// map as their JSON-lines twins, so the fuzzer's zstd path is not silently parsing nothing.
#[test]
fn zstd_stream_seeds_decode_like_their_json_lines() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/map_response");
    let read = |name: &str| fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    for (zstd, lines) in
        [("seed-zstd-stream", "seed-go-stream"), ("seed-zstd-multi-byte", "seed-multi-byte-key-expiry")]
    {
        let (a, b) = (replay(&read(zstd)), replay(&read(lines)));
        assert!(a.self_node.is_some(), "{zstd} gave no map");
        assert_eq!(a.self_node, b.self_node, "{zstd}");
        assert_eq!(a.peers, b.peers, "{zstd}");
        assert_eq!(a.derp_regions, b.derp_regions, "{zstd}");
        assert_eq!(a.packet_filters, b.packet_filters, "{zstd}");
    }
}
