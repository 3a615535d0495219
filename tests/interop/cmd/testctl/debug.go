package main

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"tailscale.com/tka"
	"tailscale.com/types/key"
)

// debugNode is one entry of GET /debug/nodes.
type debugNode struct {
	ID         int64          `json:"id"`
	Name       string         `json:"name"`     // FQDN with the trailing dot, as in map responses
	Hostname   string         `json:"hostname"` // as the node reported it
	NodeKey    string         `json:"nodekey"`  // nodekey:HEX
	MachineKey string         `json:"machinekey"`
	NLKey      string         `json:"nlkey"` // tlpub:HEX, "" when the node sent none
	Addresses  []netip.Prefix `json:"addresses"`
	Online     bool           `json:"online"` // has a map stream open
	// QuietMS: milliseconds since the node last changed what its peers see (registration,
	// endpoints, disco key, hostinfo): tests wait for quiet before checking that an action of
	// theirs, not the node's own churn, sent a map update.
	QuietMS      int64 `json:"quiet_ms"`
	KeySignature bool  `json:"key_signature"`
	// SignatureVerifies: the signature authorizes the node key under the current authority
	// (false while lock is off). SignatureError says why not, when there is a signature.
	SignatureVerifies bool   `json:"signature_verifies"`
	SignatureError    string `json:"signature_error,omitempty"`
	SignedBy          string `json:"signed_by,omitempty"` // tlpub of the authorizing key (unverified)
}

// debugTKA is GET /debug/tka.
type debugTKA struct {
	Enabled     bool         `json:"enabled"`
	Disabled    bool         `json:"disabled"`       // lock was on and was disabled
	Head        string       `json:"head,omitempty"` // base32, as TKAInfo.Head
	TrustedKeys []debugTLKey `json:"trusted_keys"`
	AUMs        int          `json:"aums"` // AUMs kept (all branches)
}

type debugTLKey struct {
	Key   string `json:"key"` // tlpub:HEX
	Votes uint   `json:"votes"`
}

func (s *server) serveDebugNodes(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []debugNode{}
	for _, n := range s.nodes {
		d := debugNode{
			ID:           int64(n.id),
			Name:         n.label + "." + s.domain + ".",
			NodeKey:      n.key.String(),
			MachineKey:   n.machine.String(),
			Addresses:    n.addresses(),
			Online:       n.streams > 0,
			QuietMS:      time.Since(n.changedAt).Milliseconds(),
			KeySignature: len(n.keySig) > 0,
		}
		if n.hostinfo != nil {
			d.Hostname = n.hostinfo.Hostname
		}
		if !n.nlKey.IsZero() {
			d.NLKey = n.nlKey.CLIString()
		}
		if d.KeySignature {
			var sig tka.NodeKeySignature
			if err := sig.Unserialize(n.keySig); err == nil {
				if id, err := sig.UnverifiedAuthorizingKeyID(); err == nil {
					d.SignedBy = "tlpub:" + hex.EncodeToString(id)
				}
			}
			if err := s.verifyLocked(n.key, n.keySig); err != nil {
				d.SignatureError = err.Error()
			} else {
				d.SignatureVerifies = true
			}
		}
		out = append(out, d)
	}
	writeJSON(w, out)
}

func (s *server) serveDebugTKA(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := debugTKA{Enabled: s.authority != nil, Disabled: s.disablementSecret != nil, TrustedKeys: []debugTLKey{}}
	if s.authority != nil {
		out.Head = s.authority.Head().String()
		for _, k := range s.authority.Keys() {
			out.TrustedKeys = append(out.TrustedKeys, debugTLKey{Key: "tlpub:" + hex.EncodeToString(k.Public), Votes: k.Votes})
		}
		if all, err := s.chonk.AllAUMs(); err == nil {
			out.AUMs = len(all)
		}
	}
	writeJSON(w, out)
}

// maxGrowAUMs caps POST /debug/tka/grow at what tka can still open: tka.Open (ours after every
// sync/send, a node's after bootstrap) walks from the head to the genesis in at most
// maxScanIterations (2000) steps, so a longer chain would leave lock on but unusable.
const maxGrowAUMs = 2000

// debugGrow is the reply of POST /debug/tka/grow.
type debugGrow struct {
	Head string `json:"head"` // base32, as TKAInfo.Head
	AUMs int    `json:"aums"`
	// DisablementSecret turns the lock off again (`lock disable SECRET`); test-only, like the
	// endpoint.
	DisablementSecret string `json:"disablement_secret"`
}

// serveDebugTKAGrow is POST /debug/tka/grow?aums=N (test-only, for bench/tka.sh): with lock off,
// testctl turns lock on by itself with a chain of N AUMs: a genesis checkpoint trusting a key
// of its own and every registered node's tailnet-lock key, then N-1 AUMs signed by its key
// (alternating AddKey and RemoveKey of throwaway keys, the checkpoints tka's UpdateBuilder puts
// in every 50 AUMs, NoOps to make the count exact). Every node's key gets a Direct signature by
// testctl's key, with the node's tailnet-lock key as rotation key, and every node is told.
func (s *server) serveDebugTKAGrow(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("aums"))
	if err != nil || n < 1 || n > maxGrowAUMs {
		httpError(w, r, http.StatusBadRequest, "grow: aums must be a number from 1 to %d", maxGrowAUMs)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.authority != nil {
		httpError(w, r, http.StatusConflict, "tailnet lock is already enabled")
		return
	}
	res, code, err := s.growLocked(n)
	if err != nil {
		httpError(w, r, code, "grow: %v", err)
		return
	}
	writeJSON(w, res)
}

