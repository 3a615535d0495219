#!/usr/bin/env bash
# bench/fallback: how long traffic through a subnet router stops when its direct UDP path dies and
# the tunnel falls back to DERP, in the netns rig (root). tinytail vs tailscaled as the router,
# alternating runs.
#
# The client (tailscaled with --accept-routes, 198.18.0.20) pings the LAN host 192.0.2.10 behind
# the router (198.18.0.2) 10 times a second (`ping -D -i 0.1`). Each run has a router node of its
# own (rtiR, rtaR for run R; as bench/throughput.sh: it joins, advertises 192.0.2.0/24, is approved
# in Headscale, measured, stopped and deleted), and starts once the client's `tailscale ping` says
# the path is direct (via 198.18.0.2:41641) and the LAN host answers. Then:
#   the stream runs 2-5 s: the same delay for both routers in a run (the gap depends on where in
#   the 3 s heartbeat cycle the block lands, and heartbeats are in step with the stream's start),
#   spread over the cycle: run R of N draws from 2 + 3(R-1)/N .. 2 + 3R/N (one run: 2-5 s);
#   all UDP between client and router is dropped on the WAN bridge (nft, bridge family, in the WAN
#   namespace; DERP is TLS over TCP to the control host and stays up),
#   the stream runs 15 s more, then the path must be DERP (`tailscale ping` from the client, and
#   the router's own ping to the client: `tinytail ping` or `tailscale ping`).
# The figure: the longest stretch in ms without a reply in the stream, from its first reply to its
# end (an outage still going on at the end counts up to the end). Both ends of the tunnel keep
# sending to a dead direct address until 6.5 s after its last pong (tailscale's
# trustUDPAddrDuration, which tinytail copies; heartbeats every 3 s), so expect 3.5-6.5 s plus
# the DERP round trip from either router.
# For reading the figures: traffic flows again once both ends have given up their direct address,
# so the gap is the later of the two lapses, and the client's alone is 3.5-6.5 s: no router can
# make it shorter. tinytail sends its pings on a 250 ms engine tick (magicsock TICK), so its
# heartbeats go out up to 250 ms late and its last pong, hence its lapse, tends to come later; a
# heartbeat period of 3.0-3.25 s also drifts against tailscaled's exact 3 s, so the run-paired
# difference moves by up to a cycle near the cycle's edge.
# Pinning (2-core machine, as bench/throughput.sh): the router process on CPU 0, client tailscaled
# and ping on CPU 1.
#   bench/fallback.sh            10 runs per router
#   bench/fallback.sh --smoke    1 run per router (what the test command runs)
# TINYTAIL_BIN overrides the release build under test.
set -euo pipefail
shopt -s inherit_errexit
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
smoke=0
[[ "${1:-}" == "--smoke" ]] && smoke=1
if ((smoke)); then runs=1; else runs=10; fi
variants=(tinytail tailscaled)
ROUTER_CPU=0 OTHER_CPU=1
AFTER_BLOCK=15

source tests/rig/rig.sh
source bench/lib.sh
bench_needs fallback ping taskset nft jq bc
bench_header bench/fallback.sh "$@"
TT_BIN="$(bench_tinytail_bin)"

bench_rig_start
echo "tinytail: $("$TT_BIN" version)"
echo "tailscaled: $("$PEERS/tailscaled" --version | head -n 1) (tests/interop/go.mod); Headscale $("$PEERS/headscale" version 2>/dev/null | head -n 1 | awk '{print $NF}') with embedded DERP; $(ping -V | head -n 1)"
echo "pinning: router process on CPU $ROUTER_CPU; client tailscaled and ping on CPU $OTHER_CPU"

declare -A PID
stop() { bench_kill "${PID[$1]}"; unset "PID[$1]"; }

bench_client_join "$OTHER_CPU"


# router_ping VARIANT NAME: the router's own ping to the client, one disco ping, no direct retries.
router_ping() {
  case "$1" in
    tinytail) rig_exec rtr "$TT_BIN" ping --socket "$RIG_DIR/$2/tinytail.sock" -c 1 --until-direct=false client 2>&1 ;;
    tailscaled) rig_ts "$2" ping -c 1 --until-direct=false --timeout=5s client 2>&1 ;;
  esac
}

