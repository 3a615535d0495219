//! The page's HTML, rendered on the server from the same status object `tinytail status --json`
//! prints, so the page and the CLI never disagree. Every action is a plain form post (works
//! without JavaScript); `app.js` only reloads while we wait and asks before destructive posts.
//! Every value from the network or the user goes through [`escape_html`].
//!
//! The datapath's part (peer paths and traffic, endpoints, DERP links, netcheck latencies, drop
//! counters) comes from the [`EngineStatus`] snapshot taken under the same lock as the status
//! object (the one `status --json` shows as `Datapath`); without a running engine (node down,
//! logged out, or the datapath failed to start) the page says "datapath stopped" and shows none
//! of it.
//!
//! [`escape_html`]: super::http::escape_html

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use super::auth::Flash;
use super::http::escape_html as esc;
use crate::cert::{CertStatus, CT_NOTICE};
use crate::clock;
use crate::magicsock::{EngineStatus, PeerStatus};

/// The key expiry warning starts this long before the key expires (as the admin console does).
pub const EXPIRY_WARNING_SECS: i64 = 14 * 86_400;

/// Everything the status page shows besides the status object.
pub struct StatusView<'a> {
    pub status: &'a Value,
    pub csrf: &'a str,
    pub flash: Option<&'a Flash>,
    /// A just-created API token, shown this once.
    pub new_api_token: Option<&'a str>,
    /// (id, created) of the stored API token.
    pub api_token: Option<(&'a str, i64)>,
    /// Subnets on the LAN side, offered as one-click routes: (interface, prefix).
    pub lan_subnets: &'a [(String, String)],
    /// The login URL as an SVG QR code, if one is pending.
    pub login_qr: Option<String>,
    /// The datapath's status, `None` while it is not running.
    pub engine: Option<&'a EngineStatus>,
    /// Each name's certificate status, as `tinytail cert --status` gives it.
    pub certificates: &'a [Value],
    pub now: i64,
}

/// First run or password reset.
pub fn setup(csrf: &str, has_password: bool, error: Option<&str>) -> String {
    let mut b = String::new();
    let intro = if has_password {
        "Reset the admin password with a one-time setup code. Run <code>tinytail web setup-code</code> on the \
         router to get one (valid 15 minutes)."
    } else {
        "First run: choose the admin password for this page (at least 10 characters). It is stored only as a \
         salted slow hash. If someone else on your LAN might get here first, use a setup code from \
         <code>tinytail web setup-code</code> to reset it afterwards."
    };
    let _ = write!(
        b,
        "<section class=\"narrow\"><h2>Set the admin password</h2><p>{intro}</p>{}\
         <form method=\"post\" action=\"/setup\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        error.map(|e| note(false, e)).unwrap_or_default(),
        esc(csrf)
    );
    if has_password {
        b.push_str(
            "<label for=\"code\">Setup code</label><input type=\"text\" id=\"code\" name=\"code\" \
             autocomplete=\"off\" required>",
        );
    }
    b.push_str(
        "<label for=\"pw\">New password</label><input type=\"password\" id=\"pw\" name=\"password\" \
         autocomplete=\"new-password\" minlength=\"10\" required>\
         <label for=\"pw2\">Repeat it</label><input type=\"password\" id=\"pw2\" name=\"password2\" \
         autocomplete=\"new-password\" minlength=\"10\" required>\
         <button type=\"submit\">Set password</button></form></section>",
    );
    document("Set up", &b, None, None)
}

/// The sign-in form.
pub fn login(csrf: &str, error: Option<&str>) -> String {
    let b = format!(
        "<section class=\"narrow\"><h2>Sign in</h2>{}<form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label for=\"pw\">Admin password</label><input type=\"password\" id=\"pw\" name=\"password\" \
         autocomplete=\"current-password\" required autofocus>\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"mute\">Forgot it? Run <code>tinytail web setup-code</code> on the router, then \
         <a href=\"/setup\">reset the password</a>.</p></section>",
        error.map(|e| note(false, e)).unwrap_or_default(),
        esc(csrf)
    );
    document("Sign in", &b, None, None)
}

/// The status page with every change form.
pub fn status(v: &StatusView<'_>) -> String {
    let s = v.status;
    let mut b = String::new();
    if let Some(f) = v.flash {
        b.push_str(&note(f.ok, &f.text));
    }
    if let Some(token) = v.new_api_token {
        let _ = write!(
            b,
            "<div class=\"note warn wide\"><b>Your new API token</b> (shown once; copy it now):<br>\
             <code id=\"api-token\">{}</code></div>",
            esc(token)
        );
    }
    b.push_str("<main>");
    let (online, why) = state_summary(s);
    let registered = s["Self"].is_object() || s["BackendState"] != "NeedsLogin";
    let _ = write!(
        b,
        "<section class=\"wide\" id=\"state\"><h2>Tailnet <span class=\"badge {}\">{}</span></h2><p>{}</p>",
        if online { "ok" } else { "bad" },
        if online { "online" } else { "offline" },
        esc(&why)
    );
    for h in s["Health"].as_array().into_iter().flatten() {
        let _ = write!(b, "<p class=\"warn\">{}</p>", esc(h.as_str().unwrap_or("")));
    }
    b.push_str("</section>");
    b.push_str(&this_node(s, v.now));
    b.push_str(&login_section(v, registered));
    b.push_str(&routes_section(v));
    b.push_str(&peers_section(s, v.engine));
    b.push_str(&lock_section(v));
    b.push_str(&datapath_section(s, v.engine));
    b.push_str(&options_section(v));
    b.push_str(&cert_section(v.certificates));
    b.push_str(&api_section(v));
    b.push_str("</main>");
    let waiting = s["AuthURL"].as_str().is_some_and(|u| !u.is_empty())
        || matches!(s["BackendState"].as_str(), Some("Starting" | "NeedsMachineAuth"))
        || routes_pending(s);
    document("Status", &b, Some(v.csrf), waiting.then_some(5))
}

/// Online or not, and why not, in words.
pub fn state_summary(s: &Value) -> (bool, String) {
    let backend = s["BackendState"].as_str().unwrap_or("");
    let connected = s["Control"]["Connected"].as_bool() == Some(true);
    let last_error = s["Control"]["LastError"].as_str().unwrap_or("");
    let down_since = s["Control"]["DownSince"].as_str();
    // Connected but locked out is not online: other locked nodes drop us.
    let lock = &s["TailnetLock"];
    if lock["Enabled"] == true && lock["NodeKeySigned"] == false && !s["Self"].is_null() {
        return (false, "Locked out: tailnet lock is on and this node's key is not signed.".into());
    }
    if backend == "Running" && connected {
        return (true, format!("Connected to {}.", s["LoginServer"].as_str().unwrap_or("control")));
    }
    if s["Self"]["Expired"] == true {
        return (false, "This node's key has expired: log in again below.".into());
    }
    let why = match backend {
        "NeedsLogin" if s["AuthURL"].as_str().is_some_and(|u| !u.is_empty()) => {
            "Waiting for the login to be completed at the login URL below.".to_string()
        }
        "NeedsLogin" => "Logged out: log in below.".to_string(),
        "NeedsMachineAuth" => "Waiting for a tailnet admin to approve this device.".to_string(),
        "Stopped" => "Stopped (tinytail down): the login is kept.".to_string(),
        _ if down_since.is_some() => {
            format!("Control unreachable since {}: {last_error}", down_since.unwrap_or(""))
        }
        "Starting" => "Connecting to control…".to_string(),
        other => format!("State: {other}"),
    };
    (false, why)
}

