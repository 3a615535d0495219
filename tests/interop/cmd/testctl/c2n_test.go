package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"tailscale.com/tailcfg"
)

// These tests drive c2n through testctl's own handlers: a map stream over a real HTTP server,
// /debug/c2n, and replies as tailscale.com/feature/c2n's answerC2NPing makes them (the
// handler's http.Response written with Response.Write). tests/e2e/c2n.sh does it with a real
// tailscaled over Noise.

// debugC2NCall runs POST /debug/c2n?QUERY.
func debugC2NCall(s *server, query string) (int, []byte) {
	rec := httptest.NewRecorder()
	s.serveDebugC2N(rec, httptest.NewRequest("POST", "http://unused/debug/c2n?"+query, nil))
	return rec.Code, rec.Body.Bytes()
}

type c2nResult struct {
	code int
	body []byte
}

// debugC2NAsync starts POST /debug/c2n?QUERY; its result arrives on the channel.
func debugC2NAsync(s *server, query string) <-chan c2nResult {
	ch := make(chan c2nResult, 1)
	go func() {
		code, body := debugC2NCall(s, query)
		ch <- c2nResult{code, body}
	}()
	return ch
}

// httpReply is what a node POSTs back: an HTTP/1.1 response with status and body.
func httpReply(t *testing.T, status int, body string) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	rec.Header().Set("Content-Type", "application/json")
	rec.WriteHeader(status)
	io.WriteString(rec, body)
	var b bytes.Buffer
	if err := rec.Result().Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// readFrame reads one map-stream message.
func readFrame(t *testing.T, r io.Reader) *tailcfg.MapResponse {
	t.Helper()
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		t.Fatalf("reading a map message: %v", err)
	}
	b := make([]byte, binary.LittleEndian.Uint32(size[:]))
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("reading a map message: %v", err)
	}
	var m tailcfg.MapResponse
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decoding a map message: %v", err)
	}
	return &m
}

// replyPath is the path a node POSTs its reply to: the PingRequest URL's.
func replyPath(t *testing.T, pr *tailcfg.PingRequest) string {
	t.Helper()
	u, err := url.Parse(pr.URL)
	if err != nil || !strings.HasPrefix(u.Path, c2nReplyPrefix) {
		t.Fatalf("ping URL %q", pr.URL)
	}
	return u.Path
}

func expectWaiting(t *testing.T, ch <-chan c2nResult) {
	t.Helper()
	select {
	case res := <-ch:
		t.Fatalf("/debug/c2n returned early: %d %s", res.code, res.body)
	case <-time.After(50 * time.Millisecond):
	}
}

func await(t *testing.T, ch <-chan c2nResult) c2nResult {
	t.Helper()
	select {
	case res := <-ch:
		return res
	case <-time.After(10 * time.Second):
		t.Fatal("/debug/c2n did not return")
	}
	return c2nResult{}
}

