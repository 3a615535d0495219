//! Linux: the TUN device through /dev/net/tun, addresses, links and routes through rtnetlink,
//! forwarding through /proc/sys, SNAT through an nftables table of our own (`inet tinytail`), so
//! OpenWrt's fw4 tables are never touched.
//!
//! The rtnetlink messages are built here by hand: we send four kinds (new/del address, new/del
//! route, one link change) and read only acks, which costs a few hundred bytes of code where a
//! netlink crate would bring its whole message catalogue into the binary.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::{Change, NetControl};

/// Name of our nftables table (family inet).
pub const NFT_TABLE: &str = "tinytail";

// rtnetlink constants (<linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_addr.h>).
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFLA_MTU: u16 = 4;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;
const IFF_UP: u32 = 1;

/// The TUN device: packets without a protocol-information header (IFF_NO_PI).
pub struct Tun {
    file: File,
    name: String,
}

impl Tun {
    /// Creates (or attaches to) the TUN device `name`.
    pub fn open(name: &str) -> io::Result<Tun> {
        let file = OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= req.ifr_name.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad TUN name \"{name}\"")));
        }
        for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
            *dst = src as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one `ifreq`, which lives for the call.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF as _, &mut req) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Tun { file, name: name.to_string() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one packet into `buf`.
    pub fn read_packet(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one packet.
    pub fn write_packet(&self, packet: &[u8]) -> io::Result<()> {
        // One write per packet: TUN takes whole packets, so a short write cannot happen.
        (&self.file).write(packet).map(drop)
    }

    /// Reads and writes return `WouldBlock` instead of waiting (for an async reactor).
    pub fn set_nonblocking(&self) -> io::Result<()> {
        let fd = self.file.as_raw_fd();
        // SAFETY: F_GETFL/F_SETFL on a descriptor we own.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Asks for `bytes` of receive and send buffer on a socket (the kernel caps it at
/// net.core.rmem_max/wmem_max; root may exceed that with the FORCE variants, which we try first).
pub fn set_socket_buffers(socket: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let set = |option: libc::c_int| {
        // SAFETY: setsockopt reads one c_int from a pointer valid for the call.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    set(libc::SO_RCVBUFFORCE).or_else(|_| set(libc::SO_RCVBUF))?;
    set(libc::SO_SNDBUFFORCE).or_else(|_| set(libc::SO_SNDBUF))
}

/// Whether an IPv6 socket takes IPv6 only (`IPV6_V6ONLY`; the default follows the
/// `net.ipv6.bindv6only` sysctl): when false it also carries IPv4, as v4-mapped addresses.
pub fn ipv6_only(socket: &impl AsRawFd) -> io::Result<bool> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`, valid for the call.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value != 0)
    }
}

/// The unicast addresses of every interface that is up, except loopback and `skip` (our TUN):
/// where peers may reach our UDP socket directly.
pub fn interface_addresses(skip: &str) -> io::Result<Vec<IpAddr>> {
    Ok(addresses_by_interface()?
        .into_iter()
        .filter(|a| !a.loopback && a.interface != skip)
        .map(|a| a.addr)
        .collect())
}

/// One address of an interface that is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub interface: String,
    pub addr: IpAddr,
    pub loopback: bool,
}

/// Every IPv4 and IPv6 address of every interface that is up, with the interface's name
/// (getifaddrs: no netlink socket needed).
pub fn addresses_by_interface() -> io::Result<Vec<InterfaceAddress>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut at = list;
    while !at.is_null() {
        // SAFETY: `at` walks the list getifaddrs returned, which stays valid until freed.
        let entry = unsafe { &*at };
        at = entry.ifa_next;
        let up = entry.ifa_flags & (libc::IFF_UP as u32) != 0;
        if !up || entry.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: sa_family says which sockaddr type the pointer holds.
        let addr = unsafe {
            match i32::from((*entry.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(entry.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::V4(u32::from_be(sin.sin_addr.s_addr).into())
                }
                libc::AF_INET6 => {
                    let sin6 = &*(entry.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::V6(sin6.sin6_addr.s6_addr.into())
                }
                _ => continue,
            }
        };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) };
        out.push(InterfaceAddress {
            interface: name.to_string_lossy().into_owned(),
            addr,
            loopback: entry.ifa_flags & (libc::IFF_LOOPBACK as u32) != 0,
        });
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(out)
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// [`NetControl`] on the running kernel.
pub struct LinuxNet {
    netlink: OwnedFd,
    seq: u32,
    journal: Vec<Change>,
    proc_sys: PathBuf,
}

impl LinuxNet {
    pub fn new() -> io::Result<LinuxNet> {
        // SAFETY: plain socket(2); the descriptor is owned from here on.
        let fd = unsafe {
            libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE)
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let netlink = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(LinuxNet { netlink, seq: 0, journal: Vec::new(), proc_sys: PathBuf::from("/proc/sys") })
    }

    /// Sends one request and waits for its ack; returns the kernel's errno as an error.
    fn request(&mut self, kind: u16, flags: u16, body: &[u8]) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut msg = Vec::with_capacity(16 + body.len());
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        // SAFETY: send(2) of an initialized buffer on our own socket.
        let sent = unsafe { libc::send(self.netlink.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut reply = [0u8; 1024];
        loop {
            // SAFETY: recv(2) into a buffer we own, bounded by its length.
            let n =
                unsafe { libc::recv(self.netlink.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let reply = &reply[..n as usize];
            if reply.len() < 20 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "short netlink reply"));
            }
            let reply_kind = u16::from_ne_bytes([reply[4], reply[5]]);
            let reply_seq = u32::from_ne_bytes([reply[8], reply[9], reply[10], reply[11]]);
            if reply_seq != self.seq || reply_kind != NLMSG_ERROR {
                continue; // not our ack
            }
            let errno = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
            return if errno == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-errno)) };
        }
    }

    fn address_message(ifname: &str, addr: IpAddr, bits: u8) -> io::Result<Vec<u8>> {
        let index = if_index(ifname)?;
        let (family, raw) = family_and_bytes(addr);
        let mut body = vec![family, bits, 0, 0];
        body.extend_from_slice(&index.to_ne_bytes());
        push_attr(&mut body, IFA_LOCAL, &raw);
        push_attr(&mut body, IFA_ADDRESS, &raw);
        Ok(body)
    }

    fn route_message(ifname: &str, dst: IpAddr, bits: u8) -> io::Result<Vec<u8>> {
        let index = if_index(ifname)?;
        let (family, raw) = family_and_bytes(dst);
        let mut body = vec![family, bits, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_LINK, RTN_UNICAST];
        body.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
        push_attr(&mut body, RTA_DST, &raw);
        push_attr(&mut body, RTA_OIF, &index.to_ne_bytes());
        Ok(body)
    }

    fn set_sysctl(&mut self, key: &str, value: &str) -> io::Result<()> {
        let path = self.proc_sys.join(key.replace('.', "/"));
        let previous = std::fs::read_to_string(&path)?.trim().to_string();
        if previous == value {
            return Ok(());
        }
        std::fs::write(&path, value)?;
        self.journal.push(Change::Sysctl { key: key.to_string(), previous });
        Ok(())
    }

    fn undo(&mut self, change: &Change) -> io::Result<()> {
        match change {
            Change::Address { ifname, addr, bits } => {
                let body = Self::address_message(ifname, *addr, *bits)?;
                self.request(RTM_DELADDR, 0, &body)
            }
            Change::Route { ifname, dst, bits } => {
                let body = Self::route_message(ifname, *dst, *bits)?;
                self.request(RTM_DELROUTE, 0, &body)
            }
            Change::Sysctl { key, previous } => {
                std::fs::write(self.proc_sys.join(key.replace('.', "/")), previous)
            }
            Change::Snat { .. } => nft(&format!("delete table inet {NFT_TABLE}\n")),
        }
    }
}

/// An interface gone (TUN closed, LAN unplugged) takes its addresses and routes along: undoing
/// them then is not a failure.
fn already_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENODEV) | Some(libc::ESRCH) | Some(libc::EADDRNOTAVAIL))
        || e.kind() == io::ErrorKind::NotFound
}

impl NetControl for LinuxNet {
    fn link_up(&mut self, ifname: &str, mtu: u32) -> io::Result<()> {
        let index = if_index(ifname)? as i32;
        let mut body = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
        body.extend_from_slice(&index.to_ne_bytes());
        body.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
        body.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
        push_attr(&mut body, IFLA_MTU, &mtu.to_ne_bytes());
        self.request(RTM_NEWLINK, 0, &body)
    }

    fn add_address(&mut self, ifname: &str, addr: IpAddr, bits: u8) -> io::Result<()> {
        let body = Self::address_message(ifname, addr, bits)?;
        match self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &body) {
            Ok(()) => {
                self.journal.push(Change::Address { ifname: ifname.to_string(), addr, bits });
                Ok(())
            }
            // Someone (an earlier run that crashed) added it: it is there, but not ours to remove.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn add_route(&mut self, ifname: &str, dst: IpAddr, bits: u8) -> io::Result<()> {
        let body = Self::route_message(ifname, dst, bits)?;
        match self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &body) {
            Ok(()) => {
                self.journal.push(Change::Route { ifname: ifname.to_string(), dst, bits });
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn remove_route(&mut self, ifname: &str, dst: IpAddr, bits: u8) -> io::Result<()> {
        let Some(i) = self.journal.iter().position(
            |c| matches!(c, Change::Route { ifname: n, dst: d, bits: b } if n == ifname && *d == dst && *b == bits),
        ) else {
            return Ok(()); // not ours
        };
        let change = self.journal.remove(i);
        match self.undo(&change) {
            Err(e) if !already_gone(&e) => Err(e),
            _ => Ok(()),
        }
    }

    fn enable_forwarding(&mut self) -> io::Result<()> {
        self.set_sysctl("net.ipv4.ip_forward", "1")?;
        self.set_sysctl("net.ipv6.conf.all.forwarding", "1")
    }

    fn enable_snat(&mut self, tun: &str) -> io::Result<()> {
        if self.journal.iter().any(|c| matches!(c, Change::Snat { .. })) {
            return Ok(());
        }
        let (v4, v4_bits) = super::TAILNET_V4;
        let (v6, v6_bits) = super::TAILNET_V6;
        // Recreate from scratch: `add table` then `delete table` clears a leftover of a crash.
        let script = format!(
            "add table inet {NFT_TABLE}\n\
             delete table inet {NFT_TABLE}\n\
             table inet {NFT_TABLE} {{\n\
             \tchain postrouting {{\n\
             \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\tiifname \"{tun}\" oifname != \"{tun}\" ip saddr {v4}/{v4_bits} masquerade\n\
             \t\tiifname \"{tun}\" oifname != \"{tun}\" ip6 saddr {v6}/{v6_bits} masquerade\n\
             \t}}\n\
             }}\n"
        );
        nft(&script)?;
        self.journal.push(Change::Snat { tun: tun.to_string() });
        Ok(())
    }

    fn disable_snat(&mut self) -> io::Result<()> {
        if let Some(i) = self.journal.iter().position(|c| matches!(c, Change::Snat { .. })) {
            let change = self.journal.remove(i);
            self.undo(&change)?;
        }
        Ok(())
    }

    fn changes(&self) -> &[Change] {
        &self.journal
    }

    fn undo_all(&mut self) -> io::Result<()> {
        let mut first_error = None;
        while let Some(change) = self.journal.pop() {
            if let Err(e) = self.undo(&change) {
                if !already_gone(&e) && first_error.is_none() {
                    first_error = Some(io::Error::new(e.kind(), format!("undoing {change}: {e}")));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Runs `nft -f -` with a script (the OpenWrt and Debian nft binary; its netlink protocol is not
/// worth re-implementing for two rules).
fn nft(script: &str) -> io::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("running nft: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        let why = String::from_utf8_lossy(&out.stderr);
        Err(io::Error::other(format!("nft failed: {}", why.trim())))
    }
}

fn if_index(ifname: &str) -> io::Result<u32> {
    let name = CString::new(ifname)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"))?;
    // SAFETY: if_nametoindex reads a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface named {ifname}")));
    }
    Ok(index)
}

fn family_and_bytes(addr: IpAddr) -> (u8, Vec<u8>) {
    match addr {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
    }
}

/// Appends one rtattr (length, type, payload, padding to 4 bytes).
fn push_attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_to_four_bytes() {
        let mut buf = Vec::new();
        push_attr(&mut buf, RTA_DST, &[192, 0, 2]);
        assert_eq!(buf.len(), 8);
        assert_eq!(u16::from_ne_bytes([buf[0], buf[1]]), 7, "length excludes padding");
        assert_eq!(u16::from_ne_bytes([buf[2], buf[3]]), RTA_DST);
    }

    #[test]
    fn unknown_interfaces_are_a_clear_error() {
        let e = if_index("tt-no-such-if0").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("tt-no-such-if0"));
    }
}
