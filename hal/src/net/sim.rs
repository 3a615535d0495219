//! An in-memory [`NetControl`]: interfaces, addresses, routes, sysctls and SNAT as plain data,
//! with the kernel's refusals (unknown interface, duplicate entry) so agent tests see the same
//! errors the Linux implementation gives.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;

use super::{Change, NetControl};

/// The simulated kernel state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SimNet {
    /// Interface name -> (up, MTU).
    pub links: BTreeMap<String, (bool, u32)>,
    pub addresses: Vec<(String, IpAddr, u8)>,
    pub routes: Vec<(String, IpAddr, u8)>,
    pub sysctls: BTreeMap<String, String>,
    /// The TUN device whose forwarded traffic our SNAT masquerades, when on.
    pub snat: Option<String>,
    journal: Vec<Change>,
}

impl SimNet {
    /// A router with the given interfaces (down) and forwarding off.
    pub fn with_links(names: &[&str]) -> SimNet {
        let mut net = SimNet::default();
        for name in names {
            net.links.insert((*name).to_string(), (false, 1500));
        }
        net.sysctls.insert("net.ipv4.ip_forward".into(), "0".into());
        net.sysctls.insert("net.ipv6.conf.all.forwarding".into(), "0".into());
        net
    }

    fn require_link(&self, ifname: &str) -> io::Result<()> {
        if self.links.contains_key(ifname) {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface named {ifname}")))
        }
    }

    fn set_sysctl(&mut self, key: &str, value: &str) {
        let previous = self.sysctls.insert(key.to_string(), value.to_string()).unwrap_or_default();
        if previous != value {
            self.journal.push(Change::Sysctl { key: key.to_string(), previous });
        }
    }
}

impl NetControl for SimNet {
    fn link_up(&mut self, ifname: &str, mtu: u32) -> io::Result<()> {
        self.require_link(ifname)?;
        self.links.insert(ifname.to_string(), (true, mtu));
        Ok(())
    }

    fn add_address(&mut self, ifname: &str, addr: IpAddr, bits: u8) -> io::Result<()> {
        self.require_link(ifname)?;
        let entry = (ifname.to_string(), addr, bits);
        if !self.addresses.contains(&entry) {
            self.addresses.push(entry);
            self.journal.push(Change::Address { ifname: ifname.to_string(), addr, bits });
        }
        Ok(())
    }

    fn add_route(&mut self, ifname: &str, dst: IpAddr, bits: u8) -> io::Result<()> {
        self.require_link(ifname)?;
        let entry = (ifname.to_string(), dst, bits);
        if !self.routes.contains(&entry) {
            self.routes.push(entry);
            self.journal.push(Change::Route { ifname: ifname.to_string(), dst, bits });
        }
        Ok(())
    }

    fn enable_forwarding(&mut self) -> io::Result<()> {
        self.set_sysctl("net.ipv4.ip_forward", "1");
        self.set_sysctl("net.ipv6.conf.all.forwarding", "1");
        Ok(())
    }

    fn enable_snat(&mut self, tun: &str) -> io::Result<()> {
        self.require_link(tun)?;
        if self.snat.is_none() {
            self.snat = Some(tun.to_string());
            self.journal.push(Change::Snat { tun: tun.to_string() });
        }
        Ok(())
    }

    fn remove_route(&mut self, ifname: &str, dst: IpAddr, bits: u8) -> io::Result<()> {
        let ours = Change::Route { ifname: ifname.to_string(), dst, bits };
        if let Some(i) = self.journal.iter().position(|c| *c == ours) {
            self.journal.remove(i);
            self.routes.retain(|e| *e != (ifname.to_string(), dst, bits));
        }
        Ok(())
    }

    fn disable_snat(&mut self) -> io::Result<()> {
        self.snat = None;
        self.journal.retain(|c| !matches!(c, Change::Snat { .. }));
        Ok(())
    }

    fn changes(&self) -> &[Change] {
        &self.journal
    }

    fn undo_all(&mut self) -> io::Result<()> {
        while let Some(change) = self.journal.pop() {
            match change {
                Change::Address { ifname, addr, bits } => {
                    self.addresses.retain(|e| *e != (ifname.clone(), addr, bits))
                }
                Change::Route { ifname, dst, bits } => {
                    self.routes.retain(|e| *e != (ifname.clone(), dst, bits))
                }
                Change::Sysctl { key, previous } => {
                    self.sysctls.insert(key, previous);
                }
                Change::Snat { .. } => self.snat = None,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn undo_all_restores_the_state_before_us() {
        let mut net = SimNet::with_links(&["tailscale0", "br-lan"]);
        // The router already had something of its own, which must survive.
        net.routes.push(("br-lan".into(), ip("192.0.2.0"), 24));
        let before = net.clone();

        net.link_up("tailscale0", 1280).unwrap();
        net.add_address("tailscale0", ip("100.64.0.1"), 32).unwrap();
        net.add_route("tailscale0", ip("100.64.0.0"), 10).unwrap();
        net.enable_forwarding().unwrap();
        net.enable_snat("tailscale0").unwrap();
        assert_eq!(net.changes().len(), 5);
        assert_eq!(net.sysctls["net.ipv4.ip_forward"], "1");

        net.undo_all().unwrap();
        assert_eq!(net.addresses, before.addresses);
        assert_eq!(net.routes, before.routes);
        assert_eq!(net.sysctls, before.sysctls);
        assert_eq!(net.snat, None);
        assert!(net.changes().is_empty());
    }

    #[test]
    fn remove_route_takes_only_our_routes() {
        let mut net = SimNet::with_links(&["tailscale0", "br-lan"]);
        net.routes.push(("br-lan".into(), ip("192.0.2.0"), 24));
        net.add_route("tailscale0", ip("10.1.0.0"), 16).unwrap();
        net.remove_route("br-lan", ip("192.0.2.0"), 24).unwrap();
        net.remove_route("tailscale0", ip("10.1.0.0"), 16).unwrap();
        assert_eq!(net.routes, vec![("br-lan".to_string(), ip("192.0.2.0"), 24)]);
        assert!(net.changes().is_empty());
    }

    #[test]
    fn unknown_interface_is_refused() {
        let mut net = SimNet::with_links(&["tailscale0"]);
        let e = net.add_route("wg9", ip("100.64.0.0"), 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(net.changes().is_empty());
    }

    #[test]
    fn forwarding_already_on_is_not_journalled() {
        let mut net = SimNet::with_links(&[]);
        net.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        net.enable_forwarding().unwrap();
        assert_eq!(net.changes().len(), 1, "only the IPv6 sysctl changed");
        net.undo_all().unwrap();
        assert_eq!(net.sysctls["net.ipv4.ip_forward"], "1", "left as the owner had it");
    }
}
