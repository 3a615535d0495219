package main

import (
	"encoding/hex"
	"net/http"
	"net/netip"
	"time"

	"tailscale.com/tka"
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