// growLocked builds the chain and turns lock on (see serveDebugTKAGrow); the status code goes
// with the error.
func (s *server) growLocked(n int) (debugGrow, int, error) {
	signer := key.NewNLPrivate()
	keys := []tka.Key{{Kind: tka.Key25519, Votes: 1, Public: signer.Public().Verifier()}}
	seen := map[key.NLPublic]bool{signer.Public(): true}
	for _, nd := range s.nodes {
		if nd.nlKey.IsZero() || seen[nd.nlKey] {
			continue
		}
		seen[nd.nlKey] = true
		keys = append(keys, tka.Key{Kind: tka.Key25519, Votes: 1, Public: nd.nlKey.Verifier()})
	}
	// One slot stays free for the throwaway key (tka's maxKeys is 512).
	if len(keys) > 511 {
		return debugGrow{}, http.StatusBadRequest, fmt.Errorf("%d tailnet-lock keys, at most 511", len(keys))
	}
	secret := make([]byte, 32)
	var ids [16]byte
	rand.Read(secret)
	rand.Read(ids[:])
	chonk := tka.ChonkMem()
	a, _, err := tka.Create(chonk, tka.State{
		Keys:              keys,
		DisablementValues: [][]byte{tka.DisablementKDF(secret)},
		StateID1:          binary.LittleEndian.Uint64(ids[:8]),
		StateID2:          binary.LittleEndian.Uint64(ids[8:]),
	}, signer)
	if err != nil {
		return debugGrow{}, http.StatusInternalServerError, fmt.Errorf("genesis: %v", err)
	}
	var throwaway *tka.Key // added and not yet removed
	for count := 1; count < n; {
		left := n - count
		var aums []tka.AUM
		switch {
		case throwaway != nil: // left >= 2 here: the add needed 4
			up := a.NewUpdater(signer)
			id, _ := throwaway.ID()
			if err := up.RemoveKey(id); err != nil {
				return debugGrow{}, http.StatusInternalServerError, fmt.Errorf("AUM %d: %v", count, err)
			}
			if aums, err = up.Finalize(chonk); err != nil {
				return debugGrow{}, http.StatusInternalServerError, fmt.Errorf("AUM %d: %v", count, err)
			}
			throwaway = nil
		case left >= 4: // add (maybe + checkpoint), then remove (maybe + checkpoint)
			k := tka.Key{Kind: tka.Key25519, Votes: 1, Public: key.NewNLPrivate().Public().Verifier()}
			up := a.NewUpdater(signer)
			if err := up.AddKey(k); err != nil {
				return debugGrow{}, http.StatusInternalServerError, fmt.Errorf("AUM %d: %v", count, err)
			}
			if aums, err = up.Finalize(chonk); err != nil {
				return debugGrow{}, http.StatusInternalServerError, fmt.Errorf("AUM %d: %v", count, err)
			}
			throwaway = &k
		default: // the last one to three: NoOps, which UpdateBuilder has no method for
			head := a.Head()
			noop := tka.AUM{MessageKind: tka.AUMNoOp, PrevAUMHash: head[:]}
			sigs, err := signer.SignAUM(noop.SigHash())
			if err != nil {
				return debugGrow{}, http.StatusInternalServerError, fmt.Errorf("AUM %d: %v", count, err)
			}
			noop.Signatures = sigs
			aums = []tka.AUM{noop}
		}
		if err := a.Inform(chonk, aums); err != nil {
			return debugGrow{}, http.StatusInternalServerError, fmt.Errorf("AUM %d: %v", count, err)
		}
		count += len(aums)
	}
	// Every node signed by testctl's key: lock turns on with nobody locked out.
	sigs := map[*node][]byte{}
	for _, nd := range s.nodes {
		pub, err := nd.key.MarshalBinary()
		if err != nil {
			return debugGrow{}, http.StatusInternalServerError, fmt.Errorf("node %d: %v", nd.id, err)
		}
		nks := tka.NodeKeySignature{SigKind: tka.SigDirect, KeyID: signer.KeyID(), Pubkey: pub}
		if !nd.nlKey.IsZero() {
			nks.WrappingPubkey = nd.nlKey.Verifier()
		}
		if nks.Signature, err = signer.SignNKS(nks.SigHash()); err != nil {
			return debugGrow{}, http.StatusInternalServerError, fmt.Errorf("signing node %d: %v", nd.id, err)
		}
		sig := nks.Serialize()
		if err := a.NodeKeyAuthorized(nd.key, sig); err != nil {
			return debugGrow{}, http.StatusInternalServerError, fmt.Errorf("node %d's signature: %v", nd.id, err)
		}
		sigs[nd] = sig
	}
	s.chonk, s.authority = chonk, a
	s.pendingChonk, s.pendingAuthority = nil, nil
	s.disablementSecret = nil
	for nd, sig := range sigs {
		nd.keySig = sig
	}
	log.Printf("tka: lock enabled by /debug/tka/grow, head %s, %d AUMs, %d keys, %d nodes signed", a.Head(), n, len(keys), len(sigs))
	s.notifyLocked()
	return debugGrow{Head: a.Head().String(), AUMs: n, DisablementSecret: "disablement-secret:" + fmt.Sprintf("%X", secret)}, http.StatusOK, nil
}
