//! The command line: verbs and flags follow the `tailscale` CLI where the feature exists there.
//! `src/main.rs` only hands us the arguments and the board; everything else is here.

use std::process::ExitCode;

use tinytail_hal::board::Board;

/// Version information stamped by build.rs.
pub struct Build {
    pub version: &'static str,
    pub git: &'static str,
}

const USAGE: &str = "\
usage: tinytail <command> [flags]

commands:
  version     print the version, the board and the target it was built for
  board       print the board configuration compiled into this binary
  help        print this help

Not yet implemented (see README, \"Status\"): run, up, down, status, ip, logout, lock, cert.
";

/// Runs the command line and returns the process exit code.
pub fn run(args: &[String], board: &Board, build: &Build) -> ExitCode {
    let verb = args.get(1).map(String::as_str);
    match verb {
        Some("version" | "--version" | "-version") => {
            println!("tinytail {} ({}) board {} target {}", build.version, build.git, board.name, board.target);
            ExitCode::SUCCESS
        }
        Some("board") => {
            println!("{board}");
            ExitCode::SUCCESS
        }
        None | Some("help" | "--help" | "-h") => {
            print!("{USAGE}");
            if verb.is_none() { ExitCode::from(2) } else { ExitCode::SUCCESS }
        }
        Some(other) => {
            eprintln!("tinytail: unknown command \"{other}\"; run `tinytail help`");
            ExitCode::from(2)
        }
    }
}