fn this_node(s: &Value, now: i64) -> String {
    let me = &s["Self"];
    let ips: Vec<&str> =
        me["TailscaleIPs"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let hostname =
        me["HostName"].as_str().filter(|h| !h.is_empty()).or(s["Prefs"]["Hostname"].as_str()).unwrap_or("");
    // Expired or soon, by our clock only once it is set (status says so in Health when not).
    let dated = s["Clock"]["Set"].as_bool().unwrap_or(true);
    let expiry = match me["KeyExpiry"].as_str() {
        None if me.is_object() => "never (key expiry disabled)".to_string(),
        None => "—".to_string(),
        Some(t) if !dated => format!("{} (not judged: this router's clock is not set)", esc(t)),
        Some(t) => match clock::parse_rfc3339(t) {
            Some(at) if at <= now => format!("<span class=\"bad\">expired {}</span>", esc(t)),
            Some(at) if at - now <= EXPIRY_WARNING_SECS => format!(
                "<span class=\"warn\" id=\"expiry-warning\">{} (in {} days: log in again before then)</span>",
                esc(t),
                (at - now) / 86_400
            ),
            _ => esc(t),
        },
    };
    let tailnet = s["MagicDNSSuffix"].as_str().filter(|d| !d.is_empty()).unwrap_or("—");
    format!(
        "<section id=\"node\"><h2>This router</h2><dl><dt>Tailnet</dt><dd>{}</dd><dt>Hostname</dt><dd>{}</dd>\
         <dt>Name</dt><dd>{}</dd><dt>Addresses</dt><dd class=\"mono\">{}</dd><dt>Key expiry</dt><dd>{expiry}</dd>\
         <dt>Login server</dt><dd>{}</dd><dt>Version</dt><dd>{}</dd></dl></section>",
        esc(tailnet),
        esc(hostname),
        esc(me["DNSName"].as_str().unwrap_or("—")),
        if ips.is_empty() { "—".to_string() } else { ips.iter().map(|i| esc(i)).collect::<Vec<_>>().join("<br>") },
        esc(s["LoginServer"].as_str().filter(|l| !l.is_empty()).unwrap_or("—")),
        esc(s["Version"].as_str().unwrap_or("")),
    )
}

fn login_section(v: &StatusView<'_>, registered: bool) -> String {
    let s = v.status;
    let mut b = String::from("<section id=\"login\"><h2>Login</h2>");
    if let Some(url) = s["AuthURL"].as_str().filter(|u| !u.is_empty()) {
        let _ = write!(
            b,
            "<p>Open this URL to log in (or scan it with a phone):</p><p><a class=\"mono\" id=\"auth-url\" \
             href=\"{0}\" rel=\"noreferrer\" target=\"_blank\">{0}</a></p>",
            esc(url)
        );
        if let Some(svg) = &v.login_qr {
            let _ = write!(b, "<img class=\"qr\" alt=\"QR code of the login URL\" src=\"{}\">", esc(svg));
        }
    }
    let needs_login = s["BackendState"] == "NeedsLogin" || !registered;
    if needs_login {
        let server = s["LoginServer"].as_str().filter(|l| !l.is_empty()).unwrap_or("");
        let _ = write!(
            b,
            "<form method=\"post\" action=\"/tailnet/login\">{csrf}\
             <label for=\"ls\">Login server</label><input type=\"text\" id=\"ls\" name=\"login_server\" value=\"{}\" \
             placeholder=\"https://controlplane.tailscale.com\">\
             <label for=\"ak\">Auth key (optional)</label><input type=\"password\" id=\"ak\" name=\"auth_key\" \
             autocomplete=\"off\" placeholder=\"tskey-auth-…\">\
             <button type=\"submit\">Log in</button></form>\
             <p class=\"mute\">Without an auth key, you get a login URL to open.</p>",
            esc(server),
            csrf = csrf_field(v.csrf)
        );
    } else {
        let _ = write!(
            b,
            "<p>Logged in to {}.</p><form method=\"post\" action=\"/tailnet/logout\" \
             data-confirm=\"Log out of the tailnet? The router stops routing until it logs in again.\">{}\
             <button type=\"submit\" class=\"danger\">Log out of the tailnet</button></form>",
            esc(s["LoginServer"].as_str().unwrap_or("")),
            csrf_field(v.csrf)
        );
    }
    b.push_str("</section>");
    b
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|x| x.as_str().map(String::from)).collect()
}

/// Subnet routes we advertise (from prefs; exit routes are shown as the exit node option).
fn advertised(s: &Value) -> Vec<String> {
    strings(&s["Prefs"]["AdvertiseRoutes"])
}

fn routes_pending(s: &Value) -> bool {
    let enabled = strings(&s["Self"]["enabledRoutes"]);
    s["BackendState"] == "Running" && advertised(s).iter().any(|r| !enabled.contains(r))
}

fn routes_section(v: &StatusView<'_>) -> String {
    let s = v.status;
    let advertised = advertised(s);
    let enabled = strings(&s["Self"]["enabledRoutes"]);
    let running = s["BackendState"] == "Running";
    let mut b = String::from("<section id=\"routes\" class=\"wide\"><h2>Subnet routes</h2>");
    if advertised.is_empty() && enabled.is_empty() {
        b.push_str("<p class=\"mute\">No routes advertised.</p>");
    } else {
        b.push_str("<table class=\"stack\"><thead><tr><th>Route</th><th>advertisedRoutes</th><th>enabledRoutes</th></tr></thead><tbody>");
        let mut all = advertised.clone();
        all.extend(enabled.iter().filter(|r| !advertised.contains(r)).cloned());
        for r in &all {
            let adv = advertised.contains(r);
            let en = enabled.contains(r);
            let _ = write!(
                b,
                "<tr data-route=\"{0}\"><td class=\"mono\">{0}</td><td>{1}</td><td class=\"route-state {2}\">{3}</td></tr>",
                esc(r),
                if adv { "advertised" } else { "—" },
                if en { "ok" } else { "warn" },
                if en {
                    "enabled"
                } else if adv && running {
                    "waiting for approval"
                } else {
                    "not enabled"
                }
            );
        }
        b.push_str("</tbody></table>");
    }
    let _ = write!(
        b,
        "<form method=\"post\" action=\"/routes\">{}<label for=\"rt\">Advertised routes (comma-separated CIDRs)</label>\
         <input type=\"text\" id=\"rt\" name=\"routes\" value=\"{}\" placeholder=\"192.168.1.0/24\">\
         <button type=\"submit\">Save routes</button></form>",
        csrf_field(v.csrf),
        esc(&advertised.join(", "))
    );
    let offered: Vec<&(String, String)> =
        v.lan_subnets.iter().filter(|(_, p)| !advertised.contains(p)).collect();
    if !offered.is_empty() {
        b.push_str("<p>LAN subnets on this router:</p><div class=\"row\">");
        for (ifname, prefix) in offered {
            let mut with = advertised.clone();
            with.push(prefix.clone());
            let _ = write!(
                b,
                "<form method=\"post\" action=\"/routes\">{}<input type=\"hidden\" name=\"routes\" value=\"{}\">\
                 <button type=\"submit\" class=\"plain\" data-add-route=\"{2}\">Add {2} ({3})</button></form>",
                csrf_field(v.csrf),
                esc(&with.join(",")),
                esc(prefix),
                esc(ifname)
            );
        }
        b.push_str("</div>");
    }
    b.push_str("</section>");
    b
}

