//! magicsock: the one task that moves packets. It owns the TUN device, one UDP socket (WireGuard,
//! disco and STUN share it), the DERP connections and core::wg's datapath, and picks per packet
//! whether a peer is reached directly or through DERP (paths.rs).
//!
//! Per packet the direct path allocates nothing: TUN and UDP reads land in two buffers allocated
//! at start, encryption and decryption write into them. A packet through DERP costs one `Vec`
//! (the frame handed to the connection's writer task, and one for a received frame).
//!
//! The kernel side (addresses, routes, forwarding, SNAT) goes through hal::net and is undone when
//! the engine stops (`down`, logout, SIGTERM).

pub mod derp;
pub mod netcheck;
pub mod paths;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tinytail_core::disco::{self, DiscoBox, Envelope, Message};
use tinytail_core::filter::DropCounters;
use tinytail_core::key::{DiscoPublic, NodePublic};
use tinytail_core::route::PeerIndex;
use tinytail_core::stun;
use tinytail_core::wg::{Datapath, DatapathError, Origin, Output, Refusal, BUFFER_SIZE};
use tinytail_hal::net::linux::{self as linux_net, LinuxNet, Tun};
use tinytail_hal::net::{NetControl, TUN_MTU};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use self::derp::{DerpEvent, DerpLink, Identity};
use self::netcheck::{Netcheck, Report};
use self::paths::PeerPaths;
use crate::log::log;
use crate::prefix::Prefix;
use crate::random;
use crate::wgconfig::Config;

/// tailscaled's usual port (its systemd unit and Windows default).
pub const DEFAULT_PORT: u16 = 41641;
/// `tailcfg.DerpMagicIP`: a pong to a ping that came via DERP names this address and the region.
const DERP_MAGIC_IP: Ipv4Addr = Ipv4Addr::new(127, 3, 3, 40);
/// WireGuard timers and path upkeep run this often.
const TICK: Duration = Duration::from_millis(250);
/// Our interface addresses are re-read this often: a WAN address that changes under us (DHCP,
/// PPPoE) is noticed within this. One netlink dump; nothing happens unless they changed.
const LINK_POLL: Duration = Duration::from_secs(2);
/// Unanswered pings are forgotten after this long (`pingTimeoutDuration`).
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Status (for `tinytail status` and the web page) is refreshed this often.
const STATUS_REFRESH: Duration = Duration::from_secs(1);
/// TUN packets, and UDP datagrams, handled per wake-up before the other sources get a turn.
const TUN_BURST: usize = 64;
const UDP_BURST: usize = 64;
/// Socket buffers for the UDP socket: bursts of a fast sender wait here instead of being dropped
/// (tailscaled forces 7 MiB; 1 MiB still dropped ~300 datagrams per second of TCP at 700 Mbit/s
/// here). Kernel memory, used only while a burst waits.
const UDP_BUFFER_BYTES: usize = 4 << 20;

/// How the engine is set up (from the board and `tinytail run` flags).
#[derive(Clone)]
pub struct Options {
    pub tun_name: String,
    pub port: u16,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub plain_http_derp: bool,
}

/// Requests from the CLI (through the daemon).
pub enum Command {
    Ping {
        peer: NodePublic,
        reply: oneshot::Sender<PingResult>,
    },
    /// A fresh netcheck round; answered when it ends.
    Netcheck(oneshot::Sender<Report>),
    Stop(oneshot::Sender<()>),
}

/// One answered disco ping.
#[derive(Debug, Clone)]
pub struct PingResult {
    /// `DERP(<region code>)` or the peer's `ip:port`, as `tailscale ping` prints it.
    pub via: String,
    pub latency: Duration,
}

/// What status shows of the datapath.
#[derive(Debug, Clone, Default)]
pub struct EngineStatus {
    pub tun: String,
    pub port: u16,
    pub endpoints: Vec<SocketAddr>,
    /// Region -> connected.
    pub derp: BTreeMap<u32, bool>,
    pub home_derp: u32,
    pub peers: HashMap<NodePublic, PeerStatus>,
    pub filter_drops: DropCounters,
    pub drops: Drops,
    /// The latest netcheck round.
    pub netcheck: Option<Report>,
}

#[derive(Debug, Clone, Default)]
pub struct PeerStatus {
    pub cur_addr: Option<SocketAddr>,
    pub relay: u32,
    pub since_handshake: Option<Duration>,
    pub tx_bytes: usize,
    pub rx_bytes: usize,
    pub active: bool,
}

/// Packets dropped outside the filter, by reason.
#[derive(Debug, Clone, Copy, Default)]
pub struct Drops {
    pub no_route: u64,
    pub source_not_allowed: u64,
    pub unknown_peer: u64,
    pub wireguard: u64,
    /// Handshake messages with a wrong mac1 (forged, or not for our key): no Diffie-Hellman spent.
    pub bad_mac1: u64,
    /// Handshake messages answered with a cookie reply instead (under load, no valid mac2).
    pub cookie_replies: u64,
    /// Handshake messages refused under load where no cookie reply is possible (through DERP).
    pub under_load: u64,
    pub queue_full: u64,
}

/// The daemon's handle on a running engine.
pub struct Handle {
    pub commands: mpsc::Sender<Command>,
    pub status: Arc<Mutex<EngineStatus>>,
    /// Our endpoints, for MapRequest.Endpoints.
    pub endpoints: watch::Receiver<Vec<SocketAddr>>,
    /// The latest netcheck report (its nearest region becomes our home DERP).
    pub netcheck: watch::Receiver<Option<Report>>,
    /// Counts changes of our interface addresses (after the first reading): connections bound
    /// to an address we no longer have are dead and must be made again.
    pub link_changes: watch::Receiver<u64>,
}

