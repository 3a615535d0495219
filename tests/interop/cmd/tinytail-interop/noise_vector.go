package main

// noise-vector: the Go reference (tailscale.com/control/controlbase) as the ts2021 control server
// for one initiation made by tinytail's core::control::noise with fixed keys. It answers the
// handshake and then sends records; the output is the test vector that
// core/src/control/testdata/go_server_vector.txt holds, which the Rust test replays.

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"tailscale.com/control/controlbase"
	"tailscale.com/types/key"
)

// noiseVectorMessages are written with separate Write calls; the last one is longer than one
// record's plaintext (4077 bytes), so the reference splits it and the counter passes 4.
func noiseVectorMessages() []string {
	return []string{"first record", "second record", "", "third record", strings.Repeat("x", 5000)}
}

func runNoiseVector(args []string) {
	fs := flag.NewFlagSet("noise-vector", flag.ExitOnError)
	serverKey := fs.String("server-key", "", "the server's private key, privkey:<64 hex>")
	initHex := fs.String("init", "", "the client's 101-byte initiation, hex")
	fs.Parse(args)

	var priv key.MachinePrivate
	if err := priv.UnmarshalText([]byte(*serverKey)); err != nil {
		noiseVectorFail("server key: %v", err)
	}
	init, err := hex.DecodeString(*initHex)
	if err != nil {
		noiseVectorFail("init: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, server := net.Pipe()
	done := make(chan error, 1)
	go func() {
		conn, err := controlbase.Server(ctx, server, priv, init)
		if err != nil {
			done <- err
			server.Close()
			return
		}
		for _, m := range noiseVectorMessages() {
			if _, err := conn.Write([]byte(m)); err != nil {
				done <- err
				break
			}
		}
		done <- conn.Close()
	}()
	wire, err := io.ReadAll(client)
	if err != nil {
		noiseVectorFail("reading: %v", err)
	}
	if err := <-done; err != nil {
		noiseVectorFail("server: %v", err)
	}
	if len(wire) < 51 {
		noiseVectorFail("short answer: %d bytes", len(wire))
	}
	fmt.Printf("server_key %s\n", strings.TrimPrefix(*serverKey, "privkey:"))
	fmt.Printf("init %s\n", *initHex)
	fmt.Printf("response %x\n", wire[:51])
	fmt.Printf("records %x\n", wire[51:])
	fmt.Printf("plaintext %x\n", strings.Join(noiseVectorMessages(), ""))
}

func noiseVectorFail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "noise-vector: "+format+"\n", a...)
	os.Exit(1)
}
