// tka-verify: checks tailnet-lock AUMs and node-key signatures made by tinytail-core with the
// reference code. Input: the JSON written by `cargo run -p tinytail-core --example tka_emit`.

package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"

	"tailscale.com/tka"
	"tailscale.com/types/key"
)

type emittedChain struct {
	Name    string     `json:"name"`
	Genesis string     `json:"genesis"`
	Batches [][]string `json:"batches"`
	// What tinytail computed; the reference must agree.
	Head string   `json:"head"`
	Keys []vecKey `json:"keys"`
}

type emittedSig struct {
	Name     string   `json:"name"`
	Chain    string   `json:"chain"`
	NodeKey  string   `json:"node_key"`
	Sig      string   `json:"sig"`
	OK       bool     `json:"ok"`
	PrevKeys []string `json:"prev_keys"`
}

type emittedWrapped struct {
	Name    string `json:"name"`
	Chain   string `json:"chain"`
	Text    string `json:"text"`
	NodeKey string `json:"node_key"`
	// The signature tinytail made from the wrapped key for NodeKey.
	Sig string `json:"sig"`
}

type emitted struct {
	Chains  []emittedChain   `json:"chains"`
	Sigs    []emittedSig     `json:"sigs"`
	Wrapped []emittedWrapped `json:"wrapped"`
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func runTKAVerify(args []string) {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: tinytail-interop tka-verify FILE.json")
		os.Exit(2)
	}
	raw, err := os.ReadFile(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var in emitted
	if err := json.Unmarshal(raw, &in); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	failures, checked, aumCount := 0, 0, 0
	fail := func(format string, a ...any) {
		failures++
		fmt.Printf("FAIL "+format+"\n", a...)
	}
	authorities := map[string]*tka.Authority{}
	for _, c := range in.Chains {
		checked++
		storage := tka.ChonkMem()
		var g tka.AUM
		if err := g.Unserialize(mustHex(c.Genesis)); err != nil {
			fail("%s: genesis does not decode: %v", c.Name, err)
			continue
		}
		if hex.EncodeToString(g.Serialize()) != c.Genesis {
			fail("%s: genesis is not in canonical form", c.Name)
		}
		a, err := tka.Bootstrap(storage, g)
		if err != nil {
			fail("%s: bootstrap: %v", c.Name, err)
			continue
		}
		ok := true
		aumCount++
		for i, b := range c.Batches {
			aumCount += len(b)
			var aums []tka.AUM
			for _, h := range b {
				var x tka.AUM
				if err := x.Unserialize(mustHex(h)); err != nil {
					fail("%s: batch %d does not decode: %v", c.Name, i, err)
					ok = false
				}
				if hex.EncodeToString(x.Serialize()) != h {
					fail("%s: batch %d: AUM is not in canonical form", c.Name, i)
					ok = false
				}
				aums = append(aums, x)
			}
			if err := a.Inform(storage, aums); err != nil {
				fail("%s: batch %d refused: %v", c.Name, i, err)
				ok = false
			}
		}
		if !ok {
			continue
		}
		if a.Head().String() != c.Head {
			fail("%s: head %s, tinytail said %s", c.Name, a.Head(), c.Head)
		}
		var keys []vecKey
		for _, k := range a.Keys() {
			keys = append(keys, vecKey{ID: hex.EncodeToString(k.Public), Votes: k.Votes})
		}
		if fmt.Sprint(keys) != fmt.Sprint(c.Keys) {
			fail("%s: keys %v, tinytail said %v", c.Name, keys, c.Keys)
		}
		authorities[c.Name] = a
	}
	for _, s := range in.Sigs {
		checked++
		a := authorities[s.Chain]
		if a == nil {
			fail("%s: no authority %q", s.Name, s.Chain)
			continue
		}
		var nk key.NodePublic
		if err := nk.UnmarshalText([]byte(s.NodeKey)); err != nil {
			fail("%s: node key: %v", s.Name, err)
			continue
		}
		d, err := a.NodeKeyAuthorizedWithDetails(nk, mustHex(s.Sig))
		if (err == nil) != s.OK {
			fail("%s: reference says err=%v, tinytail expected ok=%v", s.Name, err, s.OK)
			continue
		}
		var prev []string
		if d != nil {
			for _, p := range d.PrevNodeKeys {
				prev = append(prev, p.String())
			}
		}
		if fmt.Sprint(prev) != fmt.Sprint(s.PrevKeys) {
			fail("%s: previous keys %v, tinytail said %v", s.Name, prev, s.PrevKeys)
		}
		var dec tka.NodeKeySignature
		if err := dec.Unserialize(mustHex(s.Sig)); err == nil && hex.EncodeToString(dec.Serialize()) != s.Sig {
			fail("%s: signature is not in canonical form", s.Name)
		}
	}
	for _, w := range in.Wrapped {
		checked++
		a := authorities[w.Chain]
		if a == nil {
			fail("%s: no authority %q", w.Name, w.Chain)
			continue
		}
		_, isWrapped, sig, priv := tka.DecodeWrappedAuthkey(w.Text, func(string, ...any) {})
		if !isWrapped {
			fail("%s: reference does not see a wrapped key", w.Name)
			continue
		}
		var nk key.NodePublic
		if err := nk.UnmarshalText([]byte(w.NodeKey)); err != nil {
			fail("%s: node key: %v", w.Name, err)
			continue
		}
		refSig, err := tka.SignByCredential(priv, sig, nk)
		if err != nil {
			fail("%s: SignByCredential: %v", w.Name, err)
			continue
		}
		if hex.EncodeToString(refSig) != w.Sig {
			fail("%s: reference SignByCredential differs from tinytail's", w.Name)
		}
		if err := a.NodeKeyAuthorized(nk, mustHex(w.Sig)); err != nil {
			fail("%s: tinytail's signature refused: %v", w.Name, err)
		}
	}
	fmt.Printf("tka-verify: %d items checked (%d chains with %d AUMs, %d signatures, %d wrapped auth keys), %d failures\n",
		checked, len(in.Chains), aumCount, len(in.Sigs), len(in.Wrapped), failures)
	if failures > 0 {
		os.Exit(1)
	}
}
