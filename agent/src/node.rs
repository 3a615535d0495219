//! What the node does when asked, from the CLI socket or the web page: `up` (log in, start the
//! map stream), `down`, `logout`, `status`, `ping`, `netcheck` ([`handle_request`], the one code
//! path for every change), and the control loop that keeps the map stream alive (reconnecting
//! with jittered backoff) and applies each map response to the shared state.

use std::time::Duration;

use tinytail_core::control::CAPABILITY_VERSION;
use tinytail_core::key::{AuthKey, DiscoPublic, NodePublic, PrivateKey};
use tokio::sync::oneshot;

use crate::control::session::{Session, PING_TIMEOUT};
use crate::control::{http1, noise_io, transport, ControlError, ServerUrl};
use crate::decimal;
use crate::ipc::{Reply, Request, UpArgs};
use crate::log::log;
use crate::netmap::NetMap;
use crate::prefix::Prefix;
use crate::shared::{hostinfo, Agent, Backend, ControlHealth, Shared};
use crate::state::StateStore;
use crate::tailcfg::{self, Hostinfo, MapRequest, RegisterAuth, RegisterRequest};
use crate::{clock, magicsock, random, status};

/// The login server when `up` names none, as in tailscale.
pub const DEFAULT_LOGIN_SERVER: &str = "https://controlplane.tailscale.com";
/// Backoff between control reconnects: doubles from the base up to the cap, plus up to
/// [`BACKOFF_JITTER`] of random jitter, so a returning server sees us within ~4 s.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(3);
const BACKOFF_JITTER: Duration = Duration::from_secs(1);
/// While control fails because our clock is not set, how often the clock is looked at during
/// the backoff.
const CLOCK_POLL: Duration = Duration::from_millis(250);
/// After a policy-only map update, wait this long (coalescing bursts) before re-polling for a
/// full map that carries our own node.
const POLICY_REFRESH_DELAY: Duration = Duration::from_millis(500);

/// One request, from the CLI socket or the web page (`web::change`): the single code path for
/// every change. Replies before the final one (login URLs of an interactive `up`, progress of a
/// certificate) go to `notes` as they come.
pub(crate) async fn handle_request(
    agent: &Agent,
    request: Request,
    notes: Option<tokio::sync::mpsc::UnboundedSender<Reply>>,
) -> Reply {
    match request {
        Request::Up(args) => up(agent, args, notes.as_ref()).await,
        Request::Down => down(agent),
        Request::Status => {
            let mut data = status::json(&agent.lock());
            data["Certificates"] = serde_json::Value::Array(crate::certify::status_list(agent));
            Reply::Ok { message: String::new(), data }
        }
        Request::Logout => logout(agent).await,
        // The web page's state lives with the daemon, which answers this one itself.
        Request::WebSetupCode => Reply::Error("setup codes are issued over the CLI socket only".into()),
        Request::Ping { target, timeout_ms } => ping(agent, &target, Duration::from_millis(timeout_ms)).await,
        Request::Netcheck => netcheck(agent).await,
        Request::Lock(args) => crate::lock::handle(agent, args).await,
        Request::Cert(args) => crate::certify::handle(agent, args, notes.as_ref()).await,
    }
}

/// One disco ping through the datapath; the reply reads like tailscale's
/// `pong from NAME (IP) via PATH in LATENCY`.
async fn ping(agent: &Agent, target: &str, timeout: Duration) -> Reply {
    let found = {
        let s = agent.lock();
        s.netmap.peers.iter().find(|p| peer_matches(p, target)).map(|p| {
            let name = p.name.split('.').next().unwrap_or_default().to_string();
            let ip = p.addresses.first().map(|a| a.addr.to_string()).unwrap_or_default();
            (p.key, name, ip)
        })
    };
    let Some((key, name, ip)) = found else {
        return Reply::Error(format!("no peer named \"{target}\" in the network map"));
    };
    match ask_engine(agent, timeout, |reply| magicsock::Command::Ping { peer: key, reply }).await {
        Ok(Some(pong)) => {
            let ms = pong.latency.as_secs_f64() * 1000.0;
            Reply::Ok {
                message: format!(
                    "pong from {name} ({ip}) via {} in {}ms",
                    pong.via,
                    decimal::millis(pong.latency, 0)
                ),
                data: serde_json::json!({
                    "via": pong.via,
                    "direct": !pong.via.starts_with("DERP("),
                    "latencyMs": ms,
                }),
            }
        }
        Ok(None) => Reply::Error("timeout waiting for ping reply".into()),
        Err(reply) => reply,
    }
}

