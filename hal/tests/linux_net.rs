//! hal::net::linux against the real kernel, inside a network namespace of the test's own
//! (unshare on the test thread: nothing on the host changes). Needs root. Without root the test
//! prints SKIPPED and passes, unless `TINYTAIL_REQUIRE_ROOT=1` is set: then it fails. The test
//! command (scripts/test) sets it for the host unit tests, which it runs as root, so there this
//! test runs or fails; a setup step that fails (unshare, veth, TUN, netlink) fails it too.

use std::io;
use std::net::IpAddr;
use std::process::Command;

use tinytail_hal::net::linux::{LinuxNet, Tun, NFT_TABLE};
use tinytail_hal::net::NetControl;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Runs a command in this thread's namespace and returns its stdout.
fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn enter_private_netns() -> io::Result<()> {
    // SAFETY: unshare(2) with CLONE_NEWNET moves only the calling thread into a new namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[test]
fn tun_addresses_routes_forwarding_and_snat_come_and_go() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os("TINYTAIL_REQUIRE_ROOT").is_none_or(|v| v != "1"),
            "linux_net: not root, and TINYTAIL_REQUIRE_ROOT=1 says this test must run"
        );
        eprintln!(
            "linux_net: SKIPPED (needs root for a network namespace and TUN; TINYTAIL_REQUIRE_ROOT unset)"
        );
        return;
    }
    enter_private_netns().expect("unshare(CLONE_NEWNET)");
    let status =
        Command::new("ip").args(["link", "add", "lan0", "type", "veth", "peer", "name", "lan1"]).status();
    assert!(status.unwrap().success(), "veth for the LAN side");

    let tun = Tun::open("tt-test0").expect("TUN device");
    let mut net = LinuxNet::new().expect("netlink socket");
    net.link_up("tt-test0", 1280).unwrap();
    net.link_up("lan0", 1500).unwrap();
    net.add_address("tt-test0", ip("100.64.0.1"), 32).unwrap();
    net.add_address("tt-test0", ip("fd7a:115c:a1e0::1"), 128).unwrap();
    net.add_route("tt-test0", ip("100.64.0.0"), 10).unwrap();
    net.add_route("tt-test0", ip("fd7a:115c:a1e0::"), 48).unwrap();
    net.enable_forwarding().unwrap();
    net.enable_snat("tt-test0").unwrap();
    // Our endpoints: addresses of other interfaces that are up, never the TUN's own.
    assert!(Command::new("ip")
        .args(["addr", "add", "192.0.2.1/24", "dev", "lan0"])
        .status()
        .unwrap()
        .success());
    let endpoints = tinytail_hal::net::linux::interface_addresses("tt-test0").unwrap();
    assert!(endpoints.contains(&ip("192.0.2.1")), "{endpoints:?}");
    assert!(!endpoints.contains(&ip("100.64.0.1")), "{endpoints:?}");
    // A peer's subnet comes and goes on its own.
    net.add_route("tt-test0", ip("10.9.0.0"), 24).unwrap();
    assert!(run("ip", &["route", "show"]).contains("10.9.0.0/24 dev tt-test0"));
    net.remove_route("tt-test0", ip("10.9.0.0"), 24).unwrap();
    assert!(!run("ip", &["route", "show"]).contains("10.9.0.0/24"));
    // Adding the same address twice is not an error and is journalled once.
    net.add_address("tt-test0", ip("100.64.0.1"), 32).unwrap();
    assert_eq!(net.changes().len(), 7, "{:?}", net.changes());

    let addrs = run("ip", &["-o", "addr", "show", "dev", "tt-test0"]);
    assert!(addrs.contains("100.64.0.1/32"), "{addrs}");
    assert!(addrs.contains("fd7a:115c:a1e0::1/128"), "{addrs}");
    let link = run("ip", &["-o", "link", "show", "dev", "tt-test0"]);
    assert!(link.contains("mtu 1280") && link.contains(",UP"), "{link}");
    let routes = run("ip", &["route", "show"]);
    assert!(routes.contains("100.64.0.0/10 dev tt-test0"), "{routes}");
    assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap().trim(), "1");
    let table = run("nft", &["list", "table", "inet", NFT_TABLE]);
    assert!(table.contains("masquerade") && table.contains("100.64.0.0/10"), "{table}");

    // A packet routed into the tunnel comes out of the TUN device.
    let ping = Command::new("ping").args(["-c", "1", "-W", "1", "100.64.0.9"]).spawn().unwrap();
    let mut buf = [0u8; 2048];
    let packet = loop {
        let n = tun.read_packet(&mut buf).unwrap();
        // Skip IPv6 router solicitations and the like; wait for our ICMPv4 echo.
        if n >= 20 && buf[0] >> 4 == 4 && buf[9] == 1 {
            break buf[..n].to_vec();
        }
    };
    assert_eq!(&packet[16..20], &[100, 64, 0, 9], "destination");
    assert_eq!(&packet[12..16], &[100, 64, 0, 1], "source is our tailnet address");
    let _ = ping.wait_with_output();

    net.undo_all().unwrap();
    assert!(net.changes().is_empty());
    let addrs = run("ip", &["-o", "addr", "show", "dev", "tt-test0"]);
    assert!(!addrs.contains("100.64.0.1") && !addrs.contains("fd7a:115c:a1e0::1"), "{addrs}");
    assert!(!run("ip", &["route", "show"]).contains("100.64.0.0/10"));
    assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap().trim(), "0");
    let tables = run("nft", &["list", "tables"]);
    assert!(!tables.contains(NFT_TABLE), "{tables}");
}
