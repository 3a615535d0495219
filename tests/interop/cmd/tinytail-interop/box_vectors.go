package main

// box-vectors: NaCl boxes as the reference seals them, for the two places tinytail uses one.
//
//   - disco: full packets (magic + sender disco public key + nonce + box) for a Ping, two Pongs and
//     a CallMeMaybe, marshalled by tailscale.com/disco and sealed from disco key A to disco key B
//     with key.DiscoShared.Seal, the way magicsock's sendDiscoMessage builds them;
//   - DERP login: the ClientInfo frame written by tailscale.com/derp's own client (derp.NewClient
//     with a known server key sends it straight away) and a ServerInfo frame sealed by the server's
//     node key as derpserver's sendServerInfo does (that one is unexported, so it is rebuilt here
//     from the exported key.NodePrivate.SealTo and derp.WriteFrame).
//
// The reference draws box nonces from crypto/rand.Reader; while sealing, that reader is replaced by
// one that hands out fixed nonces, so the output is deterministic, and every nonce is checked to
// be where NaCl's box format puts it. Private keys are fixed test keys and are in the output so
// that core/tests/box_vectors.rs can open and re-seal everything. The output is committed as
// core/tests/vectors/box.json.

import (
	"bufio"
	"bytes"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"

	"go4.org/mem"
	"tailscale.com/derp"
	"tailscale.com/disco"
	"tailscale.com/types/key"
)

type boxVectorFile struct {
	Comment   string          `json:"comment"`
	Tailscale string          `json:"tailscale"`
	Disco     discoVectors    `json:"disco"`
	DERP      derpLoginVector `json:"derp"`
}

type boxKeyPair struct {
	Private string `json:"private"`
	Public  string `json:"public"`
}

type discoVectors struct {
	// A seals, B opens.
	A       boxKeyPair          `json:"a"`
	B       boxKeyPair          `json:"b"`
	Packets []discoPacketVector `json:"packets"`
}

type discoPacketVector struct {
	Name  string `json:"name"`
	Nonce string `json:"nonce"`
	// Plaintext is AppendMarshal's output: type, version, payload.
	Plaintext string `json:"plaintext"`
	// Packet is the whole datagram (or DERP packet payload).
	Packet string `json:"packet"`
	// Message is what disco.Parse reads back from the opened box.
	Message discoMessageVector `json:"message"`
}

type discoMessageVector struct {
	Kind      string   `json:"kind"` // "ping", "pong", "call_me_maybe"
	TxID      string   `json:"tx_id,omitempty"`
	NodeKey   string   `json:"node_key,omitempty"` // raw hex; empty when absent
	Padding   int      `json:"padding"`
	Src       string   `json:"src,omitempty"`
	Endpoints []string `json:"endpoints,omitempty"`
}

type derpLoginVector struct {
	Client     boxKeyPair    `json:"client"`
	Server     boxKeyPair    `json:"server"`
	ClientInfo derpBoxVector `json:"client_info"`
	ServerInfo derpBoxVector `json:"server_info"`
}

type derpBoxVector struct {
	Nonce string `json:"nonce"`
	// JSON is the box's plaintext.
	JSON string `json:"json"`
	// Frame is the whole frame: type, big-endian length, payload.
	Frame string `json:"frame"`
}

// fixedNonces stands in for crypto/rand.Reader while sealing: each Read must be one whole nonce.
type fixedNonces struct{ next [][24]byte }

func (f *fixedNonces) Read(p []byte) (int, error) {
	if len(f.next) == 0 || len(p) != 24 {
		return 0, fmt.Errorf("box-vectors: unexpected random read of %d bytes (%d nonces left)", len(p), len(f.next))
	}
	n := copy(p, f.next[0][:])
	f.next = f.next[1:]
	return n, nil
}

// withNonce runs seal with crypto/rand.Reader yielding exactly nonce, then restores the reader.
func withNonce(nonce [24]byte, seal func()) {
	saved := crand.Reader
	src := &fixedNonces{next: [][24]byte{nonce}}
	crand.Reader = src
	defer func() { crand.Reader = saved }()
	seal()
	if len(src.next) != 0 {
		fail("the reference did not draw its nonce from crypto/rand.Reader")
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "box-vectors: "+format+"\n", args...)
	os.Exit(1)
}

// seed32 derives a fixed 32-byte value from a label.
func seed32(label string) [32]byte { return sha256.Sum256([]byte("tinytail box-vectors " + label)) }

// clamped is a seed clamped as key.NewDisco/NewNode clamp fresh keys (NaCl box keys).
func clamped(label string) []byte {
	k := seed32(label)
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k[:]
}

