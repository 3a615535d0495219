package main

import (
	"bytes"
	"encoding/json"
	"flag"
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