fn peers_section(s: &Value, engine: Option<&EngineStatus>) -> String {
    let mut b = String::from("<section id=\"peers\" class=\"wide\"><h2>Peers</h2>");
    let peers = s["Peer"].as_object();
    if peers.is_none_or(|p| p.is_empty()) {
        b.push_str("<p class=\"mute\">No peers.</p></section>");
        return b;
    }
    let regions = derp_names(s);
    // The status object keys peers by `nodekey:…`, as the engine's map is keyed by the key.
    let paths: HashMap<String, &PeerStatus> =
        engine.map(|e| e.peers.iter().map(|(k, p)| (k.to_string(), p)).collect()).unwrap_or_default();
    b.push_str(
        "<table class=\"stack\"><thead><tr><th>Host</th><th>Address</th><th>OS</th><th>State</th><th>Path</th>\
         <th>Traffic</th></tr></thead><tbody>",
    );
    for (key, p) in peers.into_iter().flatten() {
        let online = p["Online"] == true;
        let home = p["HomeDERP"].as_u64().unwrap_or(0);
        let home = match home {
            0 => "no home DERP".to_string(),
            id => format!("home DERP {}", region_code(&regions, id)),
        };
        let known = format!("{} endpoints known; {home}", p["Endpoints"].as_array().map_or(0, Vec::len));
        let (path, traffic) = match (engine, paths.get(key)) {
            (None, _) => (format!("<span class=\"mute\">datapath stopped ({known})</span>"), "—".to_string()),
            (Some(_), None) => {
                (format!("<span class=\"mute\">not in the datapath ({known})</span>"), "—".to_string())
            }
            (Some(_), Some(ps)) => {
                let path = match (ps.cur_addr, ps.relay) {
                    (Some(addr), _) => format!("<span class=\"ok\">direct {}</span>", esc(&addr.to_string())),
                    (None, 0) => format!(
                        "<span class=\"warn\">no path yet</span> <span class=\"mute\">({known})</span>"
                    ),
                    (None, relay) => format!("DERP({})", region_code(&regions, u64::from(relay))),
                };
                let mut traffic = format!("rx {} / tx {}", bytes(ps.rx_bytes), bytes(ps.tx_bytes));
                match ps.since_handshake {
                    Some(d) => {
                        let _ = write!(traffic, "<br><span class=\"mute\">handshake {} ago</span>", ago(d));
                    }
                    None => traffic.push_str("<br><span class=\"mute\">no handshake yet</span>"),
                }
                (path, traffic)
            }
        };
        let _ = write!(
            b,
            "<tr class=\"peer\"><td><b>{}</b></td><td class=\"mono\">{}</td><td>{}</td><td class=\"{}\">{}</td>\
             <td class=\"path mono\">{path}</td><td class=\"traffic\">{traffic}</td></tr>",
            esc(p["HostName"].as_str().unwrap_or("")),
            esc(p["TailscaleIPs"][0].as_str().unwrap_or("—")),
            esc(p["OS"].as_str().unwrap_or("")),
            if online { "ok" } else { "mute" },
            if online { "online" } else { "offline" },
        );
    }
    b.push_str("</tbody></table>");
    b.push_str(if engine.is_some() {
        "<p class=\"mute\">Path: <b>direct ip:port</b> (a UDP path both sides confirmed) or <b>DERP(region)</b> \
         (relayed). Traffic: bytes through WireGuard.</p></section>"
    } else {
        "<p class=\"mute\">Datapath stopped: paths and traffic show while the node is up.</p></section>"
    });
    b
}

