// Fake peers for the netmap and RSS benchmarks (bench/netmap.sh, bench/rss.sh), built with
// testcontrol's exported API only.
//
// Three ways in:
//
//   - `control -fake-nodes N` puts N fake nodes into the server before anyone joins, so every
//     client's first map response (and every later automatic one) carries them.
//   - POST /bench/push?node=HOST&as=full|delta|reset&add=K sends one map response to the joined
//     node whose hostname is HOST, through testcontrol's raw-map-response queue:
//     full:  K new fake peers plus every node the server knows, as one full map response;
//     delta: K more new fake peers, as one map response with only PeersChanged;
//     reset: a full map response without the pushed fake peers.
//     It answers {"node":HOST,"peers":TOTAL,"bytes":JSON_SIZE} once the message is queued.
//     After the first push that node gets only pushed map responses (testcontrol's rule), so push
//     to nodes that need no further updates from other nodes.
//   - POST /bench/routes?node=HOST&routes=CIDR,... approves those subnet routes for HOST (what
//     an admin does for a subnet router); every node gets them in its next map response.
//
// Fake nodes look like ordinary peers: node/machine/disco keys, an IPv4 and IPv6 address in the
// CGNAT and Tailscale ULA ranges, a hostname and two endpoints in TEST-NET-2 (198.51.100.0/24),
// which the rig never routes, and DERP region 999 as home.
//
// `control -derp-host NAME` (with -tls-cert) also serves DERP at /derp on the same listener and
// STUN on UDP 3478 of the listen address, announced as region 999 (as the rig's Headscale does):
// tailscaled only reaches the Running state once it has a home DERP or a live peer.
package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"tailscale.com/net/tsaddr"
	"tailscale.com/tailcfg"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/key"
	"tinytail.test/interop/internal/rigderp"
)

// fakeUser owns every fake node (no real node gets this ID: testcontrol numbers users from 1).
const fakeUser = tailcfg.UserID(900000)

// pushedIDBase keeps pushed fakes' node IDs clear of testcontrol's own (1, 2, ... per join).
const pushedIDBase = 1000000

// fakeNode builds fake node number id with the IPv4 address v4.
func fakeNode(id int, v4 netip.Addr) *tailcfg.Node {
	v6 := tsaddr.Tailscale4To6(v4)
	addrs := []netip.Prefix{netip.PrefixFrom(v4, 32), netip.PrefixFrom(v6, 128)}
	host := fmt.Sprintf("fake-%d", id)
	return &tailcfg.Node{
		ID:                tailcfg.NodeID(id),
		StableID:          tailcfg.StableNodeID(fmt.Sprintf("FAKE%08d", id)),
		Name:              host + ".fake-control.example.net.",
		User:              fakeUser,
		Key:               key.NewNode().Public(),
		Machine:           key.NewMachine().Public(),
		DiscoKey:          key.NewDisco().Public(),
		Addresses:         addrs,
		AllowedIPs:        addrs,
		MachineAuthorized: true,
		HomeDERP:          999,
		Hostinfo:          (&tailcfg.Hostinfo{Hostname: host, OS: "linux"}).View(),
		Endpoints: []netip.AddrPort{
			netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + id%250)}), 41641),
			netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + (id+125)%250)}), uint16(20000+id%40000)),
		},
	}
}

// addStartFakeNodes adds n fake nodes with IDs 1..n and testcontrol's own address scheme
// (100.64.ID>>8.ID), so the nodes that join later (IDs n+1, n+2, ...) get distinct addresses.
func addStartFakeNodes(ctl *testcontrol.Server, n int) {
	if n == 0 {
		return
	}
	// UpdateNode needs the server's node map, which only AddFakeNode (or a join) creates: let it
	// make the first node, then overwrite that node (same key) with ours.
	ctl.AddFakeNode()
	first := ctl.AllNodes()[0].Key
	for i := 1; i <= n; i++ {
		node := fakeNode(i, netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}))
		if i == 1 {
			node.Key = first
		}
		ctl.UpdateNode(node)
	}
	if got := ctl.NumNodes(); got != n {
		panic(fmt.Sprintf("fake nodes: made %d, want %d", got, n))
	}
}