/// Sends the running datapath a command carrying a reply channel and waits up to `timeout` for
/// the answer (`Ok(None)`: no answer in time). `Err` is the reply for a datapath not running.
async fn ask_engine<T>(
    agent: &Agent,
    timeout: Duration,
    command: impl FnOnce(oneshot::Sender<T>) -> magicsock::Command,
) -> Result<Option<T>, Reply> {
    let Some(commands) = agent.lock().engine_commands.clone() else {
        return Err(Reply::Error("the datapath is not running (is the node up?)".into()));
    };
    let (tx, rx) = oneshot::channel();
    if commands.send(command(tx)).await.is_err() {
        return Err(Reply::Error("the datapath stopped".into()));
    }
    Ok(tokio::time::timeout(timeout, rx).await.ok().and_then(Result::ok))
}

/// `tinytail netcheck`: a fresh STUN round through the datapath's socket, as `tailscale netcheck`
/// reports it.
async fn netcheck(agent: &Agent) -> Reply {
    let timeout = magicsock::netcheck::PROBE_TIMEOUT + Duration::from_secs(2);
    let report = match ask_engine(agent, timeout, magicsock::Command::Netcheck).await {
        Ok(Some(report)) => report,
        Ok(None) => return Reply::Error("netcheck did not finish".into()),
        Err(reply) => return reply,
    };
    let mut text = String::from("\nReport:\n");
    text.push_str(&format!("\t* UDP: {}\n", report.udp));
    match report.global_v4 {
        Some(addr) => text.push_str(&format!("\t* IPv4: yes, {addr}\n")),
        None => text.push_str("\t* IPv4: (no addr found)\n"),
    }
    match (report.global_v6, report.ipv6_socket) {
        (Some(addr), _) => text.push_str(&format!("\t* IPv6: yes, {addr}\n")),
        (None, true) => text.push_str("\t* IPv6: no, but OS has support\n"),
        (None, false) => text.push_str("\t* IPv6: no, unavailable in OS\n"),
    }
    let nearest = report.nearest.and_then(|r| report.latency.get(&r)).map(|(_, name, _)| name.as_str());
    text.push_str(&format!(
        "\t* Nearest DERP: {}\n",
        nearest.unwrap_or("unknown (no response to latency probes)")
    ));
    text.push_str("\t* DERP latency:\n");
    let mut by_latency: Vec<_> = report.latency.iter().collect();
    by_latency.sort_by_key(|(_, (_, _, d))| *d);
    for (_, (code, name, latency)) in by_latency {
        text.push_str(&format!("\t\t- {code}: {}ms ({name})\n", decimal::millis(*latency, 1)));
    }
    for region in &report.unanswered {
        text.push_str(&format!("\t\t- {region}: no answer\n"));
    }
    let data = serde_json::json!({
        "UDP": report.udp,
        "GlobalV4": report.global_v4.map(|a| a.to_string()),
        "GlobalV6": report.global_v6.map(|a| a.to_string()),
        "IPv6": report.global_v6.is_some(),
        "OSHasIPv6": report.ipv6_socket,
        "PreferredDERP": report.nearest,
        "RegionLatency": report.latency.iter()
            .map(|(r, (_, _, d))| (r.to_string(), serde_json::json!(d.as_secs_f64())))
            .collect::<serde_json::Map<_, _>>(),
    });
    Reply::Ok { message: text.trim_end().to_string(), data }
}

fn peer_matches(peer: &crate::netmap::Node, target: &str) -> bool {
    let fqdn = peer.name.trim_end_matches('.');
    let short = fqdn.split('.').next().unwrap_or_default();
    target.eq_ignore_ascii_case(fqdn)
        || target.eq_ignore_ascii_case(short)
        || target.eq_ignore_ascii_case(&peer.hostname)
        || peer.addresses.iter().any(|a| a.addr.to_string() == target)
}