func txID(label string) [12]byte {
	s := seed32("tx " + label)
	return [12]byte(s[:12])
}

func nonce24(label string) [24]byte {
	s := seed32("nonce " + label)
	return [24]byte(s[:24])
}

func discoPair(k key.DiscoPrivate, raw []byte) boxKeyPair {
	pub := k.Public().Raw32()
	return boxKeyPair{Private: hex.EncodeToString(raw), Public: hex.EncodeToString(pub[:])}
}

func nodePair(k key.NodePrivate) boxKeyPair {
	priv, pub := k.Raw32(), k.Public().Raw32()
	return boxKeyPair{Private: hex.EncodeToString(priv[:]), Public: hex.EncodeToString(pub[:])}
}

func describeDisco(m disco.Message) discoMessageVector {
	switch m := m.(type) {
	case *disco.Ping:
		v := discoMessageVector{Kind: "ping", TxID: hex.EncodeToString(m.TxID[:]), Padding: m.Padding}
		if !m.NodeKey.IsZero() {
			raw := m.NodeKey.Raw32()
			v.NodeKey = hex.EncodeToString(raw[:])
		}
		return v
	case *disco.Pong:
		return discoMessageVector{Kind: "pong", TxID: hex.EncodeToString(m.TxID[:]), Src: m.Src.String()}
	case *disco.CallMeMaybe:
		v := discoMessageVector{Kind: "call_me_maybe"}
		for _, ep := range m.MyNumber {
			v.Endpoints = append(v.Endpoints, ep.String())
		}
		return v
	}
	fail("unexpected message type %T", m)
	return discoMessageVector{}
}

