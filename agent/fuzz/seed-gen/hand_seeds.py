# Writes the hand-made map-response seeds (agent/fuzz/seeds/map_response/seed-*, one JSON message
# per line) for the map_response fuzz target: python3 hand_seeds.py ../seeds/map_response
import json, os, sys
out = sys.argv[1]
def key(kind, n): return f"{kind}:{('%02x' % n) * 32}"
def node(i, host, **kw):
    n = {
        "ID": i, "StableID": f"n{i}CNTRL", "Name": f"{host}.tail1234.ts.net.", "User": 1,
        "Key": key("nodekey", i), "KeyExpiry": "2027-05-01T10:00:00Z",
        "Machine": key("mkey", i), "DiscoKey": key("discokey", i),
        "Addresses": [f"100.64.0.{i}/32", f"fd7a:115c:a1e0::{i:x}/128"],
        "AllowedIPs": [f"100.64.0.{i}/32", f"fd7a:115c:a1e0::{i:x}/128"],
        "Endpoints": [f"198.51.100.{i}:41641", f"[2001:db8::{i:x}]:41641"],
        "HomeDERP": 1, "Hostinfo": {"Hostname": host, "OS": "linux"},
        "Created": "2026-01-01T00:00:00Z", "Cap": 113, "Online": True,
        "LastSeen": "2026-11-26T09:00:00Z", "MachineAuthorized": True,
    }
    n.update(kw); return n
derp = {"Regions": {
    "1": {"RegionID": 1, "RegionCode": "nyc", "RegionName": "New York City",
          "Nodes": [{"Name": "1f", "RegionID": 1, "HostName": "derp1f.tailscale.com", "IPv4": "199.38.181.104", "IPv6": "2607:f740:f::bc", "STUNPort": 0, "DERPPort": 0}]},
    "2": {"RegionID": 2, "RegionCode": "sfo", "RegionName": "San Francisco",
          "Nodes": [{"Name": "2d", "RegionID": 2, "HostName": "derp2d.tailscale.com", "IPv4": "192.73.252.65", "STUNPort": -1, "DERPPort": 443},
                    {"Name": "2e", "RegionID": 2, "HostName": "derp2e.tailscale.com", "IPv4": "none", "STUNPort": 3479}]},
    "900": {"RegionID": 900, "RegionCode": "own", "RegionName": "Own", "Nodes": [{"Name": "900a", "HostName": "derp.example.test", "IPv4": "203.0.113.9", "STUNPort": 3478, "DERPPort": 8443, "InsecureForTests": True}]},
    "5": None}, "OmitDefaultRegions": False, "HomeParams": {"RegionScore": {"1": 1.5}}}
filt = [{"SrcIPs": ["*"], "DstPorts": [{"IP": "*", "Ports": {"First": 0, "Last": 65535}}]},
        {"SrcIPs": ["100.64.0.2", "100.64.0.0/10", "fd7a:115c:a1e0::/48"], "DstPorts": [{"IP": "192.168.1.0/24", "Ports": {"First": 22, "Last": 443}}, {"IP": "100.64.0.1", "Ports": {"First": 80, "Last": 80}}], "IPProto": [6, 17, 1, 58]},
        {"SrcIPs": ["100.64.0.3-100.64.0.9"], "DstPorts": [{"IP": "10.0.0.0/8", "Bits": None, "Ports": {"First": 53, "Last": 53}}], "IPProto": [17]}]
me = node(1, "router", PrimaryRoutes=["192.168.1.0/24"], AllowedIPs=["100.64.0.1/32", "fd7a:115c:a1e0::1/128", "192.168.1.0/24"],
          Hostinfo={"Hostname": "router", "OS": "linux", "RoutableIPs": ["192.168.1.0/24", "0.0.0.0/0", "::/0"]})