/// `tinytail up`: validate everything before any request, log in, start the map stream, and
/// persist only once control accepted us.
async fn up(agent: &Agent, args: UpArgs, notes: Option<&tokio::sync::mpsc::UnboundedSender<Reply>>) -> Reply {
    let auth_key = match args.auth_key.as_deref().map(AuthKey::check) {
        Some(Err(e)) => return Reply::Error(e.to_string()),
        Some(Ok(k)) => Some(k.expose_secret().to_string()),
        None => None,
    };
    if let Some(routes) = &args.advertise_routes {
        for r in routes {
            if let Err(e) = Prefix::parse_route(r) {
                return Reply::Error(e.to_string());
            }
        }
    }
    let (old_state, new_prefs) = {
        let s = agent.lock();
        let mut prefs = s.state.prefs.clone();
        if let Some(v) = args.login_server {
            prefs.login_server = v;
        }
        if prefs.login_server.is_empty() {
            prefs.login_server = DEFAULT_LOGIN_SERVER.to_string();
        }
        if let Some(v) = args.hostname {
            prefs.hostname = v;
        }
        if let Some(v) = args.advertise_routes {
            prefs.advertise_routes = v;
        }
        if let Some(v) = args.advertise_exit_node {
            prefs.advertise_exit_node = v;
        }
        prefs.snat_subnet_routes = args.snat_subnet_routes.unwrap_or(if s.state.registered {
            prefs.snat_subnet_routes
        } else {
            true
        });
        if let Some(v) = args.accept_routes {
            prefs.accept_routes = v;
        }
        (s.state.clone(), prefs)
    };
    if let Err(e) = ServerUrl::parse(&new_prefs.login_server) {
        return Reply::Error(e.to_string());
    }
    stop_control_loop(agent);
    {
        let mut s = agent.lock();
        if s.state.registered && s.state.prefs.login_server != new_prefs.login_server {
            // Another control server: a fresh identity there.
            s.state.registered = false;
            s.state.node_key = None;
            s.state.old_node_key = None;
            s.state.node_id = None;
            s.netmap = NetMap::default();
        }
        s.state.prefs = new_prefs;
        s.backend = Backend::Starting;
        s.auth_url = None;
    }
    agent.notify();

    let (url_tx, mut url_rx) = tokio::sync::mpsc::unbounded_channel();
    let login_fut = login(agent, auth_key.as_deref(), Some(url_tx));
    tokio::pin!(login_fut);
    let session = loop {
        tokio::select! {
            result = &mut login_fut => break result,
            Some(url) = url_rx.recv() => { if let Some(out) = notes { let _ = out.send(Reply::AuthUrl(url)); } }
        }
    };
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            // Go back to where we were, but keep a new identity login stored before registering
            // (a retry must present the same keys, or control keeps an orphan node).
            let restart = {
                let mut s = agent.lock();
                let keys = (s.state.machine_key.clone(), s.state.node_key.clone());
                s.state = old_state;
                if !s.state.registered {
                    (s.state.machine_key, s.state.node_key) = keys;
                }
                s.backend = if s.state.registered {
                    if s.state.want_running {
                        Backend::Starting
                    } else {
                        Backend::Stopped
                    }
                } else {
                    Backend::NeedsLogin
                };
                s.auth_url = None;
                s.state.registered && s.state.want_running
            };
            if restart {
                start_control_loop(agent, None);
            }
            agent.notify();
            return Reply::Error(e.to_string());
        }
    };
    start_control_loop(agent, Some(session));
    let mut changed = agent.changed.subscribe();
    let wait = async {
        loop {
            let backend = agent.lock().backend;
            if backend == Backend::Running {
                return Ok(());
            }
            if changed.changed().await.is_err() {
                return Err("agent stopped".to_string());
            }
        }
    };
    let result = if args.timeout_secs == 0 {
        wait.await
    } else {
        tokio::time::timeout(Duration::from_secs(args.timeout_secs), wait)
            .await
            .unwrap_or_else(|_| Err("timed out waiting for the map".into()))
    };
    match result {
        Ok(()) => {
            let data = status::json(&agent.lock());
            Reply::Ok { message: "Success.".into(), data }
        }
        Err(e) => Reply::Error(e),
    }
}

fn down(agent: &Agent) -> Reply {
    stop_control_loop(agent);
    let saved = {
        let mut s = agent.lock();
        s.state.want_running = false;
        s.backend = if s.state.registered { Backend::Stopped } else { Backend::NeedsLogin };
        s.netmap = NetMap::default();
        s.control = ControlHealth::default();
        agent.store.save(&s.state)
    };
    agent.notify();
    match saved {
        Ok(()) => Reply::Ok { message: String::new(), data: serde_json::Value::Null },
        Err(e) => Reply::Error(format!("saving state: {e}")),
    }
}

/// `tinytail logout`: tell control (a past `Expiry`), then forget the node key and prefs' login.
async fn logout(agent: &Agent) -> Reply {
    stop_control_loop(agent);
    let (registered, prefs, machine, node, nl_key) = {
        let s = agent.lock();
        let nl_key = s.state.lock_public().map(|k| k.to_string());
        (
            s.state.registered,
            s.state.prefs.clone(),
            s.state.machine_key.clone(),
            s.state.node_key.clone(),
            nl_key,
        )
    };
    let mut warning = String::new();
    if let (true, Some(machine), Some(node)) = (registered, machine, node) {
        let result = async {
            let url = ServerUrl::parse(&prefs.login_server)?;
            let tls = agent.tls(&url)?;
            let server_key = noise_io::fetch_server_key(&url, tls.as_ref()).await?;
            let session = Session::open(&url, tls.as_ref(), &server_key, &machine).await?;
            let hostinfo = hostinfo(&prefs, &agent.lock().version, 0);
            let req = RegisterRequest {
                version: CAPABILITY_VERSION,
                node_key: NodePublic(public_key_of(&node)).to_string(),
                old_node_key: None,
                auth: None,
                expiry: Some(tailcfg::LOGOUT_EXPIRY),
                followup: "",
                hostinfo: &hostinfo,
                ephemeral: false,
                nl_key,
            };
            session.register(&req).await.map(|_| ())
        }
        .await;
        if let Err(e) = result {
            warning = format!("logged out locally, but control was not told: {e}");
        }
    }
    let saved = {
        let mut s = agent.lock();
        s.state.node_key = None;
        s.state.old_node_key = None;
        s.state.registered = false;
        s.state.want_running = false;
        s.state.node_id = None;
        s.netmap = NetMap::default();
        s.backend = Backend::NeedsLogin;
        s.control = ControlHealth::default();
        agent.store.save(&s.state)
    };
    agent.notify();
    match saved {
        Ok(()) => Reply::Ok { message: warning, data: serde_json::Value::Null },
        Err(e) => Reply::Error(format!("saving state: {e}")),
    }
}

