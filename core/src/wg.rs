//! The WireGuard datapath: one boringtun `noise::Tunn` per peer, cryptokey routing through
//! [`crate::route`], the packet filter from [`crate::filter`], and packet buffers from a pool
//! allocated once at start.
//!
//! Only boringtun's `noise` module is used (not its `device` code, which owns sockets and
//! threads): the agent passes datagrams and TUN packets in and gets [`Output`]s back. boringtun
//! needs `std`, so this module exists with feature `wg`.
//!
//! Per packet nothing is allocated: encryption and decryption write into caller-provided
//! buffers, route lookup and the filter use fixed tables. (boringtun queues a copy of a packet
//! that arrives before a session exists; that happens once per handshake, not per packet.)
//! `tests/alloc_per_packet.rs` counts allocations over 100k packets to hold us to it.
//!
//! WireGuard as Tailscale runs it: the static key is the node key, the preshared key is all
//! zeros (none), and no persistent keepalive is configured (disco keeps NAT mappings open).
//!
//! Handshake floods (whitepaper section 5.3, "Denial of Service Mitigation & Cookies"): a
//! datagram from the UDP socket passes one boringtun `RateLimiter` for our static key before
//! anything else. It checks mac1 (keyed BLAKE2s, no Diffie-Hellman), so forged handshakes cost a
//! hash, not an X25519; past [`HANDSHAKES_PER_SECOND`] it wants mac2 too and answers without it
//! with a cookie reply. Only then is an initiation opened (one X25519) to find its sender.

use core::net::IpAddr;
use std::boxed::Box;
use std::vec::Vec;

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{errors::WireGuardError, Packet as WireMessage, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};

use crate::filter::{Filter, Packet, Verdict};
use crate::key::NodePublic;
use crate::route::{PeerIndex, RouteTable};

/// Largest IP packet we carry (the TUN MTU is 1280 by default, but a subnet router's LAN side may
/// hand us 1500-byte packets; 65535 is IP's own limit).
pub const MAX_PACKET: usize = 65535;
/// WireGuard's data message overhead: type 4 + receiver index 4 + counter 8 + tag 16.
pub const DATA_OVERHEAD: usize = 32;
/// boringtun's smallest output buffer (a handshake initiation is 148 bytes).
pub const MIN_OUTPUT: usize = 148;
/// Size of one pool buffer: the largest packet plus WireGuard's overhead.
pub const BUFFER_SIZE: usize = MAX_PACKET + DATA_OVERHEAD;
/// Route table capacity per family: every peer's addresses plus subnet routes.
pub const ROUTES_PER_FAMILY: usize = 4096;
/// Handshake messages with a good mac1 accepted per second from the UDP socket before mac2 (a
/// cookie) is required: boringtun's device uses 100 (`HANDSHAKE_RATE_LIMIT`, device/mod.rs). The
/// count is reset by [`Datapath::reset_handshake_count`].
pub const HANDSHAKES_PER_SECOND: u64 = 100;
/// A cookie reply: type and reserved 4 + receiver index 4 + nonce 24 + cookie 16 + tag 16
/// (whitepaper section 5.4.7).
pub const COOKIE_REPLY_LEN: usize = 64;

/// The peer route table the datapath uses.
pub type PeerRoutes = RouteTable<ROUTES_PER_FAMILY, ROUTES_PER_FAMILY>;

/// A pool of packet buffers allocated once. Buffers are handed out by index; a caller holds at
/// most one per packet in flight. (agent::magicsock holds three fixed buffers of its own today:
/// without batched I/O it has one packet in flight per direction.)
pub struct BufferPool {
    buffers: Box<[[u8; BUFFER_SIZE]]>,
    free: Vec<u16>,
}

impl BufferPool {
    /// Allocates `count` buffers (at most 65535) of [`BUFFER_SIZE`] bytes each.
    pub fn new(count: u16) -> Self {
        let buffers = (0..count).map(|_| [0u8; BUFFER_SIZE]).collect::<Vec<_>>().into_boxed_slice();
        let free = (0..count).rev().collect();
        BufferPool { buffers, free }
    }

    /// Takes a free buffer, or `None` when all are in use (the caller drops the packet).
    pub fn take(&mut self) -> Option<BufferId> {
        self.free.pop().map(BufferId)
    }

