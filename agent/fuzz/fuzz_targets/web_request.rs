//! HTTP requests from the LAN into the web page and local API: parsing, the Host check, every
//! handler, the response's encoding (agent::web::fuzz has the body and what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tinytail_agent::web::fuzz::requests(data);
});
