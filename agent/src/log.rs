//! The agent's log: one line per event on stderr, stamped in UTC (procd and systemd keep it).
//! Nothing secret is ever passed here: keys and auth keys have no `Display` that shows them.

use crate::clock;

/// Writes one log line.
pub fn log(msg: &str) {
    eprintln!("{} tinytail: {msg}", clock::rfc3339(clock::unix_now()));
}
