//! Where the page may be served and under which names: the defence against DNS rebinding and
//! against a page facing the WAN.
//!
//! A rebinding site makes the browser send our address under its own name: the request then
//! carries `Host: attacker.example` (and a matching `Origin`, so comparing the two proves
//! nothing). So every request must name the router itself in `Host`: the address the page
//! listens on, an address of the LAN interface, or a name the owner gave ([`WebConfig`]'s
//! `host_names`: the system hostname, `<hostname>.lan`, `--web-host`). Pure functions; the
//! interface addresses are passed in.
//!
//! Over HTTPS on the tailnet ([`super::https`]) the names are others: the domains of the
//! certificates served and the tailnet address the listener is bound to ([`allowed_tailnet`]);
//! the LAN's names and addresses are not accepted there.

use std::net::IpAddr;

use tinytail_hal::net::linux::InterfaceAddress;

use super::WebConfig;

/// Refuses, at start, a listen address on the WAN interface or on every interface, unless the
/// owner said `--web-listen-any`.
pub fn check_listen(config: &WebConfig, addresses: &[InterfaceAddress]) -> Result<(), String> {
    if config.listen_any {
        return Ok(());
    }
    let ip = config.listen.ip();
    if ip.is_unspecified() {
        return Err(format!(
            "web: refusing to listen on every interface ({}), the WAN included; name a LAN address \
             with --web-listen ADDR:PORT, or pass --web-listen-any to allow it",
            config.listen
        ));
    }
    if addresses.iter().any(|a| a.interface == config.wan_interface && a.addr == ip) {
        return Err(format!(
            "web: {ip} is an address of the WAN interface {}: the page would face the internet; \
             name a LAN address with --web-listen ADDR:PORT (or pass --web-listen-any to allow it)",
            config.wan_interface
        ));
    }
    Ok(())
}

/// True when the request's `Host` header names this router (see the module comment).
/// `addresses` is asked only for an address that is not the listen address (the usual case
/// needs no interface list).
pub fn allowed(
    host_header: Option<&str>,
    config: &WebConfig,
    addresses: impl FnOnce() -> Vec<InterfaceAddress>,
) -> bool {
    let Some(host) = host_header.and_then(host_part) else { return false };
    let listen = config.listen.ip();
    let every_interface = listen.is_unspecified();
    match host.parse::<IpAddr>() {
        Ok(ip) => {
            (!every_interface && ip == listen)
                || (ip.is_loopback() && (listen.is_loopback() || every_interface))
                || addresses()
                    .iter()
                    .any(|a| a.addr == ip && (a.interface == config.lan_interface || every_interface))
        }
        Err(_) => {
            let name = host.trim_end_matches('.');
            (name.eq_ignore_ascii_case("localhost") && (listen.is_loopback() || every_interface))
                || config.host_names.iter().any(|n| n.eq_ignore_ascii_case(name))
        }
    }
}

/// True when the `Host` header of a request to the HTTPS listener names this router on the
/// tailnet: `listen` (the tailnet address) or one of `domains`, the certificates' names (a
/// `*.name` certificate covers one label under `name`).
pub fn allowed_tailnet<'a>(
    host_header: Option<&str>,
    listen: IpAddr,
    domains: impl IntoIterator<Item = &'a String>,
) -> bool {
    let Some(host) = host_header.and_then(host_part) else { return false };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip == listen;
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    domains.into_iter().any(|d| match d.strip_prefix("*.") {
        Some(parent) => name.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => *d == name,
    })
}

/// The host of a `Host` header without its port: `name`, `name:port`, `1.2.3.4:port`,
/// `[v6]:port` or `[v6]`. `None` for anything malformed (empty, a bad port, a stray bracket).
fn host_part(header: &str) -> Option<&str> {
    let header = header.trim();
    let (host, port) = if let Some(rest) = header.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        match after {
            "" => (inside, None),
            _ => (inside, Some(after.strip_prefix(':')?)),
        }
    } else {
        match header.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (header, None),
        }
    };
    if let Some(port) = port {
        port.parse::<u16>().ok()?;
    }
    (!host.is_empty()).then_some(host)
}

