//! AUM decoding, validation, re-encoding and application never panic, and the canonical
//! re-encoding is a fixed point: decoding it again gives the same bytes and hash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinytail_core::tka::{Aum, State};

fuzz_target!(|data: &[u8]| {
    let Ok(aum) = Aum::decode(data) else { return };
    let _ = aum.static_validate();
    let mut canonical = Vec::<u8>::new();
    aum.encode(&mut canonical, true);
    let again = Aum::decode(&canonical).expect("canonical re-encoding decodes");
    let mut twice = Vec::<u8>::new();
    again.encode(&mut twice, true);
    assert_eq!(canonical, twice, "re-encoding is not a fixed point");
    assert_eq!(aum.hash(), again.hash());
    let hash = aum.hash();
    let mut state = State::default();
    if aum.static_validate().is_ok() {
        let _ = aum.verify_signatures(&state);
        let _ = aum.weight(&state);
        let _ = state.apply(&aum, hash);
    }
});
