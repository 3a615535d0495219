//! Replays the `store_recovery` fuzz corpus (hal/fuzz/corpus/store_recovery) through the fuzz
//! target's property, so every input the fuzzer kept, and every crash it found once, is checked
//! by `cargo test` on every target, qemu included.

use std::fs;
use std::path::Path;

use tinytail_hal::store::sim::check_recovery_of_image;

#[test]
fn every_corpus_image_recovers_consistently() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/store_recovery");
    let mut inputs: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("readable corpus entry").path())
        .collect();
    inputs.sort();
    for input in &inputs {
        let data = fs::read(input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        check_recovery_of_image(&data);
    }
    println!("fuzz-corpus: replayed {} inputs", inputs.len());
    assert!(inputs.len() >= 24, "the corpus went missing: {}", inputs.len());
}
