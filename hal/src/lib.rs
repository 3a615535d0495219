//! tinytail-hal: what the agent needs from a device.
//!
//! Traits first, then a Linux implementation and an in-memory `sim` beside it, so tests run the
//! same code paths without hardware. Today this crate holds the board description that build.rs
//! generates from `board-configs/*.toml`, and the flash store (`store`).
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod board;
pub mod net;
pub mod store;