    /// Returns a buffer to the pool.
    pub fn give_back(&mut self, id: BufferId) {
        // `free` was allocated with room for every buffer, so this never reallocates.
        self.free.push(id.0);
    }

    pub fn get_mut(&mut self, id: &BufferId) -> &mut [u8; BUFFER_SIZE] {
        &mut self.buffers[usize::from(id.0)]
    }

    /// Two distinct buffers at once (input and output of one step); `None` if they are the same.
    pub fn pair_mut(&mut self, a: &BufferId, b: &BufferId) -> Option<(&mut [u8], &mut [u8])> {
        let (i, j) = (usize::from(a.0), usize::from(b.0));
        if i == j {
            return None;
        }
        let (low, high) = self.buffers.split_at_mut(i.max(j));
        let (at_low, at_high) = (&mut low[i.min(j)][..], &mut high[0][..]);
        Some(if i < j { (at_low, at_high) } else { (at_high, at_low) })
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }
}

/// A buffer lent out by [`BufferPool::take`].
#[derive(Debug, PartialEq, Eq)]
pub struct BufferId(u16);

/// What the caller does next with the bytes written into its output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Nothing to send.
    Nothing,
    /// Send the first `len` bytes of the output buffer to the peer (UDP or DERP).
    ToPeer { len: usize },
    /// Write the first `len` bytes of the output buffer to the TUN device.
    ToTun { len: usize },
}

/// Where a datagram from the UDP socket goes, decided before any per-peer work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// From this peer: hand it to [`Datapath::inbound`].
    Peer(PeerIndex),
    /// Under load, a handshake message without a valid mac2: send the first `len` bytes of the
    /// output buffer (a cookie reply) back to the datagram's source address.
    CookieReply { len: usize },
}

/// Why a packet went nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatapathError {
    /// No peer's AllowedIPs hold the destination.
    NoRoute,
    /// The packet is not a well-formed IP packet.
    Malformed,
    /// The output buffer cannot hold the result.
    BufferTooSmall,
    /// The decrypted packet's source is outside the sending peer's AllowedIPs.
    SourceNotAllowed,
    /// The packet filter refused it.
    Filtered,
    /// No such peer.
    UnknownPeer,
    /// WireGuard refused the datagram.
    WireGuard(Refusal),
}

/// Why WireGuard refused a datagram, grouped from boringtun's errors by what the caller does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a WireGuard message, or one of the wrong size or type.
    Malformed,
    /// A handshake message whose mac1 is wrong: not meant for our key, or forged. Refused before
    /// any Diffie-Hellman.
    BadMac1,
    /// Failed authentication (AEAD tag, or a key that is not the peer's).
    Unauthenticated,
    /// A replayed or out-of-window counter or handshake timestamp.
    Replay,
    /// No session for this message (unknown index, or the session expired).
    NoSession,
    /// The handshake rate limiter is engaged; a cookie reply was or will be sent.
    UnderLoad,
}

impl From<WireGuardError> for Refusal {
    fn from(e: WireGuardError) -> Self {
        use WireGuardError as E;
        match e {
            E::IncorrectPacketLength | E::UnexpectedPacket | E::WrongPacketType | E::InvalidPacket => {
                Refusal::Malformed
            }
            // boringtun returns InvalidMac only from its mac1 check (rate_limiter.rs).
            E::InvalidMac => Refusal::BadMac1,
            E::WrongKey | E::InvalidAeadTag => Refusal::Unauthenticated,
            E::InvalidTai64nTimestamp | E::WrongTai64nTimestamp | E::InvalidCounter | E::DuplicateCounter => {
                Refusal::Replay
            }
            E::WrongIndex | E::NoCurrentSession | E::ConnectionExpired => Refusal::NoSession,
            E::UnderLoad | E::LockFailed => Refusal::UnderLoad,
            // Our callers size buffers before calling; should boringtun still object, the
            // datagram is dropped like any other refused one.
            E::DestinationBufferTooSmall => Refusal::Malformed,
        }
    }
}

/// boringtun gives each tunnel 24 bits of session index; its receiver indices are
/// `session_index << 8 | n`, which is how a datagram finds its peer.
pub const MAX_SESSION_INDEX: u32 = (1 << 24) - 1;

