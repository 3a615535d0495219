// Writes map-response seeds for the map_response fuzz target (agent/fuzz/seeds/map_response/seed-go-*)
// as tailcfg's own Go types marshal them, one JSON message per line: Go writes nil slices as null,
// zero times as 0001-01-01, and so on, which hand-written JSON would miss. Keys are fresh each run.
//
//	cp ../../../tests/interop/go.sum . && GOFLAGS=-mod=mod go run . ../seeds/map_response
package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
	"tailscale.com/types/opt"
)

func node(id int, host string) *tailcfg.Node {
	v4 := netip.AddrFrom4([4]byte{100, 64, 0, byte(id)})
	v6 := netip.MustParseAddr(fmt.Sprintf("fd7a:115c:a1e0::%x", id))
	addrs := []netip.Prefix{netip.PrefixFrom(v4, 32), netip.PrefixFrom(v6, 128)}
	exp := time.Date(2027, 5, 1, 10, 0, 0, 0, time.UTC)
	seen := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	online := true
	return &tailcfg.Node{
		ID:                tailcfg.NodeID(id),
		StableID:          tailcfg.StableNodeID(fmt.Sprintf("n%dCNTRL", id)),
		Name:              host + ".tail1234.ts.net.",
		User:              1,
		Key:               key.NewNode().Public(),
		KeyExpiry:         exp,
		Machine:           key.NewMachine().Public(),
		DiscoKey:          key.NewDisco().Public(),
		Addresses:         addrs,
		AllowedIPs:        addrs,
		Endpoints:         []netip.AddrPort{netip.MustParseAddrPort(fmt.Sprintf("198.51.100.%d:41641", id))},
		HomeDERP:          1,
		Hostinfo:          (&tailcfg.Hostinfo{Hostname: host, OS: "linux"}).View(),
		Created:           time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Cap:               tailcfg.CurrentCapabilityVersion,
		Online:            &online,
		LastSeen:          &seen,
		MachineAuthorized: true,
	}
}

func main() {
	out := os.Args[1]
	derp := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
		1: {RegionID: 1, RegionCode: "nyc", RegionName: "New York City", Nodes: []*tailcfg.DERPNode{
			{Name: "1f", RegionID: 1, HostName: "derp1f.tailscale.com", IPv4: "199.38.181.104", IPv6: "2607:f740:f::bc"}}},
		999: {RegionID: 999, RegionCode: "rig", RegionName: "Rig", Nodes: []*tailcfg.DERPNode{
			{Name: "999a", RegionID: 999, HostName: "control.tinytail.test", STUNPort: 3478, DERPPort: 443, InsecureForTests: true}}},
	}}
	me := node(1, "router")
	me.PrimaryRoutes = []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}
	me.AllowedIPs = append(me.AllowedIPs, netip.MustParsePrefix("192.168.1.0/24"))
	bare := &tailcfg.Node{ID: 5, Key: key.NewNode().Public()} // nil slices, zero times: Go's defaults
	peers := []*tailcfg.Node{node(2, "laptop"), node(3, "exit"), bare}
	peers[1].PrimaryRoutes = []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}
	peers[1].AllowedIPs = append(peers[1].AllowedIPs, netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("0.0.0.0/0"))
	filter := []tailcfg.FilterRule{
		{SrcIPs: []string{"*"}, DstPorts: []tailcfg.NetPortRange{{IP: "*", Ports: tailcfg.PortRangeAny}}},
		{SrcIPs: []string{"100.64.0.2"}, DstPorts: []tailcfg.NetPortRange{{IP: "192.168.1.0/24", Ports: tailcfg.PortRange{First: 22, Last: 22}}}, IPProto: []int{6}},
	}
	full := &tailcfg.MapResponse{
		Node: me, DERPMap: derp, Peers: peers, PacketFilter: filter, Domain: "tail1234.ts.net",
		CollectServices: opt.False, TKAInfo: &tailcfg.TKAInfo{Head: "ZLTGS4Y7BM2X6WQFRGQYAN7WOZGUDCT7TZ2VGH3GOXVJLNQZNPRA"},
		UserProfiles: []tailcfg.UserProfile{{ID: 1, LoginName: "a@example.com", DisplayName: "A"}},
		ControlTime:  ptr(time.Date(2026, 11, 26, 9, 0, 0, 123, time.UTC)),
	}
	yes, no := true, false
	newNode := node(11, "new")
	patchKey := key.NewNode().Public()
	later := time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC)
	deltas := []*tailcfg.MapResponse{
		{KeepAlive: true},
		{PeersChanged: []*tailcfg.Node{newNode}, PeersRemoved: []tailcfg.NodeID{3}},
		{PeersChangedPatch: []*tailcfg.PeerChange{
			{NodeID: 2, DERPRegion: 999, Endpoints: []netip.AddrPort{netip.MustParseAddrPort("203.0.113.2:41641")}, Online: &no},
			{NodeID: 11, Key: &patchKey, KeyExpiry: &later, LastSeen: &later},
		}},
		{OnlineChange: map[tailcfg.NodeID]bool{2: true, 11: false}, PeerSeenChange: map[tailcfg.NodeID]bool{2: true, 11: false}},
		{PacketFilters: map[string][]tailcfg.FilterRule{"*": nil, "base": filter[1:]}},
		{TKAInfo: &tailcfg.TKAInfo{Disabled: true}},
		{DERPMap: &tailcfg.DERPMap{HomeParams: &tailcfg.DERPHomeParams{}}},
		{Node: me, Peers: []*tailcfg.Node{node(2, "laptop")}, PingRequest: &tailcfg.PingRequest{URL: "https://control.example/ping/1", Log: yes}},
	}
	write := func(name string, msgs ...*tailcfg.MapResponse) {
		var b []byte
		for _, m := range msgs {
			j, err := json.Marshal(m)
			if err != nil {
				panic(err)
			}
			b = append(append(b, j...), '\n')
		}
		if err := os.WriteFile(filepath.Join(out, name), b, 0o644); err != nil {
			panic(err)
		}
	}
	write("seed-go-full-map", full)
	write("seed-go-stream", append([]*tailcfg.MapResponse{full}, deltas...)...)
	for i, d := range deltas {
		write(fmt.Sprintf("seed-go-delta-%d", i), full, d)
	}
}

func ptr[T any](v T) *T { return &v }
