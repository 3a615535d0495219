#!/usr/bin/env bash
# End-to-end proof of issue #6 (forward real traffic): tinytail as the subnet router in the netns
# rig, a real tailscaled client, Headscale with its embedded DERP (over TLS, private CA), a LAN
# host behind the router and an "internet" host beyond its WAN side. Each check prints what it
# verified; the first failure stops the run with a non-zero exit.
#
#   tests/e2e/datapath.sh           (root; builds tinytail in debug unless TINYTAIL_BIN is set)
#
# Checks, in order (numbers are the issue's proofs; 6 and 7 are Rust tests: core/tests/rekey.rs
# and core/tests/alloc_per_packet.rs):
#   1  DERP only: UDP between client and router dropped by nft in the WAN namespace (a bridge
#      rule); the client pings the router's 100.x, `tailscale ping` says DERP, `tinytail ping`
#      reaches the client via DERP(rig)
#   2  direct: UDP allowed again, the path turns direct within 10 s (both pings show ip:port);
#      UDP blocked under a running TCP transfer: the longest stretch without a reply in a 10/s
#      ping stream from the client to the LAN host is at most FALLBACK_GAP_MS (default 9000: both
#      tailscaled and tinytail keep sending to a dead direct address until 6.5 s after its last
#      pong, tailscale's trustUDPAddrDuration, so ~6.7 s is the cause's worst case; the rest is
#      margin for a loaded 2-core machine); both `tailscale ping` and `tinytail ping` say DERP;
#      the transfer completes intact
#   3  subnet routing: HTTP GET and 5 s of iperf3 to the LAN host; the LAN host sees the router's
#      LAN address with SNAT, the client's 100.x with --snat-subnet-routes=false
#   5  exit node: approved 0.0.0.0/0, the client reaches the "internet" host through the router
#   4  packet filter: a Headscale ACL letting the client reach only port 80 on the LAN host:
#      port 80 works, port 22 is dropped and counted in tinytail's status
#   also: `tinytail netcheck` sees UDP, our address via STUN and DERP 999's latency
#   then: `tinytail down` removes our routes, addresses and SNAT table; the agent's SIGTERM too
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
RIG="tt$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
export RIG

TT="$(source "$here/../rig/rig.sh"; rig_tinytail_bin datapath)"
GAP_MAX_MS="${FALLBACK_GAP_MS:-9000}"

pass() { printf 'datapath: ok  %s\n' "$*"; }

