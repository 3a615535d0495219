package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"tailscale.com/control/controlhttp/controlhttpserver"
	"tailscale.com/tailcfg"
	"tailscale.com/tka"
	"tailscale.com/types/key"
	"tailscale.com/types/opt"
	"tailscale.com/types/tkatype"
	"tailscale.com/util/zstdframe"
)

// The one user every node belongs to.
const userID = tailcfg.UserID(1)

// keepAliveEvery is how often an idle map stream gets {"KeepAlive":true}: well inside
// tailscaled's 120 s map watchdog, and often enough that a dead stream is noticed in tests.
const keepAliveEvery = 20 * time.Second

// bodyLimit caps request bodies: the largest legitimate one is a sync/send of a long AUM chain.
const bodyLimit = 16 << 20

// node is one registered machine.
type node struct {
	id        tailcfg.NodeID
	key       key.NodePublic
	machine   key.MachinePublic
	disco     key.DiscoPublic
	nlKey     key.NLPublic
	label     string // the DNS label: Name is label.DOMAIN.
	hostinfo  *tailcfg.Hostinfo
	endpoints []netip.AddrPort
	homeDERP  int
	keySig    tkatype.MarshaledSignature
	capVer    tailcfg.CapabilityVersion
	created   time.Time
	streams   int       // open map streams (for /debug/nodes)
	changedAt time.Time // last register or map-request change its peers hear of
	// c2n requests (c2n.go) not yet sent; poke (buffered 1) wakes a map stream to send them.
	pings []*tailcfg.PingRequest
	poke  chan struct{}
}

type server struct {
	authKey   string // "" = any non-empty key
	domain    string
	noiseKey  key.MachinePrivate
	legacyKey key.MachinePrivate
	derpMap   *tailcfg.DERPMap // set before serving, read-only after

	mu      sync.Mutex
	nodes   []*node // in ID order
	byKey   map[key.NodePublic]*node
	lastID  tailcfg.NodeID
	changed chan struct{} // closed (and replaced) by notifyLocked

	// Tailnet lock: authority and chonk are nil while lock is off.
	chonk     *tka.Mem
	authority *tka.Authority
	// pending* hold a genesis between init/begin and init/finish: lock turns on only at finish,
	// once every node has its signature, as in Tailscale's control.
	pendingChonk     *tka.Mem
	pendingAuthority *tka.Authority
	// disablementSecret is set when lock was disabled: bootstrap hands it to nodes so they can
	// check it against their own state before dropping it.
	disablementSecret []byte

	dns setDNS // /machine/set-dns (setdns.go)

	c2n map[string]*c2nWait // by reply token: /debug/c2n calls waiting for a node (c2n.go)
}

func newServer(authKey, domain string) *server {
	return &server{
		authKey:   authKey,
		domain:    strings.Trim(domain, "."),
		noiseKey:  key.NewMachine(),
		legacyKey: key.NewMachine(),
		byKey:     map[key.NodePublic]*node{},
		changed:   make(chan struct{}),
	}
}

// notifyLocked wakes every map stream, which then sends a new full map response.
func (s *server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// serveKey is GET /key?v=N: the Noise key tailscaled and tinytail dial /ts2021 with.
func (s *server) serveKey(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("v") == "" {
		// Pre-Noise clients only; kept so a plain /key probe gets an answer.
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, s.legacyKey.Public().UntypedHexString())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(&tailcfg.OverTLSPublicKeyResponse{
		LegacyPublicKey: s.legacyKey.Public(),
		PublicKey:       s.noiseKey.Public(),
	})
}

// serveNoiseUpgrade is /ts2021: the Noise IK handshake over an HTTP Upgrade, then HTTP/2 over the
// Noise connection, every request of which comes from the peer's machine key.
func (s *server) serveNoiseUpgrade(w http.ResponseWriter, r *http.Request) {
	conn, err := controlhttpserver.AcceptHTTP(r.Context(), w, r, s.noiseKey, nil)
	if err != nil {
		log.Printf("ts2021 from %s: %v", r.RemoteAddr, err)
		return
	}
	defer conn.Close()
	mkey := conn.Peer()
	h := recoverer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serveMachine(w, r, mkey)
	}))
	var h2 http2.Server
	h2.ServeConn(conn, &http2.ServeConnOpts{Context: r.Context(), BaseConfig: &http.Server{Handler: h}})
}

