// tka-sync-vectors: tailnet-lock sync offers, missing AUMs and compaction decided by
// tailscale.com/tka, for tinytail-core's tests (core/tests/tka_sync_vectors.rs). As in
// tka_vectors.go, this file builds inputs from fixed seeds and records what the reference says.

package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"tailscale.com/tka"
	"tailscale.com/tstime"
)

type vecOffer struct {
	Head      string   `json:"head"`
	Ancestors []string `json:"ancestors"`
}

// syncVector: an authority over `local` (hashes of AUMs in the order informed, genesis first),
// our offer, and the AUMs a remote lacks given its offer.
type syncVector struct {
	Name        string   `json:"name"`
	Local       []string `json:"local"`
	LocalOffer  vecOffer `json:"local_offer"`
	RemoteOffer vecOffer `json:"remote_offer"`
	OK          bool     `json:"ok"`
	Missing     []string `json:"missing"` // hashes, in the order MissingAUMs returns them
}

// compactVector: AUMs (hashes, genesis first, in the order informed) each committed `age_days`
// before the compaction, compacted with CompactionDefaults.
type compactVector struct {
	Name    string   `json:"name"`
	AUMs    []string `json:"aums"`
	AgeDays []int    `json:"age_days"`
	OK      bool     `json:"ok"`
	Oldest  string   `json:"oldest"`
	Kept    []string `json:"kept"` // sorted hashes
}

type syncVectorFile struct {
	Reference string            `json:"reference"`
	AUMs      map[string]string `json:"aums"` // every AUM the vectors name: hash -> hex bytes
	Sync      []syncVector      `json:"sync"`
	Compact   []compactVector   `json:"compact"`
}

// allAUMs collects the AUMs the vectors name, each once (the chains share long prefixes).
var allAUMs = map[string]string{}

func named(a tka.AUM) string {
	h := a.Hash().String()
	allAUMs[h] = hexs(a.Serialize())
	return h
}

// fixedClock is a tstime.Clock whose Now the caller sets (Mem records commit times with it).
type fixedClock struct {
	tstime.StdClock
	now time.Time
}

func (c *fixedClock) Now() time.Time { return c.now }

// syncChain is an authority over an in-memory store, with the AUMs informed so far.
type syncChain struct {
	store *tka.Mem
	auth  *tka.Authority
	aums  []tka.AUM
	clock *fixedClock
}

func syncGenesis(signers ...signer) tka.AUM {
	return *genesisAUM([]tka.Key{signers[0].key(2), signers[1].key(1)}, signers[0])
}

func newSyncChain(genesis tka.AUM) *syncChain {
	c := &syncChain{store: tka.ChonkMem(), clock: &fixedClock{now: time.Now()}}
	c.store.SetClock(c.clock)
	a, err := tka.Bootstrap(c.store, genesis)
	must(err)
	c.auth, c.aums = a, []tka.AUM{genesis}
	return c
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "tka-sync-vectors:", err)
		os.Exit(1)
	}
}

func (c *syncChain) head() tka.AUM {
	h := c.auth.Head()
	a, err := c.store.AUM(h)
	must(err)
	return a
}

func (c *syncChain) inform(a tka.AUM) {
	must(c.auth.Inform(c.store, []tka.AUM{a}))
	c.aums = append(c.aums, a)
}

// extend appends n AUMs on the head signed by s: a checkpoint at every `every`-th position of
// the chain (0: none), NoOps otherwise.
func (c *syncChain) extend(n, every int, s signer, genesis tka.AUM) {
	for range n {
		parent := c.head()
		var next tka.AUM
		if every > 0 && len(c.aums)%every == 0 {
			st := *genesis.State
			next = tka.AUM{MessageKind: tka.AUMCheckpoint, State: &st}
		} else {
			next = tka.AUM{MessageKind: tka.AUMNoOp}
		}
		c.inform(*child(&parent, next, s))
	}
}

