package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"strings"
	"time"

	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// c2n (control-to-node), as Tailscale's control does it (tailcfg.PingRequest with Types "c2n";
// tailscale.com/feature/c2n answerC2NPing): control puts an HTTP/1.1 request in a PingRequest's
// Payload, the node serves it with its c2n handlers and POSTs the whole HTTP/1.1 response to the
// PingRequest's URL over Noise.
//
// Scripts start one with POST /debug/c2n (serveDebugC2N); the node's reply arrives at
// /c2n-reply/TOKEN on the Noise side (serveC2NReply).

const (
	c2nReplyPrefix    = "/c2n-reply/"
	c2nDefaultTimeout = 10 * time.Second
	c2nMaxTimeout     = 5 * time.Minute
)

// c2nWait is one /debug/c2n call waiting for its node's reply.
type c2nWait struct {
	node    *node
	machine key.MachinePublic // the only machine whose reply counts
	ping    *tailcfg.PingRequest
	sent    bool            // the ping went out on a map stream
	done    chan c2nOutcome // buffered 1; the reply handler sends once
}

// c2nOutcome is what a node's reply turned into: the response, or why it is not one.
type c2nOutcome struct {
	status int
	body   []byte
	err    error
}

// debugC2N is the reply of POST /debug/c2n: the node's HTTP response.
type debugC2N struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

// serveDebugC2N is POST /debug/c2n?node=NAME&path=PATH[&timeout=DURATION][&method=METHOD]
// (admin HTTP): sends node NAME (its hostname, DNS label or MagicDNS name) a c2n request
// "METHOD PATH HTTP/1.1" (PATH url-escaped in the query, with its own query string; METHOD
// defaults to GET) on its map stream, as a keep-alive carrying the PingRequest, and waits up to
// DURATION (a Go duration, default 10s, at most 5m) for the reply. 200 with {"status": N,
// "body": "..."} (the node's HTTP status and body, whatever they are); 400 bad or missing
// parameters, 404 no such node, 502 the reply was not an HTTP response, 504 no reply in time
// (also when the node has no map stream open to receive the request).
func (s *server) serveDebugC2N(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name, path, method := q.Get("node"), q.Get("path"), q.Get("method")
	if name == "" {
		httpError(w, r, http.StatusBadRequest, "c2n: node=NAME is required")
		return
	}
	if path == "" || !strings.HasPrefix(path, "/") {
		httpError(w, r, http.StatusBadRequest, "c2n: path must be an absolute path (url-escaped), got %q", path)
		return
	}
	if strings.ContainsAny(path, " \t#") {
		httpError(w, r, http.StatusBadRequest, "c2n: bad path %q: escape spaces and '#'", path)
		return
	}
	target, err := url.ParseRequestURI(path)
	if err != nil {
		httpError(w, r, http.StatusBadRequest, "c2n: bad path %q: %v", path, err)
		return
	}
	if method == "" {
		method = http.MethodGet
	}
	if !isToken(method) {
		httpError(w, r, http.StatusBadRequest, "c2n: bad method %q", method)
		return
	}
	timeout := c2nDefaultTimeout
	if v := q.Get("timeout"); v != "" {
		if timeout, err = time.ParseDuration(v); err != nil || timeout <= 0 || timeout > c2nMaxTimeout {
			httpError(w, r, http.StatusBadRequest, "c2n: timeout must be a Go duration above 0 and at most %v, got %q", c2nMaxTimeout, v)
			return
		}
	}

	s.mu.Lock()
	n, code, err := s.findNodeLocked(name)
	if err != nil {
		s.mu.Unlock()
		httpError(w, r, code, "c2n: %v", err)
		return
	}
	var payload bytes.Buffer
	req := &http.Request{
		Method:     method,
		URL:        &url.URL{Path: target.Path, RawPath: target.RawPath, RawQuery: target.RawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{},
		Host:       n.label + "." + s.domain,
	}
	if err := req.Write(&payload); err != nil {
		s.mu.Unlock()
		httpError(w, r, http.StatusBadRequest, "c2n: building the request: %v", err)
		return
	}
	token := c2nToken()
	wt := &c2nWait{
		node:    n,
		machine: n.machine,
		ping: &tailcfg.PingRequest{
			// The host is never dialled: the node POSTs over its Noise connection to us.
			URL:        "https://" + n.label + ".c2n.invalid" + c2nReplyPrefix + token,
			URLIsNoise: true,
			Log:        true,
			Types:      "c2n",
			Payload:    payload.Bytes(),
		},
		done: make(chan c2nOutcome, 1),
	}
	if s.c2n == nil {
		s.c2n = map[string]*c2nWait{}
	}
	s.c2n[token] = wt
	n.pings = append(n.pings, wt.ping)
	streaming := n.streams > 0
	select {
	case n.poke <- struct{}{}:
	default:
	}
	log.Printf("c2n: %s %s to node %d (%s), token %s, timeout %v (%d map streams open)", method, target.RequestURI(), n.id, n.label, token, timeout, n.streams)
	s.mu.Unlock()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case out := <-wt.done:
		if out.err != nil {
			httpError(w, r, http.StatusBadGateway, "c2n: node %s's reply: %v", n.label, out.err)
			return
		}
		log.Printf("c2n: token %s: node %d (%s) answered %d, %d bytes", token, n.id, n.label, out.status, len(out.body))
		writeJSON(w, debugC2N{Status: out.status, Body: string(out.body)})
	case <-timer.C:
		sent := s.dropC2N(token)
		why := "the request went out on its map stream"
		if !sent {
			why = "the request never went out: no map stream took it"
			if !streaming {
				why += " (none was open)"
			}
		}
		httpError(w, r, http.StatusGatewayTimeout, "c2n: no reply from node %s within %v; %s", n.label, timeout, why)
	case <-r.Context().Done():
		s.dropC2N(token)
	}
}

