//! Inbound packets through the packet filter and the route table never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinytail_core::filter::{Filter, Packet};
use tinytail_core::route::RouteTable;

fuzz_target!(|data: &[u8]| {
    let mut filter = Filter::default();
    let _ = filter.add_local_net("100.64.0.1".parse().unwrap(), 32);
    let _ = filter.add_local_net("192.0.2.0".parse().unwrap(), 24);
    let _ = filter.add_local_net("fd7a:115c:a1e0::".parse().unwrap(), 48);
    let _ = filter.add_rule(["*"], [("192.0.2.0/24", 80, 80), ("fd7a:115c:a1e0::/48", 0, 65535)], []);
    filter.note_outbound(data);
    let _ = filter.check_inbound(data);
    if let Ok(p) = Packet::parse(data) {
        let routes = RouteTable::<4, 4>::build([
            ("100.64.0.0".parse().unwrap(), 10, 0),
            ("192.0.2.0".parse().unwrap(), 24, 1),
            ("::".parse().unwrap(), 0, 2),
        ])
        .expect("static table fits");
        let _ = routes.lookup(p.dst);
        let _ = routes.allows_source(1, p.src);
    }
});
