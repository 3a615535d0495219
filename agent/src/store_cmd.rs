//! `tinytail store info [--state PATH]`: capacity, use, erase counts and the kinds of records in
//! the flash store. Never a value: keys, certificates and config stay on the flash.
//!
//! It opens the store read-only, so it is safe beside a running agent: it repairs nothing and
//! takes no lock (a torn frame the agent is writing at that moment shows as a warning).

use std::io::ErrorKind;
use std::path::Path;
use std::process::ExitCode;

use tinytail_hal::board::Board;
use tinytail_hal::store::{self, BlockState, FlashError, Info, StoreError};

const USAGE: &str = "\
usage: tinytail store info [--state PATH]

  info    show capacity, use, erase counts and record kinds of the flash store (never values)
  --state PATH   the store to read instead of the board's (an image file, or /dev/mtdN)
";

/// Exit code for usage errors (as Go's flag package).
const EXIT_USAGE: u8 = 2;

pub fn run(args: &[String], board: &Board) -> ExitCode {
    let (verb, state) = match parse_args(args) {
        Ok(parsed) => parsed,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("tinytail store: {msg}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match verb {
        Verb::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Verb::Info => {
            let state = state.as_deref().map(Path::new);
            match store::open_read_only(&board.storage, state) {
                Ok(store) => {
                    let location = store.flash().path().display().to_string();
                    print!("{}", render_info(&location, &store.info()));
                    ExitCode::SUCCESS
                }
                Err(StoreError::Flash(FlashError::Io(e))) if e.kind() == ErrorKind::NotFound => {
                    let location =
                        state.map_or_else(|| board.storage.to_string(), |p| p.display().to_string());
                    eprintln!("tinytail store: no store at {location} yet (`tinytail run` creates it)");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("tinytail store: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verb {
    Info,
    Help,
}

/// `info [--state PATH | --state=PATH]`; an `Err` carries the message for the usage error.
fn parse_args(args: &[String]) -> Result<(Verb, Option<String>), String> {
    let mut verb = None;
    let mut state = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "info" if verb.is_none() => verb = Some(Verb::Info),
            "help" | "--help" | "-h" => return Ok((Verb::Help, None)),
            "--state" | "-state" => {
                state = Some(args.next().ok_or("--state needs a path")?.clone());
            }
            other => match other.strip_prefix("--state=").or_else(|| other.strip_prefix("-state=")) {
                Some(path) => state = Some(path.to_string()),
                None => return Err(format!("unexpected argument \"{other}\"")),
            },
        }
    }
    verb.map(|verb| (verb, state)).ok_or_else(String::new)
}

/// The report: shape, use, wear, records (kind, name, length) and recovery warnings.
fn render_info(location: &str, info: &Info) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let g = info.geometry;
    let count = |want: fn(&BlockState) -> bool| info.blocks.iter().filter(|b| want(&b.state)).count();
    let erase_counts: Vec<u32> = info.blocks.iter().map(|b| b.erase_count).collect();
    let min = erase_counts.iter().copied().min().unwrap_or(0);
    let max = erase_counts.iter().copied().max().unwrap_or(0);
    let estimated = info.blocks.iter().filter(|b| !b.erase_count_known).count();
    let percent = crate::decimal::ratio(info.live as u64 * 100, info.capacity as u64, 1);
    let _ = writeln!(out, "store         {location}");
    let _ = writeln!(out, "format        version {}", store::format::FORMAT_VERSION);
    let _ = writeln!(
        out,
        "flash         {} blocks of {} bytes ({} bytes), write size {}",
        g.block_count,
        g.block_size,
        g.total_size(),
        g.write_size
    );
    let _ =
        writeln!(out, "capacity      {} bytes for records, {} used ({percent}%)", info.capacity, info.live);
    let _ = writeln!(
        out,
        "blocks        {} used, {} free, {} to erase",
        count(|s| matches!(s, BlockState::Used { .. })),
        count(|s| *s == BlockState::Free),
        count(|s| matches!(s, BlockState::NeedsErase | BlockState::NeedsHeader)),
    );
    let _ = write!(out, "erase counts  min {min} max {max}:");
    for c in &erase_counts {
        let _ = write!(out, " {c}");
    }
    if estimated > 0 {
        let _ = write!(out, " ({estimated} estimated: header lost)");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "records       {}", info.records.len());
    for record in &info.records {
        let secret = if record.secret { "  secret" } else { "" };
        let _ = writeln!(out, "  {:<44} {:>7} bytes{secret}", record.key.to_string(), record.len);
    }
    if info.warnings.is_empty() {
        let _ = writeln!(out, "warnings      none");
    } else {
        let _ = writeln!(out, "warnings      {}", info.warnings.len());
        for warning in &info.warnings {
            let _ = writeln!(out, "  {warning}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinytail_hal::store::sim::SimFlash;
    use tinytail_hal::store::{Geometry, Record, Store};

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_info_with_and_without_state() {
        assert_eq!(parse_args(&args(&["info"])), Ok((Verb::Info, None)));
        assert_eq!(
            parse_args(&args(&["info", "--state", "/x.img"])),
            Ok((Verb::Info, Some("/x.img".into())))
        );
        assert_eq!(parse_args(&args(&["--state=/x.img", "info"])), Ok((Verb::Info, Some("/x.img".into()))));
        assert_eq!(parse_args(&args(&["help"])), Ok((Verb::Help, None)));
        assert!(parse_args(&args(&[])).is_err());
        assert!(parse_args(&args(&["info", "--state"])).is_err());
        assert!(parse_args(&args(&["info", "--values"])).is_err());
    }

    #[test]
    fn info_shows_kinds_and_lengths_but_never_values() {
        let geometry = Geometry { block_size: 1024, block_count: 4, write_size: 1 };
        let mut store = Store::open(SimFlash::new(geometry).unwrap()).unwrap();
        let secret = [0x5Au8; 32];
        store.put(Record::NodeKey, &secret).unwrap();
        store.put(Record::Certificate("gw.tail1234.ts.net"), b"-----BEGIN CERTIFICATE-----").unwrap();
        let text = render_info("sim", &store.info());
        assert!(text.contains("node-key"), "{text}");
        assert!(text.contains("certificate gw.tail1234.ts.net"), "{text}");
        assert!(text.contains("32 bytes  secret"), "{text}");
        assert!(!text.contains("BEGIN"), "{text}");
        assert!(!text.to_lowercase().contains("5a5a"), "{text}");
        assert!(text.contains("erase counts  min 0 max 0: 0 0 0 0"), "{text}");
    }
}