// dropC2N forgets a waiter that gave up (and its ping, if still queued); says whether the ping
// had gone out.
func (s *server) dropC2N(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	wt := s.c2n[token]
	if wt == nil {
		return true // answered just now; the answer is lost with the caller
	}
	delete(s.c2n, token)
	for i, p := range wt.node.pings {
		if p == wt.ping {
			wt.node.pings = append(wt.node.pings[:i:i], wt.node.pings[i+1:]...)
			break
		}
	}
	return wt.sent
}

// takePingsLocked hands a map stream n's queued c2n pings, each to be sent once.
func (s *server) takePingsLocked(n *node) []*tailcfg.PingRequest {
	out := n.pings
	n.pings = nil
	for _, wt := range s.c2n {
		for _, p := range out {
			if wt.ping == p {
				wt.sent = true
			}
		}
	}
	return out
}

// serveC2NReply is POST /c2n-reply/TOKEN over Noise: the node's answer, a whole HTTP/1.1
// response. Only the machine that was asked may answer (403 for any other; the waiter keeps
// waiting), and only once (then the token is unknown: 404). A body that is not an HTTP
// response is 400 to the node and 502 to the waiting /debug/c2n.
func (s *server) serveC2NReply(w http.ResponseWriter, r *http.Request, mkey key.MachinePublic) {
	if r.Method != http.MethodPost {
		httpError(w, r, http.StatusMethodNotAllowed, "c2n reply: POST the HTTP response")
		return
	}
	token := strings.TrimPrefix(r.URL.Path, c2nReplyPrefix)
	s.mu.Lock()
	wt := s.c2n[token]
	switch {
	case wt == nil:
		s.mu.Unlock()
		httpError(w, r, http.StatusNotFound, "c2n reply: unknown or already answered token %q", token)
		return
	case wt.machine != mkey:
		s.mu.Unlock()
		httpError(w, r, http.StatusForbidden, "c2n reply: token %s was not sent to machine %s", token, mkey.ShortString())
		return
	}
	delete(s.c2n, token)
	s.mu.Unlock()

	out := readC2NReply(r.Body)
	wt.done <- out
	if out.err != nil {
		httpError(w, r, http.StatusBadRequest, "c2n reply: %v", out.err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// readC2NReply parses a c2n reply body: http.Response.Write's bytes.
func readC2NReply(body io.Reader) c2nOutcome {
	raw, err := io.ReadAll(io.LimitReader(body, bodyLimit+1))
	if err != nil {
		return c2nOutcome{err: fmt.Errorf("reading body: %v", err)}
	}
	if len(raw) > bodyLimit {
		return c2nOutcome{err: fmt.Errorf("body over %d bytes", bodyLimit)}
	}
	res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		return c2nOutcome{err: fmt.Errorf("not an HTTP response: %v", err)}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return c2nOutcome{err: fmt.Errorf("the HTTP response's body: %v", err)}
	}
	return c2nOutcome{status: res.StatusCode, body: b}
}

// findNodeLocked finds a node by DNS label, MagicDNS name (with or without the trailing dot) or,
// failing those, by the hostname it reported when exactly one node has it.
func (s *server) findNodeLocked(name string) (*node, int, error) {
	want := strings.TrimSuffix(strings.ToLower(name), ".")
	for _, n := range s.nodes {
		if n.label == want || n.label+"."+s.domain == want {
			return n, 0, nil
		}
	}
	var found []*node
	for _, n := range s.nodes {
		if n.hostinfo != nil && n.hostinfo.Hostname == name {
			found = append(found, n)
		}
	}
	switch len(found) {
	case 0:
		return nil, http.StatusNotFound, fmt.Errorf("no node named %q", name)
	case 1:
		return found[0], 0, nil
	}
	return nil, http.StatusBadRequest, fmt.Errorf("%d nodes have hostname %q; use a DNS label", len(found), name)
}

func c2nToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// isToken: an HTTP method is an RFC 9110 token.
func isToken(s string) bool {
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}
