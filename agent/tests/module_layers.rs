//! The agent's modules import one way: each module may use only the modules listed before it in
//! [`LAYERS`] (the daemon and the CLI on top, clocks and wire types at the bottom). A new import
//! that points up, or a new module missing from the list, fails here, so no import circle can
//! come back unnoticed.

use std::collections::BTreeSet;
use std::path::Path;

/// Bottom to top.
const LAYERS: &[&str] = &[
    "decimal",
    "task",
    "clock",
    "random",
    "ipc",
    "prefix",
    "tailcfg",
    "store_cmd",
    "log",
    "netmap",
    "state",
    "control",
    "tka",
    "cert",
    "wgconfig",
    "magicsock",
    "shared",
    "status",
    "lock",
    "certify",
    "node",
    "web",
    "daemon",
    "cli",
];

/// The top-level `crate::` modules a source text names outside comments and test modules.
fn crate_imports(source: &str) -> BTreeSet<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    let mut found = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a, b::C};`
                let inner = group.split('}').next().unwrap_or_default();
                for item in inner.split(',') {
                    let name = item.trim().split("::").next().unwrap_or_default();
                    if !name.is_empty() {
                        found.insert(name.to_string());
                    }
                }
            } else {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                found.insert(name);
            }
        }
    }
    found
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("agent/src is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 20, "found only {} source files under {}", files.len(), src.display());
    let mut wrong = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let module = rel.components().next().expect("a component").as_os_str().to_string_lossy();
        let module = module.trim_end_matches(".rs");
        if module == "lib" || module == "fuzzing" {
            continue;
        }
        let Some(level) = LAYERS.iter().position(|m| *m == module) else {
            wrong.push(format!("{}: module `{module}` is not in LAYERS", rel.display()));
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("source is readable");
        for import in crate_imports(&text) {
            if import == module || import == "self" {
                continue;
            }
            match LAYERS.iter().position(|m| *m == import) {
                Some(l) if l < level => {}
                _ => wrong
                    .push(format!("{}: `{module}` imports `{import}`, which is not below it", rel.display())),
            }
        }
    }
    assert!(wrong.is_empty(), "imports that point up or sideways:\n{}", wrong.join("\n"));
}

#[test]
fn the_scanner_sees_grouped_and_path_imports() {
    let text =
        "use crate::{a, b::C};\nfn f() { crate::d::e(); }\n// crate::comment\n#[cfg(test)]\nuse crate::t;";
    let found: Vec<_> = crate_imports(text).into_iter().collect();
    assert_eq!(found, ["a", "b", "d"]);
}
