package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"tailscale.com/tailcfg"
	"tailscale.com/tka"
	"tailscale.com/types/key"
	"tailscale.com/types/tkatype"
)

// These tests call the Noise-side handlers directly (the Noise layer is tailscale.com's and the
// rig's lock.sh covers it with real tailscaled): the whole TKA flow, and bad input everywhere.

// TestMain keeps the handlers' log lines (one per refused request) for -v runs.
func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Verbose() {
		log.SetOutput(io.Discard)
	}
	os.Exit(m.Run())
}

type testNode struct {
	mkey key.MachinePublic
	nk   key.NodePrivate
	nl   key.NLPrivate
}

func newTestNode() testNode {
	return testNode{mkey: key.NewMachine().Public(), nk: key.NewNode(), nl: key.NewNLPrivate()}
}

// call sends body (raw when []byte or string, else as JSON) as method path from mkey.
func call(t *testing.T, s *server, mkey key.MachinePublic, method, path string, body any) (int, []byte) {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case []byte:
		b = v
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	req := httptest.NewRequest(method, "https://unused"+path, bytes.NewReader(b))
	rec := httptest.NewRecorder()
	recoverer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveMachine(w, r, mkey) })).ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

func mustOK(t *testing.T, what string, code int, body []byte) {
	t.Helper()
	if code != 200 {
		t.Fatalf("%s: %d %s", what, code, body)
	}
}

func register(t *testing.T, s *server, n testNode, host string) {
	t.Helper()
	code, body := call(t, s, n.mkey, "POST", "/machine/register", tailcfg.RegisterRequest{
		Version: 115, NodeKey: n.nk.Public(), NLKey: n.nl.Public(),
		Auth:     &tailcfg.RegisterResponseAuth{AuthKey: "tskey-auth-x"},
		Hostinfo: &tailcfg.Hostinfo{Hostname: host},
	})
	mustOK(t, "register "+host, code, body)
	var res tailcfg.RegisterResponse
	if err := json.Unmarshal(body, &res); err != nil || !res.MachineAuthorized || res.Error != "" {
		t.Fatalf("register %s: %s (%v)", host, body, err)
	}
}

func (s *server) testMap(t *testing.T, n testNode) *tailcfg.MapResponse {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mapResponseLocked(s.byKey[n.nk.Public()])
}

func signFor(t *testing.T, signer key.NLPrivate, nk key.NodePublic, rotation []byte) tkatype.MarshaledSignature {
	t.Helper()
	pub, _ := nk.MarshalBinary()
	sig := tka.NodeKeySignature{SigKind: tka.SigDirect, KeyID: signer.KeyID(), Pubkey: pub, WrappingPubkey: rotation}
	var err error
	if sig.Signature, err = signer.SignNKS(sig.SigHash()); err != nil {
		t.Fatal(err)
	}
	return sig.Serialize()
}

