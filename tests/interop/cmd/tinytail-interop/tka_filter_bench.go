// tka-filter-bench: what tailscaled spends judging a 1000-peer netmap under tailnet lock, the
// counterpart of tka_bench's filter_1000_* (bench/tka.sh). It does what tkaFilterNetmapLocked
// (ipn/ipnlocal/tailnet-lock.go, unexported) does per map update: NodeKeyAuthorizedWithDetails for
// every signed peer, a length check for an unsigned one, then our own signature; without its
// rotation tracker (no peer has a rotation signature here, so it would do nothing) and without
// the log line it writes per dropped peer. Prints "filter_1000_peers_ms X" and
// "filter_1000_unsigned_ms Y", best of 5, like tka_bench.

package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"tailscale.com/tka"
	"tailscale.com/types/key"
	"tailscale.com/types/tkatype"
)

func runTKAFilterBench(args []string) {
	fs := flag.NewFlagSet("tka-filter-bench", flag.ExitOnError)
	peers := fs.Int("peers", 1000, "peers in the netmap")
	runs := fs.Int("runs", 5, "report the best of this many runs")
	fs.Parse(args)
	if err := tkaFilterBench(*peers, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "tka-filter-bench:", err)
		os.Exit(1)
	}
}

func tkaFilterBench(n, runs int) error {
	// Two trusted keys, as in tka_bench; peers signed alternately by each.
	signers := []key.NLPrivate{key.NewNLPrivate(), key.NewNLPrivate()}
	var keys []tka.Key
	for i, s := range signers {
		keys = append(keys, tka.Key{Kind: tka.Key25519, Votes: uint(2 - i), Public: s.Public().Verifier()})
	}
	authority, _, err := tka.Create(tka.ChonkMem(), tka.State{
		Keys:              keys,
		DisablementValues: [][]byte{tka.DisablementKDF(make([]byte, 32))},
		StateID1:          1, StateID2: 2,
	}, signers[0])
	if err != nil {
		return err
	}
	sign := func(by key.NLPrivate, nk key.NodePublic, rotation []byte) (tkatype.MarshaledSignature, error) {
		pub, _ := nk.MarshalBinary()
		sig := tka.NodeKeySignature{SigKind: tka.SigDirect, KeyID: by.KeyID(), Pubkey: pub, WrappingPubkey: rotation}
		var err error
		sig.Signature, err = by.SignNKS(sig.SigHash())
		return sig.Serialize(), err
	}
	self := key.NewNode().Public()
	selfSig, err := sign(signers[0], self, nil)
	if err != nil {
		return err
	}
	type peer struct {
		key key.NodePublic
		sig tkatype.MarshaledSignature
	}
	signed := make([]peer, n)
	unsigned := make([]peer, n)
	for i := range signed {
		nk := key.NewNode().Public()
		sig, err := sign(signers[i%2], nk, key.NewNLPrivate().Public().Verifier())
		if err != nil {
			return err
		}
		signed[i] = peer{nk, sig}
		unsigned[i] = peer{key: nk}
	}
	filter := func(name string, peers []peer, wantDropped int) error {
		best := time.Duration(1 << 62)
		for range runs {
			start := time.Now()
			var dropped []int
			for i, p := range peers {
				if len(p.sig) == 0 {
					dropped = append(dropped, i)
				} else if _, err := authority.NodeKeyAuthorizedWithDetails(p.key, p.sig); err != nil {
					dropped = append(dropped, i)
				}
			}
			lockedOut := authority.NodeKeyAuthorized(self, selfSig) != nil
			best = min(best, time.Since(start))
			if len(dropped) != wantDropped || lockedOut {
				return fmt.Errorf("%s: %d peers dropped, want %d; locked out: %v", name, len(dropped), wantDropped, lockedOut)
			}
		}
		fmt.Printf("%s_ms %.2f\n", name, float64(best.Nanoseconds())/1e6)
		return nil
	}
	if err := filter(fmt.Sprintf("filter_%d_peers", n), signed, 0); err != nil {
		return err
	}
	return filter(fmt.Sprintf("filter_%d_unsigned", n), unsigned, n)
}
