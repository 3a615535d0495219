package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// acmeChallengePrefix is what a DNS-01 challenge name starts with (RFC 8555 §8.4).
const acmeChallengePrefix = "_acme-challenge."

// setDNS is what /machine/set-dns needs: where the TXT records go (pebble-challtestsrv's
// management API, the job Tailscale's devcontrol does with --test-dns), and what was set, for
// scripts (GET /debug/set-dns).
type setDNS struct {
	challtestsrv string // base URL without a trailing slash; "" = set-dns is off (501)

	mu     sync.Mutex
	tamper bool // POST /debug/set-dns/tamper?on=true: forward a wrong value (negative tests)
	// POST /debug/set-dns/delay?d=DURATION: hold each reply this long after the record is
	// forwarded and listed, so a test can kill the client in the middle of its issuance.
	delay   time.Duration
	records []debugSetDNS
}

// debugSetDNS is one entry of GET /debug/set-dns: a record testctl forwarded to challtestsrv.
type debugSetDNS struct {
	Node      int64     `json:"node"`
	Host      string    `json:"host"`      // as sent to challtestsrv, with the trailing dot
	Value     string    `json:"value"`     // what the node asked for
	Forwarded string    `json:"forwarded"` // what challtestsrv got (differs when tampered)
	Tampered  bool      `json:"tampered"`
	At        time.Time `json:"at"`
}

// certDomains are the names n may get certificates for: its MagicDNS name, as the map response's
// DNSConfig.CertDomains says (what Tailscale's control and testcontrol send).
func (s *server) certDomains(n *node) []string {
	return []string{n.label + "." + s.domain}
}

