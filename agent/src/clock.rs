//! The agent's one wall clock, and RFC 3339 in UTC as control writes times (Go's `time.Time`
//! JSON form).
//!
//! Every wall-clock read in the agent goes through here: [`unix_now`] for our own decisions and
//! [`Clock`] for rustls's certificate checks. A router without a real-time clock boots at 1970
//! or at its firmware's date (OpenWrt's `sysfixtime` sets the newest mtime under /etc) and gets
//! the right time from NTP later. Until then the clock is "not set" ([`sane_now`] is `None`,
//! the time is before [`SANE_FLOOR`]): TLS certificates cannot be checked, and no decision
//! that depends on the date (a key's expiry, a certificate's renewal, tailnet-lock commit
//! times) is taken.
//!
//! Test switch ([`TEST_OFFSET_ENV`], tests only): the environment variable names a file holding
//! a signed number of seconds added to the system clock, read again at most once a second, so
//! a test can set the clock years back and then "let NTP step it" by writing 0, without a
//! restart. A missing or malformed file counts as 0.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::pki_types::UnixTime;

/// Test only: names a file with a signed offset in seconds for the wall clock (see the module
/// documentation).
pub const TEST_OFFSET_ENV: &str = "TINYTAIL_TEST_CLOCK_OFFSET_FILE";
/// How often the offset file is read again, at most.
const OFFSET_REREAD: Duration = Duration::from_secs(1);
/// 2025-01-01T00:00:00Z: a clock before this is not set. Older than any build of tinytail, and
/// newer than the 1970 of a board without a real-time clock or a firmware's build date that
/// predates tinytail's.
pub const SANE_FLOOR: i64 = 1_735_689_600;
/// How status, logs and errors start when the clock is not set.
pub const NOT_SET: &str = "clock not set";

/// Seconds since the Unix epoch now.
pub fn unix_now() -> i64 {
    let system = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    system.saturating_add(offset())
}

/// Now, if the clock is set (not before [`SANE_FLOOR`]); `None` means the date is unknown and
/// no decision may depend on it.
pub fn sane_now() -> Option<i64> {
    let now = unix_now();
    is_sane(now).then_some(now)
}

/// True when the clock is set.
pub fn is_set() -> bool {
    sane_now().is_some()
}

/// Whether `unix` can be the real time.
pub fn is_sane(unix: i64) -> bool {
    unix >= SANE_FLOOR
}

/// Why the clock at `unix` is not trusted, as status and the log say it.
pub fn not_set_message(unix: i64) -> String {
    format!(
        "{NOT_SET}: the system time is {} (before {}); TLS certificates cannot be checked until NTP sets it",
        rfc3339(unix),
        rfc3339(SANE_FLOOR)
    )
}

/// The wall clock for rustls: certificate validity is checked against the same clock as
/// everything else (and the test switch moves it too).
#[derive(Debug)]
pub struct Clock;

impl rustls::time_provider::TimeProvider for Clock {
    fn current_time(&self) -> Option<UnixTime> {
        let system = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        let offset = offset();
        let shifted = if offset >= 0 {
            system.checked_add(Duration::from_secs(offset.unsigned_abs()))
        } else {
            system.checked_sub(Duration::from_secs(offset.unsigned_abs()))
        };
        // Before 1970 there is no UnixTime: the epoch itself is as wrong and fails the same way.
        Some(UnixTime::since_unix_epoch(shifted.unwrap_or_default()))
    }
}

/// The test offset in seconds: 0 unless [`TEST_OFFSET_ENV`] is set.
fn offset() -> i64 {
    static FILE: OnceLock<Option<OffsetFile>> = OnceLock::new();
    FILE.get_or_init(|| std::env::var_os(TEST_OFFSET_ENV).map(|p| OffsetFile::new(PathBuf::from(p))))
        .as_ref()
        .map_or(0, |f| f.get(Instant::now()))
}

/// The test switch's file and its last reading.
struct OffsetFile {
    path: PathBuf,
    last: Mutex<Option<(Instant, i64)>>,
}

impl OffsetFile {
    fn new(path: PathBuf) -> OffsetFile {
        OffsetFile { path, last: Mutex::new(None) }
    }

    /// The offset at `now`: the last reading while it is younger than [`OFFSET_REREAD`], else
    /// the file read again (0 when missing or malformed).
    fn get(&self, now: Instant) -> i64 {
        let mut last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match *last {
            Some((read_at, value)) if now.saturating_duration_since(read_at) < OFFSET_REREAD => value,
            _ => {
                let value =
                    std::fs::read_to_string(&self.path).ok().and_then(|t| parse_offset(&t)).unwrap_or(0);
                *last = Some((now, value));
                value
            }
        }
    }
}