impl Handle {
    /// Stops the engine and waits until the kernel changes are undone.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Opens the TUN device and the socket and starts the engine task; it runs on the configs that
/// `configs` delivers until stopped.
pub fn start(opts: Options, configs: watch::Receiver<Option<Arc<Config>>>) -> Result<Handle, String> {
    let tun = Tun::open(&opts.tun_name).map_err(|e| format!("TUN device {}: {e}", opts.tun_name))?;
    tun.set_nonblocking().map_err(|e| format!("TUN device {}: {e}", opts.tun_name))?;
    // SAFETY: the Tun owns its descriptor and closes it only when dropped, which drops the
    // registration with it (AsyncFd owns the Tun).
    let tun = unsafe { AsyncFd::register_with_interest(tun, Interest::READABLE) }
        .map_err(|e| format!("TUN device {}: {}", opts.tun_name, e.into_parts().1))?;
    let (std_udp, ipv6) = bind_udp(opts.port)?;
    std_udp.set_nonblocking(true).map_err(|e| format!("UDP socket: {e}"))?;
    if let Err(e) = linux_net::set_socket_buffers(&std_udp, UDP_BUFFER_BYTES) {
        log(&format!("udp: socket buffers: {e}"));
    }
    let port = std_udp.local_addr().map(|a| a.port()).unwrap_or(opts.port);
    let udp = UdpSocket::from_std(std_udp).map_err(|e| format!("UDP socket: {e}"))?;
    let net = LinuxNet::new().map_err(|e| format!("netlink: {e}"))?;
    net_setup_link(&opts.tun_name)?;
    if opts.plain_http_derp {
        log(&format!("derp: {}=1: DERP over plain HTTP (tests only)", derp::PLAIN_HTTP_SWITCH));
    }
    let (commands, command_rx) = mpsc::channel(16);
    let (derp_tx, derp_rx) = mpsc::channel(1024);
    let (endpoints_tx, endpoints) = watch::channel(Vec::new());
    let (netcheck_tx, netcheck) = watch::channel(None);
    let (link_changes_tx, link_changes) = watch::channel(0);
    let status =
        Arc::new(Mutex::new(EngineStatus { tun: opts.tun_name.clone(), port, ..Default::default() }));
    let engine = Engine {
        opts,
        port,
        ipv6,
        udp,
        tun,
        net,
        datapath: None,
        rx: vec![0u8; BUFFER_SIZE].into_boxed_slice(),
        tx: vec![0u8; BUFFER_SIZE].into_boxed_slice(),
        disco_buf: vec![0u8; BUFFER_SIZE].into_boxed_slice(),
        peers: Vec::new(),
        by_key: HashMap::new(),
        by_disco: HashMap::new(),
        derp: BTreeMap::new(),
        derp_connected: BTreeMap::new(),
        derp_events: derp_tx,
        config: None,
        pending: HashMap::new(),
        early: Vec::with_capacity(EARLY_INITIATIONS),
        early_disco: Vec::with_capacity(EARLY_DISCO),
        stale_session_searched: None,
        routes_installed: Vec::new(),
        addresses_installed: Vec::new(),
        forwarding: false,
        snat: false,
        endpoints: Vec::new(),
        endpoints_tx,
        endpoints_read: None,
        local_addrs: None,
        link_changes_tx,
        netcheck: Netcheck::default(),
        netcheck_waiters: Vec::new(),
        netcheck_tx,
        drops: Drops::default(),
        status: Arc::clone(&status),
        status_written: None,
    };
    crate::task::spawn(engine.run(command_rx, derp_rx, configs));
    Ok(Handle { commands, status, endpoints, netcheck, link_changes })
}

/// The one UDP socket: IPv6 and IPv4 on `[::]:port` (IPv4 peers appear as v4-mapped addresses,
/// made plain again in [`Engine::on_udp`]), or IPv4 only where the kernel has no IPv6 or keeps
/// IPv6 sockets to IPv6 (`net.ipv6.bindv6only`). Returns the socket and whether it speaks IPv6.
fn bind_udp(port: u16) -> Result<(std::net::UdpSocket, bool), String> {
    match std::net::UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)) {
        Ok(socket) if linux_net::ipv6_only(&socket).is_ok_and(|only| !only) => return Ok((socket, true)),
        Ok(_) => log("udp: IPv6 sockets take IPv6 only here (net.ipv6.bindv6only=1): IPv4 only"),
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
            log("udp: no IPv6 in this kernel: IPv4 only")
        }
        Err(e) => return Err(format!("UDP port {port}: {e}")),
    }
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
        .map_err(|e| format!("UDP port {port}: {e}"))?;
    Ok((socket, false))
}

/// Brings the link up before any address goes on it.
fn net_setup_link(tun: &str) -> Result<(), String> {
    let mut net = LinuxNet::new().map_err(|e| format!("netlink: {e}"))?;
    net.link_up(tun, TUN_MTU).map_err(|e| format!("{tun}: {e}"))
}

/// WireGuard's handshake initiation: message type 1, 148 bytes (whitepaper section 5.4.2).
const HANDSHAKE_INITIATION: u8 = 1;
const HANDSHAKE_INITIATION_LEN: usize = 148;
/// Early initiations kept at most, and for how long: the sender retries after REKEY_TIMEOUT
/// (5 s) anyway, with a new one.
const EARLY_INITIATIONS: usize = 4;
const EARLY_INITIATION_TTL: Duration = Duration::from_secs(5);
/// WireGuard's transport data: message type 4, a 16-byte header and at least the 16-byte tag.
const TRANSPORT_DATA: u8 = 4;
const TRANSPORT_DATA_MIN_LEN: usize = 32;
/// At most one search per this long for the peer behind data on a session we do not hold (see
/// `on_stale_session`): a forged flood then costs a bounded scan rate.
const STALE_SESSION_SEARCH: Duration = Duration::from_millis(50);

struct EarlyInitiation {
    received: Instant,
    from: SocketAddr,
    message: [u8; HANDSHAKE_INITIATION_LEN],
}