// serveSetDNS is POST /machine/set-dns (over Noise): tailscaled's DNS-01 step of `tailscale
// cert`. The request's NodeKey must be a node of the calling machine, the record a TXT record
// named _acme-challenge.D for a D in that node's CertDomains; the record goes to challtestsrv
// (POST /set-txt) and the node gets {} (tailscaled decodes the body and fails on an empty one).
// Refusals are 4xx with one line; challtestsrv failing is a 502.
func (s *server) serveSetDNS(w http.ResponseWriter, r *http.Request, mkey key.MachinePublic) {
	if r.Method != http.MethodPost {
		httpError(w, r, http.StatusMethodNotAllowed, "set-dns: POST with a JSON body")
		return
	}
	var req tailcfg.SetDNSRequest
	if !readJSON(w, r, &req) {
		return
	}
	s.mu.Lock()
	n := s.byKey[req.NodeKey]
	var domains []string
	var id int64
	if n != nil && n.machine == mkey {
		domains, id = s.certDomains(n), int64(n.id)
	}
	s.mu.Unlock()
	if domains == nil {
		httpError(w, r, http.StatusForbidden, "set-dns: NodeKey %q is not a node of this machine", req.NodeKey.ShortString())
		return
	}
	if req.Type != "TXT" {
		httpError(w, r, http.StatusBadRequest, "set-dns: record type %q, only TXT", req.Type)
		return
	}
	if req.Value == "" {
		httpError(w, r, http.StatusBadRequest, "set-dns: empty value")
		return
	}
	// The name as the domain spells it: a trailing dot and case do not matter (DNS), but
	// challtestsrv looks names up as they are written.
	name := ""
	for _, d := range domains {
		if strings.EqualFold(strings.TrimSuffix(req.Name, "."), acmeChallengePrefix+d) {
			name = acmeChallengePrefix + d
		}
	}
	if name == "" {
		httpError(w, r, http.StatusForbidden, "set-dns: name %q is not %s of this node's cert domains %q", req.Name, acmeChallengePrefix+"D", domains)
		return
	}
	if s.dns.challtestsrv == "" {
		httpError(w, r, http.StatusNotImplemented, "set-dns: testctl runs without -challtestsrv")
		return
	}

	s.dns.mu.Lock()
	tamper := s.dns.tamper
	s.dns.mu.Unlock()
	rec := debugSetDNS{Node: id, Host: name + ".", Value: req.Value, Forwarded: req.Value, Tampered: tamper, At: time.Now()}
	if tamper {
		// Same shape as a real DNS-01 value (base64url of a SHA-256), never the right one.
		sum := sha256.Sum256([]byte("tampered by testctl:" + req.Value))
		rec.Forwarded = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if err := s.dns.setTXT(r, rec.Host, rec.Forwarded); err != nil {
		httpError(w, r, http.StatusBadGateway, "set-dns: challtestsrv: %v", err)
		return
	}
	s.dns.mu.Lock()
	s.dns.records = append(s.dns.records, rec)
	delay := s.dns.delay
	s.dns.mu.Unlock()
	log.Printf("set-dns: node %d TXT %s = %q%s", id, rec.Host, rec.Forwarded, map[bool]string{true: " (TAMPERED)"}[tamper])
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	writeJSON(w, tailcfg.SetDNSResponse{})
}

var challtestsrvClient = &http.Client{Timeout: 10 * time.Second}

// setTXT makes value the TXT record of host in challtestsrv (its management API wants the
// trailing dot). Older values of host are cleared first: challtestsrv keeps adding values under
// a name, and once their answer outgrows a UDP DNS message Pebble's lookup fails ("dns:
// overflowing header size"), so after a few issuances for one name none would validate.
func (d *setDNS) setTXT(r *http.Request, host, value string) error {
	if err := d.post(r, "/clear-txt", map[string]string{"host": host}); err != nil {
		return err
	}
	return d.post(r, "/set-txt", map[string]string{"host": host, "value": value})
}

// post sends one call of challtestsrv's management API.
func (d *setDNS) post(r *http.Request, path string, fields map[string]string) error {
	body, _ := json.Marshal(fields)
	req, err := http.NewRequestWithContext(r.Context(), "POST", d.challtestsrv+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := challtestsrvClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(res.Body, 200))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s %s", strings.TrimPrefix(path, "/"), res.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// serveDebugSetDNS is GET /debug/set-dns: every record forwarded, oldest first.
func (s *server) serveDebugSetDNS(w http.ResponseWriter, r *http.Request) {
	s.dns.mu.Lock()
	defer s.dns.mu.Unlock()
	writeJSON(w, append([]debugSetDNS{}, s.dns.records...))
}

// serveDebugSetDNSTamper is POST /debug/set-dns/tamper?on=true|false (test-only): while on,
// set-dns forwards a wrong value, so a real ACME server must refuse the challenge.
func (s *server) serveDebugSetDNSTamper(w http.ResponseWriter, r *http.Request) {
	on, err := strconv.ParseBool(r.URL.Query().Get("on"))
	if err != nil {
		httpError(w, r, http.StatusBadRequest, "tamper: on must be true or false")
		return
	}
	s.dns.mu.Lock()
	s.dns.tamper = on
	s.dns.mu.Unlock()
	log.Printf("set-dns: tampering %v", on)
	writeJSON(w, map[string]bool{"tamper": on})
}

// serveDebugSetDNSDelay is POST /debug/set-dns/delay?d=DURATION (test-only; 0 turns it off):
// set-dns replies that long after the record is forwarded and listed in GET /debug/set-dns.
func (s *server) serveDebugSetDNSDelay(w http.ResponseWriter, r *http.Request) {
	d, err := time.ParseDuration(r.URL.Query().Get("d"))
	if err != nil || d < 0 || d > 5*time.Minute {
		httpError(w, r, http.StatusBadRequest, "delay: d must be a duration from 0 to 5m")
		return
	}
	s.dns.mu.Lock()
	s.dns.delay = d
	s.dns.mu.Unlock()
	log.Printf("set-dns: replies delayed by %v", d)
	writeJSON(w, map[string]string{"delay": d.String()})
}
