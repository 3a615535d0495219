//! Node-key signature decoding, re-encoding and verification never panic; the canonical
//! re-encoding is a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinytail_core::key::NodePublic;
use tinytail_core::tka::sig::node_key_authorized;
use tinytail_core::tka::{NodeKeySignature, Sink, State};

struct VecSink(Vec<u8>);

impl Sink for VecSink {
    fn put(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

fuzz_target!(|data: &[u8]| {
    let state = State::default();
    let _ = node_key_authorized(&state, &NodePublic([7; 32]), data);
    let Ok(sig) = NodeKeySignature::decode(data) else { return };
    let _ = sig.rotation_details();
    let _ = sig.authorizing_key_id();
    let _ = sig.wrapping_public();
    let _ = sig.sig_hash();
    let mut canonical = VecSink(Vec::new());
    sig.encode(&mut canonical, true);
    let again = NodeKeySignature::decode(&canonical.0).expect("canonical re-encoding decodes");
    let mut twice = VecSink(Vec::new());
    again.encode(&mut twice, true);
    assert_eq!(canonical.0, twice.0, "re-encoding is not a fixed point");
});