/// One tailnet peer's WireGuard state. The boringtun tunnel (about 11 KB: eight session slots
/// with their key schedules) is made on the peer's first packet, so the many peers of a large
/// tailnet that never talk to this router cost a few dozen bytes each.
pub struct Peer {
    pub node_key: NodePublic,
    session_index: u32,
    tunnel: Option<Box<Tunn>>,
}

impl Peer {
    /// Time since the last completed handshake, and data bytes sent and received.
    pub fn stats(&self) -> (Option<core::time::Duration>, usize, usize) {
        match &self.tunnel {
            Some(t) => {
                let (since, tx, rx, _, _) = t.stats();
                (since, tx, rx)
            }
            None => (None, 0, 0),
        }
    }
}

/// All peers, their routes and the inbound filter.
pub struct Datapath {
    our_private: StaticSecret,
    our_public: PublicKey,
    peers: Vec<Peer>,
    /// Session index -> peer, sorted by session index (for datagrams from unknown addresses).
    by_session: Vec<(u32, PeerIndex)>,
    next_session: u32,
    routes: Box<PeerRoutes>,
    filter: Box<Filter>,
    /// mac1/mac2 checks and cookie replies for datagrams from the UDP socket (its mac1 and cookie
    /// keys are derived from our public key once, here, not per packet).
    gate: RateLimiter,
    /// Handshake initiations opened with a Diffie-Hellman to find their sender.
    opened: u64,
}

impl Datapath {
    /// An empty datapath for the node key whose private half is `our_private`.
    pub fn new(our_private: &[u8; 32], routes: Box<PeerRoutes>, filter: Box<Filter>) -> Self {
        let our_private = StaticSecret::from(*our_private);
        let our_public = PublicKey::from(&our_private);
        Datapath {
            gate: RateLimiter::new(&our_public, HANDSHAKES_PER_SECOND),
            our_private,
            our_public,
            peers: Vec::new(),
            by_session: Vec::new(),
            next_session: 1,
            routes,
            filter,
            opened: 0,
        }
    }

    /// Adds a peer and returns its index (the value routes refer to).
    pub fn add_peer(&mut self, peer: NodePublic) -> PeerIndex {
        let session_index = self.take_session_index();
        self.peers.push(self.new_peer(peer, session_index));
        self.index_sessions();
        // Peer counts are bounded by the route table far below u16::MAX.
        PeerIndex::try_from(self.peers.len() - 1).unwrap_or(PeerIndex::MAX)
    }

    /// Makes the peer list exactly `wanted`, in that order (so index `i` is `wanted[i]`), keeping
    /// the sessions of peers that stay. Allocates: call it per netmap change, not per packet.
    pub fn set_peers(&mut self, wanted: &[NodePublic]) {
        let mut old: Vec<Option<Peer>> = core::mem::take(&mut self.peers).into_iter().map(Some).collect();
        let mut peers = Vec::with_capacity(wanted.len());
        for key in wanted {
            let kept = old.iter_mut().find(|p| p.as_ref().is_some_and(|p| p.node_key == *key));
            let peer = match kept.and_then(Option::take) {
                Some(peer) => peer,
                None => {
                    let session_index = self.take_session_index();
                    self.new_peer(*key, session_index)
                }
            };
            peers.push(peer);
        }
        self.peers = peers;
        self.index_sessions();
    }

    fn new_peer(&self, key: NodePublic, session_index: u32) -> Peer {
        Peer { node_key: key, session_index, tunnel: None }
    }

    /// The peer's tunnel, made on first use (one allocation per peer, not per packet).
    fn tunnel(&mut self, peer: PeerIndex) -> Result<&mut Tunn, DatapathError> {
        let Datapath { peers, our_private, .. } = self;
        let peer = peers.get_mut(usize::from(peer)).ok_or(DatapathError::UnknownPeer)?;
        let session_index = peer.session_index;
        let node_key = peer.node_key;
        Ok(peer.tunnel.get_or_insert_with(|| {
            Box::new(Tunn::new(
                our_private.clone(),
                PublicKey::from(node_key.0),
                None, // Tailscale uses no preshared key
                None, // and no persistent keepalive
                session_index,
                None,
            ))
        }))
    }