pub(crate) fn start_control_loop(agent: &Agent, session: Option<Session>) {
    let task = crate::task::spawn(control_loop(agent.clone(), session));
    if let Some(old) = agent.lock().control_task.replace(task) {
        old.abort();
    }
}

fn stop_control_loop(agent: &Agent) {
    if let Some(task) = agent.lock().control_task.take() {
        task.abort();
    }
}

/// Keeps the map stream alive: on any failure, mark the outage (keeping the netmap), back off
/// with jitter, log in again with the stored node key, and re-open the stream.
async fn control_loop(agent: Agent, mut session: Option<Session>) {
    let mut failures: u32 = 0;
    // The last failure was our clock's (TLS: "not valid yet" while the clock is not set).
    let mut clock_failed = false;
    loop {
        // Subscribed before dialling: a change while we log in ends this session too.
        let mut link = agent.link_changed.subscribe();
        let current = match session.take() {
            Some(s) => Ok(s),
            None => login(&agent, None, None).await,
        };
        let result = match current {
            // The connection may be bound to an address we no longer have; a dead one would
            // only show at the watchdog, and a request on it (a map refresh) would wait forever.
            Ok(s) => {
                tokio::select! {
                    r = map_loop(&agent, &s, &mut failures) => r,
                    _ = link.changed() => {
                        Err(ControlError::Unreachable("this router's addresses changed; dialing again".into()))
                    }
                }
            }
            Err(e) => Err(e),
        };
        let mut clock_failure = false;
        if let Err(e) = result {
            // The clock watcher logs the clock's state once per change; so is this failure.
            clock_failure = !clock::is_set() && e.to_string().contains(clock::NOT_SET);
            if !(clock_failure && clock_failed) {
                log(&format!("control: {e}"));
            }
            {
                let mut s = agent.lock();
                if s.control.connected || s.control.down_since.is_none() {
                    s.control.down_since = Some(clock::unix_now());
                }
                s.control.connected = false;
                s.control.last_error = Some(e.to_string());
                s.session = None;
            }
            agent.notify();
        }
        clock_failed = clock_failure;
        failures = failures.saturating_add(1);
        let retry = backoff(failures);
        if clock_failure {
            // Dial again as soon as NTP sets the clock (the test switch's file is read once a
            // second), not at the end of the backoff.
            let until = tokio::time::Instant::now() + retry;
            while tokio::time::Instant::now() < until && !clock::is_set() {
                tokio::time::sleep(CLOCK_POLL.min(until - tokio::time::Instant::now())).await;
            }
        } else {
            tokio::time::sleep(retry).await;
        }
    }
}

/// Delay before reconnect attempt `failures` (1-based).
fn backoff(failures: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1 << failures.saturating_sub(1).min(8));
    exp.min(BACKOFF_CAP) + Duration::from_millis(random::below(BACKOFF_JITTER.as_millis() as u64))
}

