#!/usr/bin/env bash
# Issue #16 (a router's life), scenario by scenario, in the netns rig with Headscale (its embedded
# DERP) and a real tailscaled client on `cli` reaching the LAN host 192.0.2.10 through tinytail on
# `rtr`. Each scenario asserts its bound and prints the measured figure.
#
#   tests/e2e/router-life.sh     (root; builds tinytail in debug unless TINYTAIL_BIN names one)
#
#   1  WAN address change: the router's WAN moves from 198.18.0.2/24 to 198.51.100.2/24 (another
#      subnet, reached through an ISP router the WAN namespace plays) with its default route,
#      while the client pings the LAN host every 100 ms and fetches a file from it: replies
#      resume within 10 s, without a restart (same pid), the client's path to the router is
#      direct again at the new address, and the transfer completes with the same SHA-256.
#      Then PPPoE-like: the WAN link down for 30 s, up with yet another address (198.51.100.3):
#      replies resume within 10 s of the link coming up.
#   2  Start before the WAN and DNS: tinytail restarts (same state) with the WAN link down and
#      the control host's name resolvable only by a DNS server that starts with the WAN; 20 s
#      later (the issue's 60 s, shortened) it has used < 1% CPU, at most 8 threads and logged a
#      bounded number of retries naming the name; the WAN comes up: control connected within
#      10 s (the router queried the DNS server), the client's pings through it again.
#   3  No real-time clock: tinytail restarts (same state) with its wall clock 6 years back (the
#      test switch TINYTAIL_TEST_CLOCK_OFFSET_FILE): status says "clock not set" (Health,
#      Control.LastError, the text status), the log says it once, the node key and login stay,
#      no key-expiry decision; no replies are expected meanwhile (no netmap survives a restart).
#      Then the file says 0 (NTP set the clock): on the tailnet and forwarding within 10 s, with
#      the same node key and Headscale node.
#   4  IPv6-only WAN (after 6): the router's WAN loses IPv4 for 2001:db8:18::2, no restart:
#      control and DERP redialled over IPv6, its IPv6 endpoint at control, the client direct over
#      IPv6 and the IPv4 LAN reachable; a restart in IPv6 only joins; dual-stack again with IPv6
#      UDP cut on the router: the direct path moves to IPv4.
#   5a Control down alone for 30 s (new connections refused, established ones reset on the
#      control host; DERP has its own address): pings go on (gap < 1 s), control is retried with
#      backoff, back on the map stream within 5 s of its return.
#   5b DERP (and its STUN) down alone for 30 s: direct traffic unaffected (gap < 1 s after the
#      client's own first 5 s), 2-15 DERP connection attempts (backoff), DERP back within 10 s.
#   5  Outage: Headscale (control and its DERP) down for 90 s (the issue's 10 min is for bench/):
#      the pings through tinytail go on (longest gap < 1 s); once it answers again tinytail is
#      on the map stream within 5 s and DERP reconnects.
#   6  Power loss: 20 rounds of kill -9 at a random moment 0-1.5 s into a route change: same node
#      key, routes one of the two sets, forwarding within 5 s of the restart, `store info` with
#      every record and no warning, the kernel side not duplicated.
#   6b Power loss during login: 10 rounds of kill -9 0-1.5 s into `up --auth-key` on a fresh store:
#      after the restart logged in or, after one more `up`, so; control has exactly one node for
#      the name, with the stored node key; store info without warning.
# Scenario 7 is tests/e2e/ha.sh. Not covered yet: scenario 8, kills during lock writes (cert.sh's
# T5 kills one certificate issuance).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
RIG="tt$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
export RIG
TT="$(source "$here/../rig/rig.sh"; rig_tinytail_bin router-life)"
pass() { printf 'router-life: ok  %s\n' "$*"; }

