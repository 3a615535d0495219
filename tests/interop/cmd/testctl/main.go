// Command testctl is tinytail's test coordination server: enough of Tailscale's control plane
// (ts2021 Noise + HTTP/2, register, map streams) for real tailscaled and tinytail nodes to join
// and reach each other in the netns rig, plus tailnet lock, which Headscale lacks.
//
// Tailnet lock: every /machine/tka/* RPC tailscaled v1.101 makes (init/begin, init/finish,
// bootstrap, sync/offer, sync/send, disable, sign, affected-sigs), checked with tailscale.com/tka
// and kept in a tka.ChonkMem; map responses carry TKAInfo{Head} while lock is on and
// TKAInfo{Disabled:true} once it was disabled, and every node's KeySignature. Any change a node
// could care about sends every open map stream a new full map response.
//
// It is our own code (not a copy of tailscale.com's testcontrol, which lacks sync/send, disable and
// affected-sigs, never sends Disabled and panics on input it does not expect): errors are HTTP
// status codes with one line of text, and a panic in a handler becomes a 500.
//
// Deliberately lacking: interactive login (registration needs an auth key), ACLs (the packet
// filter allows everything), route approval (every advertised route, exit routes too, is
// approved), node expiry, ephemeral nodes, DNS beyond the MagicDNS domain name and CertDomains,
// persistence (state is in memory and dies with the process), more than one user or tailnet.
//
// Certificates: every node's DNSConfig.CertDomains is its MagicDNS name (HOST.DOMAIN), and with
// -challtestsrv, POST /machine/set-dns puts the node's DNS-01 TXT record
// (_acme-challenge.HOST.DOMAIN) into pebble-challtestsrv, so `tailscale cert` works against
// Pebble (tests/e2e/cert.sh; setdns.go).
//
// c2n (control-to-node; c2n.go): POST /debug/c2n sends a node, on its open map stream, a
// keep-alive carrying tailcfg.PingRequest{Types: "c2n", URLIsNoise: true, URL: .../c2n-reply/TOKEN,
// Payload: an HTTP/1.1 request}; the node POSTs the whole HTTP/1.1 response to /c2n-reply/TOKEN
// over Noise (only that node's machine key, only once: else 403, 404), and the waiting call
// answers with the node's status and body (tests/e2e/c2n.sh asks tailscaled /tls-cert-status).
//
// Admin HTTP for scripts, on the same listener (plain HTTP(S), not Noise):
//
//	GET /debug/nodes  JSON list of nodes (see debugNode)
//	GET /debug/tka    JSON tailnet lock state (see debugTKA)
//	POST /debug/tka/grow?aums=N  turn lock on with an N-AUM chain of testctl's own (bench/tka.sh)
//	GET /debug/set-dns  JSON list of the TXT records set-dns forwarded (see debugSetDNS)
//	POST /debug/set-dns/tamper?on=true|false  forward wrong TXT values (negative tests)
//	POST /debug/set-dns/delay?d=10s  reply to set-dns that late, after forwarding (kill tests)
//	POST /debug/c2n?node=NAME&path=PATH[&timeout=10s][&method=GET]  ask node NAME (hostname, DNS
//	     label or MagicDNS name) for PATH (url-escaped, its query included) over c2n; 200 with
//	     {"status": N, "body": "..."} (the node's answer); 400 bad parameters, 404 no such node,
//	     502 the reply was no HTTP response, 504 no reply within timeout (at most 5m)
//
// Usage:
//
//	testctl -listen 198.18.0.10:443 -tls-cert control.crt -tls-key control.key \
//	  -derp-host control.tinytail.test [-auth-key KEY] [-magicdns tail1234.ts.net] \
//	  [-challtestsrv http://198.18.0.10:8055]
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	tlsCert := flag.String("tls-cert", "", "serve HTTPS with this certificate (PEM; needs -tls-key)")
	tlsKey := flag.String("tls-key", "", "the certificate's private key (PEM)")
	derpHost := flag.String("derp-host", "", "with -tls-cert: serve DERP and STUN as region 999 under this name")
	authKey := flag.String("auth-key", "", "when set, registration needs exactly this auth key (else any non-empty key)")
	magicDNS := flag.String("magicdns", "tail1234.ts.net", "MagicDNS domain: nodes are named HOST.DOMAIN.")
	challtestsrv := flag.String("challtestsrv", "", "pebble-challtestsrv management URL: /machine/set-dns puts TXT records there (else set-dns answers 501)")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testctl:", err)
		os.Exit(1)
	}
	s := newServer(*authKey, *magicDNS)
	s.dns.challtestsrv = strings.TrimRight(*challtestsrv, "/")
	mux := http.NewServeMux()
	mux.HandleFunc("/key", s.serveKey)
	mux.HandleFunc("/ts2021", s.serveNoiseUpgrade)
	mux.HandleFunc("GET /debug/nodes", s.serveDebugNodes)
	mux.HandleFunc("GET /debug/tka", s.serveDebugTKA)
	mux.HandleFunc("POST /debug/tka/grow", s.serveDebugTKAGrow)
	mux.HandleFunc("GET /debug/set-dns", s.serveDebugSetDNS)
	mux.HandleFunc("POST /debug/set-dns/tamper", s.serveDebugSetDNSTamper)
	mux.HandleFunc("POST /debug/set-dns/delay", s.serveDebugSetDNSDelay)
	mux.HandleFunc("POST /debug/c2n", s.serveDebugC2N)
	if *tlsCert != "" {
		if *derpHost != "" {
			addr := ln.Addr().(*net.TCPAddr)
			s.derpMap = serveDERP(mux, *derpHost, addr.IP.String(), addr.Port)
		}
		fmt.Printf("control listening on https://%s\n", ln.Addr())
		// HTTP/1.1 only: both Noise and DERP start with an HTTP Upgrade.
		srv := &http.Server{Handler: recoverer(mux), TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
		go func() { fmt.Fprintln(os.Stderr, "testctl:", srv.ServeTLS(ln, *tlsCert, *tlsKey)); os.Exit(1) }()
	} else {
		fmt.Printf("control listening on http://%s\n", ln.Addr())
		go func() { fmt.Fprintln(os.Stderr, "testctl:", http.Serve(ln, recoverer(mux))); os.Exit(1) }()
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}

// recoverer turns a panic in h into a 500 and a log line: input must never stop the server.
func recoverer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p) // net/http's own way of dropping a connection
				}
				log.Printf("PANIC serving %s %s: %v", r.Method, r.URL.Path, p)
				http.Error(w, fmt.Sprintf("internal error: %v", p), http.StatusInternalServerError)
			}
		}()
		h.ServeHTTP(w, r)
	})
}

// httpError writes a one-line error (what tailscaled shows as "request returned (CODE): BODY")
// and logs it, so a failing test's testctl log says what was refused.
func httpError(w http.ResponseWriter, r *http.Request, code int, format string, args ...any) {
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ")
	log.Printf("%s %s: %d %s", r.Method, r.URL.Path, code, msg)
	http.Error(w, msg, code)
}
