//! The ts2021 control protocol's pure parts: the Noise IK handshake in Tailscale's control
//! variant, the record framing that follows it, the early-payload prefix and the map-response
//! length framing. Sockets, HTTP and JSON live in `tinytail-agent`'s `control` module.

pub mod frame;
pub mod noise;

/// The capability version tinytail speaks (`tailcfg.CapabilityVersion`). It goes into `/key?v=`,
/// the Noise initiation header and prologue, and every request's `Version`.
///
/// Headscale v0.29.2 refuses anything below 113 (`hscontrol/capver/capver_generated.go`,
/// `MinSupportedCapabilityVersion`). We stay below 120/121, where peers start treating a node as
/// a peer-relay client/server (`ts:wgengine/magicsock/magicsock.go` `capVerIsRelayCapable`),
/// which tinytail does not implement. Every semantic up to 115 in the history comment of
/// `ts:tailcfg/tailcfg.go` is honoured by the agent's map merging.
pub const CAPABILITY_VERSION: u16 = 115;