peers = [node(2, "laptop"), node(3, "exit", PrimaryRoutes=["10.20.0.0/16", "0.0.0.0/0", "::/0"],
         AllowedIPs=["100.64.0.3/32", "fd7a:115c:a1e0::3/128", "10.20.0.0/16", "0.0.0.0/0", "::/0"]),
         node(4, "phone", DiscoKey=None, Endpoints=None, Online=False), node(7, "old", Expired=True, HomeDERP=0, DERP="127.3.3.40:2"),
         node(9, "tagged", Tags=["tag:server"], User=123, KeySignature="BAbEAYZzaWduZWQ=", AllowedIPs=None)]
full = {"Node": me, "DERPMap": derp, "Peers": peers, "PacketFilter": filt, "Domain": "tail1234.ts.net",
        "DNSConfig": {"Resolvers": [{"Addr": "100.100.100.100"}], "Domains": ["tail1234.ts.net"]},
        "SSHPolicy": {"Rules": []}, "CollectServices": "opt", "ControlTime": "2026-11-26T09:00:00.123456789Z",
        "TKAInfo": {"Head": "ZLTGS4Y7BM2X6WQFRGQYAN7WOZGUDCT7TZ2VGH3GOXVJLNQZNPRA", "Disabled": False},
        "Debug": {"DisableLogTail": True}, "UserProfiles": [{"ID": 1, "LoginName": "a@example.com", "DisplayName": "A"}]}
seeds = {}
def put(name, msgs):
    seeds[name] = "\n".join(json.dumps(m, ensure_ascii=False, separators=(",", ":")) for m in msgs) + "\n"
ka = {"KeepAlive": True}
put("full-map", [full])
put("full-then-keepalives", [full, ka, {"KeepAlive": True, "ControlTime": "2026-11-26T09:01:00Z"}, ka])
put("peers-changed-removed", [full, {"PeersChanged": [node(2, "laptop-renamed", Online=False), node(11, "new")], "PeersRemoved": [3, 404]},
     {"PeersRemoved": [11, 2, 2]}])
put("peers-changed-patch", [full, {"PeersChangedPatch": [
    {"NodeID": 2, "DERPRegion": 2, "Endpoints": ["203.0.113.20:41641", "bogus"], "Online": False, "LastSeen": "2026-11-26T10:00:00Z"},
    {"NodeID": 3, "Key": key("nodekey", 0x33), "DiscoKey": key("discokey", 0x34), "KeyExpiry": "2028-01-01T00:00:00Z", "KeySignature": "AAAA", "Cap": 115},
    {"NodeID": 9, "Key": "nodekey:zz", "DiscoKey": "discokey:", "KeyExpiry": "0001-01-01T00:00:00Z"},
    {"NodeID": 404, "Online": True}]},
    {"OnlineChange": {"2": True, "3": False, "x": True, "-1": True}, "PeerSeenChange": {"2": False, "9": True, "99999999999999999999": True}}])
put("packet-filters", [full, {"PacketFilters": {"base": None, "extra": filt}}, {"PacketFilters": {"*": None, "a": [], "b": filt[1:]}},
     {"PacketFilter": []}, {"PacketFilters": {"*": None}}])
put("derp-map-changes", [full, {"DERPMap": {"Regions": {"3": {"RegionID": 3, "RegionCode": "sin", "Nodes": [{"Name": "3a", "HostName": "derp3.example", "IPv4": "192.0.2.3", "STUNPort": 65536}]}}}},
     {"DERPMap": {"HomeParams": {}}}, {"DERPMap": {"Regions": {}}}, {"DERPMap": {"Regions": {"4294967295": {"RegionID": 7}, "0": {"RegionID": 0}}}}])
put("tka-info", [full, {"TKAInfo": {"Head": "", "Disabled": True}}, {"TKAInfo": {"Head": "AAAA"}}])
put("self-node-changes", [full, {"Node": node(1, "router", Addresses=["100.64.0.1/32"], AllowedIPs=["100.64.0.1/32", "192.168.1.0/24", "192.168.2.0/24"], PrimaryRoutes=["192.168.1.0/24"], KeyExpiry="2020-01-01T00:00:00Z")},
     {"Node": node(1, "router", Expired=True)}])
