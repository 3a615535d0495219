package main

import (
	"bytes"
	"encoding/json"
	"log"
	"net/http"
	"strings"

	"tailscale.com/tailcfg"
	"tailscale.com/tka"
	"tailscale.com/types/key"
	"tailscale.com/types/tkatype"
)

// minTKAVersion is the oldest capability version whose TKA requests we take: tinytail sends a
// lower one than tailscaled's 141 (tkatest insists on exactly 141, which is why these handlers
// are ours).
const minTKAVersion = 100

// serveTKA is /machine/tka/*. tailscaled sends every one as a GET with a JSON body; POST is
// taken too. Each request names the caller's node key, which must belong to the Noise peer.
func (s *server) serveTKA(w http.ResponseWriter, r *http.Request, mkey key.MachinePublic) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		httpError(w, r, http.StatusMethodNotAllowed, "%s: GET or POST with a JSON body", r.URL.Path)
		return
	}
	rpc := strings.TrimPrefix(r.URL.Path, "/machine/tka/")
	handlers := map[string]func(http.ResponseWriter, *http.Request, []byte){
		"init/begin":    s.tkaInitBegin,
		"init/finish":   s.tkaInitFinish,
		"bootstrap":     s.tkaBootstrap,
		"sync/offer":    s.tkaSyncOffer,
		"sync/send":     s.tkaSyncSend,
		"disable":       s.tkaDisable,
		"sign":          s.tkaSign,
		"affected-sigs": s.tkaAffectedSigs,
	}
	h, ok := handlers[rpc]
	if !ok {
		httpError(w, r, http.StatusNotFound, "unknown tka RPC %q", rpc)
		return
	}
	// Every request struct starts with Version and NodeKey: check them once, here.
	var common struct {
		Version tailcfg.CapabilityVersion
		NodeKey key.NodePublic
	}
	var body json.RawMessage
	if !readJSON(w, r, &body) {
		return
	}
	if err := json.Unmarshal(body, &common); err != nil {
		httpError(w, r, http.StatusBadRequest, "decoding %s request: %v", rpc, err)
		return
	}
	if common.Version < minTKAVersion {
		httpError(w, r, http.StatusBadRequest, "%s: capability version %d, want at least %d", rpc, common.Version, minTKAVersion)
		return
	}
	s.mu.Lock()
	caller := s.byKey[common.NodeKey]
	s.mu.Unlock()
	if caller == nil || caller.machine != mkey {
		httpError(w, r, http.StatusForbidden, "%s: NodeKey %s is not a node of this machine", rpc, common.NodeKey.ShortString())
		return
	}
	log.Printf("tka %s from node %d (%s)", rpc, caller.id, caller.label)
	h(w, r, body)
}

// decodeTKA decodes body into v (a tailcfg.TKA*Request), answering 400 when it cannot.
func decodeTKA(w http.ResponseWriter, r *http.Request, body []byte, v any) bool {
	if err := json.Unmarshal(body, v); err != nil {
		httpError(w, r, http.StatusBadRequest, "decoding %T: %v", v, err)
		return false
	}
	return true
}

// reopenLocked re-reads the authority from the chonk after a change: tka.Open picks the active
// chain, resolving forks (revoke-keys makes them) the way every node does.
func (s *server) reopenLocked() error {
	a, err := tka.Open(s.chonk)
	if err != nil {
		return err
	}
	s.authority = a
	return nil
}

// verifyLocked checks sig for nodeKey under the current authority.
func (s *server) verifyLocked(nodeKey key.NodePublic, sig tkatype.MarshaledSignature) error {
	if s.authority == nil {
		return errLockOff
	}
	return s.authority.NodeKeyAuthorized(nodeKey, sig)
}

type lockOffError struct{}

func (lockOffError) Error() string { return "tailnet lock is not enabled" }

var errLockOff error = lockOffError{}