/// The offset file's text: one signed decimal number of seconds, surrounding blanks allowed.
fn parse_offset(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds.
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` into Unix seconds; `None` if malformed.
/// Works on bytes: the text comes from control and may hold multi-byte characters anywhere,
/// where a `str` slice at a fixed offset would panic.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| digits(b.get(r)?);
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi, s) =
        (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        rest = &frac[n..];
    }
    let offset = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let mag = digits(&[*h1, *h2])? * 3600 + digits(&[*m1, *m2])? * 60;
            if *sign == b'-' {
                -mag
            } else {
                mag
            }
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset)
}

/// A run of ASCII digits (at most 4 here, so no overflow); `None` for anything else, a sign
/// included (`str::parse` would take `+123` as a year).
fn digits(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0i64, |n, &c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_before_the_floor_is_not_set() {
        assert!(!is_sane(0), "1970: a board without a real-time clock");
        assert!(!is_sane(1_546_300_800), "2019-01-01: a firmware's build date");
        assert!(!is_sane(SANE_FLOOR - 1));
        assert!(is_sane(SANE_FLOOR));
        assert!(is_sane(1_800_000_000));
        assert_eq!(rfc3339(SANE_FLOOR), "2025-01-01T00:00:00Z");
        let msg = not_set_message(1_546_300_800);
        assert!(
            msg.starts_with(
                "clock not set: the system time is 2019-01-01T00:00:00Z (before 2025-01-01T00:00:00Z)"
            ),
            "{msg}"
        );
    }

    #[test]
    fn offset_file_text() {
        assert_eq!(parse_offset("-189216000\n"), Some(-189_216_000));
        assert_eq!(parse_offset(" 0 "), Some(0));
        assert_eq!(parse_offset("+60"), Some(60));
        for bad in ["", "1.5", "six years", "99999999999999999999"] {
            assert_eq!(parse_offset(bad), None, "{bad}");
        }
    }

    /// NTP stepping the clock, as the test switch plays it: a new value in the file is seen
    /// within a second, without a restart.
    #[test]
    fn offset_file_is_read_again_once_a_second() {
        let dir = std::env::temp_dir().join(format!("tinytail-clock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("offset");
        std::fs::write(&path, "-189216000\n").unwrap();
        let file = OffsetFile::new(path.clone());
        let t0 = Instant::now();
        assert_eq!(file.get(t0), -189_216_000);
        std::fs::write(&path, "0\n").unwrap();
        assert_eq!(file.get(t0 + Duration::from_millis(500)), -189_216_000, "read at most once a second");
        assert_eq!(file.get(t0 + OFFSET_REREAD), 0, "the new value after a second");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(file.get(t0 + 2 * OFFSET_REREAD + Duration::from_millis(1)), 0, "no file: no offset");
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(file.get(t0 + 4 * OFFSET_REREAD), 0, "a malformed file: no offset");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Without the test switch the clock is the system's, for us and for rustls alike (the
    /// unit tests never set the switch: it is read once per process).
    #[test]
    fn rustls_reads_the_same_clock() {
        use rustls::time_provider::TimeProvider;
        assert!(std::env::var_os(TEST_OFFSET_ENV).is_none(), "the unit tests run without the switch");
        let ours = unix_now();
        let theirs = Clock.current_time().map(|t| t.as_secs() as i64);
        assert!(theirs.is_some_and(|t| (t - ours).abs() <= 1), "{theirs:?} vs {ours}");
        assert!(is_set(), "this machine's clock is set");
    }

    #[test]
    fn formats_and_parses_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(123), "1970-01-01T00:02:03Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20.123456789Z"), Some(1_700_000_000));
        assert_eq!(parse_rfc3339("2023-11-15T00:13:20+02:00"), Some(1_700_000_000));
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), Some(-62_135_596_800));
    }

    #[test]
    fn refuses_malformed_times() {
        for bad in [
            "",
            "2023-11-14",
            "2023-13-14T22:13:20Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20+0200",
            "xxxx-11-14T22:13:20Z",
            "+023-11-14T22:13:20Z",
            "2023-11-14T22:13:20+0:200",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    /// Control's strings are hostile input: a multi-byte character anywhere in a valid time must
    /// give `None`, never a slicing panic. Replacing as many bytes as the character is long keeps
    /// every length check passing (`+0\u{e9}00` is 6 bytes, like `+02:00`), so each byte-offset
    /// check sees a non-ASCII byte; replacing one byte and inserting shift the rest instead.
    #[test]
    fn multi_byte_characters_anywhere_are_refused_without_panicking() {
        for valid in ["2023-11-14T22:13:20Z", "2023-11-15T00:13:20+02:00", "2023-11-14T22:13:20.5-01:30"] {
            for wide in ["\u{e9}", "\u{20ac}", "\u{1f600}"] {
                for at in 0..=valid.len() {
                    let rest = |skip: usize| valid.get(at + skip..).unwrap_or("");
                    for text in [
                        format!("{}{wide}{}", &valid[..at], rest(wide.len())),
                        format!("{}{wide}{}", &valid[..at], rest(1)),
                        format!("{}{wide}{}", &valid[..at], rest(0)),
                    ] {
                        assert_eq!(parse_rfc3339(&text), None, "{text}");
                    }
                }
            }
        }
    }
}