func TestLockFlow(t *testing.T) {
	s := newServer("", "tail1234.ts.net")
	a, b, c := newTestNode(), newTestNode(), newTestNode()
	register(t, s, a, "a")
	register(t, s, b, "b")
	if m := s.testMap(t, a); m.TKAInfo != nil || len(m.Peers) != 1 || m.Node.Name != "a.tail1234.ts.net." {
		t.Fatalf("map before lock: TKAInfo %v, %d peers, name %q", m.TKAInfo, len(m.Peers), m.Node.Name)
	}

	// init: A's own chonk and authority, as tailscaled's NetworkLockInit makes them.
	secret := bytes.Repeat([]byte{7}, 32)
	chonk := tka.ChonkMem()
	auth, genesis, err := tka.Create(chonk, tka.State{
		Keys:              []tka.Key{{Kind: tka.Key25519, Votes: 1, Public: a.nl.Public().Verifier()}},
		DisablementValues: [][]byte{tka.DisablementKDF(secret)},
		StateID1:          1, StateID2: 2,
	}, a.nl)
	if err != nil {
		t.Fatal(err)
	}
	code, body := call(t, s, a.mkey, "GET", "/machine/tka/init/begin", tailcfg.TKAInitBeginRequest{
		Version: 115, NodeKey: a.nk.Public(), GenesisAUM: genesis.Serialize()})
	mustOK(t, "init/begin", code, body)
	var begin tailcfg.TKAInitBeginResponse
	json.Unmarshal(body, &begin)
	if len(begin.NeedSignatures) != 2 || !bytes.Equal(begin.NeedSignatures[1].RotationPubkey, b.nl.Public().Verifier()) {
		t.Fatalf("init/begin: %s", body)
	}
	sigs := map[tailcfg.NodeID]tkatype.MarshaledSignature{}
	for _, need := range begin.NeedSignatures {
		sigs[need.NodeID] = signFor(t, a.nl, need.NodePublic, need.RotationPubkey)
	}
	if m := s.testMap(t, a); m.TKAInfo != nil {
		t.Fatalf("lock on before init/finish")
	}
	code, body = call(t, s, a.mkey, "GET", "/machine/tka/init/finish", tailcfg.TKAInitFinishRequest{
		Version: 115, NodeKey: a.nk.Public(), Signatures: sigs})
	mustOK(t, "init/finish", code, body)
	m := s.testMap(t, b)
	if m.TKAInfo == nil || m.TKAInfo.Head != auth.Head().String() || len(m.Node.KeySignature) == 0 || len(m.Peers[0].KeySignature) == 0 {
		t.Fatalf("map after init: TKAInfo %+v, self sig %d bytes", m.TKAInfo, len(m.Node.KeySignature))
	}
	code, body = call(t, s, a.mkey, "GET", "/machine/tka/init/begin", tailcfg.TKAInitBeginRequest{
		Version: 115, NodeKey: a.nk.Public(), GenesisAUM: genesis.Serialize()})
	if code != http.StatusConflict {
		t.Fatalf("second init/begin: %d %s", code, body)
	}

	// bootstrap gives the genesis.
	code, body = call(t, s, b.mkey, "GET", "/machine/tka/bootstrap", tailcfg.TKABootstrapRequest{Version: 141, NodeKey: b.nk.Public()})
	mustOK(t, "bootstrap", code, body)
	var boot tailcfg.TKABootstrapResponse
	json.Unmarshal(body, &boot)
	if !bytes.Equal(boot.GenesisAUM, genesis.Serialize()) {
		t.Fatalf("bootstrap: %s", body)
	}

	// C joins unsigned; A signs it through /sign (the signed node is the NKS's, not the caller).
	register(t, s, c, "c")
	if m := s.testMap(t, a); len(m.Peers[1].KeySignature) != 0 {
		t.Fatal("C signed on arrival")
	}
	code, body = call(t, s, a.mkey, "GET", "/machine/tka/sign", tailcfg.TKASubmitSignatureRequest{
		Version: 115, NodeKey: a.nk.Public(), Signature: signFor(t, a.nl, c.nk.Public(), nil)})
	mustOK(t, "sign", code, body)
	if m := s.testMap(t, a); len(m.Peers[1].KeySignature) == 0 {
		t.Fatal("C not signed after /sign")
	}
	code, body = call(t, s, a.mkey, "GET", "/machine/tka/sign", tailcfg.TKASubmitSignatureRequest{
		Version: 115, NodeKey: a.nk.Public(), Signature: signFor(t, c.nl, c.nk.Public(), nil)})
	if code != 400 || !strings.Contains(string(body), "does not verify") {
		t.Fatalf("sign by an untrusted key: %d %s", code, body)
	}

	// sync/send: add B's key, as `tailscale lock add` does.
	up := auth.NewUpdater(a.nl)
	if err := up.AddKey(tka.Key{Kind: tka.Key25519, Votes: 1, Public: b.nl.Public().Verifier()}); err != nil {
		t.Fatal(err)
	}
	aums, err := up.Finalize(chonk)
	if err != nil {
		t.Fatal(err)
	}
	send := tailcfg.TKASyncSendRequest{Version: 115, NodeKey: a.nk.Public(), Head: aums[0].Hash().String(), Interactive: true}
	for _, x := range aums {
		send.MissingAUMs = append(send.MissingAUMs, x.Serialize())
	}
	code, body = call(t, s, a.mkey, "GET", "/machine/tka/sync/send", send)
	mustOK(t, "sync/send", code, body)
	var sent tailcfg.TKASyncSendResponse
	json.Unmarshal(body, &sent)
	if sent.Head != aums[len(aums)-1].Hash().String() || s.testMap(t, c).TKAInfo.Head != sent.Head {
		t.Fatalf("sync/send head %s, want %s", sent.Head, aums[len(aums)-1].Hash())
	}

	// sync/offer from genesis: control sends the AUM B lacks.
	code, body = call(t, s, b.mkey, "GET", "/machine/tka/sync/offer", tailcfg.TKASyncOfferRequest{
		Version: 115, NodeKey: b.nk.Public(), Head: genesis.Hash().String()})
	mustOK(t, "sync/offer", code, body)
	var offer tailcfg.TKASyncOfferResponse
	json.Unmarshal(body, &offer)
	if offer.Head != sent.Head || len(offer.MissingAUMs) != 1 {
		t.Fatalf("sync/offer: %s", body)
	}

	// affected-sigs: all three nodes were signed by A's key, none by B's.
	for kid, want := range map[string]int{string(a.nl.KeyID()): 3, string(b.nl.KeyID()): 0} {
		code, body = call(t, s, a.mkey, "GET", "/machine/tka/affected-sigs", tailcfg.TKASignaturesUsingKeyRequest{
			Version: 115, NodeKey: a.nk.Public(), KeyID: tkatype.KeyID(kid)})
		mustOK(t, "affected-sigs", code, body)
		var res tailcfg.TKASignaturesUsingKeyResponse
		json.Unmarshal(body, &res)
		if len(res.Signatures) != want {
			t.Fatalf("affected-sigs: %d signatures, want %d", len(res.Signatures), want)
		}
	}

	// disable: a wrong secret changes nothing; the right one turns lock off for everyone.
	code, body = call(t, s, a.mkey, "GET", "/machine/tka/disable", tailcfg.TKADisableRequest{
		Version: 115, NodeKey: a.nk.Public(), Head: sent.Head, DisablementSecret: []byte("wrong")})
	if code != 400 || strings.TrimSpace(string(body)) != "incorrect disablement secret" || s.testMap(t, a).TKAInfo.Head == "" {
		t.Fatalf("disable with a wrong secret: %d %s", code, body)
	}
	code, body = call(t, s, a.mkey, "GET", "/machine/tka/disable", tailcfg.TKADisableRequest{
		Version: 115, NodeKey: a.nk.Public(), Head: sent.Head, DisablementSecret: secret})
	mustOK(t, "disable", code, body)
	if m := s.testMap(t, b); m.TKAInfo == nil || !m.TKAInfo.Disabled || m.TKAInfo.Head != "" {
		t.Fatalf("map after disable: %+v", m.TKAInfo)
	}
	code, body = call(t, s, b.mkey, "GET", "/machine/tka/bootstrap", tailcfg.TKABootstrapRequest{Version: 115, NodeKey: b.nk.Public(), Head: sent.Head})
	boot = tailcfg.TKABootstrapResponse{}
	json.Unmarshal(body, &boot)
	if code != 200 || !bytes.Equal(boot.DisablementSecret, secret) || boot.GenesisAUM != nil {
		t.Fatalf("bootstrap after disable: %d %s", code, body)
	}
}

