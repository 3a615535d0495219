//! Datagrams on the shared UDP socket never panic the STUN code: the demultiplexing check, the
//! message view and its attributes, and the response parser. What parses re-writes to a response
//! that parses to the same answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinytail_core::stun::{
    is_stun, parse_binding_response, write_binding_response, Message, StunError, MAX_BINDING_RESPONSE_LEN,
};

fuzz_target!(|data: &[u8]| {
    let stun = is_stun(data);
    match Message::parse(data) {
        Ok(message) => {
            assert!(stun, "a parsed message passes is_stun");
            let _ = message.message_type();
            for attribute in message.attributes() {
                if attribute.is_err() {
                    break;
                }
            }
        }
        Err(e) => assert!(!stun || e == StunError::MalformedAttributes, "{e:?} for a STUN datagram"),
    }
    let parsed = parse_binding_response(data);
    if !stun {
        assert_eq!(parsed, Err(StunError::NotStun));
    }
    if let Ok((tx_id, addr)) = parsed {
        let mut out = [0u8; MAX_BINDING_RESPONSE_LEN];
        let n = write_binding_response(&tx_id, addr, &mut out).expect("any address fits");
        assert_eq!(parse_binding_response(&out[..n]), Ok((tx_id, addr)), "what we write parses back");
    }
});