func (s *server) tkaInitBegin(w http.ResponseWriter, r *http.Request, body []byte) {
	var req tailcfg.TKAInitBeginRequest
	if !decodeTKA(w, r, body, &req) {
		return
	}
	var genesis tka.AUM
	if err := genesis.Unserialize(req.GenesisAUM); err != nil {
		httpError(w, r, http.StatusBadRequest, "init/begin: genesis AUM: %v", err)
		return
	}
	chonk := tka.ChonkMem()
	// Bootstrap is exactly what every node will do with this AUM: if it fails here, it would
	// fail there.
	a, err := tka.Bootstrap(chonk, genesis)
	if err != nil {
		httpError(w, r, http.StatusBadRequest, "init/begin: genesis AUM does not bootstrap: %v", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.authority != nil {
		httpError(w, r, http.StatusConflict, "tailnet lock is already enabled")
		return
	}
	s.pendingChonk, s.pendingAuthority = chonk, a
	var res tailcfg.TKAInitBeginResponse
	for _, n := range s.nodes {
		info := tailcfg.TKASignInfo{NodeID: n.id, NodePublic: n.key}
		if !n.nlKey.IsZero() {
			// Lets the node re-sign its own key when it rotates, as production control does.
			info.RotationPubkey = n.nlKey.Verifier()
		}
		res.NeedSignatures = append(res.NeedSignatures, info)
	}
	writeJSON(w, res)
}

func (s *server) tkaInitFinish(w http.ResponseWriter, r *http.Request, body []byte) {
	var req tailcfg.TKAInitFinishRequest
	if !decodeTKA(w, r, body, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.authority != nil {
		httpError(w, r, http.StatusConflict, "tailnet lock is already enabled")
		return
	}
	if s.pendingAuthority == nil {
		httpError(w, r, http.StatusBadRequest, "init/finish without init/begin")
		return
	}
	byID := map[tailcfg.NodeID]*node{}
	for _, n := range s.nodes {
		byID[n.id] = n
	}
	// All or nothing: check every signature before turning lock on.
	for id, sig := range req.Signatures {
		n := byID[id]
		if n == nil {
			httpError(w, r, http.StatusBadRequest, "init/finish: no node %d", id)
			return
		}
		if err := s.pendingAuthority.NodeKeyAuthorized(n.key, sig); err != nil {
			httpError(w, r, http.StatusBadRequest, "init/finish: signature for node %d: %v", id, err)
			return
		}
	}
	s.chonk, s.authority = s.pendingChonk, s.pendingAuthority
	s.pendingChonk, s.pendingAuthority = nil, nil
	s.disablementSecret = nil
	for _, n := range s.nodes {
		n.keySig = req.Signatures[n.id]
	}
	log.Printf("tka: lock enabled, head %s, %d nodes signed", s.authority.Head(), len(req.Signatures))
	s.notifyLocked()
	writeJSON(w, tailcfg.TKAInitFinishResponse{})
}

func (s *server) tkaBootstrap(w http.ResponseWriter, r *http.Request, body []byte) {
	var req tailcfg.TKABootstrapRequest
	if !decodeTKA(w, r, body, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var res tailcfg.TKABootstrapResponse
	switch {
	case s.authority != nil:
		// The oldest AUM we keep (the genesis: testctl never compacts) is a checkpoint, which is
		// what tka.Bootstrap takes.
		oldest, err := s.chonk.LastActiveAncestor()
		if err != nil || oldest == nil {
			httpError(w, r, http.StatusInternalServerError, "bootstrap: no oldest AUM: %v", err)
			return
		}
		aum, err := s.chonk.AUM(*oldest)
		if err != nil {
			httpError(w, r, http.StatusInternalServerError, "bootstrap: reading AUM %s: %v", oldest, err)
			return
		}
		res.GenesisAUM = aum.Serialize()
	case s.disablementSecret != nil:
		res.DisablementSecret = s.disablementSecret
	}
	// Lock never enabled: an empty answer, which tailscaled takes as nothing to do.
	writeJSON(w, res)
}

func (s *server) tkaSyncOffer(w http.ResponseWriter, r *http.Request, body []byte) {
	var req tailcfg.TKASyncOfferRequest
	if !decodeTKA(w, r, body, &req) {
		return
	}
	nodeOffer, err := tka.ToSyncOffer(req.Head, req.Ancestors)
	if err != nil {
		httpError(w, r, http.StatusBadRequest, "sync/offer: %v", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.authority == nil {
		httpError(w, r, http.StatusBadRequest, "%v", errLockOff)
		return
	}
	ours, err := s.authority.SyncOffer(s.chonk)
	if err != nil {
		httpError(w, r, http.StatusInternalServerError, "sync/offer: our offer: %v", err)
		return
	}
	missing, err := s.authority.MissingAUMs(s.chonk, nodeOffer)
	if err != nil {
		httpError(w, r, http.StatusBadRequest, "sync/offer: AUMs the node lacks: %v", err)
		return
	}
	head, ancestors, err := tka.FromSyncOffer(ours)
	if err != nil {
		httpError(w, r, http.StatusInternalServerError, "sync/offer: %v", err)
		return
	}
	res := tailcfg.TKASyncOfferResponse{Head: head, Ancestors: ancestors}
	for _, a := range missing {
		res.MissingAUMs = append(res.MissingAUMs, a.Serialize())
	}
	writeJSON(w, res)
}

func (s *server) tkaSyncSend(w http.ResponseWriter, r *http.Request, body []byte) {
	var req tailcfg.TKASyncSendRequest
	if !decodeTKA(w, r, body, &req) {
		return
	}
	var nodeHead tka.AUMHash
	if err := nodeHead.UnmarshalText([]byte(req.Head)); err != nil {
		httpError(w, r, http.StatusBadRequest, "sync/send: head: %v", err)
		return
	}
	aums := make([]tka.AUM, len(req.MissingAUMs))
	for i, b := range req.MissingAUMs {
		if err := aums[i].Unserialize(b); err != nil {
			httpError(w, r, http.StatusBadRequest, "sync/send: AUM %d: %v", i, err)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.authority == nil {
		httpError(w, r, http.StatusBadRequest, "%v", errLockOff)
		return
	}
	if len(aums) > 0 {
		before := s.authority.Head()
		// Inform checks every AUM (signatures, votes, parents) and commits none on error.
		if err := s.authority.Inform(s.chonk, aums); err != nil {
			httpError(w, r, http.StatusBadRequest, "sync/send: AUMs rejected: %v", err)
			return
		}
		if err := s.reopenLocked(); err != nil {
			httpError(w, r, http.StatusInternalServerError, "sync/send: reopening the authority: %v", err)
			return
		}
		if s.authority.Head() != before {
			log.Printf("tka: head %s -> %s (%d AUMs from a node)", before, s.authority.Head(), len(aums))
			s.notifyLocked()
		}
	}
	writeJSON(w, tailcfg.TKASyncSendResponse{Head: s.authority.Head().String()})
}

func (s *server) tkaDisable(w http.ResponseWriter, r *http.Request, body []byte) {
	var req tailcfg.TKADisableRequest
	if !decodeTKA(w, r, body, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.authority == nil {
		httpError(w, r, http.StatusBadRequest, "%v", errLockOff)
		return
	}
	if !s.authority.ValidDisablement(req.DisablementSecret) {
		httpError(w, r, http.StatusBadRequest, "incorrect disablement secret")
		return
	}
	s.chonk, s.authority = nil, nil
	s.disablementSecret = bytes.Clone(req.DisablementSecret)
	for _, n := range s.nodes {
		n.keySig = nil
	}
	log.Printf("tka: lock disabled")
	s.notifyLocked()
	writeJSON(w, tailcfg.TKADisableResponse{})
}

func (s *server) tkaSign(w http.ResponseWriter, r *http.Request, body []byte) {
	var req tailcfg.TKASubmitSignatureRequest
	if !decodeTKA(w, r, body, &req) {
		return
	}
	var sig tka.NodeKeySignature
	if err := sig.Unserialize(req.Signature); err != nil {
		httpError(w, r, http.StatusBadRequest, "sign: malformed signature: %v", err)
		return
	}
	// The node being signed is the signature's Pubkey, not the caller.
	var signed key.NodePublic
	if err := signed.UnmarshalBinary(sig.Pubkey); err != nil {
		httpError(w, r, http.StatusBadRequest, "sign: signature's node key: %v", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.verifyLocked(signed, req.Signature); err != nil {
		httpError(w, r, http.StatusBadRequest, "sign: signature does not verify: %v", err)
		return
	}
	n := s.byKey[signed]
	if n == nil {
		httpError(w, r, http.StatusNotFound, "sign: no node with key %s", signed.ShortString())
		return
	}
	n.keySig = req.Signature
	log.Printf("tka: node %d (%s) signed", n.id, n.label)
	s.notifyLocked()
	writeJSON(w, tailcfg.TKASubmitSignatureResponse{})
}

func (s *server) tkaAffectedSigs(w http.ResponseWriter, r *http.Request, body []byte) {
	var req tailcfg.TKASignaturesUsingKeyRequest
	if !decodeTKA(w, r, body, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.authority == nil {
		httpError(w, r, http.StatusBadRequest, "%v", errLockOff)
		return
	}
	res := tailcfg.TKASignaturesUsingKeyResponse{Signatures: []tkatype.MarshaledSignature{}}
	for _, n := range s.nodes {
		if len(n.keySig) == 0 {
			continue
		}
		var sig tka.NodeKeySignature
		if err := sig.Unserialize(n.keySig); err != nil {
			continue
		}
		if id, err := sig.UnverifiedAuthorizingKeyID(); err == nil && bytes.Equal(id, req.KeyID) {
			res.Signatures = append(res.Signatures, n.keySig)
		}
	}
	writeJSON(w, res)
}