// Bad input of every kind gets a 4xx, never a 500 (which is what a recovered panic becomes).
func TestBadInput(t *testing.T) {
	s := newServer("only-this-key", "tail1234.ts.net")
	a := newTestNode()
	nk := a.nk.Public().String()
	bodies := []string{
		"", "{", "[]", "null", `"x"`, `{"Version":"x"}`,
		`{"Version":141,"NodeKey":"nodekey:zz"}`,
		`{"Version":5,"NodeKey":"` + nk + `"}`,
		`{"Version":141,"NodeKey":"` + key.NewNode().Public().String() + `"}`,
		`{"Version":141,"NodeKey":"` + nk + `","GenesisAUM":"AAAA","Head":"x","Ancestors":["y"],` +
			`"MissingAUMs":["AAAA"],"Signature":"AAAA","Signatures":{"1":"AAAA"},"DisablementSecret":"AAAA","KeyID":"AAAA"}`,
		`{"Version":141,"NodeKey":"` + nk + `","Head":"` + strings.Repeat("A", 52) + `","MissingAUMs":[]}`,
		strings.Repeat("[", 100000),
	}
	rpcs := []string{"init/begin", "init/finish", "bootstrap", "sync/offer", "sync/send", "disable", "sign", "affected-sigs", "nope"}
	check := func(stage string) {
		for _, rpc := range rpcs {
			for _, b := range bodies {
				code, out := call(t, s, a.mkey, "GET", "/machine/tka/"+rpc, b)
				if code == 200 && (rpc == "bootstrap" || (rpc == "sync/send" || rpc == "affected-sigs") && stage == "on") {
					continue // a well-formed enough request: these answer
				}
				if code < 400 || code >= 500 {
					t.Errorf("%s: %s %.60q: %d %s", stage, rpc, b, code, out)
				}
			}
		}
		for _, p := range []string{"/machine/register", "/machine/map", "/machine/whatever"} {
			for _, b := range bodies {
				if code, out := call(t, s, a.mkey, "POST", p, b); code >= 500 {
					t.Errorf("%s: %s %.60q: %d %s", stage, p, b, code, out)
				}
			}
		}
	}
	// A wrong auth key: an Error reply, no node.
	code, body := call(t, s, a.mkey, "POST", "/machine/register", tailcfg.RegisterRequest{
		Version: 115, NodeKey: a.nk.Public(), Auth: &tailcfg.RegisterResponseAuth{AuthKey: "tskey-other"}})
	if code != 200 || !strings.Contains(string(body), "invalid auth key") || len(s.nodes) != 0 {
		t.Fatalf("wrong auth key: %d %s", code, body)
	}
	check("unregistered")
	s.authKey = ""
	register(t, s, a, "a")
	check("off")
	chonk := tka.ChonkMem()
	_, genesis, err := tka.Create(chonk, tka.State{
		Keys:              []tka.Key{{Kind: tka.Key25519, Votes: 1, Public: a.nl.Public().Verifier()}},
		DisablementValues: [][]byte{tka.DisablementKDF([]byte("s"))},
	}, a.nl)
	if err != nil {
		t.Fatal(err)
	}
	code, body = call(t, s, a.mkey, "GET", "/machine/tka/init/begin", tailcfg.TKAInitBeginRequest{Version: 141, NodeKey: a.nk.Public(), GenesisAUM: genesis.Serialize()})
	mustOK(t, "init/begin", code, body)
	code, body = call(t, s, a.mkey, "GET", "/machine/tka/init/finish", tailcfg.TKAInitFinishRequest{Version: 141, NodeKey: a.nk.Public(),
		Signatures: map[tailcfg.NodeID]tkatype.MarshaledSignature{1: signFor(t, a.nl, a.nk.Public(), nil)}})
	mustOK(t, "init/finish", code, body)
	check("on")
	if s.authority == nil {
		t.Fatal("bad input turned lock off")
	}
}