// prefix is a fresh authority informed of our first n AUMs.
func (c *syncChain) prefix(n int) *syncChain {
	out := newSyncChain(c.aums[0])
	for _, a := range c.aums[1:n] {
		out.inform(a)
	}
	return out
}

func offerOf(c *syncChain) (tka.SyncOffer, vecOffer) {
	o, err := c.auth.SyncOffer(c.store)
	must(err)
	head, ancestors, err := tka.FromSyncOffer(o)
	must(err)
	return o, vecOffer{Head: head, Ancestors: ancestors}
}

func syncCase(name string, local *syncChain, remote tka.SyncOffer) syncVector {
	v := syncVector{Name: name}
	for _, a := range local.aums {
		v.Local = append(v.Local, named(a))
	}
	_, v.LocalOffer = offerOf(local)
	head, ancestors, err := tka.FromSyncOffer(remote)
	must(err)
	v.RemoteOffer = vecOffer{Head: head, Ancestors: ancestors}
	missing, err := local.auth.MissingAUMs(local.store, remote)
	v.OK = err == nil
	for _, a := range missing {
		v.Missing = append(v.Missing, a.Hash().String())
	}
	return v
}

func syncVectors() []syncVector {
	g := syncGenesis(kA, kB)
	linear := func(n int) *syncChain {
		c := newSyncChain(g)
		c.extend(n-1, 0, kA, g)
		return c
	}
	var vs []syncVector
	remoteOf := func(c *syncChain) tka.SyncOffer { o, _ := offerOf(c); return o }

	for _, n := range []int{1, 5, 20, 100, 257, 600} {
		c := linear(n)
		vs = append(vs, syncCase(fmt.Sprintf("offer of %d, remote equal", n), c, remoteOf(c)))
	}
	long := linear(600)
	vs = append(vs, syncCase("remote behind by 10 (head intersection)", long.prefix(30), remoteOf(long.prefix(20))))
	vs = append(vs, syncCase("remote 500 behind (tail intersection)", long, remoteOf(long.prefix(100))))
	vs = append(vs, syncCase("remote 400 behind", long, remoteOf(long.prefix(200))))
	vs = append(vs, syncCase("remote 399 behind", long, remoteOf(long.prefix(201))))
	vs = append(vs, syncCase("remote ahead by 2", long.prefix(28), remoteOf(long.prefix(30))))
	vs = append(vs, syncCase("remote ahead by 4", long.prefix(26), remoteOf(long.prefix(30))))
	vs = append(vs, syncCase("remote ahead by 300", long.prefix(300), remoteOf(long)))

	// Forks off AUM 9: A (2 votes) beats B (1 vote).
	winner, loser := linear(10), linear(10)
	winner.extend(2, 0, kA, g)
	loser.extend(1, 0, kB, g)
	vs = append(vs, syncCase("remote on a losing fork", winner, remoteOf(loser)))
	vs = append(vs, syncCase("we on a losing fork", loser, remoteOf(winner)))
	both := winner.prefix(len(winner.aums))
	both.inform(loser.aums[10])
	vs = append(vs, syncCase("we hold both forks, remote on the loser", both, remoteOf(loser)))

	other := newSyncChain(syncGenesis(kC, kD))
	other.extend(9, 0, kC, g)
	vs = append(vs, syncCase("unrelated chain", linear(10), remoteOf(other)))
	var junk tka.SyncOffer
	junk.Head[0] = 7
	for i := range 16 {
		var h tka.AUMHash
		h[0], h[1] = byte(i), 1
		junk.Ancestors = append(junk.Ancestors, h)
	}
	vs = append(vs, syncCase("offer of unknown hashes", linear(10), junk))
	vs = append(vs, syncCase("offer without ancestors", linear(10), tka.SyncOffer{Head: junk.Head}))
	return vs
}

