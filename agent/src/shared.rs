//! What the agent's tasks share: where the node stands ([`Backend`]), the state, netmap and
//! datapath status behind one lock ([`Shared`]), and the handle every task holds ([`Agent`]).
//! The daemon builds it; the request handlers ([`crate::node`]), the status object and the web
//! page read and change it. It imports none of them.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use tinytail_core::key::DiscoPublic;

use crate::control::session::Session;
use crate::control::{transport, ControlError, ServerUrl};
use crate::magicsock;
use crate::netmap::NetMap;
use crate::prefix::Prefix;
use crate::state::{FlashState, Prefs, State};
use crate::tailcfg::{Hostinfo, NetInfo};
use crate::tka::Lock;

/// Routes an exit node advertises (`ts:ipn/ipnlocal/local.go`).
const EXIT_ROUTES: [&str; 2] = ["0.0.0.0/0", "::/0"];

/// Where the node stands, named as tailscale's `ipn.State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    NoState,
    NeedsLogin,
    NeedsMachineAuth,
    Stopped,
    Starting,
    Running,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::NoState => "NoState",
            Backend::NeedsLogin => "NeedsLogin",
            Backend::NeedsMachineAuth => "NeedsMachineAuth",
            Backend::Stopped => "Stopped",
            Backend::Starting => "Starting",
            Backend::Running => "Running",
        }
    }
}

/// Health of the control connection, for status.
#[derive(Debug, Clone, Default)]
pub struct ControlHealth {
    pub connected: bool,
    /// Unix seconds since when we are disconnected after having been connected.
    pub down_since: Option<i64>,
    pub last_error: Option<String>,
}

/// Everything the tasks share. Locked briefly, never across an await.
pub struct Shared {
    pub state: State,
    pub netmap: NetMap,
    pub backend: Backend,
    pub auth_url: Option<String>,
    pub control: ControlHealth,
    pub disco_public: DiscoPublic,
    pub version: String,
    pub preferred_derp: u32,
    /// The datapath's status, while it runs.
    pub engine: Option<Arc<Mutex<magicsock::EngineStatus>>>,
    /// Commands to the running datapath (`tinytail ping`, `netcheck`); set and cleared with `engine`.
    pub(crate) engine_commands: Option<mpsc::Sender<magicsock::Command>>,
    /// Our direct endpoints, as magicsock found them (sent in MapRequest.Endpoints).
    pub endpoints: Vec<std::net::SocketAddr>,
    pub(crate) control_task: Option<JoinHandle<()>>,
    /// Tailnet lock: the authority we synced, and which peers it drops.
    pub tka: Lock,
    /// The open control session, for the verbs that call control (`lock sign`, ...).
    pub(crate) session: Option<Session>,
    /// HTTPS certificates: the keys served and each name's renewal schedule.
    pub certs: crate::cert::Book,
}

impl Shared {
    /// A copy of the datapath's status, while it runs.
    pub fn engine_status(&self) -> Option<magicsock::EngineStatus> {
        self.engine.as_ref().map(|e| e.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone())
    }
}

/// The agent: shared state plus what never changes.
#[derive(Clone)]
pub(crate) struct Agent {
    pub(crate) shared: Arc<Mutex<Shared>>,
    pub(crate) store: Arc<FlashState>,
    pub(crate) ca_bundle: &'static str,
    /// Bumped on every change of `Shared` that the datapath, `up` or the web page wait for.
    pub(crate) changed: watch::Sender<u64>,
    /// Woken when magicsock's endpoints change, so the map loop tells control.
    pub(crate) endpoints_changed: Arc<tokio::sync::Notify>,
    /// Bumped when our interface addresses change: the control connection may be bound to an
    /// address we lost, so the control loop dials again (a watch, so a change during a redial
    /// does not end the next session too).
    pub(crate) link_changed: watch::Sender<u64>,
    /// Held while a certificate is being issued: one ACME order at a time.
    pub(crate) cert_issuing: Arc<tokio::sync::Mutex<()>>,
}