(
  source "$here/../rig/rig.sh"
  source "$here/control-join.sh"
  source "$here/../../bench/lib.sh" # bench_ping_gap, bench_now
  rig_up
  policy="$RIG_DIR/policy.json"
  echo '{"acls":[{"action":"accept","src":["*"],"dst":["*:*"]}]}' >"$policy"
  export RIG_HS_POLICY="$policy"
  # DERP and STUN on their own address of the control host, so 5a and 5b can take control and
  # DERP down one at a time (Headscale serves both).
  derp_ip=198.18.0.11
  export RIG_DERP_IPV4="$derp_ip" RIG_DERP_IPV6=2001:db8:18::11 # the IPv6 one for scenario 4
  rig_headscale_start
  hs_pid="$RIG_LAST_PID"

  # The WAN namespace also plays the ISP's router between the rig's WAN (198.18.0.0/24) and the
  # subnet the router's new address comes from (198.51.100.0/24).
  rig_exec wan ip addr add 198.18.0.1/24 dev br0
  rig_exec wan ip addr add 198.51.100.1/24 dev br0
  rig_exec wan sysctl -qw net.ipv4.ip_forward=1
  for ns in ctl cli; do rig_exec "$ns" ip route add 198.51.100.0/24 via 198.18.0.1; done

  rig_tailscaled_start cli client
  rig_ts client up --login-server="$HS_URL" --auth-key="$(rig_authkey)" --hostname=client \
    --accept-routes --timeout=60s >/dev/null
  control_join "$TT" router >/dev/null
  TT_PID="$RIG_LAST_PID"
  rtr_ip="$(control_tt ip -4)" # scenario 1 renames the router; its address stays
  rig_wait_for 20 "the client sees the router's route" bench_client_sees router ||
    rig_fail "the client never got the approved route"
  direct_at() { # the client's pings reach the router directly at $1
    rig_ts client ping -c 1 --until-direct=false "$rtr_ip" 2>&1 | grep -q "via $1:41641"
  }
  rig_wait_for 20 "a direct path" direct_at 198.18.0.2 || rig_fail "no direct path before the change"

  rig_exec lan sh -c "head -c 20000000 /dev/urandom >'$RIG_DIR/blob'"
  sum="$(sha256sum <"$RIG_DIR/blob" | cut -d' ' -f1)"
  rig_bg lan web80 python3 -m http.server 80 --bind 192.0.2.10 --directory "$RIG_DIR"
  rig_wait_for 10 "LAN web server" rig_exec rtr curl -sf -o /dev/null http://192.0.2.10/ ||
    rig_fail "LAN web server did not start"
  rig_bg cli pingstream ping -D -n -i 0.1 -W 1 192.0.2.10
  ping_log="$RIG_DIR/pingstream.log"
  rig_wait_for 5 "ping stream answered" grep -q "bytes from" "$ping_log" || rig_fail "no ping replies before the change"
  # replies_since T: a reply arrived after bench_now value T.
  replies_since() { bench_first_reply "$ping_log" "$1" >/dev/null; }

  # --- 1a: a new address in another subnet, mid-transfer -------------------------------------
  # 20 MB at 1 MB/s: the change comes 5 s in.
  rig_bg cli transfer curl -sf --limit-rate 1M -o "$RIG_DIR/blob.got" http://192.0.2.10/blob
  transfer_pid="$RIG_LAST_PID"
  sleep 5
  changed_at="$(bench_now)"
  rig_exec rtr ip addr del 198.18.0.2/24 dev wan0
  rig_exec rtr ip addr add 198.51.100.2/24 dev wan0
  rig_exec rtr ip route add default via 198.51.100.1
  rig_wait_for 10 "replies after the change" replies_since "$changed_at" ||
    rig_fail "1: no replies within 10 s of the WAN change; tinytail: $(tail -n 8 "$RIG_DIR/tinytail.log")"
  resumed_at="$(bench_now)"
  kill -0 "$TT_PID" || rig_fail "1: tinytail is gone"
  rig_wait_for 20 "a direct path at the new address" direct_at 198.51.100.2 ||
    rig_fail "1: the client's path: $(rig_ts client ping -c 1 --until-direct=false "$rtr_ip" 2>&1 | tail -n 1)"
  # Control has the new endpoint (tinytail re-learned it by STUN and sent it), and the map
  # stream is alive: a rename in Headscale reaches tinytail.
  router_endpoints() { # as control last sent them to the client
    rig_ts client debug netmap 2>/dev/null | jq -c '[.Peers[]? | select((.Name // "") | startswith("router")) | .Endpoints[]?]'
  }
  endpoint_known() { router_endpoints | jq -e --arg e "$1:41641" 'index($e)' >/dev/null; }
  rig_wait_for 30 "control knows the new endpoint" endpoint_known 198.51.100.2 ||
    rig_fail "1: the router's endpoints in the client's netmap: $(router_endpoints); tinytail: $(grep -E "link change|control:|endpoints|netcheck|derp" "$RIG_DIR/tinytail.log" | tail -n 12)"
  id="$(rig_hs nodes list -o json | jq -r '.[] | select(.given_name == "router") | .id')"
  rig_hs nodes rename --identifier "$id" router-moved >/dev/null
  renamed() { control_tt status --json | jq -e '.Self.DNSName | startswith("router-moved.")' >/dev/null; }
  rig_wait_for 15 "the rename over the map stream" renamed ||
    rig_fail "1: the map stream did not deliver the rename: $(control_tt status --json | jq -c .Self.DNSName)"
  wait "$transfer_pid" || rig_fail "1: the transfer failed"
  [[ "$(sha256sum <"$RIG_DIR/blob.got" | cut -d' ' -f1)" == "$sum" ]] || rig_fail "1: the file differs"
  gap="$(bench_ping_gap "$ping_log" "$changed_at" "$resumed_at")"
  pass "1: WAN 198.18.0.2 -> 198.51.100.2 mid-transfer: the longest gap in replies was ${gap} ms," \
    "same tinytail process, direct again at 198.51.100.2:41641, the new endpoint in control, the map stream" \
    "alive (a rename arrived), 20 MB transfer intact"

  # --- 1b: PPPoE-like: the link down 30 s, up with another address ---------------------------
  rig_exec rtr ip link set wan0 down
  sleep 30
  rig_exec rtr ip addr flush dev wan0
  rig_exec rtr ip link set wan0 up
  up_at="$(bench_now)"
  rig_exec rtr ip addr add 198.51.100.3/24 dev wan0
  rig_exec rtr ip route add default via 198.51.100.1
  rig_wait_for 10 "replies after the link came back" replies_since "$up_at" ||
    rig_fail "1b: no replies within 10 s of the link coming up; tinytail: $(tail -n 8 "$RIG_DIR/tinytail.log")"
  back="$(bench_secs_to_reply "$ping_log" "$up_at")"
  kill -0 "$TT_PID" || rig_fail "1b: tinytail is gone"
  rig_wait_for 30 "control knows the new endpoint" endpoint_known 198.51.100.3 ||
    rig_fail "1b: the router's endpoints in the client's netmap: $(router_endpoints)"
  pass "1b: WAN link down 30 s, up as 198.51.100.3: replies again $(printf '%.1f' "$back") s after the link came up," \
    "same process, control has 198.51.100.3:41641"

  # --- 2: start before the WAN ----------------------------------------------------------------
  # A reboot where tinytail starts before the WAN is up: same state, no WAN link for 20 s (60 s
  # in the issue; the retry is the same after its first seconds).
  # No DNS either: the control host's name leaves the router's hosts file, and its resolver is a
  # DNS server on the control host (pebble-challtestsrv, every A query answered 198.18.0.10) that
  # starts with the WAN, as an ISP's comes with DHCP. Files rewritten in place: `ip netns exec`
  # bind-mounts them.
  kill "$TT_PID"; wait "$TT_PID" 2>/dev/null || true
  rig_exec rtr ip link set wan0 down
  hosts="/etc/netns/$(rig_ns rtr)/hosts" resolv="/etc/netns/$(rig_ns rtr)/resolv.conf"
  hosts_saved="$(cat "$hosts")" resolv_saved="$(cat "$resolv")"
  grep -v " $RIG_CONTROL_HOST\$" <<<"$hosts_saved" >"$hosts"
  echo "nameserver 198.18.0.10" >"$resolv"
  rig_exec rtr getent hosts "$RIG_CONTROL_HOST" >/dev/null && rig_fail "2: the router still resolves $RIG_CONTROL_HOST"
  rm -f "$TT_SOCK"
  rig_bg rtr tinytail-2 env SSL_CERT_FILE="$RIG_CA" "$TT" run --state "$RIG_DIR/tinytail/state.img" --socket "$TT_SOCK"
  TT_PID="$RIG_LAST_PID"
  rig_wait_for 10 "tinytail socket" test -S "$TT_SOCK" || rig_fail "2: tinytail run did not start"
  sleep 2
  ticks() { awk '{print $14 + $15}' "/proc/$TT_PID/stat"; }
  t0="$(bench_now)" c0="$(ticks)"
  sleep 20
  t1="$(bench_now)" c1="$(ticks)"
  cpu="$(echo "scale=2; ($c1 - $c0) * 100 / $(getconf CLK_TCK) / ($t1 - $t0)" | bc)"
  (($(echo "$cpu < 1" | bc))) || rig_fail "2: tinytail used ${cpu}% CPU while the WAN was down"
  control_tt status --json | jq -e '.Control.Connected == false' >/dev/null ||
    rig_fail "2: connected without a WAN? $(control_tt status --json | jq -c .Control)"
  attempts="$(grep -c "control: " "$RIG_DIR/tinytail-2.log" || true)"
  threads="$(awk '/^Threads:/ {print $2}' "/proc/$TT_PID/status")"
  ((threads <= 8)) || rig_fail "2: $threads threads while the WAN and DNS were down"
  rig_bg ctl dns pebble-challtestsrv -dns01 198.18.0.10:53 -defaultIPv4 198.18.0.10 -defaultIPv6 "" \
    -http01 "" -https01 "" -tlsalpn01 "" -management 127.0.0.1:8055
  dns_pid="$RIG_LAST_PID"
  # Counts the router's queries (the server does not log them).
  rig_exec ctl nft add table inet rldns
  rig_exec ctl nft add chain inet rldns input '{ type filter hook input priority 0; }'
  rig_exec ctl nft add rule inet rldns input ip saddr 198.51.100.0/24 udp dport 53 counter
  dns_listening() { rig_exec ctl ss -lnu | grep -q "198.18.0.10:53 "; }
  rig_wait_for 10 "the DNS server" dns_listening ||
    rig_fail "2: the DNS server did not start: $(tail -n 3 "$RIG_DIR/dns.log")"
  up_at="$(bench_now)"
  rig_exec rtr ip link set wan0 up
  rig_exec rtr ip route add default via 198.51.100.1
  connected() { control_tt status --json | jq -e '.Control.Connected == true' >/dev/null; }
  rig_wait_for 10 "on the tailnet after the WAN came up" connected ||
    rig_fail "2: not connected 10 s after the WAN came up: $(control_tt status --json | jq -c .Control); $(tail -n 5 "$RIG_DIR/tinytail-2.log")"
  joined="$(echo "$(bench_now) - $up_at" | bc)"
  rig_wait_for 10 "replies through the restarted router" replies_since "$up_at" ||
    rig_fail "2: no replies through the router after the WAN came up"
  forwarded="$(bench_secs_to_reply "$ping_log" "$up_at")"
  dns_queries="$(rig_exec ctl nft list table inet rldns | sed -n 's/.*counter packets \([0-9]*\).*/\1/p')"
  ((dns_queries > 0)) || rig_fail "2: the router sent the DNS server no query"
  rig_exec ctl nft delete table inet rldns
  grep -q "control: .*$RIG_CONTROL_HOST" "$RIG_DIR/tinytail-2.log" ||
    rig_fail "2: the log does not name what failed to resolve: $(head -n 5 "$RIG_DIR/tinytail-2.log")"
  pass "2: started with the WAN down: $(printf "%.2f" "$cpu")% CPU over 20 s, $attempts control log lines (bounded retry);" \
    "the WAN up: on the tailnet after $(printf '%.1f' "$joined") s, forwarding after $(printf '%.1f' "$forwarded") s, no restart;" \
    "no DNS until the WAN came up ($threads threads meanwhile), then $dns_queries queries to the DNS server"
  echo "$hosts_saved" >"$hosts"
  echo "$resolv_saved" >"$resolv"
  kill "$dns_pid"; wait "$dns_pid" 2>/dev/null || true

  # --- 3: no real-time clock ------------------------------------------------------------------
  # A router without an RTC boots years in the past until NTP answers. tinytail restarts (same
  # state) with its clock 6 years back (the test switch TINYTAIL_TEST_CLOCK_OFFSET_FILE; a time
  # namespace does not move CLOCK_REALTIME): TLS to control fails ("not valid yet"), and status
  # must say it is the clock, the login and node key must stay, and no key-expiry decision may be
  # taken. tinytail keeps no netmap across a restart, so until it reaches control there are no
  # peers and nothing is forwarded: that is measured and said, not hidden. Then "NTP sets the
  # clock" (the file says 0): on the tailnet and forwarding within 10 s.
  key0="$(control_tt status --json | jq -r .Self.PublicKey)"
  node0="$(rig_hs nodes list -o json | jq -r '[.[] | select(.given_name | startswith("router"))] | map(.id) | join(",")')"
  [[ "$key0" == nodekey:* && -n "$node0" ]] || rig_fail "3: no node key/id before the restart: $key0 / $node0"
  clock_file="$RIG_DIR/clock-offset"
  echo -189216000 >"$clock_file" # 6 years of 365 days
  kill "$TT_PID"; wait "$TT_PID" 2>/dev/null || true
  rm -f "$TT_SOCK"
  started_at="$(bench_now)"
  rig_bg rtr tinytail-3 env SSL_CERT_FILE="$RIG_CA" TINYTAIL_TEST_CLOCK_OFFSET_FILE="$clock_file" \
    "$TT" run --state "$RIG_DIR/tinytail/state.img" --socket "$TT_SOCK"
  TT_PID="$RIG_LAST_PID"
  tt3_log="$RIG_DIR/tinytail-3.log"
  rig_wait_for 10 "tinytail socket" test -S "$TT_SOCK" || rig_fail "3: tinytail run did not start: $(tail -n 3 "$tt3_log")"
  clock_health() { # status --json names the clock, and says it is not set
    control_tt status --json | jq -e '.Clock.Set == false and
      any(.Health[]; startswith("clock not set: the system time is 20") and
        endswith("; TLS certificates cannot be checked until NTP sets it"))' >/dev/null
  }
  rig_wait_for 10 "status: clock not set" clock_health ||
    rig_fail "3: status does not say the clock is not set: $(control_tt status --json | jq -c '{Clock, Health}')"
  tls_blames_clock() {
    control_tt status --json |
      jq -e '.Control.LastError // "" | contains("certificate is not valid yet by this router'"'"'s clock (clock not set)")' >/dev/null
  }
  rig_wait_for 10 "control's error blames the clock" tls_blames_clock ||
    rig_fail "3: control's last error: $(control_tt status --json | jq -c .Control)"
  # Several retries (backoff up to 3 s + 1 s jitter) at the wrong time, watched every second:
  # never logged out, never expired, the stored node key kept.
  for _ in $(seq 12); do
    st="$(control_tt status --json)"
    backend="$(jq -r .BackendState <<<"$st")"
    [[ "$backend" == "Starting" ]] || rig_fail "3: BackendState $backend with the clock not set: $(jq -c '{Control, Health}' <<<"$st")"
    [[ "$(jq -r .NodeKey <<<"$st")" == "$key0" ]] || rig_fail "3: the stored node key is $(jq -r .NodeKey <<<"$st"), was $key0"
    jq -e '.Control.Connected == false and (.Self == null or .Self.Expired == false)' <<<"$st" >/dev/null ||
      rig_fail "3: connected or expired with the clock not set? $(jq -c '{Control, Self: .Self.Expired}' <<<"$st")"
    sleep 1
  done
  control_tt status | grep -q "^# Health: clock not set: the system time is 20" ||
    rig_fail "3: tinytail status (text) lacks the clock line: $(control_tt status | grep Health)"
  info="$(rig_exec rtr "$TT" store info --state "$RIG_DIR/tinytail/state.img")"
  grep -q "^warnings      none" <<<"$info" || rig_fail "3: store info: $info"
  # Said once per change, not per retry: one line from the clock watcher, one from control.
  said="$(grep -c "clock not set" "$tt3_log" || true)"
  [[ "$said" == 2 ]] || rig_fail "3: 'clock not set' logged $said times (want 2): $(grep "clock not set" "$tt3_log")"
  grep -q "^[^ ]* tinytail: clock not set: the system time is 20" "$tt3_log" || rig_fail "3: the log lacks the clock line"
  ! grep -q "key expired\|logged out\|registering a new" "$tt3_log" || rig_fail "3: a key decision: $(grep "expired" "$tt3_log")"
  unset_replies="$(bench_reply_times "$ping_log" |
    awk -v t="$(echo "$started_at + 2" | bc)" '$1 > t {n++} END {print n + 0}')"
  set_at="$(bench_now)"
  echo 0 >"$clock_file" # NTP answered
  rig_wait_for 10 "on the tailnet after the clock was set" connected ||
    rig_fail "3: not connected 10 s after the clock was set: $(control_tt status --json | jq -c '{Control, Clock}'); $(tail -n 5 "$tt3_log")"
  clock_joined="$(echo "$(bench_now) - $set_at" | bc)"
  rig_wait_for 10 "replies through the router after the clock was set" replies_since "$set_at" ||
    rig_fail "3: no replies through the router 10 s after the clock was set: $(tail -n 5 "$tt3_log")"
  clock_forwarded="$(bench_secs_to_reply "$ping_log" "$set_at")"
  st="$(control_tt status --json)"
  [[ "$(jq -r .Self.PublicKey <<<"$st")" == "$key0" ]] || rig_fail "3: a new node key after the clock was set: $(jq -r .Self.PublicKey <<<"$st")"
  node1="$(rig_hs nodes list -o json | jq -r '[.[] | select(.given_name | startswith("router"))] | map(.id) | join(",")')"
  [[ "$node1" == "$node0" ]] || rig_fail "3: Headscale's router nodes were $node0, now $node1"
  jq -e '.Clock.Set == true and all(.Health[]; startswith("clock not set") | not) and .BackendState == "Running"' <<<"$st" >/dev/null ||
    rig_fail "3: after the clock was set: $(jq -c '{BackendState, Clock, Health}' <<<"$st")"
  grep -q "tinytail: clock: set, the system time is" "$tt3_log" || rig_fail "3: the log does not say the clock was set"
  pass "3: restarted with the clock 6 years back: status said \"clock not set\" (Health, Control.LastError, the text status)," \
    "logged once; $(printf '%.0f' "$(echo "$set_at - $started_at" | bc)") s with the clock not set: BackendState Starting at each of 12 looks, the same node key, then the same Headscale node," \
    "no expiry decision; $unset_replies replies through the router meanwhile (no netmap survives a restart);" \
    "the clock set: on the tailnet after $(printf '%.1f' "$clock_joined") s, forwarding after $(printf '%.1f' "$clock_forwarded") s"

  # --- 5a, 5b: control down alone, then DERP down alone, 30 s each ---------------------------
  # A server down: new connections refused (TCP reset; STUN unanswered) and the established ones
  # reset (ss -K), on the control host. The client tailscaled loses it too.
  cut_server() { # cut_server IP PROTO-PORTS...: refuse and reset what goes to IP on those ports
    local ip="$1" rule; shift
    rig_exec ctl nft add table inet rlcut
    rig_exec ctl nft add chain inet rlcut input '{ type filter hook input priority 0; }'
    # Connection attempts from the router, counted: a retry that does not back off shows here.
    rig_exec ctl nft add rule inet rlcut input ip saddr 198.51.100.3 ip daddr "$ip" tcp dport 443 \
      'tcp flags & (syn | ack) == syn' counter
    for rule in "$@"; do
      case "$rule" in
        tcp/*) rig_exec ctl nft add rule inet rlcut input ip daddr "$ip" tcp dport "${rule#tcp/}" reject with tcp reset ;;
        udp/*) rig_exec ctl nft add rule inet rlcut input ip daddr "$ip" udp dport "${rule#udp/}" drop ;;
      esac
    done
    rig_exec ctl ss -K -t src "$ip" sport = :443 >/dev/null
  }
  attempts_counted() { rig_exec ctl nft list table inet rlcut | sed -n 's/.*counter packets \([0-9]*\).*/\1/p' | head -n 1; }
  uncut_server() { rig_exec ctl nft delete table inet rlcut; }
  derp_up() { control_tt status --json | jq -e '.Datapath.DERPConnected["999"] == true' >/dev/null; }
  derp_down() { ! derp_up; }
  disconnected() { ! connected; }
  rig_wait_for 20 "a direct path" direct_at 198.51.100.3 ||
    rig_fail "5a: no direct path before the outage: $(rig_ts client ping -c 1 --until-direct=false "$rtr_ip" 2>&1 | tail -n 2)"
  rig_wait_for 10 "DERP" derp_up || rig_fail "5a: DERP not connected before the outage"

  out_at="$(bench_now)"
  cut_server 198.18.0.10 tcp/443
  rig_wait_for 20 "tinytail to notice control is down" disconnected ||
    rig_fail "5a: tinytail still says connected to control: $(control_tt status --json | jq -c .Control)"
  sleep 30
  derp_up || rig_fail "5a: DERP went down with control: $(control_tt status --json | jq -c .Datapath.DERPConnected)"
  attempts="$(attempts_counted)"
  # Backoff from 0.5 s doubling to 3 s plus up to 1 s of jitter: about 10 in 30 s.
  ((attempts >= 2 && attempts <= 20)) || rig_fail "5a: $attempts control connection attempts in 30 s (backoff: 2-20)"
  uncut_server
  back_at="$(bench_now)"
  gap="$(bench_ping_gap "$ping_log" "$out_at" "$back_at")"
  ((gap < 1000)) || rig_fail "5a: a ${gap} ms gap in replies while control was down"
  rig_wait_for 5 "tinytail on the map stream again" connected ||
    rig_fail "5a: not connected 5 s after control came back: $(control_tt status --json | jq -c .Control)"
  reconnected="$(echo "$(bench_now) - $back_at" | bc)"
  pass "5a: control down 30 s (DERP up): the longest gap in replies ${gap} ms; $attempts connection attempts" \
    "to control; back on the map stream $(printf '%.1f' "$reconnected") s after control answered again"

  rig_wait_for 20 "a direct path" direct_at 198.51.100.3 || rig_fail "5b: no direct path before the outage"
  out_at="$(bench_now)"
  cut_server "$derp_ip" tcp/443 udp/3478
  rig_wait_for 20 "tinytail to notice DERP is down" derp_down ||
    rig_fail "5b: tinytail still says DERP is connected: $(control_tt status --json | jq -c .Datapath.DERPConnected)"
  sleep 30
  connected || rig_fail "5b: control went down with DERP: $(control_tt status --json | jq -c .Control)"
  attempts="$(attempts_counted)"
  # Backoff from 0.5 s doubling to 5 s: about 9 attempts in 30 s; a busy retry would be hundreds.
  ((attempts >= 2 && attempts <= 15)) || rig_fail "5b: $attempts DERP connection attempts in 30 s (backoff: 2-15)"
  uncut_server
  back_at="$(bench_now)"
  # As in 5, the client rebinds its socket when its DERP connection drops: the first 5 s aside.
  outage_gap="$(bench_ping_gap "$ping_log" "$out_at" "$back_at")"
  settled_gap="$(bench_ping_gap "$ping_log" "$(echo "$out_at + 5" | bc)" "$back_at")"
  ((settled_gap < 1000)) || rig_fail "5b: a ${settled_gap} ms gap in replies while DERP was down"
  rig_wait_for 10 "DERP again" derp_up || rig_fail "5b: DERP not back 10 s after it answered again: $(control_tt status --json | jq -c .Datapath.DERPConnected)"
  derp_back="$(echo "$(bench_now) - $back_at" | bc)"
  pass "5b: DERP down 30 s (control up): the longest gap in replies ${settled_gap} ms after the first 5 s," \
    "${outage_gap} ms in all; $attempts DERP connection attempts (backoff), DERP again $(printf '%.1f' "$derp_back") s after it answered"

  # --- 5: control and DERP down at once (Headscale serves both) for 90 s -----------------------
  # (10 min in the issue's bench; 90 s here.) Forwarding goes on over the direct path with the
  # last netmap; once Headscale is back, tinytail is on the map stream within 5 s and DERP
  # reconnects.
  rig_wait_for 20 "a direct path" direct_at 198.51.100.3 ||
    rig_fail "5: no direct path before the outage: $(rig_ts client ping -c 1 --until-direct=false "$rtr_ip" 2>&1 | tail -n 2)"
  out_at="$(bench_now)"
  kill -9 "$hs_pid" # a crash or a power cut: nothing said goodbye
  rig_wait_for 10 "headscale gone" bash -c "! kill -0 $hs_pid 2>/dev/null" || rig_fail "5: headscale did not stop"
  rig_wait_for 20 "tinytail to notice the outage" disconnected || rig_fail "5: tinytail still says connected"
  sleep_until() { local now; now="$(date +%s)"; (($1 <= now)) || sleep $(($1 - now)); }
  sleep_until $(($(printf '%.0f' "$out_at") + 90))
  back_at="$(bench_now)"
  # The tailscaled client rebinds its socket when its DERP connection drops ("Rebinding" in its
  # log), which costs its pings a few seconds at the start; after that nothing may be lost.
  outage_gap="$(bench_ping_gap "$ping_log" "$out_at" "$back_at")"
  settled_gap="$(bench_ping_gap "$ping_log" "$(echo "$out_at + 5" | bc)" "$back_at")"
  ((settled_gap < 1000)) || rig_fail "5: a ${settled_gap} ms gap in replies while control and DERP were down"
  rebound=""
  ((outage_gap < 1000)) || ! grep -q "Rebinding" "$RIG_DIR/client.log" || rebound=" (the client rebound its socket when DERP went)"
  rig_bg ctl headscale-2 env SSL_CERT_FILE="$RIG_CA" "$RIG_PEERS/headscale" -c "$RIG_DIR/headscale/config.yaml" serve
  rig_wait_for 30 "headscale health" rig_exec cli curl -sf --cacert "$RIG_CA" "$HS_URL/health" ||
    rig_fail "5: headscale did not come back: $(tail -n 5 "$RIG_DIR/headscale-2.log")"
  healthy_at="$(bench_now)"
  rig_wait_for 5 "tinytail on the map stream again" connected ||
    rig_fail "5: not connected 5 s after control came back: $(control_tt status --json | jq -c .Control)"
  reconnected="$(echo "$(bench_now) - $healthy_at" | bc)"
  rig_wait_for 15 "DERP again" derp_up || rig_fail "5: DERP did not reconnect: $(control_tt status --json | jq -c .Datapath.DERPConnected)"
  derp_back="$(echo "$(bench_now) - $healthy_at" | bc)"
  pass "5: control and DERP down 90 s: the longest gap in replies ${settled_gap} ms after the first 5 s, ${outage_gap} ms in all$rebound (direct path, last netmap);" \
    "back on the map stream $(printf '%.1f' "$reconnected") s and on DERP $(printf '%.1f' "$derp_back") s after Headscale answered again"

  # --- 6: power loss: kill -9 at random moments while the config is being written -------------
  # 20 rounds: a route change (`tinytail up --advertise-routes`, which writes the config) is
  # started and tinytail is killed 0-1.5 s into it; the restart must come back with the same node
  # key and one of the two route sets, forward within 5 s, `store info` must show every record
  # and no warning, and the kernel side must not be duplicated (one TUN, one nft table, one
  # route to the tailnet).
  key0="$(control_tt status --json | jq -r .Self.PublicKey)"
  routes_a="192.0.2.0/24" routes_b="10.99.0.0/24,192.0.2.0/24" # as status sorts them
  records0="$(rig_exec rtr "$TT" store info --state "$RIG_DIR/tinytail/state.img" | awk '/^records/ {print $2}')"
  worst=0 times=()
  for round in $(seq 20); do
    routes="$routes_a"; ((round % 2)) && routes="$routes_b"
    control_tt up --advertise-routes "$routes" >/dev/null 2>&1 &
    up_pid=$!
    sleep "$(awk -v r="$RANDOM" 'BEGIN {printf "%.2f", (r % 1500) / 1000}')"
    kill -9 "$TT_PID"; wait "$TT_PID" "$up_pid" 2>/dev/null || true
    rm -f "$TT_SOCK"
    start_at="$(bench_now)"
    rig_bg rtr "tinytail-r$round" env SSL_CERT_FILE="$RIG_CA" "$TT" run --state "$RIG_DIR/tinytail/state.img" --socket "$TT_SOCK"
    TT_PID="$RIG_LAST_PID"
    rig_wait_for 10 "tinytail socket" test -S "$TT_SOCK" || rig_fail "6.$round: tinytail did not start: $(tail -n 3 "$RIG_DIR/tinytail-r$round.log")"
    rig_wait_for 30 "forwarding again" replies_since "$start_at" ||
      rig_fail "6.$round: no replies through the router 30 s after the restart: $(tail -n 5 "$RIG_DIR/tinytail-r$round.log")"
    took="$(bench_secs_to_reply "$ping_log" "$start_at" | awk '{printf "%d", $1 * 1000}')"
    ((took > worst)) && worst="$took"
    times+=("$took")
    rig_wait_for 10 "connected" connected || rig_fail "6.$round: not connected"
    st="$(control_tt status --json)"
    [[ "$(jq -r .Self.PublicKey <<<"$st")" == "$key0" ]] || rig_fail "6.$round: the node key changed: $(jq -r .Self.PublicKey <<<"$st")"
    got="$(jq -r '.Self.advertisedRoutes | join(",")' <<<"$st")"
    [[ "$got" == "$routes_a" || "$got" == "$routes_b" ]] || rig_fail "6.$round: advertised routes $got"
    info="$(rig_exec rtr "$TT" store info --state "$RIG_DIR/tinytail/state.img")"
    grep -q "^warnings      none" <<<"$info" || rig_fail "6.$round: store info: $info"
    (($(awk '/^records/ {print $2}' <<<"$info") >= records0)) || rig_fail "6.$round: records lost: $info"
    [[ "$(rig_exec rtr ip -o link show type tun | wc -l)" == 1 ]] || rig_fail "6.$round: TUN devices: $(rig_exec rtr ip -o link show type tun)"
    (($(rig_exec rtr nft list tables | grep -c "inet tinytail") <= 1)) || rig_fail "6.$round: nft tables: $(rig_exec rtr nft list tables)"
    (($(rig_exec rtr ip route show | grep -c "^100.64.0.0/10") <= 1)) || rig_fail "6.$round: routes: $(rig_exec rtr ip route show)"
  done
  echo "router-life: 6: ms from restart to forwarding, per round: ${times[*]}"
  # Without tinytail's own handshake to a peer that disco-pings it while it holds no session,
  # about half the restarts took ~5.5 s: the client's first initiation went to DERP before
  # tinytail had reconnected there, and its retry waits REKEY_TIMEOUT (5 s).
  ((worst <= 5000)) || rig_fail "6: forwarding took up to ${worst} ms after a restart (bound 5 s)"
  pass "6: 20 kill -9s during route changes: the same node key every time, routes one of the two sets," \
    "store info with all $records0+ records and no warning, one TUN, one nft table; forwarding again at most ${worst} ms after each restart"

  # --- 6b: power loss during login ---------------------------------------------------------------
  # 10 rounds on a fresh store: `tinytail up --auth-key` is started and tinytail is killed 0-1.5 s
  # into it (before, during or after registration). The restart either is logged in or needs
  # login (the auth key is not stored); a second `up` then completes. Whatever the moment,
  # control ends up with exactly one node for that name, carrying the node key the store kept:
  # a key made again after registering would leave an orphan node behind. The main agent is
  # stopped meanwhile (one TUN name and port per host) and restarted after.
  kill "$TT_PID"; wait "$TT_PID" 2>/dev/null || true
  rm -f "$TT_SOCK"
  login_img="$RIG_DIR/tinytail/login.img" states=()
  login_key="$(rig_authkey)"
  for round in $(seq 10); do
    name="login-$round"
    rm -f "$login_img"
    rig_bg rtr "login-$round" env SSL_CERT_FILE="$RIG_CA" "$TT" run --state "$login_img" --socket "$TT_SOCK"
    TT_PID="$RIG_LAST_PID"
    rig_wait_for 10 "tinytail socket" test -S "$TT_SOCK" || rig_fail "6b.$round: tinytail did not start"
    control_tt up --login-server "$HS_URL" --auth-key "$login_key" --hostname "$name" --timeout 30 >/dev/null 2>&1 &
    up_pid=$!
    sleep "$(awk -v r="$RANDOM" 'BEGIN {printf "%.2f", (r % 1500) / 1000}')"
    kill -9 "$TT_PID"; wait "$TT_PID" "$up_pid" 2>/dev/null || true
    rm -f "$TT_SOCK"
    rig_bg rtr "login-$round-again" env SSL_CERT_FILE="$RIG_CA" "$TT" run --state "$login_img" --socket "$TT_SOCK"
    TT_PID="$RIG_LAST_PID"
    rig_wait_for 10 "tinytail socket" test -S "$TT_SOCK" || rig_fail "6b.$round: tinytail did not restart"
    logged_in() { control_tt status --json | jq -e '.BackendState == "Running"' >/dev/null; }
    if rig_wait_for 5 "logged in after the restart" logged_in; then
      states+=(in)
    else
      states+=(again)
      control_tt up --login-server "$HS_URL" --auth-key "$login_key" --hostname "$name" --timeout 30 >/dev/null ||
        rig_fail "6b.$round: up after the restart failed: $(control_tt status --json | jq -c '{BackendState, Control}')"
    fi
    key="$(control_tt status --json | jq -r .Self.PublicKey)"
    [[ "$key" == "$(control_tt status --json | jq -r .NodeKey)" ]] || rig_fail "6b.$round: the stored key is not the one in use"
    nodes="$(rig_hs nodes list -o json | jq -c --arg n "$name" '[.[] | select(.given_name == $n or .name == $n)]')"
    [[ "$(jq length <<<"$nodes")" == 1 ]] || rig_fail "6b.$round: control has $(jq length <<<"$nodes") nodes named $name: $nodes"
    jq -e --arg k "$key" '.[0].node_key == $k' <<<"$nodes" >/dev/null ||
      rig_fail "6b.$round: control's node key $(jq -r '.[0].node_key' <<<"$nodes") is not the stored $key"
    info="$(rig_exec rtr "$TT" store info --state "$login_img")"
    grep -q "^warnings      none" <<<"$info" || rig_fail "6b.$round: store info: $info"
    kill "$TT_PID"; wait "$TT_PID" 2>/dev/null || true
    rm -f "$TT_SOCK"
    rig_hs nodes delete --identifier "$(jq -r '.[0].id' <<<"$nodes")" >/dev/null
  done
  [[ "$(rig_exec rtr ip -o link show type tun | wc -l)" == 0 ]] || rig_fail "6b: TUN devices left: $(rig_exec rtr ip -o link show type tun)"
  rig_bg rtr tinytail-6b env SSL_CERT_FILE="$RIG_CA" "$TT" run --state "$RIG_DIR/tinytail/state.img" --socket "$TT_SOCK"
  TT_PID="$RIG_LAST_PID"
  rig_wait_for 15 "the router back" connected || rig_fail "6b: the router's own agent did not come back"
  pass "6b: 10 kill -9s during login: after the restart: $(IFS=,; echo "${states[*]}") (in: logged in, again: one more up); every time one node at control" \
    "with the stored node key, store info without warning"

  # --- 4: IPv6-only WAN, then dual-stack -------------------------------------------------------
  # The control host (control 2001:db8:18::10, DERP/STUN ::11) and the client (::20) get IPv6
  # next to their IPv4; the router's WAN loses IPv4 and gets 2001:db8:18::2 (a link change, no
  # restart): it must reach control and DERP over IPv6, learn its IPv6 endpoint, and the client
  # must reach it directly over IPv6 and through it the IPv4 LAN. Then a restart in IPv6 only
  # (a join over IPv6), then dual-stack with IPv6 UDP cut: the direct path moves to IPv4.
  rig_exec ctl ip -6 addr add 2001:db8:18::10/64 dev eth0 nodad
  rig_exec ctl ip -6 addr add 2001:db8:18::11/64 dev eth0 nodad
  rig_exec cli ip -6 addr add 2001:db8:18::20/64 dev eth0 nodad
  echo "2001:db8:18::10 $RIG_CONTROL_HOST" >>"/etc/netns/$(rig_ns rtr)/hosts" # in place: seen by running processes
  v6_at="$(bench_now)"
  rig_exec rtr ip -4 addr flush dev wan0
  rig_exec rtr ip -6 addr add 2001:db8:18::2/64 dev wan0 nodad
  tcp_to() { # tinytail has an established TCP connection to [$1]:443
    rig_exec rtr ss -Htnp state established dst "[$1]" dport = :443 | grep -q tinytail
  }
  rig_wait_for 20 "control over IPv6" tcp_to 2001:db8:18::10 ||
    rig_fail "4: no control connection over IPv6: $(rig_exec rtr ss -Htnp state established | tail -n 5); tinytail: $(tail -n 6 "$RIG_DIR/tinytail-r20.log")"
  rig_wait_for 20 "DERP over IPv6" tcp_to 2001:db8:18::11 ||
    rig_fail "4: no DERP connection over IPv6: $(rig_exec rtr ss -Htnp state established | tail -n 5)"
  rig_wait_for 20 "connected" connected || rig_fail "4: not on the map stream: $(control_tt status --json | jq -c .Control)"
  v6_endpoint() { control_tt status --json | jq -e '.Datapath.Endpoints | index("[2001:db8:18::2]:41641")' >/dev/null; }
  rig_wait_for 20 "the IPv6 endpoint" v6_endpoint || rig_fail "4: endpoints $(control_tt status --json | jq -c .Datapath.Endpoints)"
  # The LAN's 192.0.2.1 stays an endpoint (peers on the LAN); no WAN IPv4 address may.
  control_tt status --json | jq -e '[.Datapath.Endpoints[] | select(startswith("198."))] == []' >/dev/null ||
    rig_fail "4: IPv4 WAN endpoints left on an IPv6-only WAN: $(control_tt status --json | jq -c .Datapath.Endpoints)"
  rig_wait_for 30 "control knows the IPv6 endpoint" endpoint_known "[2001:db8:18::2]" ||
    rig_fail "4: the router's endpoints in the client's netmap: $(router_endpoints)"
  direct6() { rig_ts client ping -c 1 --until-direct=false "$rtr_ip" 2>&1 | grep -q 'via \[2001:db8:18::2\]:41641'; }
  rig_wait_for 30 "a direct IPv6 path" direct6 ||
    rig_fail "4: the client's path: $(rig_ts client ping -c 1 --until-direct=false "$rtr_ip" 2>&1 | tail -n 1)"
  rig_wait_for 10 "replies over IPv6" replies_since "$(bench_now)" || rig_fail "4: no replies from the LAN over IPv6"
  v6_gap="$(bench_ping_gap "$ping_log" "$v6_at" "$(bench_now)")"
  ((v6_gap < 10000)) || rig_fail "4: a ${v6_gap} ms gap in replies across the change to IPv6 only (bound 10 s, as in 1)"
  netcheck6="$(control_tt netcheck 2>&1 | grep 'IPv6:' | xargs)"
  [[ "$netcheck6" == "* IPv6: yes, [2001:db8:18::2]:41641" ]] || rig_fail "4: netcheck says: $netcheck6"
  kill -0 "$TT_PID" || rig_fail "4: tinytail is gone"
  pass "4: WAN to IPv6 only without a restart: control and DERP over IPv6, endpoint [2001:db8:18::2]:41641" \
    "at control, netcheck '$netcheck6', the client direct over IPv6, the IPv4 LAN answering (longest gap ${v6_gap} ms)"

  # A start in IPv6 only: a join over IPv6.
  kill "$TT_PID"; wait "$TT_PID" 2>/dev/null || true
  rm -f "$TT_SOCK"
  start_at="$(bench_now)"
  rig_bg rtr tinytail-v6 env SSL_CERT_FILE="$RIG_CA" "$TT" run --state "$RIG_DIR/tinytail/state.img" --socket "$TT_SOCK"
  TT_PID="$RIG_LAST_PID"
  rig_wait_for 10 "tinytail socket" test -S "$TT_SOCK" || rig_fail "4: tinytail did not start: $(tail -n 3 "$RIG_DIR/tinytail-v6.log")"
  rig_wait_for 15 "connected over IPv6" connected || rig_fail "4: no join over IPv6: $(tail -n 5 "$RIG_DIR/tinytail-v6.log")"
  joined="$(echo "$(bench_now) - $start_at" | bc)"
  rig_wait_for 15 "forwarding again" replies_since "$start_at" || rig_fail "4: no replies after the IPv6-only restart"
  forwarded="$(bench_secs_to_reply "$ping_log" "$start_at")"
  rig_wait_for 30 "a direct IPv6 path" direct6 || rig_fail "4: not direct over IPv6 after the restart"
  pass "4: restarted on the IPv6-only WAN: on the tailnet after $(printf '%.1f' "$joined") s, forwarding after" \
    "$(printf '%.1f' "$forwarded") s, direct over IPv6"

  # Dual-stack: IPv4 back; with IPv6 UDP cut on the router, the direct path moves to IPv4.
  rig_exec rtr ip addr add 198.51.100.3/24 dev wan0
  rig_exec rtr ip route add default via 198.51.100.1
  rig_wait_for 30 "the IPv4 endpoint at control" endpoint_known 198.51.100.3 ||
    rig_fail "4: dual-stack endpoints in the client's netmap: $(router_endpoints)"
  direct_any() { rig_ts client ping -c 1 --until-direct=false "$rtr_ip" 2>&1 | grep -Eq 'via (198\.51\.100\.3|\[2001:db8:18::2\]):41641'; }
  rig_wait_for 30 "a direct path" direct_any || rig_fail "4: no direct path on the dual-stack WAN"
  cut_at="$(bench_now)"
  rig_exec rtr nft add table ip6 rlcut6
  rig_exec rtr nft add chain ip6 rlcut6 input '{ type filter hook input priority 0; }'
  rig_exec rtr nft add rule ip6 rlcut6 input udp dport 41641 drop
  rig_wait_for 30 "the direct path over IPv4" direct_at 198.51.100.3 ||
    rig_fail "4: with IPv6 UDP cut the client's path is: $(rig_ts client ping -c 1 --until-direct=false "$rtr_ip" 2>&1 | tail -n 1)"
  rig_wait_for 10 "replies" replies_since "$(bench_now)" || rig_fail "4: no replies with IPv6 UDP cut"
  cut_gap="$(bench_ping_gap "$ping_log" "$cut_at" "$(bench_now)")"
  # The client keeps a path it trusts for 6.5 s after its last pong, then tries the others.
  ((cut_gap < 10000)) || rig_fail "4: a ${cut_gap} ms gap in replies when IPv6 UDP was cut (bound 10 s)"
  rig_exec rtr nft delete table ip6 rlcut6
  pass "4: dual-stack: direct again; with IPv6 UDP cut on the router the path moved to 198.51.100.3:41641" \
    "(longest gap ${cut_gap} ms)"
)

source "$here/../rig/rig.sh"
rig_assert_clean "$RIG"
echo "router-life: teardown left nothing of $RIG"
echo "router-life: all checks passed"