func runBoxVectors(args []string) {
	if len(args) != 0 {
		fmt.Fprintln(os.Stderr, "usage: tinytail-interop box-vectors")
		os.Exit(2)
	}
	out := boxVectorFile{
		Comment:   "generated by `cd tests/interop && go run ./cmd/tinytail-interop box-vectors > ../../core/tests/vectors/box.json`; test-only keys, fixed nonces",
		Tailscale: moduleVersion("tailscale.com"),
	}

	// Disco: A -> B.
	aRaw, bRaw := clamped("disco A"), clamped("disco B")
	discoA, discoB := key.DiscoPrivateFromRaw32(mem.B(aRaw)), key.DiscoPrivateFromRaw32(mem.B(bRaw))
	out.Disco.A, out.Disco.B = discoPair(discoA, aRaw), discoPair(discoB, bRaw)
	sealer, opener := discoA.Shared(discoB.Public()), discoB.Shared(discoA.Public())

	client := key.NodePrivateFromRaw32(mem.B(clamped("node client")))
	server := key.NodePrivateFromRaw32(mem.B(clamped("node server")))

	msgs := []struct {
		name string
		msg  disco.Message
	}{
		{"ping with node key", &disco.Ping{TxID: txID("ping"), NodeKey: client.Public()}},
		{"ping with node key and padding", &disco.Ping{TxID: txID("ping2"), NodeKey: client.Public(), Padding: 9}},
		{"pong ipv4", &disco.Pong{TxID: txID("ping"), Src: netip.MustParseAddrPort("203.0.113.7:41641")}},
		{"pong ipv6", &disco.Pong{TxID: txID("ping2"), Src: netip.MustParseAddrPort("[2001:db8:1::2]:3478")}},
		{"call me maybe", &disco.CallMeMaybe{MyNumber: []netip.AddrPort{
			netip.MustParseAddrPort("198.51.100.4:41641"),
			netip.MustParseAddrPort("[fd7a:115c:a1e0::1]:12345"),
		}}},
	}
	for _, tc := range msgs {
		nonce := nonce24(tc.name)
		plain := tc.msg.AppendMarshal(nil)
		// As magicsock's sendDiscoMessage: magic, our disco public key, then the sealed box.
		pkt := append([]byte(disco.Magic), discoA.Public().AppendTo(nil)...)
		withNonce(nonce, func() { pkt = append(pkt, sealer.Seal(plain)...) })

		// Read it back as magicsock's handleDiscoMessage does.
		if !disco.LooksLikeDiscoWrapper(pkt) {
			fail("%s: not a disco wrapper", tc.name)
		}
		if src, _ := disco.Source(pkt); !bytes.Equal(src, discoA.Public().AppendTo(nil)) {
			fail("%s: wrong sender key", tc.name)
		}
		sealed := pkt[len(disco.Magic)+key.DiscoPublicRawLen:]
		if !bytes.Equal(sealed[:24], nonce[:]) || len(sealed) != 24+16+len(plain) {
			fail("%s: nonce not in front, or not one 16-byte tag of overhead", tc.name)
		}
		opened, ok := opener.Open(sealed)
		if !ok || !bytes.Equal(opened, plain) {
			fail("%s: the reference cannot open its own box", tc.name)
		}
		parsed, err := disco.Parse(opened)
		if err != nil {
			fail("%s: parse: %v", tc.name, err)
		}
		out.Disco.Packets = append(out.Disco.Packets, discoPacketVector{
			Name:      tc.name,
			Nonce:     hex.EncodeToString(nonce[:]),
			Plaintext: hex.EncodeToString(plain),
			Packet:    hex.EncodeToString(pkt),
			Message:   describeDisco(parsed),
		})
	}

	// DERP login.
	out.DERP.Client, out.DERP.Server = nodePair(client), nodePair(server)

	// ClientInfo, written by the reference client itself. With the server key given, NewClient
	// writes nothing but the ClientInfo frame.
	ciNonce := nonce24("client info")
	var wire bytes.Buffer
	brw := bufio.NewReadWriter(bufio.NewReader(bytes.NewReader(nil)), bufio.NewWriter(&wire))
	withNonce(ciNonce, func() {
		_, err := derp.NewClient(client, nil, brw, func(string, ...any) {},
			derp.ServerPublicKey(server.Public()), derp.CanAckPings(true))
		if err != nil {
			fail("derp.NewClient: %v", err)
		}
	})
	ciFrame := wire.Bytes()
	ciJSON := checkDERPFrame("ClientInfo", ciFrame, derp.FrameClientInfo, func(payload []byte) []byte {
		if len(payload) < key.NodePublicRawLen+24+16 ||
			!bytes.Equal(payload[:key.NodePublicRawLen], client.Public().AppendTo(nil)) {
			fail("ClientInfo does not start with the client's node key")
		}
		box := payload[key.NodePublicRawLen:]
		if !bytes.Equal(box[:24], ciNonce[:]) {
			fail("ClientInfo nonce not in front")
		}
		// The server opens it as derpserver's recvClientKey does.
		msg, ok := server.OpenFrom(client.Public(), box)
		if !ok {
			fail("the server key cannot open the reference's ClientInfo")
		}
		var info derp.ClientInfo
		if err := json.Unmarshal(msg, &info); err != nil || info.Version != derp.ProtocolVersion || !info.CanAckPings {
			fail("ClientInfo JSON %q: %v", msg, err)
		}
		return msg
	})
	out.DERP.ClientInfo = derpBoxVector{Nonce: hex.EncodeToString(ciNonce[:]), JSON: string(ciJSON), Frame: hex.EncodeToString(ciFrame)}

	// ServerInfo, as derpserver's sendServerInfo: box of {"version":2} from the server's key to the
	// client's, nonce in front.
	siNonce := nonce24("server info")
	siJSON, err := json.Marshal(derp.ServerInfo{Version: derp.ProtocolVersion})
	if err != nil {
		fail("ServerInfo JSON: %v", err)
	}
	var siBox []byte
	withNonce(siNonce, func() { siBox = server.SealTo(client.Public(), siJSON) })
	wire.Reset()
	bw := bufio.NewWriter(&wire)
	if err := derp.WriteFrame(bw, derp.FrameServerInfo, siBox); err != nil {
		fail("WriteFrame: %v", err)
	}
	siFrame := wire.Bytes()
	checkDERPFrame("ServerInfo", siFrame, derp.FrameServerInfo, func(payload []byte) []byte {
		if !bytes.Equal(payload[:24], siNonce[:]) {
			fail("ServerInfo nonce not in front")
		}
		// The client opens it as derp.Client's parseServerInfo does.
		msg, ok := client.OpenFrom(server.Public(), payload)
		if !ok || !bytes.Equal(msg, siJSON) {
			fail("the client key cannot open the ServerInfo")
		}
		return msg
	})
	out.DERP.ServerInfo = derpBoxVector{Nonce: hex.EncodeToString(siNonce[:]), JSON: string(siJSON), Frame: hex.EncodeToString(siFrame)}

	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		fail("%v", err)
	}
}

// checkDERPFrame reads frame back with the reference's frame reader and hands its payload to check.
func checkDERPFrame(name string, frame []byte, want derp.FrameType, check func(payload []byte) []byte) []byte {
	br := bufio.NewReader(bytes.NewReader(frame))
	t, n, err := derp.ReadFrameHeader(br)
	if err != nil || t != want || int(n) != len(frame)-derp.FrameHeaderLen {
		fail("%s: frame header type %v len %d: %v", name, t, n, err)
	}
	payload, err := io.ReadAll(br)
	if err != nil || len(payload) < 24+16 {
		fail("%s: short frame: %v", name, err)
	}
	return check(payload)
}