// TestC2NStream: a node with an open map stream gets the request as a keep-alive carrying the
// PingRequest; the reply from another machine is refused and the call keeps waiting; the node's
// reply completes it; a second reply is refused.
func TestC2NStream(t *testing.T) {
	s := newServer("", "tail1234.ts.net")
	a, b := newTestNode(), newTestNode()
	register(t, s, a, "a")
	register(t, s, b, "b")

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveMachine(w, r, a.mkey) }))
	defer srv.Close()
	mreq, _ := json.Marshal(tailcfg.MapRequest{Version: 115, NodeKey: a.nk.Public(), Stream: true})
	res, err := http.Post(srv.URL+"/machine/map", "application/json", bytes.NewReader(mreq))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("map stream: %v %v", res, err)
	}
	defer res.Body.Close()
	if m := readFrame(t, res.Body); m.Node == nil || m.Node.Name != "a.tail1234.ts.net." {
		t.Fatalf("first map message: %+v", m)
	}

	path := "/tls-cert-status?domain=a.tail1234.ts.net"
	ch := debugC2NAsync(s, "node=a&timeout=10s&path="+url.QueryEscape(path))
	m := readFrame(t, res.Body)
	pr := m.PingRequest
	if !m.KeepAlive || m.Node != nil || len(m.Peers) != 0 || pr == nil || pr.Types != "c2n" || !pr.URLIsNoise {
		t.Fatalf("c2n message: %+v, ping %+v", m, pr)
	}
	hreq, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(pr.Payload)))
	if err != nil {
		t.Fatalf("payload is no HTTP request: %v\n%s", err, pr.Payload)
	}
	if hreq.Method != "GET" || hreq.RequestURI != path || hreq.Proto != "HTTP/1.1" || hreq.Host != "a.tail1234.ts.net" || hreq.FormValue("domain") != "a.tail1234.ts.net" {
		t.Fatalf("payload: %s", pr.Payload)
	}
	reply := replyPath(t, pr)

	// Another machine's reply: 403, and the call still waits.
	if code, body := call(t, s, b.mkey, "POST", reply, httpReply(t, 200, `{"forged":true}`)); code != http.StatusForbidden {
		t.Fatalf("reply from another machine: %d %s", code, body)
	}
	expectWaiting(t, ch)
	if code, body := call(t, s, a.mkey, "GET", reply, ""); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET reply: %d %s", code, body)
	}

	want := `{"Error":"no certificate","Missing":true}` + "\n"
	if code, body := call(t, s, a.mkey, "POST", reply, httpReply(t, 200, want)); code != 200 {
		t.Fatalf("node's reply: %d %s", code, body)
	}
	got := await(t, ch)
	var out debugC2N
	if err := json.Unmarshal(got.body, &out); got.code != 200 || err != nil || out.Status != 200 || out.Body != want {
		t.Fatalf("/debug/c2n: %d %s", got.code, got.body)
	}
	if code, body := call(t, s, a.mkey, "POST", reply, httpReply(t, 200, want)); code != http.StatusNotFound {
		t.Fatalf("second reply: %d %s", code, body)
	}

	// The node's non-200 answers pass through as they are; the name may be the MagicDNS one.
	ch = debugC2NAsync(s, "node=a.tail1234.ts.net.&method=POST&path=%2Fnope")
	pr = readFrame(t, res.Body).PingRequest
	if pr == nil || !bytes.HasPrefix(pr.Payload, []byte("POST /nope HTTP/1.1\r\n")) {
		t.Fatalf("second ping: %+v", pr)
	}
	if code, body := call(t, s, a.mkey, "POST", replyPath(t, pr), httpReply(t, 400, "unknown c2n path\n")); code != 200 {
		t.Fatalf("node's reply: %d %s", code, body)
	}
	got = await(t, ch)
	if err := json.Unmarshal(got.body, &out); got.code != 200 || err != nil || out.Status != 400 || out.Body != "unknown c2n path\n" {
		t.Fatalf("/debug/c2n: %d %s", got.code, got.body)
	}
}

// queuedPing waits for the c2n ping queued for node n (which has no map stream).
func queuedPing(t *testing.T, s *server, n testNode) *tailcfg.PingRequest {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		pings := s.byKey[n.nk.Public()].pings
		s.mu.Unlock()
		if len(pings) > 0 {
			return pings[len(pings)-1]
		}
	}
	t.Fatal("no ping queued")
	return nil
}