put("multi-byte-key-expiry", [dict(full, Node=node(1, "router", KeyExpiry="2023-11-15T00:13:20+0\u00e900"), Peers=[
    node(2, "a", KeyExpiry="2023-11-1\u20ac00:13:20Z"), node(3, "b", KeyExpiry="\U0001f600023-11-14T22:13:20Z"),
    node(4, "c", KeyExpiry="2023-11-14T22:13:20.\u00e9Z", LastSeen="\u00e9\u00e9"), node(5, "d", KeyExpiry="2023-11-14T22:13:20+01:\u00e9")]),
    {"PeersChangedPatch": [{"NodeID": 2, "KeyExpiry": "2023-11-14T22:13:2\u00e9+01:00"}]}])
put("hostile-values", [{"Node": node(1, "router", Addresses=["100.64.0.1/33", "::/129", "1.2.3.4/-1", "1.2.3.4/0x10", "0.0.0.0/0"], AllowedIPs=["300.1.1.1/32", "", "/", "a/b/c"],
    PrimaryRoutes=["0.0.0.0/0", "192.168.1.1/24"], HomeDERP=4294967295, ID=-9223372036854775808),
    "Peers": [node(2, "x", ID=9223372036854775807, Endpoints=["[::1]:0", "1.2.3.4:99999", ":1"], Addresses=["100.64.0.2/32"] * 3),
              node(2, "dup"), node(-5, "neg", Key=key("nodekey", 0)), node(6, "nokey", Key=""), node(8, "short", DiscoKey="discokey:00")],
    "PacketFilter": [{"SrcIPs": ["", "*", "1.2.3.4/99", "fd7a::/200", "1.1.1.1-0.0.0.0"], "DstPorts": [{"IP": "", "Ports": {"First": 65535, "Last": 0}}, {"IP": "::/0", "Ports": {"First": 0, "Last": 65535}}], "IPProto": [-1, 256, 2147483647, -2147483648]}],
    "DERPMap": {"Regions": {"1": {"RegionID": 1, "Nodes": [{"HostName": "a\r\nb", "IPv4": "999.1.1.1", "STUNPort": -2147483648, "DERPPort": 65535}]}}}}])
put("empty-and-null", [{}, {"Node": None, "Peers": None, "PeersChanged": None, "PacketFilters": None, "DERPMap": None}, {"Peers": []}, {"Node": {}}, {"Node": node(1, "r"), "Peers": [{}]}])
put("peers-nulls-from-go", [{"Node": node(1, "r", Endpoints=None, Tags=None, PrimaryRoutes=None, Addresses=None), "Peers": [node(2, "p", Hostinfo=None, Endpoints=None)]}])
put("not-json", [])
seeds["not-json"] = "{\"Node\":\n[\n\x00\xff garbage\n"
os.makedirs(out, exist_ok=True)
for name, text in seeds.items():
    with open(os.path.join(out, "seed-" + name), "w", encoding="utf-8") as f:
        f.write(text)
print(len(seeds))

# The stream's wire form of two seeds (u32 LE length + one zstd frame per message), needs the zstd
# tool; seed-go-stream comes from main.go.
import struct, subprocess
def zstd_stream(src, dst):
    msgs = [m + b"\n" for m in open(os.path.join(out, src), "rb").read().split(b"\n") if m]
    frames = [subprocess.run(["zstd", "-q", "-19", "-c"], input=m, capture_output=True, check=True).stdout for m in msgs]
    open(os.path.join(out, dst), "wb").write(b"".join(struct.pack("<I", len(f)) + f for f in frames))
if os.path.exists(os.path.join(out, "seed-go-stream")):
    zstd_stream("seed-go-stream", "seed-zstd-stream")
zstd_stream("seed-multi-byte-key-expiry", "seed-zstd-multi-byte")
f = subprocess.run(["zstd", "-q", "-19", "-c"], input=b'{"KeepAlive":true}\n', capture_output=True, check=True).stdout
open(os.path.join(out, "seed-zstd-keepalive"), "wb").write(struct.pack("<I", len(f)) + f)