// lockOn turns lock on with a's key trusted and every node signed by it.
func lockOn(t *testing.T, s *server, a testNode) {
	t.Helper()
	_, genesis, err := tka.Create(tka.ChonkMem(), tka.State{
		Keys:              []tka.Key{{Kind: tka.Key25519, Votes: 1, Public: a.nl.Public().Verifier()}},
		DisablementValues: [][]byte{tka.DisablementKDF([]byte("s"))},
	}, a.nl)
	if err != nil {
		t.Fatal(err)
	}
	code, body := call(t, s, a.mkey, "GET", "/machine/tka/init/begin", tailcfg.TKAInitBeginRequest{Version: 141, NodeKey: a.nk.Public(), GenesisAUM: genesis.Serialize()})
	mustOK(t, "init/begin", code, body)
	var begin tailcfg.TKAInitBeginResponse
	json.Unmarshal(body, &begin)
	sigs := map[tailcfg.NodeID]tkatype.MarshaledSignature{}
	for _, need := range begin.NeedSignatures {
		sigs[need.NodeID] = signFor(t, a.nl, need.NodePublic, need.RotationPubkey)
	}
	code, body = call(t, s, a.mkey, "GET", "/machine/tka/init/finish", tailcfg.TKAInitFinishRequest{Version: 141, NodeKey: a.nk.Public(), Signatures: sigs})
	mustOK(t, "init/finish", code, body)
}

// Node-key rotation under lock: control hands back the old signature, the node re-signs it with
// its own tailnet-lock key (the rotation key init gave it) and registers again. Then logout.
func TestRotationAndLogout(t *testing.T) {
	s := newServer("", "tail1234.ts.net")
	a, b := newTestNode(), newTestNode()
	register(t, s, a, "a")
	register(t, s, b, "b")
	lockOn(t, s, a)

	newKey := key.NewNode()
	req := tailcfg.RegisterRequest{Version: 141, NodeKey: newKey.Public(), OldNodeKey: b.nk.Public(), NLKey: b.nl.Public()}
	code, body := call(t, s, b.mkey, "POST", "/machine/register", req)
	mustOK(t, "rotate", code, body)
	var res tailcfg.RegisterResponse
	json.Unmarshal(body, &res)
	if len(res.NodeKeySignature) == 0 {
		t.Fatalf("rotation under lock: no old signature handed back: %s", body)
	}
	req.NodeKeySignature, _ = tka.ResignNKS(b.nl, newKey.Public(), res.NodeKeySignature)
	code, body = call(t, s, b.mkey, "POST", "/machine/register", req)
	mustOK(t, "rotate with signature", code, body)
	m := s.testMap(t, a)
	if len(m.Peers) != 1 || m.Peers[0].Key != newKey.Public() {
		t.Fatalf("after rotation A sees %v", m.Peers[0].Key)
	}
	s.mu.Lock()
	err := s.verifyLocked(newKey.Public(), m.Peers[0].KeySignature)
	s.mu.Unlock()
	if err != nil {
		t.Fatalf("rotated signature: %v", err)
	}

	code, body = call(t, s, b.mkey, "POST", "/machine/register", tailcfg.RegisterRequest{Version: 141, NodeKey: newKey.Public(), Expiry: time.Unix(123, 0)})
	mustOK(t, "logout", code, body)
	if m := s.testMap(t, a); len(m.Peers) != 0 {
		t.Fatalf("after logout A sees %d peers", len(m.Peers))
	}
	// Back only with an auth key.
	code, body = call(t, s, b.mkey, "POST", "/machine/register", tailcfg.RegisterRequest{Version: 141, NodeKey: newKey.Public()})
	if code != 200 || !strings.Contains(string(body), "invalid auth key") {
		t.Fatalf("re-register without a key after logout: %d %s", code, body)
	}
}

