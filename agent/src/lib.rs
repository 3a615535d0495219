//! tinytail-agent: the I/O glue around tinytail-core. Every protocol decision is a call into core;
//! this crate owns sockets, files, timers and the CLI.

pub mod cert;
pub mod certify;
pub mod cli;
pub mod clock;
pub mod control;
pub mod daemon;
pub mod decimal;
pub mod fuzzing;
pub mod ipc;
pub mod lock;
pub mod log;
pub mod magicsock;
pub mod netmap;
pub mod node;
pub mod prefix;
pub mod random;
pub mod shared;
pub mod state;
pub mod status;
pub mod store_cmd;
pub mod tailcfg;
pub mod task;
pub mod tka;
pub mod web;
pub mod wgconfig;
