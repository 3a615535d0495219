//! `tinytail run`: the agent. One tokio current-thread runtime; a control task that logs in and
//! keeps the map stream alive (reconnecting with jittered backoff); the local socket for the CLI.
//!
//! The datapath (agent::magicsock) runs while we are logged in and want to run: a supervisor
//! task turns every netmap or prefs change into a wgconfig::Config for it, and stops it (undoing
//! routes, addresses and SNAT) on `down`, logout, SIGTERM and SIGINT.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tinytail_core::key::{DiscoPublic, PrivateKey};
use tinytail_hal::board::Board;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{oneshot, watch};

use crate::control::transport;
use crate::ipc::{Reply, Request};
use crate::log::log;
use crate::node::{handle_request, public_key_of, start_control_loop};
use crate::shared::{Agent, Backend};
use crate::state::{FlashState, StateStore};
use crate::{magicsock, random, web, wgconfig};

/// How often [`watch_clock`] looks at the wall clock.
const CLOCK_WATCH: Duration = Duration::from_secs(1);
/// Reply lines from the CLI are at most this long.
const REQUEST_MAX: usize = 64 << 10;

/// Options of `tinytail run`.
pub struct RunOptions {
    /// The store's image file or MTD device, overriding the board's (`--state`).
    pub state_path: Option<PathBuf>,
    pub socket_path: PathBuf,
    pub version: String,
    /// The local web page and API (`--web-listen`, default from the board); `None` = off.
    pub web: Option<web::WebConfig>,
    /// UDP port for WireGuard and disco (`--port`; 0 = any).
    pub port: u16,
}

/// Runs the agent until killed.
pub fn run(board: &Board, opts: RunOptions) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(serve(board, opts))
}

async fn serve(board: &Board, opts: RunOptions) -> Result<(), String> {
    // A page that would face the WAN fails the start before anything else happens.
    if let Some(config) = &opts.web {
        web::check_listen(config)?;
    }
    let store = FlashState::open(&board.storage, opts.state_path.as_deref())?;
    let mut state = store.load().map_err(|e| format!("loading state: {e}"))?;
    if state.lock_key.is_none() {
        // Made once, on the first run: control learns it at registration (RegisterRequest.NLKey).
        let key = PrivateKey(random::bytes32());
        store.save_lock_key(&key).map_err(|e| format!("saving the tailnet-lock key: {e}"))?;
        state.lock_key = Some(key);
        if let Some(public) = state.lock_public() {
            log(&format!("tailnet lock: this node's key is {}", public.cli()));
        }
    }
    let disco = random::private_key();
    let start_control = state.registered && state.want_running;
    // The web page's sessions and credentials; the daemon holds them so `tinytail web setup-code`
    // reaches them over the CLI socket.
    let web_state = Arc::new(web::WebState::new(
        store.get_config(tinytail_hal::store::ConfigKey::WebPasswordHash).as_deref(),
    ));
    let agent = Agent::new(state, store, board.ca_bundle, opts.version, DiscoPublic(public_key_of(&disco)));
    let listener = bind_socket(&opts.socket_path)?;
    let store_location =
        opts.state_path.as_ref().map_or_else(|| board.storage.to_string(), |p| p.display().to_string());
    log(&format!("agent started; store {store_location}, socket {}", opts.socket_path.display()));
    if let Some(config) = opts.web {
        web::start(&agent, Arc::clone(&web_state), config)?;
    }
    let engine_opts = magicsock::Options {
        tun_name: board.tun_name.to_string(),
        port: opts.port,
        tls: transport::tls_config(board.ca_bundle).map_err(|e| log(&format!("derp: {e}"))).ok(),
        plain_http_derp: std::env::var(magicsock::derp::PLAIN_HTTP_SWITCH).is_ok_and(|v| v == "1"),
    };
    let (stop_tx, stop_rx) = oneshot::channel();
    crate::task::spawn(supervise_datapath(agent.clone(), engine_opts, disco, stop_rx));
    crate::task::spawn(crate::certify::renewal_task(agent.clone()));
    crate::task::spawn(watch_clock(agent.clone()));
    if start_control {
        start_control_loop(&agent, None);
    }
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| format!("signals: {e}"))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| format!("signals: {e}"))?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (conn, _) = accepted.map_err(|e| format!("socket: {e}"))?;
                let (agent, web_state) = (agent.clone(), Arc::clone(&web_state));
                crate::task::spawn(async move { handle_client(agent, &web_state, conn).await });
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    log("stopping");
    let (done_tx, done_rx) = oneshot::channel();
    let _ = stop_tx.send(done_tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), done_rx).await;
    let _ = std::fs::remove_file(&opts.socket_path);
    Ok(())
}

/// Logs whether the wall clock is set, once at start when it is not and once per change after
/// (a router without a real-time clock until NTP answers), and wakes status watchers then.
async fn watch_clock(agent: Agent) {
    let mut was_set = true;
    loop {
        let now = crate::clock::unix_now();
        let set = crate::clock::is_sane(now);
        if set != was_set {
            if set {
                log(&format!("clock: set, the system time is {}", crate::clock::rfc3339(now)));
            } else {
                log(&crate::clock::not_set_message(now));
            }
            was_set = set;
            agent.notify();
        }
        tokio::time::sleep(CLOCK_WATCH).await;
    }
}

