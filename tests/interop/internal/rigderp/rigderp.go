// Package rigderp serves DERP and STUN on the netns rig's control host, as region 999, for our
// Go test control servers (testctl, and tinytail-interop's testcontrol wrapper): tailscaled only
// reaches the Running state once it has a home DERP or a live peer.
package rigderp

import (
	"context"
	"encoding/json"
	"log"
	"net"
	"net/http"

	"tailscale.com/derp/derpserver"
	"tailscale.com/net/stunserver"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// Serve adds a DERP server (/derp on mux, which must be served over TLS as host on port) and a
// STUN server on ip:3478, and returns the DERP map of that one region.
func Serve(mux *http.ServeMux, host, ip string, port int) *tailcfg.DERPMap {
	d := derpserver.New(key.NewNode(), log.Printf)
	mux.Handle("/derp", derpserver.Handler(d))
	mux.HandleFunc("/derp/probe", derpserver.ProbeHandler)
	mux.HandleFunc("/derp/latency-check", derpserver.ProbeHandler)
	mux.HandleFunc("/generate_204", derpserver.ServeNoContent)
	// tailscaled asks its DERP servers to resolve the control host too (JSON: name -> addresses).
	mux.HandleFunc("/bootstrap-dns", func(w http.ResponseWriter, r *http.Request) {
		answer := map[string][]string{}
		if r.URL.Query().Get("q") == host {
			answer[host] = []string{ip}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(answer)
	})
	stun := stunserver.New(context.Background())
	if err := stun.Listen(net.JoinHostPort(ip, "3478")); err != nil {
		log.Fatalf("stun: %v", err)
	}
	go stun.Serve()
	return &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
		999: {
			RegionID:   999,
			RegionCode: "rig",
			RegionName: "tinytail rig DERP",
			Nodes: []*tailcfg.DERPNode{{
				Name: "999a", RegionID: 999, HostName: host, IPv4: ip, IPv6: "none",
				STUNPort: 3478, DERPPort: port,
			}},
		},
	}}
}
