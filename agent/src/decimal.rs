//! Decimal figures with a fixed number of places, from integers.
//!
//! `format!("{:.1}", x)` on an `f64` links core's float formatting (Grisu with a Dragon4
//! fallback, ~10 KB on mipsel); every figure we print is a ratio of integers (bytes, nanoseconds,
//! record counts), so it is formatted from those integers exactly, with integer formatting only.

use std::time::Duration;

/// `numerator / denominator` with `places` digits after the point (at most 9), rounded half
/// up: `ratio(1536, 1024, 1)` is `"1.5"`. A zero denominator gives 0.
pub fn ratio(numerator: u64, denominator: u64, places: u32) -> String {
    let places = places.min(9);
    let scale = 10u64.pow(places);
    // Rounded half up: (2 n s + d) / 2 d. u128, so no figure we print can overflow.
    let scaled = match denominator {
        0 => 0,
        d => (2 * u128::from(numerator) * u128::from(scale) + u128::from(d)) / (2 * u128::from(d)),
    };
    let (whole, frac) = (scaled / u128::from(scale), scaled % u128::from(scale));
    if places == 0 {
        format!("{whole}")
    } else {
        format!("{whole}.{frac:0width$}", width = places as usize)
    }
}

/// A duration in milliseconds with `places` digits after the point: `"12.3"`.
pub fn millis(d: Duration, places: u32) -> String {
    ratio(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), 1_000_000, places)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_round_half_up() {
        assert_eq!(ratio(1536, 1024, 1), "1.5");
        assert_eq!(ratio(1, 3, 2), "0.33");
        assert_eq!(ratio(2, 3, 2), "0.67");
        assert_eq!(ratio(5, 100, 1), "0.1");
        assert_eq!(ratio(4, 100, 1), "0.0");
        assert_eq!(ratio(999, 1000, 1), "1.0");
        assert_eq!(ratio(7, 2, 0), "4");
        assert_eq!(ratio(7, 0, 1), "0.0");
        assert_eq!(ratio(u64::MAX, 1, 1), format!("{}.0", u64::MAX));
    }

    #[test]
    fn milliseconds() {
        assert_eq!(millis(Duration::from_micros(12_345), 1), "12.3");
        assert_eq!(millis(Duration::from_micros(12_350), 1), "12.4");
        assert_eq!(millis(Duration::from_micros(1_500), 0), "2");
        assert_eq!(millis(Duration::ZERO, 1), "0.0");
    }
}
