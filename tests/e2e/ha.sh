#!/usr/bin/env bash
# Issue #16 scenario 7 (two routers, one LAN), in the netns rig with Headscale and a real
# tailscaled client: a router on `rtr` and one on `rtr2` both advertise 192.0.2.0/24 (the LAN is
# a bridge in `lan` with the host 192.0.2.10); Headscale makes one primary. The client pings the
# LAN host every 100 ms.
#   1. The primary is killed (kill -9): replies resume through the other within 15 s.
#   2. The killed one comes back: no flapping (the primary stays where it is for 20 s, neither
#      router reopens its map poll more than once, no gap in replies over 1 s).
#   3. The new primary's WAN is cut (its process lives on): the first router takes over within
#      15 s.
# Each gap is printed with its parts: kill (or cut) to the client's switch of primary (Headscale
# notices the router gone), and the switch to the first reply through the other router.
#
#   tests/e2e/ha.sh     (root; builds tinytail in debug unless TINYTAIL_BIN names one)
#   HA_ROUTERS=tailscaled tests/e2e/ha.sh    the same with two tailscaled routers (bench/ha.sh
#                                            compares the two over 10 runs)
# The last line is "ha: figures ROUTERS kill=MS cut=MS" for bench/ha.sh.
# Not in scripts/test yet: 2 of 9 tinytail runs failed (a 5.2 s wait for the client's handshake
# with the new primary; once no replies through the first primary at all), causes not found.
# Headscale decides when a router whose WAN is cut stops being primary: its HA probe pings each
# router every node.routes.ha.probe_interval (10 s by default) and gives up after probe_timeout
# (5 s), so with its defaults a cut costs 5-15 s plus the switch, whichever router: the test sets
# HA_PROBE_INTERVAL=5s and HA_PROBE_TIMEOUT=2s (defaults here) to assert the issue's 15 s with a
# margin. HA_BOUND_MS (15000; 0: none) is the bound on each gap.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
RIG="tt$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
export RIG
TT="$(source "$here/../rig/rig.sh"; rig_tinytail_bin ha)"
pass() { printf 'ha: ok  %s\n' "$*"; }
ROUTERS="${HA_ROUTERS:-tinytail}" bound="${HA_BOUND_MS:-15000}"
[[ "$ROUTERS" == tinytail || "$ROUTERS" == tailscaled ]] || { echo "ha: HA_ROUTERS is tinytail or tailscaled" >&2; exit 2; }