impl Agent {
    /// The agent of a node with this state: not connected, no netmap, no datapath yet.
    pub(crate) fn new(
        state: State,
        store: FlashState,
        ca_bundle: &'static str,
        version: String,
        disco_public: DiscoPublic,
    ) -> Agent {
        let (meta, aums) = store.load_tka();
        let (tka, warnings) = Lock::load(meta.as_deref(), &aums);
        for warning in warnings {
            crate::log::log(&format!("tailnet lock: {warning}"));
        }
        let backend = if !state.registered {
            Backend::NeedsLogin
        } else if state.want_running {
            Backend::Starting
        } else {
            Backend::Stopped
        };
        Agent {
            shared: Arc::new(Mutex::new(Shared {
                state,
                netmap: NetMap::default(),
                backend,
                auth_url: None,
                control: ControlHealth::default(),
                disco_public,
                version,
                preferred_derp: 0,
                engine: None,
                engine_commands: None,
                endpoints: Vec::new(),
                control_task: None,
                tka,
                session: None,
                certs: crate::cert::Book::default(),
            })),
            store: Arc::new(store),
            ca_bundle,
            changed: watch::channel(0).0,
            endpoints_changed: Arc::new(tokio::sync::Notify::new()),
            link_changed: watch::channel(0).0,
            cert_issuing: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock would already have aborted the process (panic=abort).
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    pub(crate) fn tls(&self, url: &ServerUrl) -> Result<Option<Arc<rustls::ClientConfig>>, ControlError> {
        if !url.tls {
            return Ok(None);
        }
        transport::tls_config(self.ca_bundle).map(Some).map_err(ControlError::Unreachable)
    }
}

/// An agent over a fresh store image in `dir` (emptied first): for tests and the web page's
/// fuzz harness, which need the real handlers without a daemon.
pub(crate) fn agent_in(dir: &std::path::Path, state: State) -> Result<Agent, String> {
    let _ = std::fs::remove_dir_all(dir);
    let store = FlashState::open(
        &tinytail_hal::board::Storage::File("/nonexistent/unused.img"),
        Some(&dir.join("state.img")),
    )?;
    Ok(Agent::new(state, store, "", "test".into(), DiscoPublic::default()))
}

/// Hostinfo for register and map: hostname, OS, version, advertised routes, home DERP.
pub fn hostinfo(prefs: &Prefs, version: &str, preferred_derp: u32) -> Hostinfo {
    let mut routes: Vec<Prefix> =
        prefs.advertise_routes.iter().filter_map(|r| Prefix::parse_route(r).ok()).collect();
    if prefs.advertise_exit_node {
        routes.extend(EXIT_ROUTES.iter().filter_map(|r| Prefix::parse_route(r).ok()));
    }
    routes.sort();
    routes.dedup();
    Hostinfo {
        ipn_version: version.to_string(),
        hostname: if prefs.hostname.is_empty() { system_hostname() } else { prefs.hostname.clone() },
        os: std::env::consts::OS.to_string(),
        machine: std::env::consts::ARCH.to_string(),
        routable_ips: routes.iter().map(ToString::to_string).collect(),
        net_info: (preferred_derp != 0).then_some(NetInfo { preferred_derp }),
    }
}

/// The kernel's hostname (`tinytail` if unreadable).
pub(crate) fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "tinytail".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostinfo_carries_sorted_unique_routes_and_exit_routes() {
        let prefs = Prefs {
            hostname: "gw".into(),
            advertise_routes: vec!["192.0.2.0/24".into(), "10.0.0.0/8".into(), "192.0.2.0/24".into()],
            advertise_exit_node: true,
            ..Prefs::default()
        };
        let hi = hostinfo(&prefs, "0.1.0", 999);
        assert_eq!(hi.hostname, "gw");
        assert_eq!(hi.routable_ips, ["0.0.0.0/0", "10.0.0.0/8", "192.0.2.0/24", "::/0"]);
        assert_eq!(hi.net_info, Some(NetInfo { preferred_derp: 999 }));
        let json = serde_json::to_value(&hi).unwrap();
        assert_eq!(json["NetInfo"]["PreferredDERP"], 999);
        assert_eq!(json["RoutableIPs"][1], "10.0.0.0/8");
    }
}
