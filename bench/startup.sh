#!/usr/bin/env bash
# bench/startup: restart latency of a subnet router, from process start to the first packet
# forwarded over DERP, in the netns rig (root). tinytail vs tailscaled, alternating rounds.
#
# Both routers are registered with Headscale once (advertising 192.0.2.0/24, approved) and stopped;
# each round restarts one from its saved state, so this is restart latency, not registration.
# Direct UDP between the client and the router is blocked (nft table inet ttbench_nodirect in the
# router's namespace drops UDP to and from 198.18.0.20), so the only path is DERP (Headscale's
# embedded DERP on the control host, TLS over TCP 443).
# The client (tailscaled with --accept-routes) is up and lists both routers offline (Headscale
# notices a stopped node about 10 s late; starting earlier would time that, not the router). Then:
#   t0 = just before the router process is started (pinned: taskset -c 0, like bench/throughput)
#   t1 = when `ping -c 1 -i 0.05` from the client to the LAN host 192.0.2.10 first gets a reply
#        (a loop restarts ping every 50 ms while the client has no route to 192.0.2.0/24)
# and the figure is t1 - t0 in ms: control login + map, DERP connect, the client's netmap update
# and WireGuard handshake over DERP, forwarding. After each round the path is checked to be DERP.
#   bench/startup.sh            7 rounds per router
#   bench/startup.sh --smoke    1 round (what the test command runs)
# TINYTAIL_BIN overrides the release build under test.
set -euo pipefail
shopt -s inherit_errexit
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
smoke=0
[[ "${1:-}" == "--smoke" ]] && smoke=1
if ((smoke)); then rounds=1; else rounds=7; fi
variants=(tinytail tailscaled)
ROUTER_CPU=0 OTHER_CPU=1

source tests/rig/rig.sh
source bench/lib.sh
bench_needs startup taskset nft jq bc
bench_header bench/startup.sh "$@"
TT_BIN="$(bench_tinytail_bin)"

bench_rig_start
echo "tinytail: $("$TT_BIN" version)"
echo "tailscaled: $("$PEERS/tailscaled" --version | head -n 1) (tests/interop/go.mod); Headscale $("$PEERS/headscale" version 2>/dev/null | head -n 1 | awk '{print $NF}') with embedded DERP"
echo "pinning: router process on CPU $ROUTER_CPU, client tailscaled on CPU $OTHER_CPU; direct UDP cli<->rtr dropped (DERP only)"

declare -A PID
r=0  # the round (0: registration); logs are $RIG_DIR/NAME-ROUND.log
ts_start() { bench_pinned_tailscaled "$1" "$2" "$3" "$2-$r"; }
tt_start() { bench_pinned_tinytail "$1" "$2" "$3" "$2-$r"; }
approve() { bench_hs_approve "$1"; }
stop() { bench_kill "${PID[$1]}"; unset "PID[$1]"; }
# peer_online NAME: the client lists NAME as online (prints true/false)
peer_online() {
  rig_ts client status --json | jq -r --arg n "$1" '[.Peer[] | select(.HostName == $n) | .Online][0] // false'
}
both_offline() { [[ "$(peer_online rtt)" == false && "$(peer_online rts)" == false ]]; }

# The client, then both routers registered once with a direct path allowed, then stopped.
ts_start cli client "$OTHER_CPU"
rig_wait_for 30 "client's socket" test -S "$RIG_DIR/client/tailscaled.sock" || rig_fail "client tailscaled did not start"
rig_ts client up --login-server="$HS_URL" --auth-key="$(rig_authkey)" --hostname=client \
  --accept-routes --accept-dns=false --timeout=60s >/dev/null || rig_fail "client up failed"
tt_start rtr rtt "$ROUTER_CPU"
rig_wait_for 10 "rtt's socket" test -S "$RIG_DIR/rtt/tinytail.sock" || rig_fail "tinytail run did not start"
rig_exec rtr "$TT_BIN" up --socket "$RIG_DIR/rtt/tinytail.sock" --login-server "$HS_URL" \
  --auth-key "$(rig_authkey)" --hostname rtt --advertise-routes 192.0.2.0/24 --timeout 60 >/dev/null ||
  rig_fail "tinytail up failed: $(tail -n 5 "$RIG_DIR/rtt-0.log")"
