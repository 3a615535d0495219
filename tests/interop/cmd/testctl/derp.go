package main

import (
	"net/http"

	"tailscale.com/tailcfg"
	"tinytail.test/interop/internal/rigderp"
)

// serveDERP serves DERP and STUN as the rig's region 999 (see rigderp).
func serveDERP(mux *http.ServeMux, host, ip string, port int) *tailcfg.DERPMap {
	return rigderp.Serve(mux, host, ip, port)
}