(
  source "$here/../rig/rig.sh"
  source "$here/control-join.sh"
  source "$here/../../bench/lib.sh"  # bench_ping_gap, bench_now
  rig_up
  policy="$RIG_DIR/policy.json"
  echo '{"acls":[{"action":"accept","src":["*"],"dst":["*:*"]}]}' >"$policy"
  export RIG_HS_POLICY="$policy"
  rig_headscale_start
  HS_PID="$RIG_LAST_PID"

  tt_status() { control_tt status --json; }
  peer_path() { tt_status | jq -r '.Peer[] | select(.HostName == "client") | .CurAddr'; }

  # --- setup: UDP blocked from the start, so the first contact can only be DERP -------------
  rig_block_udp
  rig_tailscaled_start cli client
  rig_ts client up --login-server="$HS_URL" --auth-key="$(rig_authkey)" --hostname=client \
    --accept-routes --timeout=60s >/dev/null
  control_join "$TT" router >/dev/null
  TT_PID="$RIG_LAST_PID"
  rtr_ip="$(control_tt ip -4)"
  cli_ip="$(rig_ts client ip -4)"
  rig_wait_for 20 "client sees the router's route" bash -c \
    "'$RIG_PEERS/tailscale' --socket='$RIG_DIR/client/tailscaled.sock' status --json |
     jq -e '[.Peer[] | select(.HostName == \"router\") | .PrimaryRoutes[]?] | index(\"192.0.2.0/24\")'" \
    >/dev/null || rig_fail "the client never got the approved route"
  tt_status | jq -e '.Datapath.DERPConnected["999"] == true' >/dev/null ||
    rig_fail "tinytail is not connected to DERP 999"

  # --- 1: DERP only ---------------------------------------------------------------------------
  rig_exec cli ping -c 3 -W 5 "$rtr_ip" >/dev/null || rig_fail "1: client cannot ping $rtr_ip over DERP"
  out="$(rig_ts client ping -c 1 --until-direct=false router 2>&1)" || rig_fail "1: tailscale ping: $out"
  grep -q "via DERP(" <<<"$out" || rig_fail "1: tailscale ping did not report DERP: $out"
  pass "1: client pings $rtr_ip with UDP blocked; tailscale ping: $out"
  out="$(control_tt ping -c 1 --until-direct=false client)" || rig_fail "1: tinytail ping: $out"
  grep -q "via DERP(rig)" <<<"$out" || rig_fail "1: tinytail ping did not report DERP: $out"
  rig_exec rtr ping -c 2 -W 5 "$cli_ip" >/dev/null || rig_fail "1: router cannot ping $cli_ip over DERP"
  pass "1: tinytail pings the client: $out; ICMP $rtr_ip -> $cli_ip too"

  # --- netcheck: STUN to Headscale's embedded server through our socket ------------------------
  out="$(control_tt netcheck)" || rig_fail "netcheck: $out"
  grep -q "UDP: true" <<<"$out" && grep -q "IPv4: yes, 198.18.0.2:41641" <<<"$out" &&
    grep -Eq -- "- rig: [0-9.]+ms" <<<"$out" || rig_fail "netcheck: $out"
  tt_status | jq -e '.PreferredDERP == 999' >/dev/null || rig_fail "netcheck: home DERP not 999"
  pass "netcheck: $(tr '\n\t' '  ' <<<"$out" | tr -s ' ')"

  # --- 2: direct, then back to DERP under a running transfer -----------------------------------
  rig_unblock_udp
  start=$(date +%s.%N)
  rig_wait_for 10 "direct path" bash -c \
    "'$RIG_PEERS/tailscale' --socket='$RIG_DIR/client/tailscaled.sock' ping -c 1 --until-direct=false router |
     grep -q 'via 198.18.0.2:41641'" || rig_fail "2: the client's path did not turn direct within 10 s"
  took=$(echo "$(date +%s.%N) - $start" | bc)
  # As `tailscale ping`: pings until one comes back directly (at most 10).
  out="$(control_tt ping client)" || rig_fail "2: tinytail ping never went direct: $out"
  out="$(tail -n1 <<<"$out")"
  grep -q "via 198.18.0.20:41641" <<<"$out" || rig_fail "2: tinytail ping: $out"
  pass "2: direct within ${took%.*} s: tailscale ping via 198.18.0.2:41641; tinytail: $out"

  rig_exec lan sh -c "head -c 30000000 /dev/urandom >'$RIG_DIR/blob'"
  sum="$(sha256sum <"$RIG_DIR/blob" | cut -d' ' -f1)"
  rig_bg lan web80 python3 -m http.server 80 --bind 192.0.2.10 --directory "$RIG_DIR"
  rig_wait_for 10 "LAN web server" rig_exec rtr curl -sf -o /dev/null http://192.0.2.10/ ||
    rig_fail "LAN web server did not start"
  rig_bg cli pingstream ping -D -n -i 0.1 -W 1 192.0.2.10
  ping_pid="$RIG_LAST_PID"
  ping_log="$RIG_DIR/pingstream.log"
  rig_wait_for 5 "ping stream answered" grep -q "bytes from" "$ping_log" || rig_fail "2: no ping replies before the block"
  stream_from="$(bench_now)"
  # 30 MB at 2 MB/s: about 15 s, with UDP blocked from second 4 on.
  rig_bg cli transfer curl -sf --limit-rate 2M -o "$RIG_DIR/blob.got" http://192.0.2.10/blob
  transfer_pid="$RIG_LAST_PID"
  sleep 4
  rig_block_udp
  blocked_at="$(bench_now)"
  transfer_deadline=$((SECONDS + 60))
  tt_back="not within 20 s"
  rig_wait_for 20 "tinytail back on DERP" bash -c "[[ -z \"\$('$TT' status --json --socket '$TT_SOCK' |
     jq -r '.Peer[] | select(.HostName == \"client\") | .CurAddr')\" ]]" &&
    tt_back="after $(echo "$(bench_now) - $blocked_at" | bc | xargs printf '%.1f') s"
  # The transfer gets 60 s from the block; the stream runs until a second after it (or the
  # deadline), so an outage still going on at the end counts as a gap up to the end.
  while kill -0 "$transfer_pid" 2>/dev/null && ((SECONDS < transfer_deadline)); do sleep 0.1; done
  sleep 1
  stream_to="$(bench_now)"
  kill "$ping_pid" 2>/dev/null || true
  gap_ms="$(bench_ping_gap "$ping_log" "$stream_from" "$stream_to")"
  ((gap_ms <= GAP_MAX_MS)) ||
    rig_fail "2: longest gap in the 10/s ping stream ${gap_ms} ms > ${GAP_MAX_MS} ms (tinytail left the direct path $tt_back)"
  pass "2: UDP blocked mid-transfer: longest gap in 10/s pings to 192.0.2.10 ${gap_ms} ms (bound ${GAP_MAX_MS} ms);" \
    "tinytail dropped the direct path $tt_back (trust lapses 6.5 s after the last pong, tailscaled's value)"
  kill -0 "$transfer_pid" 2>/dev/null && rig_fail "2: the transfer had not finished 60 s after the block"
  wait "$transfer_pid" || rig_fail "2: the transfer failed after UDP was blocked"
  [[ "$(sha256sum <"$RIG_DIR/blob.got" | cut -d' ' -f1)" == "$sum" ]] || rig_fail "2: transfer corrupted"
  [[ -z "$(peer_path)" ]] || rig_fail "2: tinytail still lists a direct path: $(peer_path)"
  out="$(rig_ts client ping -c 1 --until-direct=false router 2>&1)" || true
  grep -q "via DERP(" <<<"$out" || rig_fail "2: client not on DERP after the block: $out"
  out2="$(control_tt ping -c 1 --until-direct=false client 2>&1)" || true
  grep -q "via DERP(rig)" <<<"$out2" || rig_fail "2: tinytail ping not via DERP after the block: $out2"
  pass "2: 30 MB transfer completed intact over the fallback; tailscale ping: $out; tinytail ping: $out2"
  rig_unblock_udp

  # --- 3: subnet routing, SNAT on and off ------------------------------------------------------
  web_log="$RIG_DIR/web80.log"
  # last_get_from LOG: the client address of the newest "GET /" in an http.server log.
  last_get_from() { grep -a '"GET / ' "$1" | tail -n1 | cut -d' ' -f1; }
  gets() { grep -ac '"GET / ' "$1" || true; }
  more_gets() { (($(gets "$1") > $2)); }
  n="$(gets "$web_log")"
  rig_exec cli curl -sf -o /dev/null http://192.0.2.10/ || rig_fail "3: HTTP GET through the router failed"
  rig_wait_for 5 "web log" more_gets "$web_log" "$n" || rig_fail "3: web server saw no request"
  seen="$(last_get_from "$web_log")"
  [[ "$seen" == 192.0.2.1 ]] || rig_fail "3: with SNAT the LAN host saw $seen, want 192.0.2.1"
  pass "3: HTTP GET from the client to 192.0.2.10 through tinytail; LAN host saw $seen (SNAT)"
  rig_bg lan iperf3s iperf3 -s -B 192.0.2.10
  rig_wait_for 10 "iperf3 server" bash -c "ip netns exec '$(rig_ns lan)' ss -ltn | grep -q ':5201'"
  mbps="$(rig_exec cli iperf3 -c 192.0.2.10 -t 5 -J | jq '.end.sum_received.bits_per_second / 1e6 | floor')"
  ((mbps > 0)) || rig_fail "3: iperf3 moved nothing"
  pass "3: iperf3 5 s through tinytail: $mbps Mbit/s (a check, not a benchmark: see bench/throughput.sh)"
  control_tt up --snat-subnet-routes=false >/dev/null || rig_fail "3: up --snat-subnet-routes=false"
  snat_table() { ip netns exec "$(rig_ns rtr)" nft list table inet tinytail 2>/dev/null | grep -q masquerade; }
  rig_wait_for 5 "SNAT table gone" bash -c "! ip netns exec '$(rig_ns rtr)' nft list table inet tinytail" ||
    rig_fail "3: SNAT table still there"
  n="$(gets "$web_log")"
  rig_exec cli curl -sf -o /dev/null http://192.0.2.10/ || rig_fail "3: HTTP GET without SNAT failed"
  rig_wait_for 5 "web log" more_gets "$web_log" "$n" || rig_fail "3: web server saw no request"
  seen="$(last_get_from "$web_log")"
  [[ "$seen" == "$cli_ip" ]] || rig_fail "3: without SNAT the LAN host saw $seen, want $cli_ip"
  pass "3: --snat-subnet-routes=false: LAN host saw the client's own $seen"
  control_tt up --snat-subnet-routes=true >/dev/null
  rig_wait_for 5 "SNAT back" snat_table || rig_fail "3: SNAT not back"

  # --- 5: exit node -------------------------------------------------------------------------
  rig_exec cli curl -sf --max-time 3 http://203.0.113.10/ >/dev/null 2>&1 &&
    rig_fail "5: the client reaches the internet host without an exit node"
  control_tt up --advertise-exit-node >/dev/null || rig_fail "5: up --advertise-exit-node"
  id="$(rig_hs nodes list -o json | jq -r '.[] | select(.given_name == "router") | .id')"
  rig_hs nodes approve-routes --identifier "$id" --routes 192.0.2.0/24,0.0.0.0/0,::/0 >/dev/null
  rig_bg net web203 python3 -m http.server 80 --bind 203.0.113.10 --directory "$RIG_DIR"
  rig_wait_for 20 "exit node offered" bash -c \
    "'$RIG_PEERS/tailscale' --socket='$RIG_DIR/client/tailscaled.sock' set --exit-node=router" ||
    rig_fail "5: the client could not pick the router as exit node"
  rig_wait_for 20 "internet via exit node" rig_exec cli curl -sf --max-time 3 -o /dev/null http://203.0.113.10/ ||
    { rig_ts client status; tt_status | jq '.Datapath, .Self.enabledRoutes'; rig_exec cli ip route show table 52
      rig_fail "5: the client cannot reach 203.0.113.10 through the exit node"; }
  seen="$(last_get_from "$RIG_DIR/web203.log")"
  [[ "$seen" == 203.0.113.1 ]] || rig_fail "5: internet host saw $seen, want the router's 203.0.113.1"
  pass "5: exit node: client reached 203.0.113.10 through tinytail (it saw $seen)"
  rig_ts client set --exit-node= >/dev/null

  # --- 4: packet filter from a Headscale ACL ---------------------------------------------------
  rig_bg lan web22 python3 -m http.server 22 --bind 192.0.2.10 --directory "$RIG_DIR"
  rig_wait_for 10 "port 22 server" rig_exec rtr curl -sf -o /dev/null http://192.0.2.10:22/ ||
    rig_fail "4: port 22 server did not start"
  rig_exec cli curl -sf --max-time 5 -o /dev/null http://192.0.2.10:22/ ||
    rig_fail "4: port 22 unreachable before the ACL"
  before="$(tt_status | jq '.Datapath.FilterDrops.NoRule')"
  echo '{"acls":[{"action":"accept","src":["*"],"dst":["192.0.2.10/32:80"]}]}' >"$policy"
  kill -HUP "$HS_PID"
  rig_wait_for 20 "restricted filter" bash -c "! ip netns exec '$(rig_ns cli)' \
    curl -sf --max-time 2 -o /dev/null http://192.0.2.10:22/" || rig_fail "4: port 22 still open after the ACL"
  rig_exec cli curl -sf --max-time 5 -o /dev/null http://192.0.2.10/ || rig_fail "4: port 80 blocked by the ACL"
  after="$(tt_status | jq '.Datapath.FilterDrops.NoRule')"
  ((after > before)) || rig_fail "4: no drop counted ($before -> $after)"
  pass "4: ACL 192.0.2.10:80 only: port 80 works, port 22 dropped; FilterDrops.NoRule $before -> $after"

  # --- down and exit undo what we added --------------------------------------------------------
  control_tt down >/dev/null
  rig_wait_for 5 "routes gone" bash -c "! ip -n '$(rig_ns rtr)' route show | grep -q tailscale0" ||
    rig_fail "down: routes remain"
  rig_exec rtr nft list table inet tinytail >/dev/null 2>&1 && rig_fail "down: SNAT table remains"
  ip -n "$(rig_ns rtr)" link show tailscale0 >/dev/null 2>&1 && rig_fail "down: TUN device remains"
  pass "down: TUN, routes and SNAT table removed"
  control_tt up >/dev/null
  # The ACL still allows only port 80 on the LAN host.
  rig_wait_for 20 "back up" rig_exec cli curl -sf --max-time 2 -o /dev/null http://192.0.2.10/ ||
    rig_fail "up again: no traffic"
  pass "up again: traffic flows"
  kill -TERM "$TT_PID"
  rig_wait_for 5 "agent exit" bash -c "! kill -0 $TT_PID 2>/dev/null" || rig_fail "SIGTERM: agent still running"
  rig_exec rtr nft list table inet tinytail >/dev/null 2>&1 && rig_fail "SIGTERM: SNAT table remains"
  ip -n "$(rig_ns rtr)" link show tailscale0 >/dev/null 2>&1 && rig_fail "SIGTERM: TUN device remains"
  pass "SIGTERM: the agent exits and leaves no TUN or SNAT table behind"
)

source "$here/../rig/rig.sh"
rig_assert_clean "$RIG"
echo "datapath: teardown left nothing of $RIG"
echo "datapath: all checks passed"