// grow calls POST /debug/tka/grow?aums=AUMS (the admin HTTP, outside Noise).
func grow(t *testing.T, s *server, aums string) (int, []byte) {
	t.Helper()
	req := httptest.NewRequest("POST", "https://unused/debug/tka/grow?aums="+aums, nil)
	rec := httptest.NewRecorder()
	recoverer(http.HandlerFunc(s.serveDebugTKAGrow)).ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// POST /debug/tka/grow: lock on with exactly N AUMs of testctl's own, every node trusted and
// signed, a chain a node syncs from its genesis; bad N and lock already on are 4xx.
func TestGrow(t *testing.T) {
	s := newServer("", "tail1234.ts.net")
	a, b := newTestNode(), newTestNode()
	register(t, s, a, "a")
	register(t, s, b, "b")
	for _, bad := range []string{"", "0", "-1", "x", "1e3", "2001", "99999999999999999999999", "1%00"} {
		if code, body := grow(t, s, bad); code != http.StatusBadRequest {
			t.Errorf("grow?aums=%q: %d %s", bad, code, body)
		}
	}
	if s.authority != nil {
		t.Fatal("a bad grow turned lock on")
	}

	code, body := grow(t, s, "1000")
	mustOK(t, "grow", code, body)
	var res debugGrow
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	all, _ := s.chonk.AllAUMs()
	if res.AUMs != 1000 || len(all) != 1000 || res.Head != s.authority.Head().String() {
		t.Fatalf("grow: %s; chonk has %d AUMs, head %s", body, len(all), s.authority.Head())
	}
	if len(s.authority.Keys()) != 3 {
		t.Fatalf("grow: %d trusted keys, want testctl's, a's and b's", len(s.authority.Keys()))
	}
	for _, n := range []testNode{a, b} {
		if !s.authority.KeyTrusted(n.nl.KeyID()) {
			t.Fatal("a node's tailnet-lock key is not trusted")
		}
		m := s.testMap(t, n)
		if m.TKAInfo == nil || m.TKAInfo.Head != res.Head {
			t.Fatalf("map after grow: %+v", m.TKAInfo)
		}
		if err := s.authority.NodeKeyAuthorized(n.nk.Public(), m.Node.KeySignature); err != nil {
			t.Fatalf("node signature: %v", err)
		}
		// The node's own key is its rotation key.
		newKey := key.NewNode()
		resigned, err := tka.ResignNKS(n.nl, newKey.Public(), m.Node.KeySignature)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.authority.NodeKeyAuthorized(newKey.Public(), resigned); err != nil {
			t.Fatalf("rotation signature: %v", err)
		}
	}
	var secret []byte
	if _, err := fmt.Sscanf(res.DisablementSecret, "disablement-secret:%X", &secret); err != nil || !s.authority.ValidDisablement(secret) {
		t.Fatalf("disablement secret %q does not disable (%v)", res.DisablementSecret, err)
	}

	// What a node does: bootstrap from the genesis, then sync/offer from it, and Inform.
	code, body = call(t, s, b.mkey, "GET", "/machine/tka/bootstrap", tailcfg.TKABootstrapRequest{Version: 141, NodeKey: b.nk.Public()})
	mustOK(t, "bootstrap", code, body)
	var boot tailcfg.TKABootstrapResponse
	json.Unmarshal(body, &boot)
	var genesis tka.AUM
	if err := genesis.Unserialize(boot.GenesisAUM); err != nil {
		t.Fatal(err)
	}
	chonk := tka.ChonkMem()
	node, err := tka.Bootstrap(chonk, genesis)
	if err != nil {
		t.Fatal(err)
	}
	offer, _ := node.SyncOffer(chonk)
	head, ancestors, _ := tka.FromSyncOffer(offer)
	code, body = call(t, s, b.mkey, "GET", "/machine/tka/sync/offer", tailcfg.TKASyncOfferRequest{
		Version: 141, NodeKey: b.nk.Public(), Head: head, Ancestors: ancestors})
	mustOK(t, "sync/offer", code, body)
	var synced tailcfg.TKASyncOfferResponse
	json.Unmarshal(body, &synced)
	aums := make([]tka.AUM, len(synced.MissingAUMs))
	for i, m := range synced.MissingAUMs {
		if err := aums[i].Unserialize(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := node.Inform(chonk, aums); err != nil {
		t.Fatalf("node informs %d AUMs: %v", len(aums), err)
	}
	if len(aums) != 999 || node.Head().String() != res.Head {
		t.Fatalf("node synced %d AUMs to %s, want 999 to %s", len(aums), node.Head(), res.Head)
	}

	if code, body := grow(t, s, "10"); code != http.StatusConflict {
		t.Fatalf("grow with lock on: %d %s", code, body)
	}
	if s.authority.Head().String() != res.Head {
		t.Fatal("a refused grow changed the head")
	}

	// At the cap the chain still opens, as it must after every sync/send.
	s = newServer("", "tail1234.ts.net")
	code, body = grow(t, s, fmt.Sprint(maxGrowAUMs))
	mustOK(t, "grow at the cap", code, body)
	s.mu.Lock()
	err = s.reopenLocked()
	s.mu.Unlock()
	if err != nil {
		t.Fatalf("reopening a %d-AUM chain: %v", maxGrowAUMs, err)
	}

	// Exact counts around the ends and the checkpoints, with and without nodes.
	for _, n := range []int{1, 2, 3, 4, 5, 6, 49, 50, 51, 52, 53, 54, 101, 102, 103} {
		s := newServer("", "tail1234.ts.net")
		if n%2 == 0 {
			register(t, s, newTestNode(), "x")
		}
		code, body := grow(t, s, fmt.Sprint(n))
		mustOK(t, fmt.Sprint("grow ", n), code, body)
		all, _ := s.chonk.AllAUMs()
		if len(all) != n || len(s.authority.Keys()) != 1+(1-n%2) {
			t.Errorf("grow?aums=%d: %d AUMs, %d keys", n, len(all), len(s.authority.Keys()))
		}
	}
}

// fakeChalltestsrv records the /set-txt calls pebble-challtestsrv would get (and the hosts of
// its /clear-txt calls); fail makes it answer 500.
type fakeChalltestsrv struct {
	*httptest.Server
	got     []map[string]string
	cleared []string
	fail    bool
}

func newFakeChalltestsrv(t *testing.T) *fakeChalltestsrv {
	f := &fakeChalltestsrv{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]string
		if r.Method != "POST" || (r.URL.Path != "/set-txt" && r.URL.Path != "/clear-txt") ||
			json.NewDecoder(r.Body).Decode(&body) != nil {
			http.Error(w, "bad request", 400)
			return
		}
		if f.fail {
			http.Error(w, "challtestsrv is down", 500)
			return
		}
		if r.URL.Path == "/clear-txt" {
			f.cleared = append(f.cleared, body["host"])
			return
		}
		if n := len(f.cleared); n == 0 || f.cleared[n-1] != body["host"] {
			http.Error(w, "set-txt without a clear-txt of the same host first", 400)
			return
		}
		f.got = append(f.got, body)
	}))
	t.Cleanup(f.Close)
	return f
}