/// Connects and registers (auth key, interactive login with followup, restart with the stored
/// node key, or NodeKeyExpired rotation). New machine and node keys are stored before the first
/// request that names them: a power cut after control registered them must not come back with
/// other keys (control would keep the first as an orphan node). The rest is stored only once
/// control authorized us.
async fn login(
    agent: &Agent,
    auth_key: Option<&str>,
    auth_urls: Option<tokio::sync::mpsc::UnboundedSender<String>>,
) -> Result<Session, ControlError> {
    let (prefs, mut machine, mut node, mut old_node, version, derp, nl_key) = {
        let s = agent.lock();
        (
            s.state.prefs.clone(),
            s.state.machine_key.clone(),
            s.state.node_key.clone(),
            s.state.old_node_key,
            s.version.clone(),
            s.preferred_derp,
            s.state.lock_public().map(|k| k.to_string()),
        )
    };
    let url = ServerUrl::parse(&prefs.login_server)?;
    let tls = agent.tls(&url)?;
    let server_key = noise_io::fetch_server_key(&url, tls.as_ref()).await?;
    if machine.is_none() || node.is_none() {
        let machine_key = machine.get_or_insert_with(random::private_key).clone();
        let node_key = node.get_or_insert_with(random::private_key).clone();
        let saved = {
            let mut s = agent.lock();
            s.state.machine_key = Some(machine_key);
            s.state.node_key = Some(node_key);
            agent.store.save(&s.state)
        };
        saved.map_err(|e| ControlError::Refused(format!("saving the new keys failed: {e}")))?;
    }
    let machine_key = machine.get_or_insert_with(random::private_key).clone();
    let session = Session::open(&url, tls.as_ref(), &server_key, &machine_key).await?;
    let hostinfo = hostinfo(&prefs, &version, derp);
    let mut followup = String::new();
    let mut rotated = false;
    if self_key_expired(agent) {
        // As tailscaled: an expired node key is replaced, and control told which one it replaces.
        if let Some(old) = node.take() {
            old_node = Some(NodePublic(public_key_of(&old)));
            rotated = true;
            log("control: node key expired; registering a new one");
        }
    }
    let response = loop {
        let node_key = node.get_or_insert_with(random::private_key).clone();
        let req = RegisterRequest {
            version: CAPABILITY_VERSION,
            node_key: NodePublic(public_key_of(&node_key)).to_string(),
            old_node_key: old_node.map(|k| k.to_string()),
            auth: auth_key.filter(|_| followup.is_empty()).map(|k| RegisterAuth { auth_key: k }),
            expiry: None,
            followup: &followup,
            hostinfo: &hostinfo,
            ephemeral: false,
            nl_key: nl_key.clone(),
        };
        let resp = session.register(&req).await?;
        if resp.node_key_expired && !rotated {
            // Our node key is dead: a new one, with the old one as OldNodeKey (protocol.md §2.3).
            old_node = Some(NodePublic(public_key_of(&node_key)));
            node = Some(random::private_key());
            rotated = true;
            log("control: node key expired; registering a new one");
            continue;
        }
        if !resp.auth_url.is_empty() && !resp.machine_authorized {
            {
                let mut s = agent.lock();
                s.backend = Backend::NeedsLogin;
                s.auth_url = Some(resp.auth_url.clone());
            }
            agent.notify();
            log(&format!("control: login required: {}", resp.auth_url));
            if let Some(tx) = &auth_urls {
                let _ = tx.send(resp.auth_url.clone());
            }
            followup = resp.auth_url;
            continue;
        }
        if !resp.machine_authorized {
            let mut s = agent.lock();
            s.backend = Backend::NeedsMachineAuth;
            drop(s);
            agent.notify();
            return Err(ControlError::Refused(
                "this node is registered but not yet authorized by an admin".into(),
            ));
        }
        break resp;
    };
    let saved = {
        let mut s = agent.lock();
        s.state.machine_key = Some(machine_key);
        s.state.node_key = node;
        s.state.old_node_key = None;
        s.state.registered = true;
        s.state.want_running = true;
        s.auth_url = None;
        if s.backend != Backend::Running {
            s.backend = Backend::Starting;
        }
        agent.store.save(&s.state)
    };
    agent.notify();
    saved.map_err(|e| ControlError::Refused(format!("registered, but saving state failed: {e}")))?;
    log(&format!("control: registered as {} ({})", response.login.login_name, prefs.login_server));
    Ok(session)
}

/// True when the map says our node key has expired (by its expiry time only once our clock is
/// set: a router without a real-time clock must not throw its key away on a guess).
fn self_key_expired(agent: &Agent) -> bool {
    let s = agent.lock();
    s.netmap.self_node.as_ref().is_some_and(|n| status::key_expired(n, clock::sane_now()))
}