approve rtt
stop rtt
ts_start rtr rts "$ROUTER_CPU"
rig_wait_for 30 "rts's socket" test -S "$RIG_DIR/rts/tailscaled.sock" || rig_fail "tailscaled router did not start"
rig_ts rts up --login-server="$HS_URL" --auth-key="$(rig_authkey)" --hostname=rts \
  --advertise-routes=192.0.2.0/24 --accept-dns=false --timeout=60s >/dev/null ||
  rig_fail "tailscaled router up failed: $(tail -n 5 "$RIG_DIR/rts-0.log")"
approve rts
stop rts

rig_exec rtr nft -f - <<'EOF'
table inet ttbench_nodirect {
  chain input { type filter hook input priority -200; ip saddr 198.18.0.20 meta l4proto udp drop; }
  chain output { type filter hook output priority -200; ip daddr 198.18.0.20 meta l4proto udp drop; }
}
EOF

# The loop the client runs: ping exits at once while there is no route, else sends every 50 ms
# until the first reply; then the time.
first_reply='until ping -n -q -c 1 -i 0.05 -w 60 192.0.2.10 >/dev/null 2>&1; do sleep 0.05; done; date +%s.%N'

declare -A vals
for ((r = 1; r <= rounds; r++)); do
  order=("${variants[@]}")
  ((r % 2 == 0)) && order=(tailscaled tinytail)
  for v in "${order[@]}"; do
    name=rtt
    [[ "$v" == tailscaled ]] && name=rts
    # Headscale marks a stopped node offline about 10 s later; until then the route stays with
    # it. Start only when the client sees both routers offline.
    rig_wait_for 60 "the client sees both routers offline" both_offline ||
      rig_fail "a router is still online at the client: $(rig_ts client status 2>&1 | grep -E ' rt[ts] ')"
    sleep 1
    out="$RIG_DIR/first-reply-$v-$r"
    rig_exec cli timeout 90 bash -c "$first_reply" >"$out" &
    waiter=$!
    sleep 0.2  # the loop is running
    t0="$(bench_now)"
    if [[ "$v" == tinytail ]]; then tt_start rtr rtt "$ROUTER_CPU"; else ts_start rtr rts "$ROUTER_CPU"; fi
    wait "$waiter" || rig_fail "no reply from 192.0.2.10 through $v within 90 s of its start: $(tail -n 5 "$RIG_DIR/$name-$r.log")"
    ms="$(echo "($(cat "$out") - $t0) * 1000 / 1" | bc)"
    vals[$v]+="$ms "
    path="$(rig_ts client ping -c 1 --until-direct=false --timeout=5s "$name" 2>&1 | tail -n 1 || true)"
    [[ "$path" == *"via DERP"* ]] || rig_fail "path to $name is not DERP: $path"
    echo "round $r $v: ${ms} ms ($path)" >&2
    stop "$name"
  done
done
rig_exec rtr nft delete table inet ttbench_nodirect

printf '| %-10s | %10s | %10s | %10s |\n' router "min ms" "median ms" "max ms"
printf '|%s|%s|%s|%s|\n' "------------" "------------" "------------" "------------"
for v in "${variants[@]}"; do
  # shellcheck disable=SC2086
  read -r mn md mx <<<"$(bench_stats ${vals[$v]})"
  printf '| %-10s | %10s | %10s | %10s |\n' "$v" "$mn" "$md" "$mx"
done
echo
echo "rounds=$rounds per router; process start -> first ping reply from 192.0.2.10 through the router, DERP only (direct UDP dropped)"
echo "load average (1/5/15 min): $load_start at the start, $(cut -d" " -f1-3 /proc/loadavg) at the end"
# shellcheck disable=SC2086
echo "ratio (median start-up, tailscaled / tinytail): $(echo "$(bench_stats ${vals[tailscaled]} | cut -d' ' -f2) $(bench_stats ${vals[tinytail]} | cut -d' ' -f2)" | awk '{printf "%.2fx", $1 / $2}')"