// TestC2NErrors: 400 bad parameters, 404 unknown node, 504 no reply in time, 502 a reply that is
// no HTTP response, 403 a reply from another machine, 404 an unknown token.
func TestC2NErrors(t *testing.T) {
	s := newServer("", "tail1234.ts.net")
	a, b := newTestNode(), newTestNode()
	register(t, s, a, "a")
	register(t, s, b, "b")

	for _, tc := range []struct {
		query string
		code  int
		msg   string
	}{
		{"path=%2Fecho", 400, "node=NAME is required"},
		{"node=a", 400, "path must be"},
		{"node=a&path=echo", 400, "path must be"},
		{"node=a&path=%2Fa%20b", 400, "bad path"},
		{"node=a&path=%2Fa%23frag", 400, "bad path"},
		{"node=a&path=%2Fa%0Ab", 400, "bad path"},
		{"node=a&path=%2Fecho&timeout=10", 400, "timeout must be"},
		{"node=a&path=%2Fecho&timeout=0s", 400, "timeout must be"},
		{"node=a&path=%2Fecho&timeout=-1s", 400, "timeout must be"},
		{"node=a&path=%2Fecho&timeout=6m", 400, "timeout must be"},
		{"node=a&path=%2Fecho&method=G%20T", 400, "bad method"},
		{"node=zz&path=%2Fecho", 404, `no node named "zz"`},
		{"node=a.other.net&path=%2Fecho", 404, "no node named"},
	} {
		code, body := debugC2NCall(s, tc.query)
		if code != tc.code || !strings.Contains(string(body), tc.msg) {
			t.Errorf("%s: %d %s, want %d %q", tc.query, code, body, tc.code, tc.msg)
		}
	}

	// No map stream and no reply: 504, saying the request never went out; nothing left queued.
	start := time.Now()
	code, body := debugC2NCall(s, "node=a&path=%2Fecho&timeout=100ms")
	if code != http.StatusGatewayTimeout || !strings.Contains(string(body), "never went out") || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("timeout: %d %s after %v", code, body, time.Since(start))
	}
	s.mu.Lock()
	left, waiting := len(s.byKey[a.nk.Public()].pings), len(s.c2n)
	s.mu.Unlock()
	if left != 0 || waiting != 0 {
		t.Fatalf("after a timeout: %d pings queued, %d waiters", left, waiting)
	}

	// A queued request, a forged reply (403, keeps waiting), then a timeout: the late reply of
	// the right machine finds no waiter (404).
	ch := debugC2NAsync(s, "node=a&path=%2Fecho&timeout=300ms")
	reply := replyPath(t, queuedPing(t, s, a))
	if code, body := call(t, s, b.mkey, "POST", reply, httpReply(t, 200, "x")); code != http.StatusForbidden {
		t.Fatalf("reply from another machine: %d %s", code, body)
	}
	expectWaiting(t, ch)
	if got := await(t, ch); got.code != http.StatusGatewayTimeout {
		t.Fatalf("after a forged reply: %d %s", got.code, got.body)
	}
	if code, body := call(t, s, a.mkey, "POST", reply, httpReply(t, 200, "late")); code != http.StatusNotFound {
		t.Fatalf("late reply: %d %s", code, body)
	}

	// A reply that is not an HTTP response: 400 to the node, 502 to the caller.
	ch = debugC2NAsync(s, "node=b&path=%2Fecho")
	reply = replyPath(t, queuedPing(t, s, b))
	if code, body := call(t, s, b.mkey, "POST", reply, "hello"); code != http.StatusBadRequest {
		t.Fatalf("garbage reply: %d %s", code, body)
	}
	if got := await(t, ch); got.code != http.StatusBadGateway || !strings.Contains(string(got.body), "not an HTTP response") {
		t.Fatalf("after a garbage reply: %d %s", got.code, got.body)
	}

	// Unknown tokens.
	if code, body := call(t, s, a.mkey, "POST", c2nReplyPrefix+"nope", httpReply(t, 200, "x")); code != http.StatusNotFound {
		t.Fatalf("unknown token: %d %s", code, body)
	}

	// Hostnames: an unknown label may still be a reported hostname, unless two nodes share it.
	c, d := newTestNode(), newTestNode()
	register(t, s, c, "Twin Box")
	register(t, s, d, "Twin Box")
	if code, body := debugC2NCall(s, "node=Twin+Box&path=%2Fecho"); code != 400 || !strings.Contains(string(body), "2 nodes have hostname") {
		t.Fatalf("shared hostname: %d %s", code, body)
	}
	ch = debugC2NAsync(s, "node=twin-box-4&path=%2Fecho")
	reply = replyPath(t, queuedPing(t, s, d))
	if code, body := call(t, s, d.mkey, "POST", reply, httpReply(t, 200, "d")); code != 200 {
		t.Fatalf("reply: %d %s", code, body)
	}
	if got := await(t, ch); got.code != 200 || !strings.Contains(string(got.body), `"body":"d"`) {
		t.Fatalf("by label: %d %s", got.code, got.body)
	}
}
