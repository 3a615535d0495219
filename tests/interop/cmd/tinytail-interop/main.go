// Command tinytail-interop holds tinytail's Go-side reference checks: it serves tailnet-lock
// vectors built with tailscale.com/tka and runs a control server (tailscale.com's own test
// control server) for the features Headscale lacks (tailnet lock, set-dns for certificates).
//
// Subcommands:
//
//	control  run testcontrol on an address and print its URL (-fake-nodes N: N fake peers from
//	         the start; POST /bench/push and /bench/routes for the benches, see fake_nodes.go)
//	version  print the pinned tailscale.com version this was built with
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"tailscale.com/tstest/integration/testcontrol"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "version":
		fmt.Println(moduleVersion("tailscale.com"))
	case "control":
		runControl(os.Args[2:])
	case "tka-vectors":
		runTKAVectors(os.Args[2:])
	case "tka-sync-vectors":
		runTKASyncVectors(os.Args[2:])
	case "tka-verify":
		runTKAVerify(os.Args[2:])
	case "tka-filter-bench":
		runTKAFilterBench(os.Args[2:])
	case "noise-vector":
		runNoiseVector(os.Args[2:])
	case "stun-vector":
		runSTUNVector(os.Args[2:])
	case "box-vectors":
		runBoxVectors(os.Args[2:])
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: tinytail-interop control [-listen ADDR] [-fake-nodes N] [-tls-cert F -tls-key F [-derp-host NAME]] | version")
	os.Exit(2)
}

func moduleVersion(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, d := range info.Deps {
		if d.Path == path {
			return d.Version
		}
	}
	return "unknown"
}

// runControl serves testcontrol with its embedded DERP-less defaults until SIGINT/SIGTERM.
func runControl(args []string) {
	fs := flag.NewFlagSet("control", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	fakeNodes := fs.Int("fake-nodes", 0, "fake peers to add before anyone joins (benchmarks)")
	tlsCert := fs.String("tls-cert", "", "serve HTTPS with this certificate (PEM; needs -tls-key)")
	tlsKey := fs.String("tls-key", "", "the certificate's private key (PEM)")
	derpHost := fs.String("derp-host", "", "with -tls-cert: serve DERP and STUN as region 999 under this name")
	fs.Parse(args)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "control:", err)
		os.Exit(1)
	}
	ctl := &testcontrol.Server{}
	addStartFakeNodes(ctl, *fakeNodes)
	mux := http.NewServeMux()
	mux.Handle("/", ctl)
	mux.Handle("POST /bench/push", &pusher{ctl: ctl})
	mux.Handle("POST /bench/routes", serveRoutes(ctl))
	if *tlsCert != "" {
		if *derpHost != "" {
			serveDERP(ctl, mux, *derpHost, ln.Addr().(*net.TCPAddr).IP.String())
		}
		fmt.Printf("control listening on https://%s\n", ln.Addr())
		// HTTP/1.1 only: both Noise and DERP start with an HTTP Upgrade.
		srv := &http.Server{Handler: mux, TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
		go func() { fmt.Fprintln(os.Stderr, "control:", srv.ServeTLS(ln, *tlsCert, *tlsKey)); os.Exit(1) }()
	} else {
		fmt.Printf("control listening on http://%s\n", ln.Addr())
		go http.Serve(ln, mux)
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}
