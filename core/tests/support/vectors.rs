//! Loading the JSON vectors tests/interop writes (tailscale.com's verdicts and bytes), and the
//! hex they carry bytes in. Shared by every *_vectors test.

use serde::de::DeserializeOwned;

/// Parses `tests/vectors/<file>`.
pub fn load<T: DeserializeOwned>(file: &str) -> T {
    let path = format!("{}/tests/vectors/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn unhex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() % 2, 0, "hex of odd length: {s}");
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex")).collect()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
