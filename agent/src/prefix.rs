//! IP prefixes (`netip.Prefix` in Go): parsed once from the CLI or the netmap, canonical after.

use std::fmt;
use std::net::IpAddr;

/// An address and a prefix length that fits it. Host bits may be set (as in `Addresses`,
/// `100.64.0.1/32`); [`Prefix::parse_route`] refuses them for routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    pub addr: IpAddr,
    pub bits: u8,
}

/// Why a prefix was refused; the message names the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixError(pub String);

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PrefixError {}

impl Prefix {
    /// `ADDR/BITS`; a bare address is taken as a host prefix.
    pub fn parse(text: &str) -> Result<Prefix, PrefixError> {
        Prefix::parse_named(text, "prefix")
    }

    fn parse_named(text: &str, what: &str) -> Result<Prefix, PrefixError> {
        let bad = |why: &str| PrefixError(format!("invalid {what} \"{text}\": {why}"));
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => {
                if b.is_empty() || !b.bytes().all(|c| c.is_ascii_digit()) || b.len() > 3 {
                    return Err(bad("prefix length is not a number"));
                }
                b.parse::<u8>().map_err(|_| bad("prefix length is not a number"))?
            }
        };
        if bits > max {
            return Err(bad(&format!("prefix length must be at most {max}")));
        }
        Ok(Prefix { addr, bits })
    }

    /// A subnet route as `--advertise-routes` takes it: CIDR notation, host bits zero.
    pub fn parse_route(text: &str) -> Result<Prefix, PrefixError> {
        if !text.contains('/') {
            return Err(PrefixError(format!(
                "invalid route \"{text}\": expected CIDR notation like 192.168.1.0/24"
            )));
        }
        let p = Prefix::parse_named(text, "route")?;
        if p.masked() != p {
            return Err(PrefixError(format!(
                "invalid route \"{text}\": host bits are set; did you mean {}?",
                p.masked()
            )));
        }
        Ok(p)
    }

    /// The prefix with its host bits cleared. The fields are public, so `bits` past the address
    /// size is possible; it masks nothing instead of underflowing.
    pub fn masked(self) -> Prefix {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32u32.saturating_sub(u32::from(self.bits))).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128u32.saturating_sub(u32::from(self.bits))).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        Prefix { addr, bits: self.bits }
    }

    /// True when `addr` lies inside this prefix (same family).
    pub fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.addr.is_ipv4() && Prefix { addr, bits: self.bits }.masked() == self.masked()
    }

    /// True when every address of `other` lies inside this prefix.
    pub fn covers(&self, other: &Prefix) -> bool {
        other.bits >= self.bits && self.contains(other.addr)
    }

    /// True for a single address (`/32` or `/128`).
    pub fn is_host(&self) -> bool {
        self.bits == if self.addr.is_ipv4() { 32 } else { 128 }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v4_and_v6_routes() {
        assert_eq!(Prefix::parse_route("192.0.2.0/24").unwrap().to_string(), "192.0.2.0/24");
        assert_eq!(Prefix::parse_route("fd00::/64").unwrap().to_string(), "fd00::/64");
        assert_eq!(Prefix::parse_route("0.0.0.0/0").unwrap().bits, 0);
    }

    #[test]
    fn refuses_malformed_routes() {
        for bad in
            ["192.0.2.0", "192.0.2.0/33", "192.0.2/24", "300.1.1.0/24", "192.0.2.0/", "192.0.2.0/x", "::/129"]
        {
            assert!(Prefix::parse_route(bad).is_err(), "{bad}");
        }
        let err = Prefix::parse_route("192.0.2.1/24").unwrap_err();
        assert!(err.0.contains("did you mean 192.0.2.0/24"), "{err}");
    }

    #[test]
    fn hostile_prefix_texts_are_errors() {
        for bad in [
            "",
            "/",
            "/24",
            "1.2.3.4/",
            "1.2.3.4/-1",
            "1.2.3.4/+8",
            "1.2.3.4/0x10",
            "1.2.3.4/0008",
            "1.2.3.4/256",
            "1.2.3.4/99999999999999999999",
            "1.2.3.\u{e9}/8",
            "1.2.3.4/\u{e9}",
            "1.2.3.4/8/8",
            "::/1\u{e9}",
        ] {
            assert!(Prefix::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn out_of_range_bits_do_not_underflow() {
        for addr in ["192.0.2.1".parse().unwrap(), "fd00::1".parse().unwrap()] {
            let p = Prefix { addr, bits: 200 };
            assert_eq!(p.masked(), p, "masks nothing");
            assert!(p.contains(addr));
            assert!(!p.is_host());
        }
    }

    #[test]
    fn host_addresses_keep_their_bits() {
        let p = Prefix::parse("100.64.0.1/32").unwrap();
        assert!(p.is_host());
        assert_eq!(Prefix::parse("fd7a:115c:a1e0::1").unwrap().bits, 128);
    }
}