/// Streams the map until it fails. Resets `failures` once a message arrived.
async fn map_loop(agent: &Agent, session: &Session, failures: &mut u32) -> Result<(), ControlError> {
    let (node_public, disco, hostinfo_now, mut endpoints) = {
        let s = agent.lock();
        let node = s.state.node_key.as_ref().map(|k| NodePublic(public_key_of(k))).unwrap_or_default();
        (node, s.disco_public, hostinfo(&s.state.prefs, &s.version, s.preferred_derp), endpoint_strings(&s))
    };
    // With Stream set, control may ignore Hostinfo, Endpoints and DiscoKey (capver >= 68): they go
    // in a lite update sent once the first map arrived. Awaiting it before the stream cost a
    // round trip before the first netmap (0.2-0.5 s with Headscale); sending both at once made
    // tailscale's testcontrol with 1000 peers never send the first map.
    agent.lock().session = Some(session.clone());
    let mut stream = session
        .map_stream(&map_request(node_public, disco, &hostinfo_now, &endpoints, true, head_now(agent)))
        .await?;
    let mut lite_sent = false;
    let mut got_node = false;
    let mut last_ping_url = String::new();
    let mut refresh_at: Option<tokio::time::Instant> = None;
    loop {
        let refresh_due = async {
            match refresh_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let next = tokio::select! {
            resp = stream.next() => Some(resp?),
            () = refresh_due => None,
            () = agent.endpoints_changed.notified() => {
                // Endpoints or the home DERP changed: tell control both.
                let hostinfo = {
                    let s = agent.lock();
                    endpoints = endpoint_strings(&s);
                    hostinfo(&s.state.prefs, &s.version, s.preferred_derp)
                };
                let (session, endpoints, head) = (session.clone(), endpoints.clone(), agent.lock().tka.head_text());
                crate::task::spawn(async move {
                    let req = map_request(node_public, disco, &hostinfo, &endpoints, false, head);
                    if let Err(e) = session.lite_update(&req).await {
                        log(&format!("control: endpoints update: {e}"));
                    }
                });
                continue;
            }
        };
        let Some(resp) = next else {
            // Open the new poll before dropping the old one, so control never sees us offline.
            refresh_at = None;
            stream = session
                .map_stream(&map_request(
                    node_public,
                    disco,
                    &hostinfo_now,
                    &endpoints,
                    true,
                    head_now(agent),
                ))
                .await?;
            got_node = false;
            continue;
        };
        *failures = 0;
        if let Some(ping) = resp.ping_request.clone() {
            if ping.url != last_ping_url {
                last_ping_url = ping.url.clone();
                crate::task::spawn(answer_ping(agent.clone(), session.clone(), ping));
            }
        }
        if resp.keep_alive {
            let mut s = agent.lock();
            if let Some(t) = resp.control_time {
                s.netmap.control_time = Some(t);
            }
            continue;
        }
        if !got_node && resp.node.is_none() {
            return Err(ControlError::Protocol("initial map response lacked the node".into()));
        }
        got_node = true;
        if !lite_sent {
            lite_sent = true;
            let (session, hostinfo, endpoints) = (session.clone(), hostinfo_now.clone(), endpoints.clone());
            let head = agent.lock().tka.head_text();
            crate::task::spawn(async move {
                let req = map_request(node_public, disco, &hostinfo, &endpoints, false, head);
                if let Err(e) = session.lite_update(&req).await {
                    log(&format!("control: hostinfo update: {e}"));
                }
            });
        }
        let policy_only =
            resp.node.is_none() && (resp.packet_filters.is_some() || resp.packet_filter.is_some());
        let derp_update = {
            let mut s = agent.lock();
            let applied = s.netmap.apply(resp);
            if policy_only && route_awaits_approval(&hostinfo_now.routable_ips, &s.netmap) {
                // A policy change while one of our routes waits for approval. Headscale v0.29.2
                // sends route approvals this way without our own node (state.go
                // `SetApprovedRoutes` -> `PolicyChange`, no origin node), so our enabled routes
                // would stay stale until the next full map: re-poll for one. Only while a route
                // waits: a standby router (its route another router's primary) re-polling on
                // every policy change made two HA routers reconnect in a loop.
                refresh_at = Some(tokio::time::Instant::now() + POLICY_REFRESH_DELAY);
            }
            for skipped in &applied.skipped {
                log(&format!("map: skipped {skipped}"));
            }
            let shared = &mut *s;
            shared.tka.filter(&shared.netmap);
            let expired =
                s.netmap.self_node.as_ref().is_some_and(|n| status::key_expired(n, clock::sane_now()));
            s.backend = if expired { Backend::NeedsLogin } else { Backend::Running };
            s.control = ControlHealth { connected: true, down_since: None, last_error: None };
            s.state.node_id = s.netmap.self_node.as_ref().map(|n| n.id);
            // Home DERP: the lowest region until netcheck has measured the nearest.
            let derp = s.netmap.derp_regions.keys().next().copied().unwrap_or(0);
            if derp != 0 && s.preferred_derp == 0 {
                s.preferred_derp = derp;
                Some(hostinfo(&s.state.prefs, &s.version, derp))
            } else {
                None
            }
        };
        agent.notify();
        let head_before = head_now(agent);
        crate::lock::sync_if_needed(agent, session).await;
        let head_after = head_now(agent);
        if head_after != head_before {
            // Tell control our new head, as tailscaled does after a sync.
            let (session, hostinfo, endpoints) = (session.clone(), hostinfo_now.clone(), endpoints.clone());
            crate::task::spawn(async move {
                let req = map_request(node_public, disco, &hostinfo, &endpoints, false, head_after);
                if let Err(e) = session.lite_update(&req).await {
                    log(&format!("control: tka head update: {e}"));
                }
            });
        }
        if let Some(hostinfo) = derp_update {
            let (session, endpoints, head) =
                (session.clone(), endpoints.clone(), agent.lock().tka.head_text());
            crate::task::spawn(async move {
                let req = map_request(node_public, disco, &hostinfo, &endpoints, false, head);
                if let Err(e) = session.lite_update(&req).await {
                    log(&format!("control: hostinfo update: {e}"));
                }
            });
        }
    }
}

fn map_request<'a>(
    node: NodePublic,
    disco: DiscoPublic,
    hostinfo: &'a Hostinfo,
    endpoints: &'a [String],
    stream: bool,
    tka_head: String,
) -> MapRequest<'a> {
    MapRequest {
        endpoints,
        version: CAPABILITY_VERSION,
        compress: if stream { "zstd" } else { "" },
        keep_alive: stream,
        node_key: node.to_string(),
        disco_key: disco.to_string(),
        stream,
        hostinfo,
        omit_peers: !stream,
        tka_head,
    }
}

