//! The network side of a router: the TUN device, our tailnet addresses, routes into the tunnel,
//! IP forwarding and SNAT of tailnet traffic into the LAN.
//!
//! [`NetControl`] is what the agent calls; [`linux::LinuxNet`] does it with rtnetlink, sysctls
//! and an nftables table of our own, and [`sim::SimNet`] keeps the same state in memory for
//! tests. Both keep a journal of what they changed, so [`NetControl::undo_all`] (on `down` and on
//! exit) removes exactly what we added and restores the sysctls we touched, nothing else.

pub mod linux;
pub mod sim;

use std::fmt;
use std::io;
use std::net::IpAddr;

/// Tailscale's address ranges (`ts:net/tsaddr`): the CGNAT range for IPv4 nodes and the ULA for
/// IPv6 nodes. SNAT applies to packets from these.
pub const TAILNET_V4: (IpAddr, u8) = (IpAddr::V4(std::net::Ipv4Addr::new(100, 64, 0, 0)), 10);
pub const TAILNET_V6: (IpAddr, u8) =
    (IpAddr::V6(std::net::Ipv6Addr::new(0xfd7a, 0x115c, 0xa1e0, 0, 0, 0, 0, 0)), 48);
/// The TUN MTU tailscaled uses by default (`safeTUNMTU`, `ts:net/tstun/mtu.go`).
pub const TUN_MTU: u32 = 1280;

/// One change we made, kept so it can be undone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Address {
        ifname: String,
        addr: IpAddr,
        bits: u8,
    },
    Route {
        ifname: String,
        dst: IpAddr,
        bits: u8,
    },
    /// A sysctl we set, with the value it had before.
    Sysctl {
        key: String,
        previous: String,
    },
    /// Our SNAT table (masquerade tailnet sources that came out of `tun` and leave elsewhere).
    Snat {
        tun: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Address { ifname, addr, bits } => write!(f, "address {addr}/{bits} on {ifname}"),
            Change::Route { ifname, dst, bits } => write!(f, "route {dst}/{bits} via {ifname}"),
            Change::Sysctl { key, previous } => write!(f, "sysctl {key} (was {previous})"),
            Change::Snat { tun } => write!(f, "SNAT of tailnet traffic forwarded from {tun}"),
        }
    }
}

/// What the agent needs to configure around the TUN device.
pub trait NetControl {
    /// Sets the link up with the given MTU.
    fn link_up(&mut self, ifname: &str, mtu: u32) -> io::Result<()>;
    /// Adds an address (our 100.x/32 or fd7a:…/128) to an interface.
    fn add_address(&mut self, ifname: &str, addr: IpAddr, bits: u8) -> io::Result<()>;
    /// Routes a prefix into an interface (the tailnet ranges, peers' subnets with --accept-routes).
    fn add_route(&mut self, ifname: &str, dst: IpAddr, bits: u8) -> io::Result<()>;
    /// Turns on IPv4 and IPv6 forwarding, remembering the previous values.
    fn enable_forwarding(&mut self) -> io::Result<()>;
    /// Masquerades tailnet sources forwarded out of `tun` to any other interface: the LAN for
    /// subnet routes, the WAN for exit-node traffic (--snat-subnet-routes, default on; tailscaled
    /// also masquerades everything it forwards).
    fn enable_snat(&mut self, tun: &str) -> io::Result<()>;
    /// Removes a route we added (a peer's subnet that left the netmap).
    fn remove_route(&mut self, ifname: &str, dst: IpAddr, bits: u8) -> io::Result<()>;
    /// Removes our SNAT table, if present.
    fn disable_snat(&mut self) -> io::Result<()>;
    /// What we changed, oldest first.
    fn changes(&self) -> &[Change];
    /// Undoes every change, newest first; carries on past failures and reports the first.
    fn undo_all(&mut self) -> io::Result<()>;
}