func (s *server) serveMachine(w http.ResponseWriter, r *http.Request, mkey key.MachinePublic) {
	p := r.URL.Path
	switch {
	case p == "/machine/register":
		s.serveRegister(w, r, mkey)
	case p == "/machine/map":
		s.serveMap(w, r, mkey)
	case strings.HasPrefix(p, "/machine/tka/"):
		s.serveTKA(w, r, mkey)
	case p == "/machine/set-dns":
		s.serveSetDNS(w, r, mkey)
	case strings.HasPrefix(p, c2nReplyPrefix):
		s.serveC2NReply(w, r, mkey)
	case p == "/machine/update-health":
		io.Copy(io.Discard, io.LimitReader(r.Body, bodyLimit))
		w.WriteHeader(http.StatusOK)
	default:
		httpError(w, r, http.StatusNotFound, "testctl does not serve %s", p)
	}
}

// readJSON decodes the request body into v, answering 400 itself when it cannot.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, bodyLimit+1))
	if err != nil {
		httpError(w, r, http.StatusBadRequest, "reading body: %v", err)
		return false
	}
	if len(body) > bodyLimit {
		httpError(w, r, http.StatusRequestEntityTooLarge, "body over %d bytes", bodyLimit)
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		httpError(w, r, http.StatusBadRequest, "decoding %T: %v", v, err)
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (s *server) user() (tailcfg.User, tailcfg.Login, tailcfg.UserProfile) {
	const login, display = "rig@tinytail.test", "rig"
	return tailcfg.User{ID: userID, DisplayName: display},
		tailcfg.Login{ID: tailcfg.LoginID(userID), LoginName: login, DisplayName: display},
		tailcfg.UserProfile{ID: userID, LoginName: login, DisplayName: display}
}

// serveRegister is /machine/register: new nodes (with an auth key), re-registration of a known
// node key, node-key rotation (OldNodeKey) and logout (Expiry in the past).
func (s *server) serveRegister(w http.ResponseWriter, r *http.Request, mkey key.MachinePublic) {
	var req tailcfg.RegisterRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.NodeKey.IsZero() {
		httpError(w, r, http.StatusBadRequest, "register: no NodeKey")
		return
	}
	user, login, _ := s.user()
	ok := tailcfg.RegisterResponse{User: user, Login: login, MachineAuthorized: true}

	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.byKey[req.NodeKey]
	if n != nil && n.machine != mkey {
		httpError(w, r, http.StatusForbidden, "register: node key belongs to another machine")
		return
	}

	if !req.Expiry.IsZero() && req.Expiry.Before(time.Now()) {
		// Logout: the node and its addresses go; the machine must register anew to return.
		if n != nil {
			s.removeLocked(n)
			log.Printf("register: node %d (%s) logged out", n.id, n.label)
		}
		ok.NodeKeyExpired = true
		ok.MachineAuthorized = false
		writeJSON(w, ok)
		return
	}

	if n == nil && !req.OldNodeKey.IsZero() {
		if old := s.byKey[req.OldNodeKey]; old != nil && old.machine == mkey {
			// Rotation. Under lock the new key needs a rotation signature from the node's own
			// tailnet-lock key: hand back the old signature once, tailscaled re-signs it and
			// registers again with NodeKeySignature (tka.ResignNKS).
			if s.authority != nil && len(old.keySig) > 0 && len(req.NodeKeySignature) == 0 {
				writeJSON(w, tailcfg.RegisterResponse{User: user, Login: login, NodeKeySignature: old.keySig})
				return
			}
			delete(s.byKey, old.key)
			old.key = req.NodeKey
			old.keySig = nil
			s.byKey[old.key] = old
			n = old
			log.Printf("register: node %d (%s) rotated its node key", n.id, n.label)
		}
	}

	if n == nil {
		var got string
		if req.Auth != nil {
			got = req.Auth.AuthKey
		}
		if got == "" || (s.authKey != "" && got != s.authKey) {
			// An Error reply, not a status: tailscale up prints it as the reason.
			log.Printf("register: refused a new node (auth key %s)", map[bool]string{true: "missing", false: "wrong"}[got == ""])
			writeJSON(w, tailcfg.RegisterResponse{Error: "invalid auth key (testctl has no interactive login)"})
			return
		}
		s.lastID++
		n = &node{id: s.lastID, key: req.NodeKey, machine: mkey, created: time.Now(), poke: make(chan struct{}, 1)}
		s.nodes = append(s.nodes, n)
		s.byKey[n.key] = n
	}

	n.capVer = req.Version
	if !req.NLKey.IsZero() {
		n.nlKey = req.NLKey
	}
	if req.Hostinfo != nil {
		n.hostinfo = req.Hostinfo.Clone()
	}
	n.label = s.labelLocked(n)
	if len(req.NodeKeySignature) > 0 {
		// A rotation re-signature or a wrapped pre-auth key's signature: kept only when it
		// verifies (lock off: nothing to verify against, so nothing to keep).
		if err := s.verifyLocked(n.key, req.NodeKeySignature); err != nil {
			log.Printf("register: node %d (%s): ignoring its NodeKeySignature: %v", n.id, n.label, err)
		} else {
			n.keySig = req.NodeKeySignature
		}
	}
	log.Printf("register: node %d (%s) %s nlkey=%s", n.id, n.label, n.key.ShortString(), n.nlKey.CLIString())
	n.changedAt = time.Now()
	s.notifyLocked()
	writeJSON(w, ok)
}

// removeLocked drops n from the tailnet and tells everyone.
func (s *server) removeLocked(n *node) {
	delete(s.byKey, n.key)
	s.nodes = slices.DeleteFunc(s.nodes, func(o *node) bool { return o == n })
	s.notifyLocked()
}

// labelLocked picks n's DNS label: its hostname, lower-cased and cleaned, made unique with -ID.
func (s *server) labelLocked(n *node) string {
	host := ""
	if n.hostinfo != nil {
		host = n.hostinfo.Hostname
	}
	var b strings.Builder
	for _, c := range strings.ToLower(host) {
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	label := strings.Trim(b.String(), "-")
	if label == "" {
		label = "node"
	}
	for _, o := range s.nodes {
		if o != n && o.label == label {
			return fmt.Sprintf("%s-%d", label, n.id)
		}
	}
	return label
}

// addresses are 100.64.0.ID and fd7a:115c:a1e0::ID (ID above 255 spills into the third byte).
func (n *node) addresses() []netip.Prefix {
	id := uint16(n.id)
	v4 := netip.AddrFrom4([4]byte{100, 64, byte(id >> 8), byte(id)})
	var b [16]byte
	copy(b[:], []byte{0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0})
	binary.BigEndian.PutUint16(b[14:], id)
	return []netip.Prefix{netip.PrefixFrom(v4, 32), netip.PrefixFrom(netip.AddrFrom16(b), 128)}
}

// routes splits what n advertises into subnet routes (PrimaryRoutes) and all of it (AllowedIPs
// beyond its addresses): every route is approved, exit routes too.
func (n *node) routes() (primary, all []netip.Prefix) {
	if n.hostinfo == nil {
		return nil, nil
	}
	for _, p := range n.hostinfo.RoutableIPs {
		all = append(all, p)
		if p.Bits() != 0 {
			primary = append(primary, p)
		}
	}
	return primary, all
}

// tailcfgNode is n as a map response shows it.
func (s *server) tailcfgNode(n *node) *tailcfg.Node {
	addrs := n.addresses()
	primary, routes := n.routes()
	capMap := tailcfg.NodeCapMap{
		tailcfg.CapabilityTailnetLock: []tailcfg.RawMessage{},
		tailcfg.CapabilityHTTPS:       []tailcfg.RawMessage{},
	}
	// Always online (the brief's "Online=true"): a stream opening or closing is no news to peers,
	// so it sends no map responses, which keeps the tests' "did X notify?" checks sharp.
	online := true
	t := &tailcfg.Node{
		ID:                n.id,
		StableID:          tailcfg.StableNodeID(fmt.Sprintf("TESTCTL%06d", n.id)),
		Name:              n.label + "." + s.domain + ".",
		User:              userID,
		Key:               n.key,
		KeySignature:      n.keySig,
		Machine:           n.machine,
		DiscoKey:          n.disco,
		Addresses:         addrs,
		AllowedIPs:        append(slices.Clone(addrs), routes...),
		PrimaryRoutes:     primary,
		Endpoints:         n.endpoints,
		HomeDERP:          n.homeDERP,
		Created:           n.created,
		Cap:               n.capVer,
		Online:            &online,
		MachineAuthorized: true,
		CapMap:            capMap,
		// The legacy list too: tailscaled reads both, tinytail may read either.
		Capabilities: []tailcfg.NodeCapability{tailcfg.CapabilityTailnetLock, tailcfg.CapabilityHTTPS},
	}
	if n.hostinfo != nil {
		t.Hostinfo = n.hostinfo.View()
	}
	return t
}

// mapResponseLocked is the full map response for n; nil when n is gone.
func (s *server) mapResponseLocked(n *node) *tailcfg.MapResponse {
	if s.byKey[n.key] != n {
		return nil
	}
	_, _, profile := s.user()
	self := s.tailcfgNode(n)
	res := &tailcfg.MapResponse{
		Node:            self,
		DERPMap:         s.derpMap,
		Domain:          s.domain,
		PacketFilter:    tailcfg.FilterAllowAll,
		UserProfiles:    []tailcfg.UserProfile{profile},
		CollectServices: opt.False,
		DNSConfig:       &tailcfg.DNSConfig{CertDomains: s.certDomains(n)},
	}
	for _, p := range s.nodes { // already in ID order
		if p != n {
			res.Peers = append(res.Peers, s.tailcfgNode(p))
		}
	}
	switch {
	case s.authority != nil:
		res.TKAInfo = &tailcfg.TKAInfo{Head: s.authority.Head().String()}
	case s.disablementSecret != nil:
		res.TKAInfo = &tailcfg.TKAInfo{Disabled: true}
	}
	return res
}

// serveMap is /machine/map: a lite update (OmitPeers, no Stream) stores what the node sent and
// answers 200; a stream sends a full map response now and after every change, with keep-alives.
func (s *server) serveMap(w http.ResponseWriter, r *http.Request, mkey key.MachinePublic) {
	var req tailcfg.MapRequest
	if !readJSON(w, r, &req) {
		return
	}
	s.mu.Lock()
	n := s.byKey[req.NodeKey]
	if n == nil || n.machine != mkey {
		s.mu.Unlock()
		httpError(w, r, http.StatusForbidden, "map: unknown node key %s for this machine", req.NodeKey.ShortString())
		return
	}
	if !req.ReadOnly {
		if what := s.applyMapRequestLocked(n, &req); what != "" {
			log.Printf("map: node %d (%s) changed %s", n.id, n.label, what)
			n.changedAt = time.Now()
			s.notifyLocked()
		}
	}
	s.mu.Unlock()

	compress := req.Compress == "zstd"
	if !req.Stream {
		if req.OmitPeers {
			w.WriteHeader(http.StatusOK)
			return
		}
		s.mu.Lock()
		res := s.mapResponseLocked(n)
		s.mu.Unlock()
		if res != nil {
			sendMapMessage(w, compress, res)
		}
		return
	}

	s.mu.Lock()
	n.streams++
	log.Printf("map: node %d (%s) opened a stream (%d open)", n.id, n.label, n.streams)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		n.streams--
		s.mu.Unlock()
	}()

	w.WriteHeader(http.StatusOK)
	keepAlive := time.NewTicker(keepAliveEvery)
	defer keepAlive.Stop()
	var sentPeers []tailcfg.NodeID
	for {
		s.mu.Lock()
		changed := s.changed
		res := s.mapResponseLocked(n)
		s.mu.Unlock()
		if res == nil {
			return // logged out
		}
		// An empty Peers means "no change" to tailscaled, so say which peers went.
		if len(res.Peers) == 0 {
			res.PeersRemoved = sentPeers
		}
		sentPeers = nil // a new slice: PeersRemoved may still hold the old one
		for _, p := range res.Peers {
			sentPeers = append(sentPeers, p.ID)
		}
		if err := sendMapMessage(w, compress, res); err != nil {
			return
		}
	wait:
		for {
			// c2n requests go out as keep-alives carrying a PingRequest: tailscaled and tinytail
			// answer the ping before they skip a keep-alive, and nothing else changes.
			s.mu.Lock()
			pings := s.takePingsLocked(n)
			s.mu.Unlock()
			for _, pr := range pings {
				if err := sendMapMessage(w, compress, &tailcfg.MapResponse{KeepAlive: true, PingRequest: pr}); err != nil {
					return
				}
			}
			select {
			case <-r.Context().Done():
				return
			case <-changed:
				break wait
			case <-n.poke:
			case <-keepAlive.C:
				if err := sendMapMessage(w, compress, &tailcfg.MapResponse{KeepAlive: true}); err != nil {
					return
				}
			}
		}
	}
}

// applyMapRequestLocked stores what a map request tells about n and says what changed that peers
// need to hear of ("" for nothing). Zero fields change nothing: tailscaled's streaming request
// (Version >= 68) leaves endpoints and disco key out and sends them in lite updates instead.
func (s *server) applyMapRequestLocked(n *node, req *tailcfg.MapRequest) string {
	var changed []string
	if req.Version != 0 {
		n.capVer = req.Version
	}
	if !req.DiscoKey.IsZero() && req.DiscoKey != n.disco {
		n.disco = req.DiscoKey
		changed = append(changed, "disco key")
	}
	if len(req.Endpoints) > 0 {
		var eps []netip.AddrPort
		for _, ep := range req.Endpoints {
			// Link-local and zoned IPv6 endpoints are useless to peers.
			if ep.Addr().Zone() == "" && !(ep.Addr().Is6() && ep.Addr().IsLinkLocalUnicast()) {
				eps = append(eps, ep)
			}
		}
		if !slices.Equal(eps, n.endpoints) {
			n.endpoints = eps
			changed = append(changed, "endpoints")
		}
	}
	if req.Hostinfo != nil && !req.Hostinfo.Equal(n.hostinfo) {
		n.hostinfo = req.Hostinfo.Clone()
		changed = append(changed, "hostinfo")
		if ni := req.Hostinfo.NetInfo; ni != nil && ni.PreferredDERP != 0 {
			n.homeDERP = ni.PreferredDERP
		}
		n.label = s.labelLocked(n)
	}
	return strings.Join(changed, ", ")
}

// sendMapMessage writes one framed message: 4-byte little-endian length, then JSON, zstd-compressed
// when the client asked for it.
func sendMapMessage(w http.ResponseWriter, compress bool, msg *tailcfg.MapResponse) error {
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if compress {
		b = zstdframe.AppendEncode(nil, b, zstdframe.FastestCompression)
	}
	var size [4]byte
	binary.LittleEndian.PutUint32(size[:], uint32(len(b)))
	if _, err := w.Write(size[:]); err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	return nil
}
