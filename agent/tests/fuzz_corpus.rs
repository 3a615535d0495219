//! Replays the agent's fuzz inputs through each fuzz target's body, so every input the fuzzer
//! kept (agent/fuzz/corpus/TARGET, minimized with `cargo fuzz cmin`) and every seed and crash it
//! found once (agent/fuzz/seeds/TARGET, kept readable and out of cmin's reach) is checked by
//! `cargo test` on every target, qemu included. Targets: `map_response` (map poll messages into
//! the netmap and the datapath config), `web_request` (requests into the web page and API) and
//! `tka_sync` (control's tailnet-lock answers into the lock state and the store), `x509_leaf`
//! (certificates into the DER walker and the status check) and `acme_response` (an ACME CA's
//! answers into cert::acme's parsers and error texts).

use std::fs;
use std::path::Path;

use tinytail_agent::fuzzing::{acme_response, map_responses, replay, tka_sync, tka_sync_seeds, x509_leaf};
use tinytail_agent::web::fuzz::{requests, serve};

/// Runs every seed and corpus input of `target` through `body`, naming the input that panics;
/// fails if fewer than `at_least` inputs were found (a corpus that went missing proves nothing).
fn replay_corpus(target: &str, at_least: usize, body: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = Vec::new();
    for dir in [fuzz.join("seeds").join(target), fuzz.join("corpus").join(target)] {
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        inputs.extend(entries.map(|entry| entry.expect("readable corpus entry").path()));
    }
    inputs.sort();
    for input in &inputs {
        let data = fs::read(input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(outcome.is_ok(), "{} panicked (replay: cargo fuzz run {target} <file>)", input.display());
    }
    println!("fuzz corpus {target}: replayed {} inputs", inputs.len());
    assert!(inputs.len() >= at_least, "the {target} corpus went missing: {} inputs", inputs.len());
}

#[test]
fn every_map_response_corpus_input_applies_without_panicking() {
    replay_corpus("map_response", 1000, map_responses);
}

#[test]
fn every_tka_sync_corpus_input_applies_without_panicking() {
    replay_corpus("tka_sync", 1000, tka_sync);
}

/// The tka_sync seeds are real chains made by core's builders: the committed files are exactly
/// what `tka_sync_seeds` makes (`TINYTAIL_WRITE_SEEDS=1 cargo test` rewrites them).
#[test]
fn tka_sync_seeds_are_the_generated_chains() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/tka_sync");
    for (name, bytes) in tka_sync_seeds() {
        let path = dir.join(&name);
        if std::env::var_os("TINYTAIL_WRITE_SEEDS").is_some() {
            fs::create_dir_all(&dir).expect("seed directory");
            fs::write(&path, &bytes).expect("seed written");
        }
        assert_eq!(fs::read(&path).unwrap_or_default(), bytes, "{name} differs from the generated seed");
    }
}

#[test]
fn every_x509_leaf_corpus_input_is_checked_without_panicking() {
    replay_corpus("x509_leaf", 400, x509_leaf);
}

#[test]
fn every_acme_response_corpus_input_is_parsed_without_panicking() {
    replay_corpus("acme_response", 200, acme_response);
}

#[test]
fn every_web_request_corpus_input_is_served_without_panicking() {
    replay_corpus("web_request", 1000, requests);
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

/// The seeds get past the Host check, the session, the CSRF token and the bearer token to the
/// handlers they name, so the fuzzer starts from inputs that reach them (and this harness is
/// not quietly answering 403 to everything).
#[test]
fn seeds_reach_the_handlers_they_name() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/web_request");
    let status = |name: &str| serve(&fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}")));
    assert_eq!(status("rebinding-host"), [403]);
    assert_eq!(status("get-setup"), [200]);
    assert_eq!(status("get-index-signed-in"), [200]);
    assert_eq!(status("login"), [303], "right password: signed in, sent to the page");
    assert_eq!(status("login-wrong"), [401]);
    assert_eq!(status("api-device"), [200]);
    assert_eq!(status("api-bad-token"), [401]);
    assert_eq!(status("api-set-routes"), [409], "routes while logged out");
    assert_eq!(status("api-token-create"), [303]);
    assert_eq!(status("pipeline"), [303, 200, 200, 303], "four requests in one input");
}
