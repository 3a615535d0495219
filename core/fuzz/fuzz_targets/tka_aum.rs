//! AUM decoding, validation, re-encoding and application never panic, and the canonical
//! re-encoding is a fixed point: decoding it again gives the same bytes and hash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinytail_core::tka::{Aum, Sink, State};

struct VecSink(Vec<u8>);

impl Sink for VecSink {
    fn put(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(aum) = Aum::decode(data) else { return };
    let _ = aum.static_validate();
    let mut canonical = VecSink(Vec::new());
    aum.encode(&mut canonical, true);
    let again = Aum::decode(&canonical.0).expect("canonical re-encoding decodes");
    let mut twice = VecSink(Vec::new());
    again.encode(&mut twice, true);
    assert_eq!(canonical.0, twice.0, "re-encoding is not a fixed point");
    assert_eq!(aum.hash(), again.hash());
    let hash = aum.hash();
    let mut state = State::default();
    if aum.static_validate().is_ok() {
        let _ = aum.verify_signatures(&state);
        let _ = aum.weight(&state);
        let _ = state.apply(&aum, hash);
    }
});