/// Disco messages from senders we cannot place yet are kept like early initiations: right after
/// our restart the peer's pings beat our first netmap, and its next try comes only with its
/// heartbeat (3 s). Longer ones are MTU probes, not worth keeping.
const EARLY_DISCO: usize = 4;
const EARLY_DISCO_MAX_LEN: usize = 256;

/// In place, not on the heap: a flood of junk from the WAN costs no allocation.
struct EarlyDisco {
    received: Instant,
    from: SocketAddr,
    len: usize,
    datagram: [u8; EARLY_DISCO_MAX_LEN],
}

struct PeerState {
    key: NodePublic,
    disco: DiscoPublic,
    disco_box: DiscoBox,
    name: String,
    home_derp: u32,
    /// The region the peer last reached us through (the return path when it has no home).
    reply_derp: Option<u32>,
    paths: PeerPaths,
}

impl PeerState {
    /// The region that reaches the peer: its home, else the one it last reached us through
    /// (0: none known; the sender then uses our own home region).
    fn derp_region(&self) -> u32 {
        if self.home_derp != 0 {
            self.home_derp
        } else {
            self.reply_derp.unwrap_or(0)
        }
    }
}

#[derive(Clone, Copy)]
enum PingTarget {
    Udp(SocketAddr),
    Derp(u32),
}

struct Pending {
    peer: NodePublic,
    target: PingTarget,
    sent: Instant,
    cli: Option<oneshot::Sender<PingResult>>,
}

/// Where a datagram came from.
#[derive(Clone, Copy)]
enum Source {
    Udp(SocketAddr),
    Derp { region: u32, node: NodePublic },
}

struct Engine {
    opts: Options,
    port: u16,
    /// The socket carries IPv6 as well as IPv4.
    ipv6: bool,
    udp: UdpSocket,
    tun: AsyncFd<Tun>,
    net: LinuxNet,
    datapath: Option<Datapath>,
    /// Receive buffer (TUN packets, UDP datagrams) and transmit buffer (what we send).
    rx: Box<[u8]>,
    tx: Box<[u8]>,
    disco_buf: Box<[u8]>,
    /// Indexed like the datapath's peers.
    peers: Vec<PeerState>,
    by_key: HashMap<NodePublic, PeerIndex>,
    by_disco: HashMap<DiscoPublic, PeerIndex>,
    derp: BTreeMap<u32, DerpLink>,
    derp_connected: BTreeMap<u32, bool>,
    derp_events: mpsc::Sender<DerpEvent>,
    config: Option<Arc<Config>>,
    pending: HashMap<[u8; disco::TX_ID_LEN], Pending>,
    /// Handshake initiations that came before we could place them (see `place_wireguard`).
    early: Vec<EarlyInitiation>,
    early_disco: Vec<EarlyDisco>,
    /// When `on_stale_session` last searched the peers.
    stale_session_searched: Option<Instant>,
    routes_installed: Vec<Prefix>,
    addresses_installed: Vec<Prefix>,
    forwarding: bool,
    snat: bool,
    endpoints: Vec<SocketAddr>,
    endpoints_tx: watch::Sender<Vec<SocketAddr>>,
    endpoints_read: Option<Instant>,
    /// Our interface addresses at the last reading (`None` before the first).
    local_addrs: Option<Vec<IpAddr>>,
    link_changes_tx: watch::Sender<u64>,
    netcheck: Netcheck,
    netcheck_waiters: Vec<oneshot::Sender<Report>>,
    netcheck_tx: watch::Sender<Option<Report>>,
    drops: Drops,
    status: Arc<Mutex<EngineStatus>>,
    status_written: Option<Instant>,
}

