//! tinytail-core: the protocol core of tinytail.
//!
//! `#![no_std]` and allocation-free: every module works on caller-provided bytes and takes `now`
//! as an argument, so each state machine is testable without a network and builds for a
//! bare-metal target (`thumbv7em-none-eabihf`).
//!
//! Panic contract: no function in this crate panics on input that came from the network or from
//! storage; malformed input is an `Err`. Panics are reserved for broken internal invariants,
//! each of which is commented where it is relied on.
#![no_std]
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "std")]
extern crate std;

pub mod control;
pub mod derp;
pub mod disco;
pub mod filter;
pub mod key;
pub mod route;
pub mod stun;
pub mod tka;
#[cfg(feature = "wg")]
pub mod wg;