// setDNSReq is what tailscaled's DNS-01 step sends.
func setDNSReq(nk key.NodePublic, name, typ, value string) tailcfg.SetDNSRequest {
	return tailcfg.SetDNSRequest{Version: 141, NodeKey: nk, Name: name, Type: typ, Value: value}
}

// POST /machine/set-dns: a node's own _acme-challenge TXT record reaches challtestsrv (with the
// trailing dot) and the node gets {}; everything else is refused with one line and reaches
// nothing.
func TestSetDNS(t *testing.T) {
	fake := newFakeChalltestsrv(t)
	s := newServer("", "tail1234.ts.net")
	s.dns.challtestsrv = fake.URL
	a, b, a2 := newTestNode(), newTestNode(), newTestNode()
	register(t, s, a, "a")
	register(t, s, b, "b")
	register(t, s, a2, "A") // the same label: a-3
	for _, c := range []struct {
		n    testNode
		want string
	}{{a, "a.tail1234.ts.net"}, {b, "b.tail1234.ts.net"}, {a2, "a-3.tail1234.ts.net"}} {
		if got, want := s.testMap(t, c.n).DNSConfig.CertDomains, c.want; len(got) != 1 || got[0] != want {
			t.Fatalf("CertDomains %q, want [%q]", got, want)
		}
	}

	code, body := call(t, s, a.mkey, "POST", "/machine/set-dns", setDNSReq(a.nk.Public(), "_acme-challenge.a.tail1234.ts.net", "TXT", "v1"))
	mustOK(t, "set-dns", code, body)
	if strings.TrimSpace(string(body)) != "{}" {
		t.Fatalf("set-dns reply %q, want {}", body)
	}
	if len(fake.got) != 1 || fake.got[0]["host"] != "_acme-challenge.a.tail1234.ts.net." || fake.got[0]["value"] != "v1" {
		t.Fatalf("challtestsrv got %v", fake.got)
	}
	code, body = call(t, s, a2.mkey, "POST", "/machine/set-dns", setDNSReq(a2.nk.Public(), "_acme-challenge.a-3.tail1234.ts.net", "TXT", "v2"))
	mustOK(t, "set-dns for a-3", code, body)
	if len(fake.got) != 2 || fake.got[1]["host"] != "_acme-challenge.a-3.tail1234.ts.net." {
		t.Fatalf("challtestsrv got %v", fake.got)
	}

	stranger := newTestNode()
	for _, c := range []struct {
		what string
		from testNode
		body any
		code int
	}{
		{"wrong type", a, setDNSReq(a.nk.Public(), "_acme-challenge.a.tail1234.ts.net", "A", "v"), 400},
		{"lower-case type", a, setDNSReq(a.nk.Public(), "_acme-challenge.a.tail1234.ts.net", "txt", "v"), 400},
		{"empty value", a, setDNSReq(a.nk.Public(), "_acme-challenge.a.tail1234.ts.net", "TXT", ""), 400},
		{"another node's name", a, setDNSReq(a.nk.Public(), "_acme-challenge.b.tail1234.ts.net", "TXT", "v"), 403},
		{"the a-3 node's name", a, setDNSReq(a.nk.Public(), "_acme-challenge.a-3.tail1234.ts.net", "TXT", "v"), 403},
		{"no challenge prefix", a, setDNSReq(a.nk.Public(), "a.tail1234.ts.net", "TXT", "v"), 403},
		{"a name under its own", a, setDNSReq(a.nk.Public(), "_acme-challenge.x.a.tail1234.ts.net", "TXT", "v"), 403},
		{"a longer name", a, setDNSReq(a.nk.Public(), "_acme-challenge.a.tail1234.ts.net.evil.test", "TXT", "v"), 403},
		{"another domain", a, setDNSReq(a.nk.Public(), "_acme-challenge.a.example.com", "TXT", "v"), 403},
		{"another node's key", a, setDNSReq(b.nk.Public(), "_acme-challenge.b.tail1234.ts.net", "TXT", "v"), 403},
		{"an unknown key", stranger, setDNSReq(stranger.nk.Public(), "_acme-challenge.a.tail1234.ts.net", "TXT", "v"), 403},
		{"no key", a, setDNSReq(key.NodePublic{}, "_acme-challenge.a.tail1234.ts.net", "TXT", "v"), 403},
		{"bad JSON", a, "{", 400},
		{"a list", a, "[]", 400},
	} {
		code, body := call(t, s, c.from.mkey, "POST", "/machine/set-dns", c.body)
		if code != c.code || strings.Count(strings.TrimSpace(string(body)), "\n") != 0 || !strings.HasPrefix(string(body), "set-dns: ") && c.code != 400 {
			t.Errorf("%s: %d %q, want %d and one line", c.what, code, body, c.code)
		}
	}
	if code, body := call(t, s, a.mkey, "GET", "/machine/set-dns", setDNSReq(a.nk.Public(), "_acme-challenge.a.tail1234.ts.net", "TXT", "v")); code != 405 {
		t.Errorf("GET: %d %s", code, body)
	}
	if len(fake.got) != 2 {
		t.Fatalf("a refused request reached challtestsrv: %v", fake.got)
	}

	// A trailing dot and another case are the same name.
	code, body = call(t, s, b.mkey, "POST", "/machine/set-dns", setDNSReq(b.nk.Public(), "_ACME-challenge.B.tail1234.ts.net.", "TXT", "v3"))
	mustOK(t, "set-dns with a trailing dot", code, body)
	if len(fake.got) != 3 || fake.got[2]["host"] != "_acme-challenge.b.tail1234.ts.net." {
		t.Fatalf("challtestsrv got %v", fake.got)
	}

	// challtestsrv failing or gone: 502, and tailscaled sees why.
	fake.fail = true
	code, body = call(t, s, a.mkey, "POST", "/machine/set-dns", setDNSReq(a.nk.Public(), "_acme-challenge.a.tail1234.ts.net", "TXT", "v"))
	if code != 502 || !strings.Contains(string(body), "challtestsrv is down") {
		t.Fatalf("challtestsrv 500: %d %s", code, body)
	}
	fake.fail = false
	s.dns.challtestsrv = "http://127.0.0.1:1"
	code, body = call(t, s, a.mkey, "POST", "/machine/set-dns", setDNSReq(a.nk.Public(), "_acme-challenge.a.tail1234.ts.net", "TXT", "v"))
	if code != 502 {
		t.Fatalf("challtestsrv unreachable: %d %s", code, body)
	}
	s.dns.challtestsrv = ""
	code, body = call(t, s, a.mkey, "POST", "/machine/set-dns", setDNSReq(a.nk.Public(), "_acme-challenge.a.tail1234.ts.net", "TXT", "v"))
	if code != 501 {
		t.Fatalf("without -challtestsrv: %d %s", code, body)
	}
	s.dns.challtestsrv = fake.URL

	// Tampering (admin HTTP): challtestsrv gets a value of the same shape that is not the node's.
	admin := func(method, target string) (int, []byte) {
		req := httptest.NewRequest(method, "https://unused"+target, nil)
		rec := httptest.NewRecorder()
		mux := http.NewServeMux()
		mux.HandleFunc("GET /debug/set-dns", s.serveDebugSetDNS)
		mux.HandleFunc("POST /debug/set-dns/tamper", s.serveDebugSetDNSTamper)
		mux.HandleFunc("POST /debug/set-dns/delay", s.serveDebugSetDNSDelay)
		recoverer(mux).ServeHTTP(rec, req)
		return rec.Code, rec.Body.Bytes()
	}
	if code, body := admin("POST", "/debug/set-dns/tamper?on=maybe"); code != 400 {
		t.Fatalf("tamper?on=maybe: %d %s", code, body)
	}
	code, body = admin("POST", "/debug/set-dns/tamper?on=true")
	mustOK(t, "tamper on", code, body)
	value := "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
	code, body = call(t, s, a.mkey, "POST", "/machine/set-dns", setDNSReq(a.nk.Public(), "_acme-challenge.a.tail1234.ts.net", "TXT", value))
	mustOK(t, "set-dns tampered", code, body)
	if got := fake.got[len(fake.got)-1]["value"]; got == value || len(got) != len(value) {
		t.Fatalf("tampered value %q (sent %q)", got, value)
	}
	code, body = admin("POST", "/debug/set-dns/tamper?on=false")
	mustOK(t, "tamper off", code, body)
	code, body = admin("GET", "/debug/set-dns")
	mustOK(t, "debug/set-dns", code, body)
	var recs []debugSetDNS
	if err := json.Unmarshal(body, &recs); err != nil || len(recs) != 4 || !recs[3].Tampered || recs[3].Value != value ||
		recs[0].Host != "_acme-challenge.a.tail1234.ts.net." || recs[0].Node != 1 || recs[0].Tampered {
		t.Fatalf("debug/set-dns: %s (%v)", body, err)
	}

	// Delay: the record is forwarded at once, the reply comes after d.
	for _, bad := range []string{"ten", "-1s", "6m"} {
		if code, body := admin("POST", "/debug/set-dns/delay?d="+bad); code != 400 {
			t.Fatalf("delay?d=%s: %d %s", bad, code, body)
		}
	}
	code, body = admin("POST", "/debug/set-dns/delay?d=300ms")
	mustOK(t, "delay on", code, body)
	start := time.Now()
	code, body = call(t, s, a.mkey, "POST", "/machine/set-dns", setDNSReq(a.nk.Public(), "_acme-challenge.a.tail1234.ts.net", "TXT", "late"))
	mustOK(t, "set-dns delayed", code, body)
	if took := time.Since(start); took < 300*time.Millisecond || fake.got[len(fake.got)-1]["value"] != "late" {
		t.Fatalf("delayed set-dns replied after %v, challtestsrv got %q", took, fake.got[len(fake.got)-1]["value"])
	}
	code, body = admin("POST", "/debug/set-dns/delay?d=0s")
	mustOK(t, "delay off", code, body)
}
