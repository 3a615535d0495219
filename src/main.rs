//! The `tinytail` binary: CLI dispatch only. The board constants come from build.rs.

use std::process::ExitCode;

use tinytail_hal::board::{Board, Storage};

include!(concat!(env!("OUT_DIR"), "/board.rs"));
include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let build = tinytail_agent::cli::Build {
        version: env!("CARGO_PKG_VERSION"),
        git: env!("TINYTAIL_GIT"),
        web_assets: WEB_ASSETS,
    };
    tinytail_agent::cli::run(&args, &BOARD, &build)
}
