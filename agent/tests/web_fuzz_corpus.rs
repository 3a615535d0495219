//! Replays the `web_request` fuzz inputs (agent/fuzz/seeds/web_request: readable seeds and any
//! crash found once; agent/fuzz/corpus/web_request: what the fuzzer kept, minimized) through the
//! fuzz target's body, so `cargo test` checks every one on every run.

use std::fs;
use std::path::Path;

use tinytail_agent::web::fuzz::{requests, serve};

#[test]
fn every_web_request_corpus_input_is_served_without_panicking() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = Vec::new();
    for dir in [fuzz.join("seeds/web_request"), fuzz.join("corpus/web_request")] {
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        inputs.extend(entries.map(|entry| entry.expect("readable corpus entry").path()));
    }
    inputs.sort();
    for input in &inputs {
        let data = fs::read(input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        let outcome = std::panic::catch_unwind(|| requests(&data));
        assert!(outcome.is_ok(), "{} panicked (replay: cargo fuzz run web_request <file>)", input.display());
    }
    println!("web fuzz corpus: replayed {} inputs", inputs.len());
    assert!(inputs.len() >= 1_000, "the corpus went missing: {} inputs", inputs.len());
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