# up VARIANT: a new router node of that kind joins, advertises 192.0.2.0/24 and is approved;
# wait until 192.0.2.10 answers through it over the direct path. Sets name.
up() {
  name="r${1:0:2}$r"
  bench_router_join "$1" "$name" "$ROUTER_CPU"
  rig_wait_for 20 "192.0.2.10 via $name" bench_lan_pings || rig_fail "192.0.2.10 unreachable via $name"
}
down() {
  stop "$name"
  rig_hs nodes delete --identifier "$(bench_hs_node_id "$name")" >/dev/null
}

# measure VARIANT DELAY: one run, UDP blocked DELAY s after the stream's first reply; notes the gap in ms.
declare -A vals
measure() {
  local v="$1" log="$RIG_DIR/ping-$1-$r.log" from to blocked gap path rpath
  rig_bg cli "ping-$v-$r" taskset -c "$OTHER_CPU" ping -D -n -i 0.1 -W 1 192.0.2.10
  local ping_pid="$RIG_LAST_PID"
  rig_wait_for 5 "ping stream answered" grep -q "bytes from" "$log" || rig_fail "run $r $v: no reply before the block"
  from="$(bench_now)"
  sleep "$2"
  rig_block_udp
  blocked="$(bench_now)"
  sleep "$AFTER_BLOCK"
  to="$(bench_now)"
  bench_kill "$ping_pid"
  gap="$(bench_ping_gap "$log" "$from" "$to")"
  path="$(rig_ts client ping -c 1 --until-direct=false --timeout=5s "$name" 2>&1 | tail -n 1 || true)"
  rpath="$(router_ping "$v" "$name" | tail -n 1 || true)"
  [[ "$path" == *"via DERP("* ]] || rig_fail "run $r $v: the client's path to $name is not DERP after the block: $path"
  [[ "$rpath" == *"via DERP("* ]] || rig_fail "run $r $v: $name's path to the client is not DERP after the block: $rpath"
  rig_unblock_udp
  vals[$v]+="$gap "
  echo "run $r $v: longest gap ${gap} ms (block $(echo "$blocked - $from" | bc | xargs printf '%.1f') s into the stream); client: $path; router: $rpath" >&2
}

for ((r = 1; r <= runs; r++)); do
  order=("${variants[@]}")
  ((r % 2 == 0)) && order=(tailscaled tinytail)
  delay="$(awk -v r="$r" -v n="$runs" -v u="$RANDOM" 'BEGIN {printf "%.2f", 2 + 3 * (r - 1 + u / 32768) / n}')"
  for v in "${order[@]}"; do
    up "$v"
    measure "$v" "$delay"
    down
  done
done

printf '| %-10s | %10s | %10s | %10s |\n' router "min ms" "median ms" "max ms"
printf '|%s|%s|%s|%s|\n' "------------" "------------" "------------" "------------"
for v in "${variants[@]}"; do
  # shellcheck disable=SC2086
  read -r mn md mx <<<"$(bench_stats ${vals[$v]})"
  printf '| %-10s | %10s | %10s | %10s |\n' "$v" "$mn" "$md" "$mx"
done
echo
echo "runs=$runs per router, the block 2-5 s into the stream (the same point for both routers in a run); longest stretch without a reply in a 10/s ping stream from the client to 192.0.2.10 through the router, UDP client<->router dropped ${AFTER_BLOCK} s before the stream ended; path DERP afterwards (checked from both ends)"
read -r -a tt <<<"${vals[tinytail]}"; read -r -a ts <<<"${vals[tailscaled]}"
diffs=(); for i in "${!tt[@]}"; do diffs+=("$((tt[i] - ts[i]))"); done
echo "paired by run (same block point): tinytail - tailscaled min/median/max $(bench_stats "${diffs[@]}" | tr ' ' /) ms"
echo "load average (1/5/15 min): $load_start at the start, $(cut -d" " -f1-3 /proc/loadavg) at the end"
# shellcheck disable=SC2086
echo "ratio (median gap, tailscaled / tinytail): $(echo "$(bench_stats ${vals[tailscaled]} | cut -d' ' -f2) $(bench_stats ${vals[tinytail]} | cut -d' ' -f2)" | awk '{ if ($2 > 0) printf "%.2fx", $1 / $2; else print "n/a" }')"