/// Our tailnet-lock head for map requests (released before the request is sent).
fn head_now(agent: &Agent) -> String {
    agent.lock().tka.head_text()
}

fn endpoint_strings(s: &Shared) -> Vec<String> {
    s.endpoints.iter().map(ToString::to_string).collect()
}

/// Answers a PingRequest (protocol.md §3.8): a HEAD to its URL, over Noise when it says so.
/// c2n and disco/TSMP/ICMP pings are not answered yet.
async fn answer_ping(agent: Agent, session: Session, ping: tailcfg::PingRequest) {
    if ping.types == "c2n" {
        return answer_c2n(&agent, &session, &ping).await;
    }
    if !ping.types.is_empty() {
        log(&format!("control: ping of type {:?} not supported yet", ping.types));
        return;
    }
    let result = tokio::time::timeout(PING_TIMEOUT, async {
        if ping.url_is_noise {
            return session.head(&ping.url).await;
        }
        let (base, path) = split_url(&ping.url)
            .ok_or_else(|| ControlError::Protocol(format!("bad ping URL {}", ping.url)))?;
        let url = ServerUrl::parse(&base)?;
        let tls = agent.tls(&url)?;
        let mut io = transport::dial(&url, tls.as_ref()).await?;
        let (head, _) =
            http1::request(&mut io, "HEAD", &url.authority(), &path, &[("Connection", "close")]).await?;
        Ok(head.status)
    })
    .await;
    match result {
        Ok(Ok(status)) if ping.log => log(&format!("control: answered ping (HTTP {status})")),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => log(&format!("control: ping: {e}")),
        Err(_) => log("control: ping timed out"),
    }
}

/// Control-to-node: control sends an HTTP/1.1 request in the ping's payload, we POST the whole
/// HTTP/1.1 response to the ping's URL over Noise (`ts:control/controlclient/direct.go`
/// `answerC2NPing`). We serve `/tls-cert-status` only; anything else is a 404.
async fn answer_c2n(agent: &Agent, session: &Session, ping: &tailcfg::PingRequest) {
    if !ping.url_is_noise {
        log("control: c2n ping without a Noise URL ignored");
        return;
    }
    let (status, body) = match c2n_target(&ping.payload) {
        Some(("GET", "/tls-cert-status", query)) => match query_value(query, "domain") {
            Some(domain) => (200, crate::certify::c2n_tls_cert_status(agent, &domain).to_string()),
            None => (400, "missing 'domain' parameter".to_string()),
        },
        Some(_) => (404, "not found".to_string()),
        None => (400, "bad c2n request".to_string()),
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        _ => "Not Found",
    };
    let content_type = if status == 200 { "application/json" } else { "text/plain; charset=utf-8" };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    match tokio::time::timeout(PING_TIMEOUT, session.post_to_url(&ping.url, response.into_bytes())).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => log(&format!("control: c2n reply: {e}")),
        Err(_) => log("control: c2n reply timed out"),
    }
}

/// The method, path and query of a c2n request's first line (`GET /p?q HTTP/1.1`).
fn c2n_target(request: &[u8]) -> Option<(&str, &str, &str)> {
    let line_end = request.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&request[..line_end]).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Some((method, path, query))
}

/// One query parameter, percent-decoded (the web page's form rules); `None` when absent or empty.
fn query_value(query: &str, name: &str) -> Option<String> {
    http1::form_value(query.as_bytes(), name).filter(|v| !v.is_empty())
}