(
  source "$here/../rig/rig.sh"
  source "$here/../../bench/lib.sh" # bench_now, bench_ping_gap, bench_first_reply
  rig_up
  policy="$RIG_DIR/policy.json"
  echo '{"acls":[{"action":"accept","src":["*"],"dst":["*:*"]}]}' >"$policy"
  export RIG_HS_POLICY="$policy"
  RIG_HS_EXTRA_YAML="$(printf 'node:\n  routes:\n    ha:\n      probe_interval: %s\n      probe_timeout: %s' \
    "${HA_PROBE_INTERVAL:-5s}" "${HA_PROBE_TIMEOUT:-2s}")"
  export RIG_HS_EXTRA_YAML
  rig_headscale_start

  # The LAN becomes a bridge so a second router can join it at 192.0.2.2.
  rig_add_ns rtr2
  rig_attach rtr2 wan0 p-rtr2 198.18.0.3/24
  rig_exec lan ip addr del 192.0.2.10/24 dev eth0
  rig_exec lan ip link add br0 type bridge
  rig_exec lan ip link set eth0 master br0
  rig_exec lan ip link set br0 up
  rig_exec lan ip addr add 192.0.2.10/24 dev br0
  rig_exec lan ip route replace default via 192.0.2.1
  ip link add lan0 netns "$(rig_ns rtr2)" type veth peer name eth1 netns "$(rig_ns lan)"
  rig_exec lan ip link set eth1 master br0
  rig_exec lan ip link set eth1 up
  rig_exec rtr2 ip addr add 192.0.2.2/24 dev lan0
  rig_exec rtr2 ip link set lan0 up
  rig_exec rtr2 sysctl -qw net.ipv4.ip_forward=1

  rig_tailscaled_start cli client
  rig_ts client up --login-server="$HS_URL" --auth-key="$(rig_authkey)" --hostname=client \
    --accept-routes --timeout=60s >/dev/null

  # start_router NS NAME: the router on NS (same state when it comes back); join NS NAME: joins
  # as NAME with the LAN advertised (SNAT on, so the LAN host answers whichever one forwarded).
  declare -A pid
  if [[ "$ROUTERS" == tinytail ]]; then
    start_router() {
      local ns="$1" name="$2" dir="$RIG_DIR/$2"
      mkdir -p "$dir"
      rm -f "$dir/sock"
      rig_bg "$ns" "tinytail-$name" env SSL_CERT_FILE="$RIG_CA" "$TT" run --state "$dir/state.img" --socket "$dir/sock"
      pid[$name]="$RIG_LAST_PID"
      rig_wait_for 10 "$name socket" test -S "$dir/sock" || rig_fail "$name did not start"
    }
    join() {
      rig_exec "$1" "$TT" up --socket "$RIG_DIR/$2/sock" --login-server "$HS_URL" --auth-key "$(rig_authkey)" \
        --hostname "$2" --advertise-routes 192.0.2.0/24 --timeout 60 >/dev/null
    }
  else
    rig_exec rtr sysctl -qw net.ipv4.ip_forward=1 # tinytail turns it on itself
    start_router() {
      rm -f "$RIG_DIR/$2/tailscaled.sock"
      rig_tailscaled_start "$1" "$2"
      pid[$2]="$RIG_LAST_PID"
    }
    join() {
      rig_exec "$1" "$(rig_peers)/tailscale" --socket="$RIG_DIR/$2/tailscaled.sock" up --login-server="$HS_URL" \
        --auth-key="$(rig_authkey)" --hostname="$2" --advertise-routes=192.0.2.0/24 --timeout=60s >/dev/null
    }
  fi
  declare -A host=([ha1]=rtr [ha2]=rtr2)
  for name in ha1 ha2; do
    start_router "${host[$name]}" "$name"
    join "${host[$name]}" "$name" || rig_fail "$name: up failed"
    id="$(rig_hs nodes list -o json | jq -r --arg n "$name" '.[] | select(.given_name == $n) | .id')"
    rig_hs nodes approve-routes --identifier "$id" --routes 192.0.2.0/24 >/dev/null
  done
  # primary: the router the client lists as primary for the LAN.
  primary() {
    rig_ts client status --json | jq -r '.Peer[] | select(.Online == true and ((.PrimaryRoutes // []) | index("192.0.2.0/24"))) | .HostName'
  }
  has_primary() { [[ -n "$(primary)" ]]; }
  # diag: what each router and the client say about their paths, for a failure message.
  diag() {
    local name
    if [[ "$ROUTERS" == tinytail ]]; then
      for name in ha1 ha2; do
        printf '%s: %s; ' "$name" "$(rig_exec "${host[$name]}" "$TT" --socket "$RIG_DIR/$name/sock" status --json 2>&1 |
          jq -c '{Connected: .Control.Connected, DERP: .Datapath.DERPConnected, Drops: .Datapath.Drops}' 2>&1 | head -c 600)"
      done
    fi
    printf 'client: %s' "$(rig_ts client status 2>&1 | grep -E ' ha[12] ' | tr -s ' ' | tr '\n' ';')"
  }
  rig_wait_for 30 "a primary router" has_primary || rig_fail "no primary: $(rig_ts client status 2>&1 | tail -n 4)"
  first="$(primary)"
  rig_bg cli pingstream ping -D -n -i 0.1 -W 1 192.0.2.10
  ping_log="$RIG_DIR/pingstream.log"
  rig_wait_for 10 "ping stream answered" grep -q "bytes from" "$ping_log" || rig_fail "no replies through $first ($(diag))"
  replies_since() { bench_first_reply "$ping_log" "$1" >/dev/null; }
  primary_is() { [[ "$(primary)" == "$1" ]]; }
  # failover SINCE TO WHAT: after WHAT (at bench_now SINCE), TO becomes the client's primary and
  # answers; sets gap to the longest gap in replies since SINCE (bound: HA_BOUND_MS) and parts to its
  # breakdown. Replies already on their way when the old primary went do not count: the switch
  # comes first.
  failover() {
    local since="$1" to="$2" what="$3" switched answered
    rig_wait_for 20 "$to primary" primary_is "$to" || rig_fail "$to not primary 20 s after $what"
    switched="$(bench_now)"
    rig_wait_for 10 "replies through $to" replies_since "$switched" ||
      rig_fail "no replies 10 s after $to became primary ($what; $(diag))"
    answered="$(bench_first_reply "$ping_log" "$switched")"
    sleep 2
    gap="$(bench_ping_gap "$ping_log" "$since" "$(bench_now)")"
    parts="$(echo "($switched - $since) * 1000 / 1" | bc) ms to the switch, $(echo "($answered - $switched) * 1000 / 1" | bc) ms from it to a reply"
    ((bound == 0 || gap <= bound)) || rig_fail "the gap after $what was $gap ms (bound $bound ms; $parts; $(diag))"
    primary_is "$to" || rig_fail "primary 2 s after $what: '$(primary)'"
  }
  second=ha1; [[ "$first" == ha1 ]] && second=ha2
  sleep 3
  killed_at="$(bench_now)"
  kill -9 "${pid[$first]}"
  failover "$killed_at" "$second" "$first was killed"
  pass "$ROUTERS: kill -9 of the primary $first: replies through $second after $gap ms ($parts)"
  kill_gap="$gap"

  # The killed router comes back: the primary must stay put (no flapping) for 20 s.
  start_router "${host[$first]}" "$first"
  back_at="$(bench_now)"
  # polls NAME: how many map polls Headscale has seen open for NAME so far.
  polls() { grep -c "INF node connected .*node.name=$1 " "$RIG_DIR/headscale.log" || true; }
  sleep 3 # the returning router's own first polls
  polls_before="$(polls "$first") $(polls "$second")"
  changes=0 last="$second"
  for _ in $(seq 40); do
    sleep 0.5
    now="$(primary)"
    [[ -n "$now" && "$now" != "$last" ]] && changes=$((changes + 1)) last="$now"
  done
  ((changes == 0)) || rig_fail "the primary changed $changes times after $first came back"
  # Neither router reconnects meanwhile: a standby that re-polled on every policy change made
  # the two routers reopen their map polls every second or two.
  read -r a b <<<"$polls_before"
  repolls="$(($(polls "$first") - a + $(polls "$second") - b))"
  ((repolls <= 1)) || rig_fail "$repolls new map polls from the two routers in 20 s (a reconnect loop)"
  worst="$(bench_ping_gap "$ping_log" "$back_at" "$(bench_now)")"
  ((worst < 1000)) || rig_fail "a $worst ms gap after $first came back"
  pass "$ROUTERS: $first back: $second stays primary for 20 s, $repolls new map polls, the longest gap $worst ms"

  # The primary's WAN is cut (its process lives on): the other router takes over within 15 s.
  cut_at="$(bench_now)"
  rig_exec "${host[$second]}" ip link set wan0 down
  failover "$cut_at" "$first" "$second's WAN was cut"
  rig_exec "${host[$second]}" ip link set wan0 up
  pass "$ROUTERS: WAN of the primary $second cut: replies through $first after $gap ms ($parts)"
  echo "ha: figures $ROUTERS kill=$kill_gap cut=$gap"
)
rc=$?
source "$here/../rig/rig.sh"
rig_assert_clean "$RIG"
exit "$rc"
