//! Node-key signature decoding, re-encoding and verification never panic; the canonical
//! re-encoding is a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinytail_core::key::NodePublic;
use tinytail_core::tka::sig::node_key_authorized;
use tinytail_core::tka::{NodeKeySignature, State};

fuzz_target!(|data: &[u8]| {
    let state = State::default();
    let _ = node_key_authorized(&state, &NodePublic([7; 32]), data);
    let Ok(sig) = NodeKeySignature::decode(data) else { return };
    let _ = sig.rotation_details();
    let _ = sig.authorizing_key_id();
    let _ = sig.wrapping_public();
    let _ = sig.sig_hash();
    let mut canonical = Vec::<u8>::new();
    sig.encode(&mut canonical, true);
    let again = NodeKeySignature::decode(&canonical).expect("canonical re-encoding decodes");
    let mut twice = Vec::<u8>::new();
    again.encode(&mut twice, true);
    assert_eq!(canonical, twice, "re-encoding is not a fixed point");
});