impl Engine {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut derp_events: mpsc::Receiver<DerpEvent>,
        mut configs: watch::Receiver<Option<Arc<Config>>>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let initial = configs.borrow_and_update().clone();
        if let Some(config) = initial {
            self.apply(config);
        }
        let stopped = loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Stop(done)) => break Some(done),
                    Some(Command::Ping { peer, reply }) => self.cli_ping(peer, reply),
                    Some(Command::Netcheck(reply)) => {
                        self.netcheck_waiters.push(reply);
                        if !self.netcheck.running() {
                            self.start_netcheck(Instant::now());
                        }
                    }
                    None => break None,
                },
                changed = configs.changed() => {
                    if changed.is_err() {
                        break None;
                    }
                    let config = configs.borrow_and_update().clone();
                    if let Some(config) = config {
                        self.apply(config);
                    }
                }
                Some(event) = derp_events.recv() => self.on_derp(event),
                received = self.udp.recv_from(&mut self.rx) => match received {
                    Ok((len, from)) => {
                        self.on_udp(len, from);
                        // Drain what else is queued before the other sources get a turn: one
                        // pass through select! per datagram costs more than the datagram.
                        for _ in 1..UDP_BURST {
                            match self.udp.try_recv_from(&mut self.rx) {
                                Ok((len, from)) => self.on_udp(len, from),
                                Err(_) => break,
                            }
                        }
                    }
                    Err(e) => log(&format!("udp: {e}")),
                },
                ready = self.tun.readable() => {
                    if let Err(e) = ready {
                        log(&format!("tun: {e}"));
                        continue;
                    }
                    // try_io clears readiness on WouldBlock, so the next readable() waits.
                    for _ in 0..TUN_BURST {
                        match self.tun.try_io(Interest::READABLE, |tun| tun.read_packet(&mut self.rx)) {
                            Ok(len) => self.on_tun(len),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                log(&format!("tun: {e}"));
                                break;
                            }
                        }
                    }
                }
                _ = tick.tick() => self.on_tick(),
            }
        };
        self.derp.clear();
        if let Err(e) = self.net.undo_all() {
            log(&format!("net: undoing our changes: {e}"));
        }
        log("datapath stopped; routes, addresses, forwarding and SNAT undone");
        if let Some(done) = stopped {
            let _ = done.send(());
        }
    }

    // ---- configuration ----

    fn apply(&mut self, config: Arc<Config>) {
        let keys: Vec<NodePublic> = config.peers.iter().map(|p| p.key).collect();
        let routes = match config.routes() {
            Ok(r) => Box::new(r),
            Err(e) => {
                log(&format!("datapath: {e}; keeping the previous peers"));
                return;
            }
        };
        for e in &config.filter_errors {
            log(&format!("filter: {e}"));
        }
        let mut filter = Box::new((*config.filter).clone());
        match &mut self.datapath {
            Some(dp) => {
                filter.carry_over(dp.filter_mut());
                dp.set_peers(&keys);
                dp.set_routes(routes);
                *dp.filter_mut() = *filter;
            }
            None => {
                let mut dp = Datapath::new(&config.node_private.0, routes, filter);
                dp.set_peers(&keys);
                self.datapath = Some(dp);
            }
        }
        let mut old: HashMap<NodePublic, PeerState> = self.peers.drain(..).map(|p| (p.key, p)).collect();
        self.by_key.clear();
        self.by_disco.clear();
        for (i, p) in config.peers.iter().enumerate() {
            let index = PeerIndex::try_from(i).unwrap_or(PeerIndex::MAX);
            let mut state = match old.remove(&p.key) {
                Some(s) if s.disco == p.disco => s,
                _ => PeerState {
                    key: p.key,
                    disco: p.disco,
                    disco_box: DiscoBox::new(&config.disco_private.0, &p.disco),
                    name: String::new(),
                    home_derp: 0,
                    reply_derp: None,
                    paths: PeerPaths::default(),
                },
            };
            state.name.clone_from(&p.name);
            state.home_derp = p.home_derp;
            state.paths.set_control_endpoints(&p.endpoints);
            self.by_key.insert(p.key, index);
            self.by_disco.insert(p.disco, index);
            self.peers.push(state);
        }
        self.apply_kernel(&config);
        let home = self.home_region(&config);
        self.config = Some(config);
        if let Some(home) = home {
            self.ensure_derp(home);
        }
        self.pending.retain(|_, p| self.by_key.contains_key(&p.peer));
        self.replay_early();
    }

    /// Addresses, routes, forwarding and SNAT to match the config.
    fn apply_kernel(&mut self, config: &Config) {
        let tun = self.opts.tun_name.clone();
        for a in &config.addresses {
            if !self.addresses_installed.contains(a) {
                let bits = if a.addr.is_ipv4() { 32 } else { 128 };
                match self.net.add_address(&tun, a.addr, bits) {
                    Ok(()) => self.addresses_installed.push(*a),
                    Err(e) => log(&format!("net: address {} on {tun}: {e}", a.addr)),
                }
            }
        }
        for r in &config.tun_routes {
            if !self.routes_installed.contains(r) {
                match self.net.add_route(&tun, r.addr, r.bits) {
                    Ok(()) => self.routes_installed.push(*r),
                    Err(e) => log(&format!("net: route {r} via {tun}: {e}")),
                }
            }
        }
        let gone: Vec<Prefix> =
            self.routes_installed.iter().filter(|r| !config.tun_routes.contains(r)).copied().collect();
        for r in gone {
            if let Err(e) = self.net.remove_route(&tun, r.addr, r.bits) {
                log(&format!("net: removing route {r}: {e}"));
            }
            self.routes_installed.retain(|x| *x != r);
        }
        if config.forwarding && !self.forwarding {
            match self.net.enable_forwarding() {
                Ok(()) => self.forwarding = true,
                Err(e) => log(&format!("net: forwarding: {e}")),
            }
        }
        let want_snat = config.forwarding && config.snat;
        if want_snat != self.snat {
            let result = if want_snat { self.net.enable_snat(&tun) } else { self.net.disable_snat() };
            match result {
                Ok(()) => self.snat = want_snat,
                Err(e) => log(&format!("net: SNAT: {e}")),
            }
        }
    }

    fn home_region(&self, config: &Config) -> Option<u32> {
        let known = |r: u32| config.derp_regions.iter().any(|d| d.region_id == r);
        if config.home_derp != 0 && known(config.home_derp) {
            return Some(config.home_derp);
        }
        config.derp_regions.iter().map(|r| r.region_id).min()
    }

    fn ensure_derp(&mut self, region: u32) -> Option<&DerpLink> {
        if !self.derp.contains_key(&region) {
            let config = self.config.as_ref()?;
            let info = config.derp_regions.iter().find(|r| r.region_id == region)?.clone();
            let home = self.home_region(config) == Some(region);
            let id = Identity {
                private: config.node_private.0,
                public: config.node_public,
                tls: self.opts.tls.clone(),
                plain_http: self.opts.plain_http_derp,
            };
            let link = derp::connect(info, home, id, self.derp_events.clone());
            self.derp.insert(region, link);
        }
        self.derp.get(&region)
    }

    // ---- packets ----

    /// A packet from the TUN device (in `self.rx[..len]`): encrypt and send to its peer.
    fn on_tun(&mut self, len: usize) {
        let Some(dp) = self.datapath.as_mut() else { return };
        match dp.outbound(&self.rx[..len], &mut self.tx) {
            Ok((peer, Output::ToPeer { len })) => self.send_wireguard(peer, len),
            Ok(_) => {}
            Err(e) => self.count_drop(e),
        }
    }

    /// A datagram on the UDP socket (in `self.rx[..len]`).
    fn on_udp(&mut self, len: usize, from: SocketAddr) {
        let from = SocketAddr::new(from.ip().to_canonical(), from.port()); // v4-mapped -> IPv4
        if stun::is_stun(&self.rx[..len]) {
            self.netcheck.on_response(&self.rx[..len], Instant::now());
            return;
        }
        if disco::looks_like_disco(&self.rx[..len]) {
            let datagram = self.rx[..len].to_vec(); // disco is rare; keeps the borrow simple
            self.on_disco(&datagram, Source::Udp(from));
            return;
        }
        self.place_wireguard(len, from, Instant::now());
    }

    /// A WireGuard datagram from the UDP socket (in `self.rx[..len]`, `received` at that time) to
    /// its peer. A handshake initiation we cannot place yet (no netmap, or a sender the netmap
    /// does not name yet) is kept for [`EARLY_INITIATION_TTL`] and tried again with the next
    /// config: right after our restart a peer's initiation can beat our first netmap, and its
    /// retry would come only after REKEY_TIMEOUT.
    fn place_wireguard(&mut self, len: usize, from: SocketAddr, received: Instant) {
        let Some(dp) = self.datapath.as_mut() else {
            self.keep_early(len, from, received);
            return;
        };
        match dp.peer_for_datagram(from.ip(), &self.rx[..len], &mut self.tx) {
            Ok(Origin::Peer(peer)) => {
                if self.on_wireguard(peer, len, Some(from.ip())) {
                    if let Some(p) = self.peers.get_mut(usize::from(peer)) {
                        p.paths.heard_from(from, received);
                    }
                }
            }
            Ok(Origin::CookieReply { len }) => {
                self.drops.cookie_replies += 1;
                let _ = self.udp.try_send_to(&self.tx[..len], from);
            }
            Err(DatapathError::UnknownPeer) => {
                self.count_drop(DatapathError::UnknownPeer);
                if is_transport_data(&self.rx[..len]) {
                    self.on_stale_session(from, received);
                } else {
                    self.keep_early(len, from, received);
                }
            }
            Err(e) => self.count_drop(e),
        }
    }

    /// Keeps `self.rx[..len]` if it is a handshake initiation; the oldest goes when full.
    fn keep_early(&mut self, len: usize, from: SocketAddr, received: Instant) {
        let Some(message) =
            self.rx.get(..len).and_then(|m| <[u8; HANDSHAKE_INITIATION_LEN]>::try_from(m).ok())
        else {
            return;
        };
        if message[0] != HANDSHAKE_INITIATION {
            return;
        }
        if self.early.len() >= EARLY_INITIATIONS {
            self.early.remove(0);
        }
        self.early.push(EarlyInitiation { received, from, message });
    }

    /// Data for a session we do not hold, from the address of exactly one known peer: that peer
    /// still sends on the session our previous run held (we restarted), so start the handshake
    /// now instead of at its next disco ping, up to a heartbeat (3 s) later. A forged source
    /// gains nothing: the initiation goes to the real peer, and at most one is under way.
    fn on_stale_session(&mut self, from: SocketAddr, now: Instant) {
        if self.stale_session_searched.is_some_and(|t| now.duration_since(t) < STALE_SESSION_SEARCH) {
            return;
        }
        self.stale_session_searched = Some(now);
        let mut at = self.peers.iter().enumerate().filter(|(_, p)| p.paths.knows(from)).map(|(i, _)| i);
        if let (Some(i), None) = (at.next(), at.next()) {
            if let Ok(peer) = PeerIndex::try_from(i) {
                if let Some(p) = self.peers.get_mut(i) {
                    p.paths.heard_from(from, now);
                }
                self.initiate(peer);
            }
        }
    }

    /// Tries the kept initiations and disco messages again (a config arrived); initiations still
    /// unplaced stay, with their first arrival time, until they are too old.
    fn replay_early(&mut self) {
        let now = Instant::now();
        for early in std::mem::take(&mut self.early) {
            if now.duration_since(early.received) < EARLY_INITIATION_TTL {
                self.rx[..HANDSHAKE_INITIATION_LEN].copy_from_slice(&early.message);
                self.place_wireguard(HANDSHAKE_INITIATION_LEN, early.from, early.received);
            }
        }
        for early in std::mem::take(&mut self.early_disco) {
            let datagram = &early.datagram[..early.len];
            let known = Envelope::parse(datagram).is_ok_and(|e| self.by_disco.contains_key(&e.sender));
            if known && now.duration_since(early.received) < EARLY_INITIATION_TTL {
                self.on_disco(datagram, Source::Udp(early.from));
            }
        }
    }

    /// A WireGuard message from `peer` in `self.rx[..len]`; whether it authenticated.
    fn on_wireguard(&mut self, peer: PeerIndex, len: usize, from: Option<IpAddr>) -> bool {
        let Some(dp) = self.datapath.as_mut() else { return false };
        let outcome = dp.inbound(peer, from, &self.rx[..len], &mut self.tx);
        let authenticated = outcome.is_ok();
        match outcome {
            Ok(Output::ToTun { len }) => {
                if let Err(e) = self.tun.get_ref().write_packet(&self.tx[..len]) {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        log(&format!("tun write: {e}"));
                    }
                    self.drops.queue_full += 1;
                }
            }
            Ok(Output::ToPeer { len }) => {
                self.send_wireguard(peer, len);
                self.flush(peer);
            }
            Ok(Output::Nothing) => self.flush(peer),
            Err(e) => {
                self.count_drop(e);
                // Through DERP the sender is known: data we cannot open is the stale-session
                // case of `on_stale_session` (a no-op while a session exists).
                if is_transport_data(&self.rx[..len]) {
                    self.initiate(peer);
                }
            }
        }
        if let Some(p) = self.peers.get_mut(usize::from(peer)) {
            p.paths.last_active = Some(Instant::now());
        }
        authenticated
    }

    /// Packets that waited for a handshake.
    fn flush(&mut self, peer: PeerIndex) {
        loop {
            let Some(dp) = self.datapath.as_mut() else { return };
            match dp.flush(peer, &mut self.tx) {
                Ok(Output::ToPeer { len }) => self.send_wireguard(peer, len),
                Ok(_) => return,
                Err(e) => {
                    self.count_drop(e);
                    return;
                }
            }
        }
    }

    fn count_drop(&mut self, e: DatapathError) {
        match e {
            DatapathError::NoRoute => self.drops.no_route += 1,
            DatapathError::SourceNotAllowed => self.drops.source_not_allowed += 1,
            DatapathError::UnknownPeer => self.drops.unknown_peer += 1,
            DatapathError::WireGuard(Refusal::BadMac1) => self.drops.bad_mac1 += 1,
            DatapathError::WireGuard(Refusal::UnderLoad) => self.drops.under_load += 1,
            DatapathError::WireGuard(_) | DatapathError::Malformed | DatapathError::BufferTooSmall => {
                self.drops.wireguard += 1
            }
            // Counted by the filter itself.
            DatapathError::Filtered => {}
        }
    }

    /// Sends `self.tx[..len]` (a WireGuard message) to `peer` by its current plan.
    fn send_wireguard(&mut self, peer: PeerIndex, len: usize) {
        let now = Instant::now();
        let Some(state) = self.peers.get_mut(usize::from(peer)) else { return };
        let plan = state.paths.plan(now);
        let region = state.derp_region();
        let key = state.key;
        if let Some(addr) = plan.direct {
            let _ = self.udp.try_send_to(&self.tx[..len], addr);
        }
        if plan.derp {
            self.send_derp(region, key, Payload::Tx(len));
        }
    }

    fn send_derp(&mut self, region: u32, to: NodePublic, payload: Payload<'_>) {
        let region = if region != 0 {
            region
        } else {
            match self.config.as_ref().and_then(|c| self.home_region(c)) {
                Some(r) => r,
                None => return,
            }
        };
        let bytes = match payload {
            Payload::Tx(len) => &self.tx[..len],
            Payload::Bytes(b) => b,
        };
        let mut frame = vec![0u8; tinytail_core::derp::HEADER_LEN + 32 + bytes.len()];
        if tinytail_core::derp::write_send_packet(&mut frame, &to, bytes).is_err() {
            return;
        }
        let full = match self.ensure_derp(region) {
            Some(link) => link.frames.try_send(frame).is_err(),
            None => false,
        };
        if full {
            self.drops.queue_full += 1;
        }
    }

    fn on_derp(&mut self, event: DerpEvent) {
        match event {
            DerpEvent::Packet { region, src, packet } => {
                if disco::looks_like_disco(&packet) {
                    self.on_disco(&packet, Source::Derp { region, node: src });
                    return;
                }
                let Some(&peer) = self.by_key.get(&src) else {
                    self.drops.unknown_peer += 1;
                    return;
                };
                if let Some(p) = self.peers.get_mut(usize::from(peer)) {
                    p.reply_derp = Some(region);
                }
                let len = packet.len().min(self.rx.len());
                self.rx[..len].copy_from_slice(&packet[..len]);
                self.on_wireguard(peer, len, None);
            }
            DerpEvent::Connected { region } => {
                log(&format!("derp {region}: connected"));
                self.derp_connected.insert(region, true);
            }
            DerpEvent::Disconnected { region, .. } => {
                self.derp_connected.insert(region, false);
            }
        }
    }

    // ---- disco ----

    fn on_disco(&mut self, datagram: &[u8], source: Source) {
        let Ok(envelope) = Envelope::parse(datagram) else { return };
        let Some(&peer) = self.by_disco.get(&envelope.sender) else {
            if let Source::Udp(from) = source {
                self.keep_early_disco(datagram, from);
            }
            return;
        };
        let Some(state) = self.peers.get_mut(usize::from(peer)) else { return };
        if let Source::Derp { node, .. } = source {
            if node != state.key {
                return; // a disco key sent through DERP by a node that does not own it
            }
        }
        let Ok(message) = state.disco_box.open(&envelope, &mut self.disco_buf) else { return };
        let now = Instant::now();
        match message {
            Message::Ping { tx_id, .. } => {
                let src = match source {
                    Source::Udp(addr) => {
                        state.paths.learn(addr);
                        addr
                    }
                    Source::Derp { region, .. } => {
                        state.reply_derp = Some(region);
                        SocketAddr::from((DERP_MAGIC_IP, u16::try_from(region).unwrap_or(0)))
                    }
                };
                self.send_disco(peer, Message::Pong { tx_id, src }, source_target(source));
                self.initiate(peer);
            }
            Message::Pong { tx_id, .. } => {
                let Some(pending) = self.pending.remove(&tx_id) else { return };
                if pending.peer != state.key {
                    return;
                }
                let via = match pending.target {
                    PingTarget::Udp(addr) => {
                        // Only a pong that came back directly proves the direct path.
                        if matches!(source, Source::Udp(_)) {
                            state.paths.on_pong(addr, pending.sent, now);
                        }
                        addr.to_string()
                    }
                    PingTarget::Derp(region) => format!("DERP({})", self.region_code(region)),
                };
                if let Some(cli) = pending.cli {
                    let _ = cli.send(PingResult { via, latency: now.duration_since(pending.sent) });
                }
            }
            Message::CallMeMaybe(endpoints) => {
                if !matches!(source, Source::Derp { .. }) {
                    return; // only believed via DERP
                }
                for addr in endpoints {
                    if !is_link_local(addr.ip()) {
                        state.paths.learn(addr);
                    }
                }
                state.paths.reset_ping_timers();
                state.paths.last_active = Some(now);
                self.discover(peer, now);
            }
            Message::Other(_) => {}
        }
    }

    /// Starts a WireGuard handshake with a peer that pings us while we hold no session with it
    /// (see [`Datapath::initiate`]): after a restart this saves the peer's handshake retry.
    fn initiate(&mut self, peer: PeerIndex) {
        let Some(dp) = self.datapath.as_mut() else { return };
        match dp.initiate(peer, &mut self.tx) {
            Ok(Output::ToPeer { len }) => self.send_wireguard(peer, len),
            Ok(_) => {}
            Err(e) => self.count_drop(e),
        }
    }

    /// Keeps a disco datagram from a sender no peer has yet (see [`EARLY_DISCO`]); the oldest
    /// goes when full. Replayed ones that still name no peer are dropped for good.
    fn keep_early_disco(&mut self, datagram: &[u8], from: SocketAddr) {
        let mut early = EarlyDisco {
            received: Instant::now(),
            from,
            len: datagram.len(),
            datagram: [0; EARLY_DISCO_MAX_LEN],
        };
        let Some(slot) = early.datagram.get_mut(..datagram.len()) else { return };
        slot.copy_from_slice(datagram);
        if self.early_disco.len() >= EARLY_DISCO {
            self.early_disco.remove(0);
        }
        self.early_disco.push(early);
    }

    /// Seals and sends one disco message to `peer` over `target`.
    fn send_disco(&mut self, peer: PeerIndex, message: Message<'_>, target: PingTarget) {
        let Some(config) = self.config.as_ref() else { return };
        let Some(state) = self.peers.get(usize::from(peer)) else { return };
        let mut out = [0u8; 1500];
        let sealed = state.disco_box.seal(&config.disco_public, random::bytes24(), &message, &mut out);
        let Ok(len) = sealed else { return };
        let key = state.key;
        match target {
            PingTarget::Udp(addr) => {
                let _ = self.udp.try_send_to(&out[..len], addr);
            }
            PingTarget::Derp(region) => self.send_derp(region, key, Payload::Bytes(&out[..len])),
        }
    }

    /// Sends a disco ping to `peer` over `target`, remembering it for the pong.
    fn send_ping(&mut self, peer: PeerIndex, target: PingTarget, cli: Option<oneshot::Sender<PingResult>>) {
        let Some(state) = self.peers.get(usize::from(peer)) else { return };
        let tx_id = random::bytes12();
        let node_key = self.config.as_ref().map(|c| c.node_public);
        let key = state.key;
        self.pending.insert(tx_id, Pending { peer: key, target, sent: Instant::now(), cli });
        self.send_disco(peer, Message::Ping { tx_id, node_key, padding: 0 }, target);
    }

    /// Pings due candidates of `peer`, and tells it our endpoints via DERP when it has no
    /// trusted path to us.
    fn discover(&mut self, peer: PeerIndex, now: Instant) {
        let mut due = Vec::new();
        let call_me_maybe = {
            let Some(state) = self.peers.get_mut(usize::from(peer)) else { return };
            state.paths.pings_due(now, &mut due);
            !self.endpoints.is_empty() && state.paths.call_me_maybe_due(now)
        };
        for addr in due {
            self.send_ping(peer, PingTarget::Udp(addr), None);
        }
        if call_me_maybe {
            let wire: Vec<u8> = self.endpoints.iter().flat_map(|e| disco::write_endpoint(*e)).collect();
            let region = self.peer_region(peer);
            self.send_disco(
                peer,
                Message::CallMeMaybe(disco::Endpoints::from_wire(&wire)),
                PingTarget::Derp(region),
            );
        }
    }

    /// A region's code (as `tailscale ping` names DERP paths), or its number.
    fn region_code(&self, region: u32) -> String {
        let config = self.config.as_ref();
        let code = config.and_then(|c| c.derp_regions.iter().find(|r| r.region_id == region));
        code.map_or_else(|| region.to_string(), |r| r.region_code.clone())
    }

    fn peer_region(&self, peer: PeerIndex) -> u32 {
        self.peers.get(usize::from(peer)).map_or(0, PeerState::derp_region)
    }

    /// `tinytail ping`: over the trusted direct path if there is one, else DERP (which also
    /// starts discovery, as traffic would).
    fn cli_ping(&mut self, peer: NodePublic, reply: oneshot::Sender<PingResult>) {
        let Some(&index) = self.by_key.get(&peer) else { return };
        let now = Instant::now();
        let trusted = self.peers.get_mut(usize::from(index)).and_then(|p| {
            p.paths.last_active = Some(now);
            p.paths.trusted(now)
        });
        let target = match trusted {
            Some(addr) => PingTarget::Udp(addr),
            None => PingTarget::Derp(self.peer_region(index)),
        };
        self.send_ping(index, target, Some(reply));
        self.discover(index, now);
    }

    // ---- timers ----

    fn on_tick(&mut self) {
        let now = Instant::now();
        if self.endpoints_read.is_none_or(|t| now.duration_since(t) >= LINK_POLL) {
            self.endpoints_read = Some(now);
            self.refresh_endpoints();
        }
        if let Some(dp) = self.datapath.as_ref() {
            dp.reset_handshake_count();
        }
        for i in 0..self.peers.len() {
            let index = PeerIndex::try_from(i).unwrap_or(PeerIndex::MAX);
            if let Some(dp) = self.datapath.as_mut() {
                match dp.tick(index, &mut self.tx) {
                    Ok(Output::ToPeer { len }) => self.send_wireguard(index, len),
                    Ok(_) => {}
                    Err(e) => self.count_drop(e),
                }
            }
            if self.peers[i].paths.is_active(now) {
                self.discover(index, now);
            }
        }
        self.pending.retain(|_, p| now.duration_since(p.sent) < PING_TIMEOUT);
        if self.netcheck.due(now) {
            self.start_netcheck(now);
        }
        if let Some(report) = self.netcheck.finish(now) {
            self.on_netcheck(report);
        }
        if self.status_written.is_none_or(|t| now.duration_since(t) >= STATUS_REFRESH) {
            self.status_written = Some(now);
            self.publish_status(now);
        }
    }

    fn start_netcheck(&mut self, now: Instant) {
        let Some(config) = self.config.as_ref() else { return };
        for (to, request) in self.netcheck.start(now, &config.derp_regions, self.ipv6) {
            let _ = self.udp.try_send_to(&request, to);
        }
    }

    fn on_netcheck(&mut self, report: Report) {
        if [report.global_v4, report.global_v6].into_iter().flatten().any(|g| !self.endpoints.contains(&g)) {
            self.refresh_endpoints();
        }
        for waiter in self.netcheck_waiters.drain(..) {
            let _ = waiter.send(report.clone());
        }
        self.netcheck_tx.send_if_modified(|last| {
            let changed = last.as_ref().map(|l| (l.nearest, l.global_v4, l.global_v6))
                != Some((report.nearest, report.global_v4, report.global_v6));
            *last = Some(report);
            changed
        });
    }

    fn refresh_endpoints(&mut self) {
        let addrs = match linux_net::interface_addresses(&self.opts.tun_name) {
            Ok(a) => a,
            Err(e) => {
                log(&format!("endpoints: {e}"));
                return;
            }
        };
        let tailnet = Prefix { addr: tinytail_hal::net::TAILNET_V4.0, bits: tinytail_hal::net::TAILNET_V4.1 };
        let tailnet_v6 =
            Prefix { addr: tinytail_hal::net::TAILNET_V6.0, bits: tinytail_hal::net::TAILNET_V6.1 };
        let ipv6 = self.ipv6;
        let mut local: Vec<IpAddr> = addrs
            .into_iter()
            .filter(|a| match a {
                IpAddr::V4(_) => !tailnet.contains(*a),
                IpAddr::V6(_) => ipv6 && !is_link_local(*a) && !tailnet_v6.contains(*a),
            })
            .collect();
        local.sort();
        let link_changed = self.local_addrs.as_ref().is_some_and(|old| *old != local);
        if link_changed {
            log(&format!(
                "link change: our addresses are now {local:?}; reconnecting DERP and control, STUN again"
            ));
            // What STUN saw is stale: leave it out of the endpoints until it looks again.
            self.netcheck.forget();
        }
        self.local_addrs = Some(local.clone());
        let mut endpoints: Vec<SocketAddr> =
            local.into_iter().map(|a| SocketAddr::new(a, self.port)).collect();
        // What STUN saw: our address beyond a NAT.
        endpoints.extend(self.netcheck.last().and_then(|r| r.global_v4));
        endpoints.extend(self.netcheck.last().and_then(|r| r.global_v6));
        endpoints.sort();
        endpoints.dedup();
        if endpoints != self.endpoints {
            self.endpoints.clone_from(&endpoints);
            let _ = self.endpoints_tx.send(endpoints);
        }
        if link_changed {
            self.on_link_change();
        }
    }

    /// Our addresses changed (a new WAN address, a link that went down and up): TCP connections
    /// from a vanished address are dead, so DERP is redialled here and control through
    /// [`Handle::link_changes`], and STUN looks again. The UDP socket is bound to the wildcard
    /// address, so it needs no rebinding.
    ///
    /// Peers we talk to hear from our new address at once (disco pings, and our endpoints over
    /// DERP), instead of at their next path check: theirs still names the old one.
    fn on_link_change(&mut self) {
        self.derp.clear();
        self.derp_connected.clear();
        if let Some(home) = self.config.as_ref().and_then(|c| self.home_region(c)) {
            self.ensure_derp(home);
        }
        let now = Instant::now();
        self.start_netcheck(now);
        self.link_changes_tx.send_modify(|n| *n += 1);
        let wire: Vec<u8> = self.endpoints.iter().flat_map(|e| disco::write_endpoint(*e)).collect();
        for i in 0..self.peers.len() {
            if !self.peers[i].paths.is_active(now) {
                continue;
            }
            let index = PeerIndex::try_from(i).unwrap_or(PeerIndex::MAX);
            self.peers[i].paths.reset_ping_timers();
            self.discover(index, now);
            let region = self.peer_region(index);
            self.send_disco(
                index,
                Message::CallMeMaybe(disco::Endpoints::from_wire(&wire)),
                PingTarget::Derp(region),
            );
        }
    }

    fn publish_status(&mut self, now: Instant) {
        let Some(dp) = self.datapath.as_mut() else { return };
        let filter_drops = dp.filter_mut().drops;
        let mut peers = HashMap::with_capacity(self.peers.len());
        for (i, p) in self.peers.iter().enumerate() {
            let index = PeerIndex::try_from(i).unwrap_or(PeerIndex::MAX);
            let (since_handshake, tx_bytes, rx_bytes) = dp.peer(index).map(|w| w.stats()).unwrap_or_default();
            peers.insert(
                p.key,
                PeerStatus {
                    cur_addr: p.paths.trusted(now),
                    relay: p.derp_region(),
                    since_handshake,
                    tx_bytes,
                    rx_bytes,
                    active: p.paths.is_active(now),
                },
            );
        }
        let home = self.config.as_ref().and_then(|c| self.home_region(c)).unwrap_or(0);
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.endpoints.clone_from(&self.endpoints);
        s.derp.clone_from(&self.derp_connected);
        s.home_derp = home;
        s.peers = peers;
        s.filter_drops = filter_drops;
        s.drops = self.drops;
        s.netcheck = self.netcheck.last().cloned();
    }
}

enum Payload<'a> {
    /// The first bytes of the transmit buffer.
    Tx(usize),
    Bytes(&'a [u8]),
}

fn is_transport_data(datagram: &[u8]) -> bool {
    datagram.len() >= TRANSPORT_DATA_MIN_LEN && datagram[0] == TRANSPORT_DATA
}

fn source_target(source: Source) -> PingTarget {
    match source {
        Source::Udp(addr) => PingTarget::Udp(addr),
        Source::Derp { region, .. } => PingTarget::Derp(region),
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}
