//! tinytail-agent: the I/O glue around tinytail-core. Every protocol decision is a call into core;
//! this crate owns sockets, files, timers and the CLI.

pub mod cli;