/// Tailnet lock from the status object's `TailnetLock` (`lock status --json` plus
/// `FilteredCounts` and `LastError`): on or off, the trusted keys, our key and whether it is
/// trusted, our own signature (and, when it fails, the command that fixes it), and the peers the
/// lock keeps out, each with a Sign button when our key may sign.
fn lock_section(v: &StatusView<'_>) -> String {
    let lock = &v.status["TailnetLock"];
    let ours = lock["PublicKey"].as_str().filter(|k| !k.is_empty());
    let enabled = lock["Enabled"] == true;
    let node_key = lock["NodeKey"].as_str().filter(|k| !k.is_empty());
    let locked_out = enabled && node_key.is_some() && lock["NodeKeySigned"] != true;
    let (badge, word) = match (enabled, locked_out) {
        (false, _) => ("mute", "off"),
        (true, false) => ("ok", "on"),
        (true, true) => ("bad", "locked out"),
    };
    let mut b = format!(
        "<section id=\"lock\" class=\"wide\"><h2>Tailnet lock <span class=\"badge {badge}\">{word}</span></h2>"
    );
    if let Some(e) = lock["LastError"].as_str().filter(|e| !e.is_empty()) {
        let _ =
            write!(b, "<p class=\"warn\" id=\"lock-error\">Last sync with control failed: {}</p>", esc(e));
    }
    if !enabled {
        let _ = write!(
            b,
            "<p id=\"lock-off\">Tailnet lock is off. <code>tinytail lock init</code> on this router or \
             <code>tailscale lock init</code> on another node turns it on{}.</p></section>",
            ours.map(|k| format!(" (to trust this router, include its key <code>{}</code>)", esc(k)))
                .unwrap_or_default()
        );
        return b;
    }
    let trusted_keys: Vec<(&str, u64)> = lock["TrustedKeys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| Some((k["Public"].as_str()?, k["Votes"].as_u64().unwrap_or(0))))
        .collect();
    let trusted = ours.is_some_and(|o| trusted_keys.iter().any(|(k, _)| *k == o));
    if let (true, Some(node)) = (locked_out, node_key) {
        let command = match ours {
            Some(k) => format!("tailscale lock sign {node} {k}"),
            None => format!("tailscale lock sign {node}"),
        };
        let _ = write!(
            b,
            "<div class=\"note bad\" id=\"locked-out\"><b>This router is locked out.</b> Tailnet lock is on \
             and its node key is not signed, so no peer accepts its traffic. On a node with a trusted \
             tailnet-lock key, run:<br><code id=\"lock-sign-command\">{}</code></div>",
            esc(&command)
        );
    }
    let _ = write!(
        b,
        "<dl><dt>This router's key</dt><dd><code id=\"lock-key\">{}</code> {}</dd>\
         <dt>Node signature</dt><dd>{}</dd><dt>Head</dt><dd class=\"mono\">{}</dd></dl>",
        esc(ours.unwrap_or("—")),
        if trusted {
            "<span class=\"ok\" id=\"lock-trusted\">trusted: it can sign nodes</span>"
        } else {
            "<span class=\"warn\" id=\"lock-trusted\">not trusted: it cannot sign nodes</span>"
        },
        match (node_key, locked_out) {
            (None, _) => "<span class=\"mute\">no node key yet</span>",
            (Some(_), false) => "<span class=\"ok\">signed</span>",
            (Some(_), true) => "<span class=\"bad\">not signed</span>",
        },
        esc(lock["Head"].as_str().unwrap_or("—")),
    );
    b.push_str(
        "<table class=\"stack\" id=\"lock-keys\"><thead><tr><th>Trusted key</th><th>Votes</th></tr></thead><tbody>",
    );
    for (key, votes) in &trusted_keys {
        let _ = write!(
            b,
            "<tr><td class=\"mono\">{}{}</td><td>{votes}</td></tr>",
            esc(key),
            if Some(*key) == ours { " <b>(this router)</b>" } else { "" }
        );
    }
    b.push_str("</tbody></table>");
    let filtered = lock["FilteredPeers"].as_array().map(Vec::as_slice).unwrap_or_default();
    if filtered.is_empty() {
        b.push_str("<p class=\"mute\">No peers are locked out.</p></section>");
        return b;
    }
    let counts: Vec<String> = lock["FilteredCounts"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(reason, n)| format!("{} {}", esc(reason_words(reason)), n.as_u64().unwrap_or(0)))
        .collect();
    let _ = write!(
        b,
        "<p>Locked out: these peers' node keys are not validly signed, so this router sends them \
         nothing and accepts nothing from them ({}).</p>",
        if counts.is_empty() { "—".to_string() } else { counts.join(", ") }
    );
    b.push_str(
        "<table class=\"stack\" id=\"lock-filtered\"><thead><tr><th>Name</th><th>Addresses</th><th>Node key</th>",
    );
    b.push_str(if trusted { "<th></th></tr></thead><tbody>" } else { "</tr></thead><tbody>" });
    for p in filtered {
        let name = p["DNSName"].as_str().filter(|n| !n.is_empty()).unwrap_or("—");
        let key = p["NodeKey"].as_str().unwrap_or("");
        let ips: Vec<String> = strings(&p["TailscaleIPs"]).iter().map(|i| esc(i)).collect();
        let _ = write!(
            b,
            "<tr class=\"locked-peer\"><td><b>{}</b></td><td class=\"mono\">{}</td><td class=\"mono\">{}</td>",
            esc(name),
            if ips.is_empty() { "—".to_string() } else { ips.join("<br>") },
            esc(key),
        );
        if trusted {
            let _ = write!(
                b,
                "<td><form method=\"post\" action=\"/lock/sign\" data-confirm=\"Sign {0}? Its node key is then \
                 trusted by every node of the tailnet.\">{1}<input type=\"hidden\" name=\"node\" value=\"{2}\">\
                 <button type=\"submit\" class=\"plain\">Sign</button></form></td>",
                esc(name),
                csrf_field(v.csrf),
                esc(key),
            );
        }
        b.push_str("</tr>");
    }
    b.push_str("</tbody></table>");
    if !trusted {
        b.push_str(
            "<p class=\"mute\" id=\"lock-cannot-sign\">This router's key is not trusted, so it cannot sign \
             them: run <code>tailscale lock sign NODEKEY</code> on a node with a trusted key.</p>",
        );
    }
    b.push_str("</section>");
    b
}

/// A filter reason of `FilteredCounts` in words.
fn reason_words(reason: &str) -> &str {
    match reason {
        "Unsigned" => "unsigned",
        "BadSignature" => "bad signature",
        "ObsoleteByRotation" => "obsoleted by a key rotation",
        other => other,
    }
}

fn derp_names(s: &Value) -> Vec<(u64, String)> {
    s["DERPRegions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (r["RegionID"].as_u64().unwrap_or(0), r["RegionCode"].as_str().unwrap_or("").to_string()))
        .collect()
}

fn options_section(v: &StatusView<'_>) -> String {
    let s = v.status;
    let prefs = &s["Prefs"];
    let exit = prefs["AdvertiseExitNode"] == true;
    let snat = prefs["SNATSubnetRoutes"] == true;
    let exit_enabled = strings(&s["Self"]["enabledRoutes"]).iter().any(|r| r == "0.0.0.0/0");
    let mut b = String::from("<section id=\"options\"><h2>Options</h2><dl>");
    let _ = write!(
        b,
        "<dt>Exit node</dt><dd id=\"exit-state\">{}</dd><dt>SNAT to LAN</dt><dd id=\"snat-state\">{}</dd></dl>",
        match (exit, exit_enabled) {
            (true, true) => "advertised, enabled",
            (true, false) => "advertised, waiting for approval",
            (false, _) => "off",
        },
        if snat { "on" } else { "off" },
    );
    let toggle = |action: &str, on: bool, what: &str| {
        format!(
            "<form method=\"post\" action=\"{action}\">{}<input type=\"hidden\" name=\"on\" value=\"{}\">\
             <button type=\"submit\" class=\"plain\">{} {what}</button></form>",
            csrf_field(v.csrf),
            if on { "false" } else { "true" },
            if on { "Turn off" } else { "Turn on" },
        )
    };
    b.push_str("<div class=\"row\">");
    b.push_str(&toggle("/exit-node", exit, "exit node"));
    b.push_str(&toggle("/snat", snat, "SNAT"));
    b.push_str("</div>");
    let _ = write!(
        b,
        "<form method=\"post\" action=\"/hostname\">{}<label for=\"hn\">Hostname</label>\
         <input type=\"text\" id=\"hn\" name=\"hostname\" value=\"{}\" placeholder=\"{}\" maxlength=\"63\">\
         <button type=\"submit\">Save hostname</button></form></section>",
        csrf_field(v.csrf),
        esc(prefs["Hostname"].as_str().unwrap_or("")),
        esc(s["Self"]["HostName"].as_str().unwrap_or("the system's hostname")),
    );
    b
}

/// A region's code from the map (escaped), or its number if the map does not name it.
fn region_code(regions: &[(u64, String)], id: u64) -> String {
    match regions.iter().find(|(r, code)| *r == id && !code.is_empty()) {
        Some((_, code)) => esc(code),
        None => format!("region {id}"),
    }
}

/// `1.5 KiB`
fn bytes(n: usize) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let (mut divisor, mut unit) = (1024u64, 0);
    while n as u64 >= divisor * 1024 && unit + 1 < UNITS.len() {
        divisor *= 1024;
        unit += 1;
    }
    format!("{} {}", crate::decimal::ratio(n as u64, divisor, 1), UNITS[unit])
}

fn ago(d: Duration) -> String {
    match d.as_secs() {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

fn millis(d: Duration) -> String {
    format!("{} ms", crate::decimal::millis(d, 1))
}

/// Endpoints, DERP links and latencies, drop counters: the engine's status, or "stopped".
fn datapath_section(s: &Value, engine: Option<&EngineStatus>) -> String {
    let regions = derp_names(s);
    let mut b = format!(
        "<section id=\"datapath\" class=\"wide\"><h2>Datapath <span class=\"badge {}\">{}</span></h2>",
        if engine.is_some() { "ok" } else { "bad" },
        if engine.is_some() { "running" } else { "stopped" },
    );
    let Some(e) = engine else {
        let why = match s["BackendState"].as_str() {
            Some("Running") => {
                "the node is up but the datapath is not running (starting, or it failed to \
                               start: see the log)"
            }
            Some("Stopped") => "the node is down (tinytail down)",
            _ => "the node is not logged in and running",
        };
        let home = match s["PreferredDERP"].as_u64().unwrap_or(0) {
            0 => "none yet".to_string(),
            id => format!("{} (region {id})", region_code(&regions, id)),
        };
        let list: Vec<String> = regions.iter().map(|(id, code)| format!("{} ({id})", esc(code))).collect();
        let _ = write!(
            b,
            "<p class=\"mute\" id=\"datapath-stopped\">Datapath stopped: {why}. No endpoints, DERP connections, \
             latencies or drop counters to show.</p><dl><dt>Home DERP</dt><dd>{home}</dd><dt>DERP regions</dt>\
             <dd>{}</dd></dl></section>",
            if list.is_empty() { "—".into() } else { list.join(", ") }
        );
        return b;
    };
    let endpoints: Vec<String> = e.endpoints.iter().map(|a| esc(&a.to_string())).collect();
    let home = match e.home_derp {
        0 => "none yet".to_string(),
        id => format!("{} (region {id})", region_code(&regions, u64::from(id))),
    };
    let netcheck = match &e.netcheck {
        None => "<span class=\"mute\">not run yet</span>".to_string(),
        Some(r) => format!(
            "UDP {}; global IPv4 {}; global IPv6 {}",
            if r.udp { "<span class=\"ok\">works</span>" } else { "<span class=\"bad\">blocked</span>" },
            r.global_v4.map_or_else(|| "unknown".to_string(), |a| esc(&a.to_string())),
            r.global_v6.map_or_else(|| "unknown".to_string(), |a| esc(&a.to_string())),
        ),
    };
    let f = &e.filter_drops;
    let d = &e.drops;
    let _ = write!(
        b,
        "<dl><dt>Interface</dt><dd class=\"mono\">{}, UDP port {}</dd><dt>Endpoints</dt><dd class=\"mono\" \
         id=\"endpoints\">{}</dd><dt>Home DERP</dt><dd id=\"home-derp\">{home}</dd><dt>Netcheck</dt><dd>{netcheck}</dd>\
         <dt>Filter drops</dt><dd id=\"filter-drops\">no rule {}, not local {}, malformed {}</dd>\
         <dt>Other drops</dt><dd id=\"drops\">no route {}, source not allowed {}, unknown peer {}, WireGuard {}, \
         bad mac1 {}, cookie replies {}, under load {}, queue full {}</dd></dl>",
        esc(&e.tun),
        e.port,
        if endpoints.is_empty() { "none yet".into() } else { endpoints.join("<br>") },
        f.no_rule,
        f.not_local,
        f.malformed,
        d.no_route,
        d.source_not_allowed,
        d.unknown_peer,
        d.wireguard,
        d.bad_mac1,
        d.cookie_replies,
        d.under_load,
        d.queue_full,
    );
    // Every region the map, the engine or the last netcheck knows, in region order.
    let mut ids: Vec<u32> = regions.iter().filter_map(|(id, _)| u32::try_from(*id).ok()).collect();
    ids.extend(e.derp.keys());
    if let Some(r) = &e.netcheck {
        ids.extend(r.latency.keys());
        ids.extend(&r.unanswered);
    }
    ids.sort_unstable();
    ids.dedup();
    ids.retain(|id| *id != 0);
    if ids.is_empty() {
        b.push_str("<p class=\"mute\">No DERP regions in the map.</p></section>");
        return b;
    }
    b.push_str(
        "<table class=\"stack\" id=\"derp\"><thead><tr><th>DERP region</th><th>Link</th><th>Latency</th></tr>\
         </thead><tbody>",
    );
    for id in ids {
        let measured = e.netcheck.as_ref().and_then(|r| r.latency.get(&id));
        let name = match measured {
            Some((code, name, _)) if !name.is_empty() => format!("{} · {}", esc(code), esc(name)),
            Some((code, _, _)) if !code.is_empty() => esc(code),
            _ => region_code(&regions, u64::from(id)),
        };
        let mut marks = String::new();
        if id == e.home_derp {
            marks.push_str(" <b>home</b>");
        }
        let link = match e.derp.get(&id) {
            Some(true) => "<span class=\"ok\">connected</span>",
            Some(false) => "<span class=\"warn\">connecting</span>",
            None => "<span class=\"mute\">not connected</span>",
        };
        let latency = match (measured, &e.netcheck) {
            (Some((_, _, rtt)), Some(r)) => {
                format!("{}{}", millis(*rtt), if r.nearest == Some(id) { " (nearest)" } else { "" })
            }
            (None, Some(r)) if r.unanswered.contains(&id) => "<span class=\"warn\">no answer</span>".into(),
            _ => "<span class=\"mute\">not measured</span>".into(),
        };
        let _ = write!(
            b,
            "<tr data-region=\"{id}\"><td>{name} ({id}){marks}</td><td>{link}</td><td>{latency}</td></tr>"
        );
    }
    b.push_str("</tbody></table></section>");
    b
}

/// "HTTPS certificate": each name's status in the admin console's words; before a name's first
/// certificate, how to get one and the Certificate Transparency notice. Nothing without names
/// (HTTPS is off for the tailnet, or the node is logged out).
fn cert_section(certificates: &[Value]) -> String {
    if certificates.is_empty() {
        return String::new();
    }
    let mut b = String::from("<section id=\"cert\"><h2>HTTPS certificate</h2><dl>");
    let mut missing = None;
    for c in certificates {
        let text = |field: &str| c[field].as_str().unwrap_or_default();
        let (domain, status) = (text("Domain"), text("Status"));
        let class = if status == CertStatus::Valid.label() { "ok" } else { "bad" };
        let _ = write!(b, "<dt>{}</dt><dd><span class=\"badge {class}\">{}</span>", esc(domain), esc(status));
        for (field, label) in [
            ("Error", ""),
            ("NotAfter", "valid until "),
            ("RenewAt", "renews "),
            ("LastError", "last renewal failed: "),
        ] {
            if let Some(v) = c[field].as_str().filter(|v| !v.is_empty()) {
                let _ = write!(b, "<br><small>{label}{}</small>", esc(v));
            }
        }
        b.push_str("</dd>");
        if status == CertStatus::Missing.label() {
            missing.get_or_insert(domain);
        }
    }
    b.push_str("</dl>");
    if let Some(domain) = missing {
        let _ = write!(
            b,
            "<p>Get one with <code>tinytail cert {}</code> on the router; the page is then also served \
             over HTTPS on the tailnet.</p><p class=\"warn\" id=\"ct-notice\">{}</p>",
            esc(domain),
            esc(CT_NOTICE)
        );
    }
    b.push_str("</section>");
    b
}

fn api_section(v: &StatusView<'_>) -> String {
    let mut b = String::from(
        "<section id=\"api\"><h2>Local API</h2><p>JSON under <code>/api/v2</code>, with a bearer token \
         (see README). Creating a token replaces the old one.</p>",
    );
    match v.api_token {
        Some((id, created)) => {
            let _ = write!(b, "<p>Token <code>{}…</code> created {}.</p>", esc(id), clock::rfc3339(created));
        }
        None => b.push_str("<p class=\"mute\">No token.</p>"),
    }
    let _ = write!(
        b,
        "<div class=\"row\"><form method=\"post\" action=\"/api-token\">{0}<input type=\"hidden\" name=\"do\" value=\"create\">\
         <button type=\"submit\" class=\"plain\">Create token</button></form>",
        csrf_field(v.csrf)
    );
    if v.api_token.is_some() {
        let _ = write!(
            b,
            "<form method=\"post\" action=\"/api-token\">{}<input type=\"hidden\" name=\"do\" value=\"revoke\">\
             <button type=\"submit\" class=\"plain\">Revoke token</button></form>",
            csrf_field(v.csrf)
        );
    }
    b.push_str("</div></section>");
    b
}

fn csrf_field(csrf: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(csrf))
}

fn note(ok: bool, text: &str) -> String {
    format!("<p class=\"note {}\" id=\"flash\">{}</p>", if ok { "ok" } else { "bad" }, esc(text))
}

/// The document around a body; `signout_csrf` adds the sign-out button, `refresh` makes app.js
/// reload after that many seconds.
fn document(title: &str, body: &str, signout_csrf: Option<&str>, refresh: Option<u32>) -> String {
    let signout = signout_csrf
        .map(|c| {
            format!(
                "<form method=\"post\" action=\"/signout\">{}<button type=\"submit\" class=\"plain\">Sign out</button></form>",
                csrf_field(c)
            )
        })
        .unwrap_or_default();
    let refresh = refresh.map(|r| format!(" data-refresh=\"{r}\"")).unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{} · tinytail</title>\
         <link rel=\"stylesheet\" href=\"/style.css\"><script src=\"/app.js\" defer></script></head>\
         <body{refresh}><header><h1>tinytail</h1>{signout}</header>{body}</body></html>",
        esc(title)
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::magicsock::netcheck::Report;
    use crate::magicsock::Drops;
    use serde_json::json;
    use tinytail_core::filter::DropCounters;
    use tinytail_core::key::NodePublic;

    fn key(b: u8) -> String {
        NodePublic([b; 32]).to_string()
    }

    fn running() -> Value {
        json!({
            "Version": "0.1.0", "BackendState": "Running", "AuthURL": "", "LoginServer": "https://control.tinytail.test",
            "Prefs": {"Hostname": "router", "AdvertiseRoutes": ["192.0.2.0/24"], "AdvertiseExitNode": false,
                      "SNATSubnetRoutes": true, "AcceptRoutes": false},
            "Control": {"Connected": true, "DownSince": null, "LastError": null},
            "Health": [],
            "Self": {"HostName": "router", "DNSName": "router.tailnet.test.", "TailscaleIPs": ["100.64.0.2", "fd7a:115c:a1e0::2"],
                     "KeyExpiry": "2026-12-01T00:00:00Z", "Expired": false, "HasKeySignature": false,
                     "advertisedRoutes": ["192.0.2.0/24"], "enabledRoutes": []},
            "Peer": {
                key(0xaa): {"HostName": "peer1<script>", "TailscaleIPs": ["100.64.0.1"], "OS": "linux",
                            "Online": true, "Endpoints": ["198.18.0.20:41641"], "HomeDERP": 999},
                key(0xbb): {"HostName": "peer2", "TailscaleIPs": ["100.64.0.4"], "OS": "windows",
                            "Online": true, "Endpoints": [], "HomeDERP": 998},
                key(0xcc): {"HostName": "peer3", "TailscaleIPs": ["100.64.0.5"], "OS": "linux",
                            "Online": false, "Endpoints": [], "HomeDERP": 0},
            },
            "MagicDNSSuffix": "tailnet.test",
            "DERPRegions": [{"RegionID": 998, "RegionCode": "far<b>", "Nodes": ["998a"]},
                            {"RegionID": 999, "RegionCode": "rig", "Nodes": ["999a"]}],
            "PreferredDERP": 999, "TKA": null,
        })
    }

    fn view<'a>(status: &'a Value, lan: &'a [(String, String)]) -> StatusView<'a> {
        StatusView {
            status,
            csrf: "c5rf",
            flash: None,
            new_api_token: None,
            api_token: None,
            lan_subnets: lan,
            login_qr: None,
            engine: None,
            certificates: &[],
            now: clock::parse_rfc3339("2026-11-26T09:00:00Z").unwrap(),
        }
    }

    #[test]
    fn certificate_section_shows_the_status_words_and_the_ct_notice_before_the_first() {
        let s = running();
        let html = status(&view(&s, &[]));
        assert!(!html.contains("id=\"cert\""), "no names, no section");
        let list = [
            serde_json::json!({"Domain": "router.tail1234.ts.net", "Status": "Valid",
                "NotAfter": "2027-02-24T09:00:00Z", "RenewAt": "2027-01-25T09:00:00Z"}),
            serde_json::json!({"Domain": "<b>.ts.net", "Status": "Invalid", "Error": "name mismatch"}),
        ];
        let html = status(&StatusView { certificates: &list, ..view(&s, &[]) });
        assert!(html.contains("<h2>HTTPS certificate</h2>"));
        assert!(html.contains("<span class=\"badge ok\">Valid</span>"));
        assert!(html.contains("valid until 2027-02-24T09:00:00Z"));
        assert!(html.contains("<span class=\"badge bad\">Invalid</span>") && html.contains("name mismatch"));
        assert!(html.contains("&lt;b&gt;.ts.net") && !html.contains("<b>.ts.net"), "escaped");
        assert!(!html.contains("ct-notice"), "every name has a certificate");
        let list =
            [serde_json::json!({"Domain": "router.tail1234.ts.net", "Status": "No certificate found"})];
        let html = status(&StatusView { certificates: &list, ..view(&s, &[]) });
        assert!(html.contains("No certificate found"));
        assert!(html.contains("tinytail cert router.tail1234.ts.net"));
        assert!(html.contains(&esc(CT_NOTICE)), "the CT notice before the first issuance");
        let list = [serde_json::json!({"Domain": "router.tail1234.ts.net", "Status": "Certificate expired",
            "LastError": "set-dns response: 500"})];
        let html = status(&StatusView { certificates: &list, ..view(&s, &[]) });
        assert!(html.contains("<span class=\"badge bad\">Certificate expired</span>"));
        assert!(html.contains("last renewal failed: set-dns response: 500"));
    }

    #[test]
    fn status_page_shows_state_node_peers_routes_and_escapes() {
        let s = running();
        let lan = [("lan0".to_string(), "198.51.100.0/24".to_string())];
        let html = status(&view(&s, &lan));
        assert!(html.contains("badge ok\">online"));
        assert!(
            html.contains("tailnet.test")
                && html.contains("100.64.0.2")
                && html.contains("fd7a:115c:a1e0::2")
        );
        assert!(html.contains("peer1&lt;script&gt;") && !html.contains("peer1<script>"));
        assert!(html.contains("waiting for approval"));
        assert!(html.contains("data-refresh=\"5\""), "reloads while a route waits for approval");
        assert!(html.contains("id=\"expiry-warning\""), "expiry within 14 days is warned about");
        assert!(html.contains("data-add-route=\"198.51.100.0/24\""));
        assert!(html.contains("datapath stopped (1 endpoints known; home DERP rig)"));
        assert!(html.contains("far&lt;b&gt;") && !html.contains("far<b>"));
        assert!(!html.contains("not available yet"));
        // Every form carries the CSRF token.
        assert_eq!(html.matches("<form ").count(), html.matches("name=\"csrf\" value=\"c5rf\"").count());
        assert!(!html.contains("<script>") && !html.contains("style=\""), "no inline script or style (CSP)");
    }

    /// peer1 direct, peer2 relayed through its home DERP, peer3 not handed to the engine.
    fn engine() -> EngineStatus {
        let mut peers = HashMap::new();
        peers.insert(
            NodePublic([0xaa; 32]),
            PeerStatus {
                cur_addr: Some("198.18.0.20:41641".parse().unwrap()),
                relay: 999,
                since_handshake: Some(Duration::from_secs(7)),
                tx_bytes: 2048,
                rx_bytes: 1_572_864,
                active: true,
            },
        );
        peers.insert(
            NodePublic([0xbb; 32]),
            PeerStatus {
                cur_addr: None,
                relay: 998,
                since_handshake: None,
                tx_bytes: 148,
                rx_bytes: 0,
                active: true,
            },
        );
        let mut latency = BTreeMap::new();
        latency.insert(999, ("rig".to_string(), "Rig <lab>".to_string(), Duration::from_micros(1_260)));
        latency.insert(998, ("far<b>".to_string(), String::new(), Duration::from_millis(80)));
        EngineStatus {
            tun: "tailscale0".into(),
            port: 41641,
            endpoints: vec!["198.18.0.2:41641".parse().unwrap(), "192.0.2.1:41641".parse().unwrap()],
            derp: BTreeMap::from([(999, true), (998, false)]),
            home_derp: 999,
            peers,
            filter_drops: DropCounters { malformed: 1, not_local: 2, no_rule: 3 },
            drops: Drops {
                no_route: 4,
                source_not_allowed: 5,
                unknown_peer: 6,
                wireguard: 7,
                bad_mac1: 9,
                cookie_replies: 10,
                under_load: 11,
                queue_full: 8,
            },
            netcheck: Some(Report {
                udp: true,
                global_v4: Some("198.18.0.2:41641".parse().unwrap()),
                global_v6: None,
                ipv6_socket: true,
                latency,
                unanswered: vec![997],
                nearest: Some(999),
            }),
        }
    }

    #[test]
    fn running_datapath_shows_paths_derp_latencies_and_drops() {
        let s = running();
        let e = engine();
        let html = status(&StatusView { engine: Some(&e), ..view(&s, &[]) });
        let row = |host: &str| {
            let at = html.find(&format!("<b>{host}</b>")).unwrap();
            html[at..at + html[at..].find("</tr>").unwrap()].to_string()
        };
        let direct = row("peer1&lt;script&gt;");
        assert!(direct.contains("direct 198.18.0.20:41641"), "{direct}");
        assert!(
            direct.contains("rx 1.5 MiB / tx 2.0 KiB") && direct.contains("handshake 7 s ago"),
            "{direct}"
        );
        let relayed = row("peer2");
        assert!(relayed.contains("DERP(far&lt;b&gt;)") && !relayed.contains("direct"), "{relayed}");
        assert!(relayed.contains("rx 0 B / tx 148 B") && relayed.contains("no handshake yet"), "{relayed}");
        assert!(row("peer3").contains("not in the datapath"));
        assert!(html.contains("Datapath <span class=\"badge ok\">running"));
        assert!(html.contains("tailscale0, UDP port 41641"));
        assert!(html.contains("198.18.0.2:41641<br>192.0.2.1:41641"), "endpoints");
        assert!(html.contains("id=\"home-derp\">rig (region 999)"));
        assert!(html.contains(
            "UDP <span class=\"ok\">works</span>; global IPv4 198.18.0.2:41641; global IPv6 unknown"
        ));
        assert!(html.contains("no rule 3, not local 2, malformed 1"));
        assert!(html.contains(
            "no route 4, source not allowed 5, unknown peer 6, WireGuard 7, bad mac1 9, cookie replies 10, \
             under load 11, queue full 8"
        ));
        let region = |id: u32| {
            let at = html.find(&format!("data-region=\"{id}\"")).unwrap();
            html[at..at + html[at..].find("</tr>").unwrap()].to_string()
        };
        let home = region(999);
        assert!(home.contains("rig · Rig &lt;lab&gt; (999) <b>home</b>"), "{home}");
        assert!(home.contains("connected") && home.contains("1.3 ms (nearest)"), "{home}");
        let far = region(998);
        assert!(
            far.contains("far&lt;b&gt; (998)") && far.contains("connecting") && far.contains("80.0 ms"),
            "{far}"
        );
        assert!(!far.contains("nearest") && !far.contains("home"), "{far}");
        assert!(region(997).contains("no answer"));
        assert!(!html.contains("far<b>") && !html.contains("<lab>"), "escaped");
        assert!(!html.contains("datapath stopped") && !html.contains("not available yet"));
    }

    #[test]
    fn stopped_datapath_says_so() {
        let mut s = running();
        s["BackendState"] = json!("Stopped");
        let html = status(&view(&s, &[]));
        assert!(html.contains("Datapath <span class=\"badge bad\">stopped"));
        assert!(html.contains("Datapath stopped: the node is down (tinytail down)."));
        assert!(!html.contains("id=\"endpoints\"") && !html.contains("data-region="));
        assert_eq!(html.matches("datapath stopped (").count(), 3, "every peer row says so");
        // A netcheck before the first round, and no endpoints yet: said, not invented.
        let s = running();
        let e = EngineStatus { netcheck: None, endpoints: vec![], ..engine() };
        let html = status(&StatusView { engine: Some(&e), ..view(&s, &[]) });
        assert!(html.contains("<span class=\"mute\">not run yet</span>"));
        assert!(html.contains("id=\"endpoints\">none yet"));
        assert!(html.contains("data-region=\"998\"><td>far&lt;b&gt; (998)</td><td><span class=\"warn\">connecting</span></td><td><span class=\"mute\">not measured"));
    }

    #[test]
    fn byte_and_age_formats() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(ago(Duration::from_secs(119)), "119 s");
        assert_eq!(ago(Duration::from_secs(600)), "10 min");
        assert_eq!(ago(Duration::from_secs(7200)), "2 h");
    }

    #[test]
    fn enabled_route_and_far_expiry() {
        let mut s = running();
        s["Self"]["enabledRoutes"] = json!(["192.0.2.0/24"]);
        s["Self"]["KeyExpiry"] = json!("2027-06-01T00:00:00Z");
        let html = status(&view(&s, &[]));
        assert!(html.contains("route-state ok\">enabled"));
        assert!(!html.contains("expiry-warning") && !html.contains("data-refresh"));
    }

    #[test]
    fn key_expiry_is_not_judged_without_a_set_clock() {
        let mut s = running();
        s["Self"]["KeyExpiry"] = json!("2026-11-20T00:00:00Z"); // before the view's now
        assert!(status(&view(&s, &[])).contains("<span class=\"bad\">expired 2026-11-20T00:00:00Z</span>"));
        s["Clock"] = json!({"Now": "2020-11-26T09:00:00Z", "Set": false});
        let html = status(&view(&s, &[]));
        assert!(!html.contains("expired 2026") && !html.contains("expiry-warning"), "{html}");
        assert!(html.contains("2026-11-20T00:00:00Z (not judged: this router's clock is not set)"), "{html}");
    }

    #[test]
    fn offline_reasons() {
        let mut s = running();
        s["BackendState"] = json!("NeedsLogin");
        s["Self"] = Value::Null;
        assert_eq!(state_summary(&s).1, "Logged out: log in below.");
        s["AuthURL"] = json!("https://control.tinytail.test/register/abc");
        assert!(state_summary(&s).1.contains("login URL"));
        let qr = super::super::qr::svg_data_uri("https://control.tinytail.test/register/abc");
        let html = status(&StatusView { login_qr: qr, ..view(&s, &[]) });
        assert!(html.contains("id=\"auth-url\"") && html.contains("action=\"/tailnet/login\""));
        assert!(html.contains("<img class=\"qr\" alt=\"QR code of the login URL\" src=\"data:image/svg+xml,"));
        assert!(html.contains("route-state warn\">not enabled"), "offline: not 'waiting for approval'");
        let mut s = running();
        s["Control"] =
            json!({"Connected": false, "DownSince": "2026-11-26T08:00:00Z", "LastError": "cannot reach"});
        s["BackendState"] = json!("Starting");
        let (online, why) = state_summary(&s);
        assert!(!online && why.contains("Control unreachable since 2026-11-26T08:00:00Z"), "{why}");
        let mut s = running();
        s["Self"]["Expired"] = json!(true);
        s["BackendState"] = json!("NeedsLogin");
        assert!(state_summary(&s).1.contains("expired"));
        let mut s = running();
        s["TailnetLock"] = json!({"Enabled": true, "NodeKeySigned": false});
        assert_eq!(
            state_summary(&s),
            (false, "Locked out: tailnet lock is on and this node's key is not signed.".into())
        );
        s["TailnetLock"]["NodeKeySigned"] = json!(true);
        assert!(state_summary(&s).0, "signed under lock is online");
    }

    const OUR_LOCK_KEY: &str = "tlpub:1111111111111111111111111111111111111111111111111111111111111111";
    const OTHER_LOCK_KEY: &str = "tlpub:2222222222222222222222222222222222222222222222222222222222222222";

    /// `TailnetLock` as status::json has it with lock on: ours and another key trusted (ours only
    /// when `trusted`), our own signature good or not, one locked-out peer with a hostile name.
    fn lock_on(trusted: bool, signed: bool) -> Value {
        let mut keys = vec![json!({"Kind": "25519", "Votes": 2, "Public": OTHER_LOCK_KEY})];
        if trusted {
            keys.push(json!({"Kind": "25519", "Votes": 1, "Public": OUR_LOCK_KEY}));
        }
        json!({
            "SchemaVersion": "1", "Enabled": true, "PublicKey": OUR_LOCK_KEY, "NodeKey": key(0x01),
            "Head": "DMJVXQXEEG7OKHSXBI7FHWJRBCE5YDMUPYR4YO2XNXB6RH3J2NGA", "NodeKeySigned": signed,
            "NodeKeySignature": null, "TrustedKeys": keys, "VisiblePeers": [],
            "FilteredPeers": [{"ID": "nEvil", "DNSName": "evil<img src=x onerror=alert(1)>.tailnet.test.",
                               "TailscaleIPs": ["100.64.0.9", "fd7a:115c:a1e0::9"], "NodeKey": key(0xdd)}],
            "State": 42, "FilteredCounts": {"Unsigned": 1}, "LastError": null,
        })
    }

    fn with_lock(lock: Value) -> Value {
        let mut s = running();
        s["TailnetLock"] = lock;
        s
    }

    /// The `<section id="lock">` of the page.
    fn lock_html(s: &Value) -> String {
        let html = status(&view(s, &[]));
        let at = html.find("<section id=\"lock\"").expect("a tailnet lock section");
        html[at..at + html[at..].find("</section>").unwrap()].to_string()
    }

    #[test]
    fn lock_off_says_so_and_how_to_turn_it_on() {
        let s = with_lock(json!({"SchemaVersion": "1", "Enabled": false, "PublicKey": OUR_LOCK_KEY,
                                 "NodeKey": key(0x01), "FilteredCounts": {}, "LastError": null}));
        let lock = lock_html(&s);
        assert!(lock.contains("badge mute\">off"), "{lock}");
        assert!(lock.contains("Tailnet lock is off.") && lock.contains("<code>tinytail lock init</code>"));
        assert!(lock.contains("<code>tailscale lock init</code>") && lock.contains(OUR_LOCK_KEY), "{lock}");
        assert_eq!(lock.matches("<p").count(), 1, "one line: {lock}");
        assert!(!lock.contains("<form") && !lock.contains("locked-out") && !lock.contains("<table"));
        // Logged out, before any status: the same line, no key to show.
        let mut s = running();
        s["TailnetLock"] = json!({"Enabled": false});
        assert!(lock_html(&s).contains("Tailnet lock is off."));
    }

    #[test]
    fn lock_on_and_trusted_lists_keys_and_offers_sign_buttons() {
        let s = with_lock(lock_on(true, true));
        let lock = lock_html(&s);
        assert!(lock.contains("badge ok\">on"), "{lock}");
        assert!(lock.contains(&format!("<code id=\"lock-key\">{OUR_LOCK_KEY}</code>")), "{lock}");
        assert!(lock.contains("id=\"lock-trusted\">trusted"), "{lock}");
        assert!(lock.contains("<span class=\"ok\">signed</span>"), "{lock}");
        assert!(lock.contains(&format!("{OUR_LOCK_KEY} <b>(this router)</b></td><td>1</td>")), "{lock}");
        assert!(lock.contains(&format!("{OTHER_LOCK_KEY}</td><td>2</td>")), "{lock}");
        assert_eq!(lock.matches("(this router)").count(), 1);
        assert!(lock.contains("(unsigned 1)"), "reasons: {lock}");
        assert!(lock.contains("100.64.0.9<br>fd7a:115c:a1e0::9") && lock.contains(&key(0xdd)), "{lock}");
        assert!(!lock.contains("id=\"locked-out\""));
        // One Sign button, posting the peer's node key with the CSRF token.
        assert_eq!(lock.matches("action=\"/lock/sign\"").count(), 1, "{lock}");
        assert!(lock.contains(&format!(
            "<input type=\"hidden\" name=\"csrf\" value=\"c5rf\"><input type=\"hidden\" name=\"node\" \
             value=\"{}\"><button type=\"submit\" class=\"plain\">Sign</button>",
            key(0xdd)
        )));
        assert!(!lock.contains("lock-cannot-sign"));
        let html = status(&view(&s, &[]));
        assert_eq!(html.matches("<form ").count(), html.matches("name=\"csrf\" value=\"c5rf\"").count());
        // No locked-out peers: said, no table.
        let mut quiet = lock_on(true, true);
        quiet["FilteredPeers"] = json!([]);
        quiet["FilteredCounts"] = json!({});
        let lock = lock_html(&with_lock(quiet));
        assert!(lock.contains("No peers are locked out.") && !lock.contains("lock-filtered"), "{lock}");
    }

    #[test]
    fn lock_on_and_untrusted_has_no_sign_buttons() {
        let lock = lock_html(&with_lock(lock_on(false, true)));
        assert!(lock.contains("badge ok\">on"), "{lock}");
        assert!(lock.contains("id=\"lock-trusted\">not trusted"), "{lock}");
        assert!(!lock.contains("(this router)"), "{lock}");
        assert!(lock.contains(&key(0xdd)), "the locked-out peer is still listed");
        assert!(!lock.contains("/lock/sign") && !lock.contains("<form"), "{lock}");
        assert!(lock.contains("id=\"lock-cannot-sign\""), "{lock}");
    }

    #[test]
    fn locked_out_names_the_command_that_fixes_it() {
        let mut l = lock_on(true, false);
        l["LastError"] = json!("sync/offer: <b>502</b>");
        let lock = lock_html(&with_lock(l));
        assert!(lock.contains("badge bad\">locked out"), "{lock}");
        assert!(lock.contains("<b>This router is locked out.</b>"), "{lock}");
        assert!(
            lock.contains(&format!(
                "<code id=\"lock-sign-command\">tailscale lock sign {} {OUR_LOCK_KEY}</code>",
                key(0x01)
            )),
            "{lock}"
        );
        assert!(lock.contains("<span class=\"bad\">not signed</span>"), "{lock}");
        assert!(lock.contains("sync/offer: &lt;b&gt;502&lt;/b&gt;"), "{lock}");
        // Signed: no locked-out note.
        assert!(!lock_html(&with_lock(lock_on(true, true))).contains("lock-sign-command"));
    }

    #[test]
    fn lock_section_escapes_what_the_netmap_says() {
        let mut l = lock_on(true, true);
        l["FilteredPeers"][0]["TailscaleIPs"] = json!(["<script>alert(1)</script>"]);
        l["FilteredPeers"][0]["NodeKey"] = json!("nodekey:\"><script>x</script>");
        l["TrustedKeys"][0]["Public"] = json!("tlpub:<i>");
        l["FilteredCounts"] = json!({"<u>new reason</u>": 1});
        l["Head"] = json!("<hr>");
        let lock = lock_html(&with_lock(l));
        let name = "evil&lt;img src=x onerror=alert(1)&gt;.tailnet.test.";
        assert!(lock.contains(&format!("<b>{name}</b>")), "{lock}");
        assert!(lock.contains(&format!("data-confirm=\"Sign {name}?")), "{lock}");
        assert!(lock.contains("value=\"nodekey:&quot;&gt;&lt;script&gt;x&lt;/script&gt;\""), "{lock}");
        for raw in ["<img", "<script", "<i>", "<u>", "<hr>"] {
            assert!(!lock.contains(raw), "{raw} unescaped: {lock}");
        }
    }

    #[test]
    fn setup_and_login_forms_carry_the_token() {
        let first = setup("tok", false, None);
        assert!(first.contains("name=\"csrf\" value=\"tok\"") && !first.contains("name=\"code\""));
        let reset = setup("tok", true, Some("bad <code>"));
        assert!(reset.contains("name=\"code\"") && reset.contains("bad &lt;code&gt;"));
        assert!(login("t2", None).contains("name=\"csrf\" value=\"t2\""));
    }
}