    fn take_session_index(&mut self) -> u32 {
        let index = self.next_session;
        self.next_session = if index >= MAX_SESSION_INDEX { 1 } else { index + 1 };
        index
    }

    fn index_sessions(&mut self) {
        self.by_session.clear();
        for (i, peer) in self.peers.iter().enumerate() {
            let index = PeerIndex::try_from(i).unwrap_or(PeerIndex::MAX);
            self.by_session.push((peer.session_index, index));
        }
        self.by_session.sort_unstable();
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Which peer a datagram from the UDP socket (sent from `from`) is, when its path does not
    /// say: responses, cookies and data carry our receiver index; a handshake initiation names
    /// its sender only inside the encrypted static key, which costs one Diffie-Hellman to read.
    /// Handshake messages first pass mac1 (and under load mac2) so that floods of forged ones
    /// cost no Diffie-Hellman; a cookie reply for `from` may be written into `out`.
    pub fn peer_for_datagram(
        &mut self,
        from: IpAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Result<Origin, DatapathError> {
        if out.len() < COOKIE_REPLY_LEN {
            return Err(DatapathError::BufferTooSmall);
        }
        let message = match self.gate.verify_packet(Some(from), datagram, out) {
            Ok(message) => message,
            Err(TunnResult::WriteToNetwork(reply)) => return Ok(Origin::CookieReply { len: reply.len() }),
            Err(TunnResult::Err(e)) => return Err(DatapathError::WireGuard(e.into())),
            // verify_packet returns nothing else.
            Err(_) => return Err(DatapathError::WireGuard(Refusal::Malformed)),
        };
        let peer = match message {
            WireMessage::HandshakeInit(init) => {
                self.opened += 1;
                let half = parse_handshake_anon(&self.our_private, &self.our_public, &init)
                    .map_err(|e| DatapathError::WireGuard(e.into()))?;
                let key = NodePublic(half.peer_static_public);
                self.peers.iter().position(|p| p.node_key == key).and_then(|i| PeerIndex::try_from(i).ok())
            }
            WireMessage::HandshakeResponse(p) => self.by_receiver_index(p.receiver_idx),
            WireMessage::PacketCookieReply(p) => self.by_receiver_index(p.receiver_idx),
            WireMessage::PacketData(p) => self.by_receiver_index(p.receiver_idx),
        };
        peer.map(Origin::Peer).ok_or(DatapathError::UnknownPeer)
    }

    fn by_receiver_index(&self, receiver: u32) -> Option<PeerIndex> {
        let session = receiver >> 8;
        let at = self.by_session.binary_search_by_key(&session, |(s, _)| *s).ok()?;
        Some(self.by_session[at].1)
    }

    /// Starts a new second of [`HANDSHAKES_PER_SECOND`]; call it on a timer (boringtun's device
    /// does every second). Calls less than a second after the last reset do nothing.
    pub fn reset_handshake_count(&self) {
        self.gate.reset_count();
    }

    /// Handshake initiations opened so far with a Diffie-Hellman (by
    /// [`Datapath::peer_for_datagram`]), whatever came of them.
    pub fn initiations_opened(&self) -> u64 {
        self.opened
    }

    /// Swaps in a new route table (built from a new netmap) without touching sessions.
    pub fn set_routes(&mut self, routes: Box<PeerRoutes>) {
        self.routes = routes;
    }

    pub fn filter_mut(&mut self) -> &mut Filter {
        &mut self.filter
    }

    pub fn peer(&self, index: PeerIndex) -> Option<&Peer> {
        self.peers.get(usize::from(index))
    }

    /// An IP packet from the TUN device: picks the peer by destination and encrypts into `out`.
    /// Returns the peer and what to send (a data message, or a handshake initiation when no
    /// session exists yet; boringtun then holds the packet until the handshake completes).
    pub fn outbound(&mut self, packet: &[u8], out: &mut [u8]) -> Result<(PeerIndex, Output), DatapathError> {
        let parsed = Packet::parse(packet).map_err(|_| DatapathError::Malformed)?;
        let index = self.routes.lookup(parsed.dst).ok_or(DatapathError::NoRoute)?;
        // boringtun panics on a short output buffer: check first.
        if out.len() < packet.len() + DATA_OVERHEAD || out.len() < MIN_OUTPUT {
            return Err(DatapathError::BufferTooSmall);
        }
        self.filter.note_outbound(packet);
        let result = self.tunnel(index)?.encapsulate(packet, out);
        Ok((index, output(result)?))
    }

    /// A WireGuard datagram from `peer` (identified by the path it came on). Decrypts into `out`;
    /// a data packet is checked against the peer's AllowedIPs and the filter before it is
    /// returned for the TUN device. Handshake and cookie messages yield [`Output::ToPeer`]; call
    /// [`Datapath::flush`] afterwards to send packets that waited for the handshake.
    pub fn inbound(
        &mut self,
        peer: PeerIndex,
        from: Option<IpAddr>,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Result<Output, DatapathError> {
        if out.len() < MIN_OUTPUT || out.len() < datagram.len() {
            return Err(DatapathError::BufferTooSmall);
        }
        let (len, src) = match self.tunnel(peer)?.decapsulate(from, datagram, out) {
            TunnResult::WriteToTunnelV4(p, src) => (p.len(), IpAddr::V4(src)),
            TunnResult::WriteToTunnelV6(p, src) => (p.len(), IpAddr::V6(src)),
            other => return output(other),
        };
        if len == 0 {
            return Ok(Output::Nothing); // a keepalive
        }
        if !self.routes.allows_source(peer, src) {
            return Err(DatapathError::SourceNotAllowed);
        }
        match self.filter.check_inbound(&out[..len]) {
            Verdict::Accept => Ok(Output::ToTun { len }),
            Verdict::Drop(_) => Err(DatapathError::Filtered),
        }
    }

    /// After a handshake completes: the next queued packet for `peer`, encrypted, if any. Call
    /// until it returns [`Output::Nothing`].
    pub fn flush(&mut self, peer: PeerIndex, out: &mut [u8]) -> Result<Output, DatapathError> {
        if out.len() < MIN_OUTPUT {
            return Err(DatapathError::BufferTooSmall);
        }
        output(self.tunnel(peer)?.decapsulate(None, &[], out))
    }

    /// A handshake initiation for `peer` when we have no session with it and none is under way;
    /// [`Output::Nothing`] otherwise. For a peer that shows it has traffic for us (a disco ping)
    /// while we hold no session, as right after our own restart: its data still uses the
    /// session our previous run held, and its own new initiation may have gone to where we were
    /// not yet listening (DERP before we reconnected), to be retried only after REKEY_TIMEOUT.
    pub fn initiate(&mut self, peer: PeerIndex, out: &mut [u8]) -> Result<Output, DatapathError> {
        if out.len() < MIN_OUTPUT {
            return Err(DatapathError::BufferTooSmall);
        }
        let tunnel = self.tunnel(peer)?;
        if tunnel.stats().0.is_some() {
            return Ok(Output::Nothing); // a session exists (boringtun rekeys it on its own)
        }
        output(tunnel.format_handshake_initiation(out, false))
    }

    /// Timers for one peer (rekey, keepalive, expiry): call about every 250 ms per peer.
    pub fn tick(&mut self, peer: PeerIndex, out: &mut [u8]) -> Result<Output, DatapathError> {
        if out.len() < MIN_OUTPUT {
            return Err(DatapathError::BufferTooSmall);
        }
        // A peer that never had a packet has no timers to run.
        let peer = self.peers.get_mut(usize::from(peer)).ok_or(DatapathError::UnknownPeer)?;
        match peer.tunnel.as_mut() {
            Some(tunnel) => output(tunnel.update_timers(out)),
            None => Ok(Output::Nothing),
        }
    }
}

fn output(result: TunnResult<'_>) -> Result<Output, DatapathError> {
    match result {
        TunnResult::Done => Ok(Output::Nothing),
        TunnResult::WriteToNetwork(p) => Ok(Output::ToPeer { len: p.len() }),
        TunnResult::WriteToTunnelV4(p, _) | TunnResult::WriteToTunnelV6(p, _) => {
            Ok(Output::ToTun { len: p.len() })
        }
        TunnResult::Err(WireGuardError::ConnectionExpired) => Ok(Output::Nothing),
        TunnResult::Err(e) => Err(DatapathError::WireGuard(e.into())),
    }
}
