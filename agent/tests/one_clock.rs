//! The agent has one wall clock, `agent::clock`: a router without a real-time clock must make
//! every date decision (and rustls every certificate check) on the same clock, which knows when
//! it is not set and which the test switch moves. A wall-clock read anywhere else in the agent,
//! the HAL or the binary, or a rustls configuration built without `clock::Clock` (the
//! `builder_with_provider` constructors take rustls's own clock), fails here.

use std::path::{Path, PathBuf};

/// What reads the wall clock around `agent::clock`.
const FORBIDDEN: &[&str] = &["SystemTime", "UNIX_EPOCH", "UnixTime::now", "builder_with_provider("];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder is readable") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The forbidden names in `source` outside comments and its test module.
fn clock_reads(source: &str) -> Vec<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .flat_map(|l| FORBIDDEN.iter().filter(move |f| l.contains(*f)).map(move |_| l.trim().to_string()))
        .collect()
}

#[test]
fn every_wall_clock_read_goes_through_agent_clock() {
    let agent = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [agent.join("src"), agent.join("../hal/src"), agent.join("../src")] {
        sources(&dir, &mut files);
    }
    assert!(files.len() > 20, "the scan found the sources: {files:?}");
    let mut found = Vec::new();
    for file in files.iter().filter(|f| !f.ends_with("agent/src/clock.rs")) {
        let text = std::fs::read_to_string(file).expect("a source is readable");
        found.extend(clock_reads(&text).into_iter().map(|l| format!("{}: {l}", file.display())));
    }
    assert!(found.is_empty(), "wall-clock reads outside agent::clock:\n{}", found.join("\n"));
}

#[test]
fn the_scanner_sees_clock_reads_in_code_only() {
    let text = "let t = std::time::SystemTime::now();\n\
                let c = ClientConfig::builder_with_provider(p);\n\
                // SystemTime in a comment\n\
                #[cfg(test)]\nmod tests { fn f() { UNIX_EPOCH; } }";
    assert_eq!(clock_reads(text).len(), 2);
}