/// The names the page answers to unless told otherwise: the system hostname and
/// `<hostname>.lan` (OpenWrt's default LAN domain), plus the owner's `--web-host` names.
pub fn default_names(hostname: &str, extra: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    let hostname = hostname.trim();
    if !hostname.is_empty() {
        names.push(hostname.to_ascii_lowercase());
        names.push(format!("{}.lan", hostname.to_ascii_lowercase()));
    }
    names.extend(extra.iter().map(|n| n.trim().trim_end_matches('.').to_ascii_lowercase()));
    names.retain(|n| !n.is_empty());
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str) -> WebConfig {
        WebConfig {
            listen: listen.parse().unwrap(),
            assets: &[],
            lan_interface: "lan0".into(),
            wan_interface: "wan0".into(),
            listen_any: false,
            host_names: default_names("gw", &["router.example.net".into()]),
        }
    }

    fn addrs() -> Vec<InterfaceAddress> {
        let a = |i: &str, ip: &str, lo| InterfaceAddress {
            interface: i.into(),
            addr: ip.parse().unwrap(),
            loopback: lo,
        };
        vec![
            a("lo", "127.0.0.1", true),
            a("lan0", "192.0.2.1", false),
            a("lan0", "fd00::1", false),
            a("wan0", "198.18.0.2", false),
        ]
    }

    #[test]
    fn a_rebinding_name_is_refused_even_with_a_matching_origin() {
        let c = config("192.0.2.1:8088");
        for host in
            ["attacker.example", "attacker.example:8088", "192.0.2.1.attacker.example:8088", "gw.attacker"]
        {
            assert!(!allowed(Some(host), &c, addrs), "{host}");
        }
        assert!(!allowed(None, &c, addrs), "no Host header");
    }

    #[test]
    fn the_routers_own_addresses_and_names_are_accepted() {
        let c = config("192.0.2.1:8088");
        for host in [
            "192.0.2.1:8088",
            "192.0.2.1",
            "[fd00::1]:8088",
            "[fd00::1]",
            "gw",
            "GW.lan:8088",
            "router.example.net.",
        ] {
            assert!(allowed(Some(host), &c, addrs), "{host}");
        }
    }

    #[test]
    fn other_addresses_of_the_router_are_refused_unless_listening_everywhere() {
        let c = config("192.0.2.1:8088");
        assert!(!allowed(Some("198.18.0.2:8088"), &c, addrs), "WAN address");
        assert!(!allowed(Some("127.0.0.1:8088"), &c, addrs), "loopback, not listened on");
        assert!(!allowed(Some("localhost:8088"), &c, addrs));
        let mut any = config("0.0.0.0:8088");
        any.listen_any = true;
        for host in ["198.18.0.2:8088", "127.0.0.1:8088", "localhost", "192.0.2.1"] {
            assert!(allowed(Some(host), &any, addrs), "{host}");
        }
        assert!(!allowed(Some("attacker.example"), &any, addrs));
        assert!(!allowed(Some("203.0.113.9"), &any, addrs), "not ours");
        let lo = config("127.0.0.1:8088");
        assert!(allowed(Some("localhost:8088"), &lo, addrs));
        assert!(allowed(Some("127.0.0.1:8088"), &lo, addrs));
    }

    #[test]
    fn malformed_host_headers_are_refused() {
        let c = config("192.0.2.1:8088");
        for host in ["", ":8088", "192.0.2.1:x", "192.0.2.1:99999", "[fd00::1", "[fd00::1]x", "[]:80", "é:80"]
        {
            assert!(!allowed(Some(host), &c, addrs), "{host:?}");
        }
    }

    #[test]
    fn over_https_only_the_certificate_names_and_the_tailnet_address_are_accepted() {
        let tailnet: IpAddr = "100.64.0.3".parse().unwrap();
        let domains = ["router.tail1234.ts.net".to_string(), "*.svc.tail1234.ts.net".to_string()];
        for host in [
            "router.tail1234.ts.net",
            "Router.Tail1234.ts.net.",
            "router.tail1234.ts.net:443",
            "100.64.0.3",
            "100.64.0.3:443",
            "web.svc.tail1234.ts.net",
        ] {
            assert!(allowed_tailnet(Some(host), tailnet, &domains), "{host}");
        }
        for host in [
            "evil.example",
            "router.tail1234.ts.net.evil.example",
            "a.b.svc.tail1234.ts.net",
            "svc.tail1234.ts.net",
            ".svc.tail1234.ts.net",
            "192.0.2.1",
            "gw",
            "gw.lan",
            "localhost",
            "127.0.0.1",
            "100.64.0.4",
            "router.tail1234.ts.net:x",
            "",
        ] {
            assert!(!allowed_tailnet(Some(host), tailnet, &domains), "{host}");
        }
        assert!(!allowed_tailnet(None, tailnet, &domains), "no Host header");
        assert!(!allowed_tailnet(Some("router.tail1234.ts.net"), tailnet, &[]), "no certificate");
    }

    #[test]
    fn listening_on_the_wan_or_everywhere_needs_the_owners_word() {
        let wan = config("198.18.0.2:8088");
        let err = check_listen(&wan, &addrs()).unwrap_err();
        assert!(err.contains("WAN interface wan0") && err.contains("--web-listen-any"), "{err}");
        let any = config("0.0.0.0:8088");
        assert!(check_listen(&any, &addrs()).unwrap_err().contains("--web-listen-any"));
        assert!(check_listen(&config("[::]:8088"), &addrs()).is_err());
        assert_eq!(check_listen(&config("192.0.2.1:8088"), &addrs()), Ok(()));
        let mut allowed_any = config("0.0.0.0:8088");
        allowed_any.listen_any = true;
        assert_eq!(check_listen(&allowed_any, &addrs()), Ok(()));
    }
}
