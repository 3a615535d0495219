//! Disco datagrams never panic: envelope parsing, opening (which fails for random bytes, so the
//! plaintext parser is also fed the raw bytes), and re-writing what parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinytail_core::disco::{DiscoBox, Envelope, Message};
use tinytail_core::key::DiscoPublic;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::parse(data) {
        let mut out = [0u8; 2048];
        let _ = DiscoBox::new(&[3; 32], &DiscoPublic([4; 32])).open(&envelope, &mut out);
    }
    if let Ok(message) = Message::parse(data) {
        let mut out = vec![0u8; data.len() + 64];
        if !matches!(message, Message::Other(_)) {
            let n = message.write(&mut out).expect("a parsed message writes back");
            let again = Message::parse(&out[..n]).expect("what we write parses");
            let mut twice = vec![0u8; n];
            assert_eq!(again.write(&mut twice), Ok(n), "writing is a fixed point");
            assert_eq!(out[..n], twice[..], "writing is a fixed point");
        }
    }
});