// compactCase informs each AUM with the store's clock set `age_days` back, then compacts.
func compactCase(name string, aums []tka.AUM, ageDays []int) compactVector {
	v := compactVector{Name: name, AgeDays: ageDays}
	c := newSyncChain(aums[0])
	now := time.Now()
	// The genesis was committed by Bootstrap at the clock's start: re-commit it at its age.
	c.clock.now = now.Add(-time.Duration(ageDays[0]) * 24 * time.Hour)
	must(c.store.CommitVerifiedAUMs(aums[:1]))
	v.AUMs = append(v.AUMs, named(aums[0]))
	for i, a := range aums[1:] {
		c.clock.now = now.Add(-time.Duration(ageDays[i+1]) * 24 * time.Hour)
		c.inform(a)
		v.AUMs = append(v.AUMs, named(a))
	}
	err := c.auth.Compact(c.store, tka.CompactionDefaults)
	v.OK = err == nil
	if err == nil {
		// Authority.Compact keeps the new oldest to itself; the store has it too.
		oldest, err := c.store.LastActiveAncestor()
		must(err)
		v.Oldest = oldest.String()
		all, err := c.store.AllAUMs()
		must(err)
		for _, h := range all {
			v.Kept = append(v.Kept, h.String())
		}
		slices.Sort(v.Kept)
	}
	return v
}

func compactVectors() []compactVector {
	g := syncGenesis(kA, kB)
	ages := func(n int, f func(i int) int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	old := func(int) int { return 30 }
	chain := func(n, every int) *syncChain {
		c := newSyncChain(g)
		c.extend(n-1, every, kA, g)
		return c
	}
	var vs []compactVector
	c := chain(101, 10)
	vs = append(vs, compactCase("old chain of 101, checkpoint every 10", c.aums, ages(101, old)))
	vs = append(vs, compactCase("young from AUM 40", c.aums, ages(101, func(i int) int {
		if i >= 40 {
			return 1
		}
		return 30
	})))
	vs = append(vs, compactCase("exactly 14 days old", c.aums, ages(101, func(int) int { return 14 })))
	vs = append(vs, compactCase("13 days old", c.aums, ages(101, func(int) int { return 13 })))
	vs = append(vs, compactCase("24 AUMs", chain(24, 5).aums, ages(24, old)))
	vs = append(vs, compactCase("25 AUMs", chain(25, 5).aums, ages(25, old)))
	vs = append(vs, compactCase("no checkpoint but the genesis", chain(60, 0).aums, ages(60, old)))
	vs = append(vs, compactCase("checkpoint 24th back from the head", chain(48, 24).aums, ages(48, old)))
	vs = append(vs, compactCase("checkpoint 25th back from the head", chain(49, 24).aums, ages(49, old)))

	// Forks off AUM 50 (purged), 55 (purged, young fork) and 90 (kept).
	for _, f := range []struct {
		name  string
		at    int
		young bool
	}{{"old fork off a purged AUM", 50, false}, {"young fork off a purged AUM", 55, true}, {"old fork off a kept AUM", 90, false}} {
		fork := c.prefix(f.at + 1)
		fork.extend(1, 0, kB, g)
		aums := append(slices.Clone(c.aums), fork.aums[f.at+1])
		a := ages(len(aums), old)
		if f.young {
			a[len(a)-1] = 1
		}
		vs = append(vs, compactCase(f.name, aums, a))
	}
	return vs
}

func runTKASyncVectors(args []string) {
	out := os.Stdout
	if len(args) > 0 && args[0] != "-" {
		f, err := os.Create(args[0])
		must(err)
		defer f.Close()
		out = f
	}
	// tka.Mem.SetClock refuses to run outside a test binary, which it recognizes by a "test.v"
	// flag (testenv.InTest). This generator is test tooling: it declares that flag.
	flag.Bool("test.v", false, "declared so tailscale.com/util/testenv.InTest allows Mem.SetClock")
	vf := syncVectorFile{Reference: "tailscale.com " + moduleVersion("tailscale.com")}
	vf.Sync = syncVectors()
	vf.Compact = compactVectors()
	vf.AUMs = allAUMs
	enc := json.NewEncoder(out)
	enc.SetIndent("", " ")
	must(enc.Encode(vf))
}