// pusher holds, per node key, the fake peers pushed to that node.
type pusher struct {
	ctl    *testcontrol.Server
	mu     sync.Mutex
	next   int // pushed fakes made so far
	extras map[key.NodePublic][]*tailcfg.Node
}

func (p *pusher) newFakes(k int) []*tailcfg.Node {
	out := make([]*tailcfg.Node, 0, k)
	for range k {
		c := p.next
		p.next++
		// 100.96.0.0/12 onwards: clear of 100.64.0.0/16, where testcontrol and -fake-nodes live.
		v4 := netip.AddrFrom4([4]byte{100, byte(96 + c>>16), byte(c >> 8), byte(c)})
		out = append(out, fakeNode(pushedIDBase+c, v4))
	}
	return out
}

// joined finds the joined (not fake) node with hostname host.
func joined(ctl *testcontrol.Server, host string) *tailcfg.Node {
	for _, n := range ctl.AllNodes() {
		if n.User != fakeUser && n.Hostinfo.Valid() && n.Hostinfo.Hostname() == host {
			return n
		}
	}
	return nil
}

// serveRoutes is POST /bench/routes.
func serveRoutes(ctl *testcontrol.Server) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		host := r.URL.Query().Get("node")
		target := joined(ctl, host)
		if target == nil {
			http.Error(w, "no joined node with hostname "+strconv.Quote(host), http.StatusNotFound)
			return
		}
		var routes []netip.Prefix
		for _, s := range strings.Split(r.URL.Query().Get("routes"), ",") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			routes = append(routes, p)
		}
		ctl.SetSubnetRoutes(target.Key, routes)
		fmt.Fprintf(w, "%s: %v\n", host, routes)
	}
}

func (p *pusher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	host, as := q.Get("node"), q.Get("as")
	add, _ := strconv.Atoi(q.Get("add"))
	target := joined(p.ctl, host)
	if target == nil {
		http.Error(w, "no joined node with hostname "+strconv.Quote(host), http.StatusNotFound)
		return
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.extras == nil {
		p.extras = map[key.NodePublic][]*tailcfg.Node{}
	}
	nk := target.Key
	var msg *tailcfg.MapResponse
	switch as {
	case "full", "reset":
		if as == "full" {
			p.extras[nk] = p.newFakes(add)
		} else {
			delete(p.extras, nk)
		}
		res, err := p.ctl.MapResponse(&tailcfg.MapRequest{NodeKey: nk})
		if err != nil || res == nil {
			http.Error(w, fmt.Sprintf("map response for %s: %v", host, err), http.StatusInternalServerError)
			return
		}
		res.Peers = append(res.Peers, p.extras[nk]...)
		msg = res
	case "delta":
		fresh := p.newFakes(add)
		p.extras[nk] = append(p.extras[nk], fresh...)
		msg = &tailcfg.MapResponse{PeersChanged: fresh}
	default:
		http.Error(w, "as must be full, delta or reset", http.StatusBadRequest)
		return
	}
	body, err := json.Marshal(msg)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if !p.ctl.AddRawMapResponse(nk, msg) {
		http.Error(w, host+" has no map poll open", http.StatusConflict)
		return
	}
	// Peers the node will list: every other node the server knows, plus what we pushed.
	total := len(p.ctl.AllNodes()) - 1 + len(p.extras[nk])
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"node": host, "peers": total, "bytes": len(body)})
}

// serveDERP serves DERP and STUN as the rig's region 999 (see rigderp) and gives ctl its map.
func serveDERP(ctl *testcontrol.Server, mux *http.ServeMux, host, ip string) {
	ctl.DERPMap = rigderp.Serve(mux, host, ip, 443)
}
