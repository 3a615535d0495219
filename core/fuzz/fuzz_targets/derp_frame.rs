//! DERP frames from a server never panic: any header, any type, any payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinytail_core::derp::{open_server_info, read_header, Frame, HEADER_LEN};
use tinytail_core::key::NodePublic;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // A stream of frames, as the client reads them.
    while let Ok(Some((kind, len))) = read_header(rest) {
        let Some(payload) = rest.get(HEADER_LEN..HEADER_LEN + len) else { break };
        if let Ok(Frame::ServerInfo(boxed)) = Frame::parse(kind, payload) {
            let mut out = [0u8; 256];
            let _ = open_server_info(boxed, &[1; 32], &NodePublic([2; 32]), &mut out);
        }
        rest = &rest[HEADER_LEN + len..];
    }
});