/// Whether a route we advertise is neither enabled for us (in our own node's AllowedIPs or
/// primary routes) nor the primary route of another peer that is online: only then can a policy
/// change have approved something the map has not shown us yet.
fn route_awaits_approval(advertised: &[String], netmap: &crate::netmap::NetMap) -> bool {
    let enabled = |route: &Prefix| {
        let mine = netmap.self_node.iter().flat_map(|n| n.allowed_ips.iter().chain(&n.primary_routes));
        // An offline peer's primary routes are about to move (maybe to us): they do not count.
        let serving = netmap.peers.iter().filter(|p| p.online != Some(false));
        let primaries = serving.flat_map(|p| p.primary_routes.iter());
        mine.chain(primaries).any(|p| p.masked() == route.masked())
    };
    advertised.iter().filter_map(|r| Prefix::parse_route(r).ok()).any(|r| !enabled(&r))
}

/// `scheme://authority/path?query` -> (`scheme://authority`, `/path?query`).
fn split_url(url: &str) -> Option<(String, String)> {
    let scheme_end = url.find("://")? + 3;
    match url[scheme_end..].find('/') {
        Some(i) => Some((url[..scheme_end + i].to_string(), url[scheme_end + i..].to_string())),
        None => Some((url.to_string(), "/".to_string())),
    }
}

pub(crate) fn public_key_of(key: &PrivateKey) -> [u8; 32] {
    tinytail_core::control::noise::public_key(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_the_reconnect_budget() {
        for failures in 1..40 {
            let d = backoff(failures);
            assert!(
                d >= BACKOFF_BASE.min(BACKOFF_CAP) && d <= BACKOFF_CAP + BACKOFF_JITTER,
                "{failures}: {d:?}"
            );
        }
        assert!(backoff(1) < Duration::from_millis(1500));
    }

    #[test]
    fn c2n_requests_are_parsed_without_trusting_them() {
        let req = b"GET /tls-cert-status?domain=a.ts.net HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(c2n_target(req), Some(("GET", "/tls-cert-status", "domain=a.ts.net")));
        assert_eq!(query_value("x=1&domain=a%2Eb.ts.net", "domain"), Some("a.b.ts.net".into()));
        assert_eq!(query_value("domainx=1", "domain"), None);
        assert_eq!(query_value("domain=", "domain"), None);
        // Bad escapes stay as they are (no certificate is stored under such a name).
        assert_eq!(query_value("domain=%zz", "domain"), Some("%zz".into()));
        assert_eq!(query_value("domain=%f", "domain"), Some("%f".into()));
        for bad in [
            &b""[..],
            b"GET",
            b"GET /x\r\n",
            b"GET x HTTP/1.1\r\n",
            b"GET /x HTTP/2 y\r\n",
            b"\xff /x HTTP/1.1\n",
        ] {
            assert_eq!(c2n_target(bad), None, "{bad:?}");
        }
        // Every prefix of a request parses or fails, never panics.
        for n in 0..req.len() {
            let _ = c2n_target(&req[..n]);
        }
    }

    #[test]
    fn policy_updates_repoll_only_while_a_route_awaits_approval() {
        use crate::netmap::{NetMap, Node};
        let p = |t: &str| Prefix::parse_route(t).expect("prefix");
        let lan = vec!["192.0.2.0/24".to_string()];
        let mut map = NetMap {
            self_node: Some(Node { allowed_ips: vec![p("100.64.0.2/32")], ..Node::default() }),
            ..NetMap::default()
        };
        // Advertised, approved for nobody: wait for the approval.
        assert!(route_awaits_approval(&lan, &map));
        // Nothing advertised: nothing to learn.
        assert!(!route_awaits_approval(&[], &map));
        // Another router is primary for it: we are the standby, a policy change tells us nothing.
        map.peers.push(Node { primary_routes: vec![p("192.0.2.0/24")], ..Node::default() });
        assert!(!route_awaits_approval(&lan, &map));
        // Its primary went offline: the route may move to us.
        map.peers[0].online = Some(false);
        assert!(route_awaits_approval(&lan, &map));
        map.peers[0].online = Some(true);
        // A second route nobody serves yet still waits.
        assert!(route_awaits_approval(&["192.0.2.0/24".into(), "10.9.0.0/16".into()], &map));
        // Enabled for us (we are primary).
        map.peers.clear();
        map.self_node =
            Some(Node { allowed_ips: vec![p("100.64.0.2/32"), p("192.0.2.0/24")], ..Node::default() });
        assert!(!route_awaits_approval(&lan, &map));
    }

    #[test]
    fn split_url_separates_path() {
        assert_eq!(split_url("https://h:1/a?b"), Some(("https://h:1".into(), "/a?b".into())));
        assert_eq!(split_url("http://h"), Some(("http://h".into(), "/".into())));
        assert_eq!(split_url("nope"), None);
    }
}