/// Runs the datapath while the node is logged in, wants to run and has its own node in the map;
/// feeds it a new config on every change; stops it when that no longer holds or on `stop`.
async fn supervise_datapath(
    agent: Agent,
    opts: magicsock::Options,
    disco_private: PrivateKey,
    mut stop: oneshot::Receiver<oneshot::Sender<()>>,
) {
    let mut changes = agent.changed.subscribe();
    let mut running: Option<(magicsock::Handle, watch::Sender<Option<Arc<wgconfig::Config>>>)> = None;
    loop {
        let config = {
            let s = agent.lock();
            let wanted = s.state.want_running && matches!(s.backend, Backend::Running);
            match (&s.state.node_key, wanted) {
                (Some(node), true) => wgconfig::build(
                    &s.netmap,
                    &s.state.prefs,
                    node,
                    &disco_private,
                    s.preferred_derp,
                    |key| s.tka.allows(key),
                ),
                _ => None,
            }
        };
        match (config, running.as_ref()) {
            (Some(config), Some((_, configs))) => {
                let _ = configs.send(Some(Arc::new(config)));
            }
            (Some(config), None) => {
                let engine_opts = opts.clone();
                let port = engine_opts.port;
                let tun = engine_opts.tun_name.clone();
                let (configs, rx) = watch::channel(Some(Arc::new(config)));
                match magicsock::start(engine_opts, rx) {
                    Ok(handle) => {
                        log(&format!("datapath: {tun} up, UDP port {port}"));
                        {
                            let mut s = agent.lock();
                            s.engine = Some(Arc::clone(&handle.status));
                            s.engine_commands = Some(handle.commands.clone());
                        }
                        crate::task::spawn(forward_endpoints(agent.clone(), handle.endpoints.clone()));
                        crate::task::spawn(follow_netcheck(agent.clone(), handle.netcheck.clone()));
                        crate::task::spawn(follow_link(agent.clone(), handle.link_changes.clone()));
                        running = Some((handle, configs));
                    }
                    Err(e) => log(&format!("datapath: {e}")),
                }
            }
            (None, Some(_)) => {
                if let Some((handle, _)) = running.take() {
                    handle.stop().await;
                }
                let mut s = agent.lock();
                s.engine = None;
                s.engine_commands = None;
            }
            (None, None) => {}
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            done = &mut stop => {
                if let Some((handle, _)) = running.take() {
                    handle.stop().await;
                }
                if let Ok(done) = done {
                    let _ = done.send(());
                }
                return;
            }
        }
    }
}

/// Netcheck's nearest region becomes our home DERP (told to control with the next update).
async fn follow_netcheck(agent: Agent, mut reports: watch::Receiver<Option<magicsock::netcheck::Report>>) {
    while reports.changed().await.is_ok() {
        let nearest = reports.borrow_and_update().as_ref().and_then(|r| r.nearest);
        let Some(nearest) = nearest else { continue };
        let changed = {
            let mut s = agent.lock();
            let changed = s.preferred_derp != nearest;
            s.preferred_derp = nearest;
            changed
        };
        if changed {
            log(&format!("netcheck: nearest DERP region {nearest} is home"));
            agent.endpoints_changed.notify_one();
            agent.notify();
        }
    }
}

/// Tells the control loop when our addresses changed, so it redials from one we have.
async fn follow_link(agent: Agent, mut changes: watch::Receiver<u64>) {
    while changes.changed().await.is_ok() {
        agent.link_changed.send_modify(|n| *n += 1);
    }
}

/// Sends our endpoints to control whenever magicsock finds them changed.
async fn forward_endpoints(agent: Agent, mut endpoints: watch::Receiver<Vec<std::net::SocketAddr>>) {
    while endpoints.changed().await.is_ok() {
        let list = endpoints.borrow_and_update().clone();
        agent.lock().endpoints = list;
        agent.endpoints_changed.notify_one();
    }
}

/// Binds the CLI socket, root only (0600); a stale socket file from a dead agent is replaced.
fn bind_socket(path: &Path) -> Result<UnixListener, String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("socket directory {}: {e}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!("another agent is already listening on {}", path.display()));
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(|e| format!("socket {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("socket {}: {e}", path.display()))?;
    Ok(listener)
}

async fn handle_client(agent: Agent, web_state: &web::WebState, conn: UnixStream) {
    let (read, mut write) = conn.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(REQUEST_MAX as u64));
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    // from_slice, as every JSON parse in the agent: from_str would instantiate a second
    // deserializer (StrRead) for the same types.
    let request = match serde_json::from_slice::<Request>(line.as_bytes()) {
        Ok(r) => r,
        Err(e) => {
            let _ = send(&mut write, &Reply::Error(format!("bad request: {e}"))).await;
            return;
        }
    };
    if let Request::WebSetupCode = request {
        let reply = Reply::Ok { message: web_state.issue_setup_code(), data: serde_json::Value::Null };
        let _ = send(&mut write, &reply).await;
        return;
    }
    let (urls, mut url_rx) = tokio::sync::mpsc::unbounded_channel();
    let handled = handle_request(&agent, request, Some(urls));
    tokio::pin!(handled);
    let reply = loop {
        tokio::select! {
            biased;
            Some(note) = url_rx.recv() => { let _ = send(&mut write, &note).await; }
            reply = &mut handled => break reply,
        }
    };
    let _ = send(&mut write, &reply).await;
}

async fn send(write: &mut tokio::net::unix::OwnedWriteHalf, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await
}
