#!/usr/bin/env bash
# bench/flood: a subnet router under a flood of forged WireGuard handshake initiations (root,
# netns rig). What a handshake from anywhere costs the router before it knows the sender decides
# whether a stranger on the internet can starve the tailnet's traffic.
#
# The path is bench/throughput.sh's: iperf3 client on the client host (198.18.0.20, tailscaled
# --accept-routes) -> tunnel, direct UDP -> tinytail on the router host (198.18.0.2, advertising
# 192.0.2.0/24, approved in Headscale) -> LAN host 192.0.2.10 (`iperf3 -s`). The flood comes from
# the internet host (203.0.113.10) to the router's port (203.0.113.1:41641): core/examples/wg_flood
# sends 148-byte type-1 messages with random contents (so a random mac1), at FLOOD_PPS (0: as fast
# as one thread writes, the default).
# Per round and variant: TCP for SECS seconds without the flood, then TCP for SECS seconds with it,
# then the flood alone for SECS seconds (the tunnel idle).
#   Mbit/s: TCP as received by iperf3.
#   router CPU: utime + stime of the router process (all threads, /proc/PID/stat) over the iperf3
#   run's wall time, in % of one core (kernel softirq work on its behalf is not in it).
#   flood/s: forged initiations the generator sent per second; rcvbuf: UDP datagrams the router
#   host's kernel dropped for a full socket buffer (RcvbufErrors) during the run.
#   flood alone: the router's CPU, forged datagrams it read per second (the growth of its drop
#   counters below: BadMac1 + UnknownPeer + WireGuard) and CPU microseconds per forged datagram.
#   path: how the client reached the router at the end of each flooded run (tailscale status
#   CurAddr): a router whose socket overflows loses disco pongs too, and the client falls back to
#   DERP (TCP through the control host), where the flood does not reach; compare throughput only
#   between runs on the same path.
#   Drops: the router's own counters after the flooded run (`tinytail status --json`,
#   .Datapath.Drops; BadMac1 exists from 8d9c9aa on, older builds count the forged ones under
#   UnknownPeer).
# Pinning (2-core machine): router on CPU 0; client tailscaled, iperf3 both ends and the flood
# generator on CPU 1 (so the flood also competes with the iperf3 client for CPU 1: compare the
# variants within a run, not with bench/throughput.sh).
#   bench/flood.sh            3 rounds, 10 s per run
#   bench/flood.sh --smoke    1 round, 3 s per run (what the test command runs)
# TINYTAIL_BIN: the build under test (default: a release build of the checkout). BEFORE_BIN: a
# second build (e.g. the parent commit's) measured in the same rig, alternating with the first.
# FLOOD_GEN: the generator (default: a release build of core/examples/wg_flood.rs).
set -euo pipefail
shopt -s inherit_errexit
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
smoke=0
[[ "${1:-}" == "--smoke" ]] && smoke=1
if ((smoke)); then rounds=1 secs=3; else rounds=3 secs=10; fi
pps="${FLOOD_PPS:-0}"
ROUTER_CPU=0 OTHER_CPU=1

source tests/rig/rig.sh
source bench/lib.sh
bench_needs flood iperf3 taskset jq bc
bench_header bench/flood.sh "$@"
declare -A BIN=([tinytail]="$(bench_tinytail_bin)")
variants=(tinytail)
if [[ -n "${BEFORE_BIN:-}" ]]; then
  [[ -x "$BEFORE_BIN" ]] || { echo "bench/flood: no binary at BEFORE_BIN=$BEFORE_BIN" >&2; exit 1; }
  BIN[before]="$BEFORE_BIN"
  variants+=(before)
fi
gen="${FLOOD_GEN:-}"
if [[ -z "$gen" ]]; then
  dir="${CARGO_TARGET_DIR:-$HOME/.cache/tinytail/target/host}"
  cargo build --release --quiet -p tinytail-core --example wg_flood >&2
  gen="$dir/release/examples/wg_flood"
fi

bench_rig_start
for v in "${variants[@]}"; do echo "$v: $("${BIN[$v]}" version) (${BIN[$v]})"; done
echo "tailscaled: $("$PEERS/tailscaled" --version | head -n 1); $(iperf3 --version | head -n 1); flood: ${pps/#0/unthrottled} forged initiations/s"

declare -A PID
bench_client_join "$OTHER_CPU"
rig_bg lan iperf3 taskset -c "$OTHER_CPU" iperf3 -s -B 192.0.2.10

# path NAME: how the client reaches NAME now: its direct address, or DERP (CurAddr empty).
path() {
  rig_ts client status --json | jq -r --arg n "$1" '.Peer[] | select(.HostName == $n) | if (.CurAddr // "") == "" then "DERP" else "direct" end'
}

# up VARIANT: a fresh router node of that build joins with the LAN route, approved; waits for the
# direct path. Sets RPID and name.
up() {
  name="rf${1:0:2}$r"
  TT_BIN="${BIN[$1]}" bench_router_join tinytail "$name" "$ROUTER_CPU"
  RPID="${PID[$name]}"
  rig_wait_for 20 "192.0.2.10 via $name" bench_lan_pings || rig_fail "192.0.2.10 unreachable via $name"
}
down() {
  bench_kill "${PID[$name]}"
  rig_hs nodes delete --identifier "$(bench_hs_node_id "$name")" >/dev/null
}

hz="$(getconf CLK_TCK)"
declare -A vals
note() { vals["$1/$2"]+="$3 "; }
# iperf VARIANT KIND: one TCP run (KIND calm or flood); notes Mbit/s, router CPU %, rcvbuf drops.
iperf() {
  local v="$1" kind="$2" out="$RIG_DIR/iperf3-$1-$2-$r.json" c0 c1 t0 t1 d0 fpid=""
  if [[ "$kind" == flood ]]; then
    rig_bg net "flood-$v-$r" taskset -c "$OTHER_CPU" "$gen" 203.0.113.1:41641 "$((secs + 1))" "$pps"
    fpid="$RIG_LAST_PID"
    sleep 0.5 # the flood is on before the measurement starts
  fi
  c0="$(bench_cpu_ticks "$RPID")"; t0="$(bench_now)"; d0="$(bench_rcvbuf_errors)"
  # A flood that breaks the tunnel is a result, not a bench failure: 0 Mbit/s.
  rig_exec cli taskset -c "$OTHER_CPU" iperf3 -c 192.0.2.10 -t "$secs" --connect-timeout 5000 -J >"$out" 2>&1 || true
  # Without a flood the path must carry traffic (iperf3 -J exits 0 even when it cannot connect).
  [[ "$kind" == flood ]] || jq -e '.error == null and (.end.sum_received.bits_per_second // 0) > 0' "$out" >/dev/null ||
    rig_fail "iperf3 through $v without a flood moved nothing: $(jq -c '.error // empty' "$out" 2>/dev/null)"
  c1="$(bench_cpu_ticks "$RPID")"; t1="$(bench_now)"
  note "$v" "$kind-rcvbuf" $(($(bench_rcvbuf_errors) - d0))
  note "$v" "$kind-cpu" "$(echo "scale=1; 100 * ($c1 - $c0) / $hz / ($t1 - $t0)" | bc)"
  note "$v" "$kind-mbit" "$(jq '(.end.sum_received.bits_per_second // 0) / 1e6 * 10 | floor / 10' "$out" 2>/dev/null || echo 0)"
  if [[ -n "$fpid" ]]; then
    note "$v" flood-path "$(path "$name")"
    wait "$fpid" || true
    note "$v" flood-pps "$(sed -n 's/.*(\([0-9]*\)\/s).*/\1/p' "$RIG_DIR/flood-$v-$r.log")"
    drops[$v]="$("${BIN[$v]}" status --json --socket "$RIG_DIR/$name/tinytail.sock" | jq -c '.Datapath.Drops')"
  fi
}

# refused NAME: datagrams the router NAME has refused so far (the forged ones land in these).
refused() {
  "${BIN[$1]}" status --json --socket "$RIG_DIR/$name/tinytail.sock" |
    jq '.Datapath.Drops | (.BadMac1 // 0) + .UnknownPeer + .WireGuard + (.CookieReplies // 0) + (.UnderLoad // 0)'
}
# alone VARIANT: the flood with the tunnel idle; notes CPU %, datagrams read per second and
# CPU microseconds per datagram.
alone() {
  local v="$1" c0 c1 t0 t1 n0 n1 fpid
  rig_bg net "alone-$v-$r" taskset -c "$OTHER_CPU" "$gen" 203.0.113.1:41641 "$((secs + 1))" "$pps"
  fpid="$RIG_LAST_PID"
  sleep 0.5
  c0="$(bench_cpu_ticks "$RPID")"; t0="$(bench_now)"; n0="$(refused "$v")"
  sleep "$secs"
  c1="$(bench_cpu_ticks "$RPID")"; t1="$(bench_now)"; n1="$(refused "$v")"
  wait "$fpid" || true
  note "$v" alone-cpu "$(echo "scale=1; 100 * ($c1 - $c0) / $hz / ($t1 - $t0)" | bc)"
  note "$v" alone-read "$(echo "($n1 - $n0) / ($t1 - $t0)" | bc)"
  note "$v" alone-us "$(echo "$c1 $c0 $hz $n1 $n0" | awk '{ if ($4 > $5) printf "%.2f", 1e6 * ($1 - $2) / $3 / ($4 - $5); else print 0 }')"
}

declare -A drops
for ((r = 1; r <= rounds; r++)); do
  k=$(((r - 1) % ${#variants[@]}))
  order=("${variants[@]:k}" "${variants[@]:0:k}")
  for v in "${order[@]}"; do
    up "$v"
    iperf "$v" calm
    iperf "$v" flood
    alone "$v"
    down
  done
done

median() { bench_stats "$@" | cut -d' ' -f2; }
mmm() { bench_stats "$@" | tr ' ' /; }
printf '| %-8s | %22s | %9s | %22s | %9s | %9s | %9s | %9s |\n' variant "calm Mbit/s min/med/max" "calm CPU%" "flood Mbit/s min/med/max" "flood CPU%" "flood/s" "rcvbuf" "retained"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' ---------- ------------------------ ----------- ------------------------ ----------- ----------- ----------- -----------
for v in "${variants[@]}"; do
  # shellcheck disable=SC2086
  calm="$(median ${vals[$v/calm-mbit]})" flood="$(median ${vals[$v/flood-mbit]})"
  # shellcheck disable=SC2086
  printf '| %-8s | %22s | %9s | %22s | %9s | %9s | %9s | %9s |\n' "$v" "$(mmm ${vals[$v/calm-mbit]})" \
    "$(median ${vals[$v/calm-cpu]})" "$(mmm ${vals[$v/flood-mbit]})" "$(median ${vals[$v/flood-cpu]})" \
    "$(median ${vals[$v/flood-pps]})" "$(median ${vals[$v/flood-rcvbuf]})" \
    "$(echo "$flood $calm" | awk '{ if ($2 > 0) printf "%.0f%%", 100 * $1 / $2; else print "n/a" }')"
done
echo
printf '| %-8s | %16s | %20s | %17s |\n' variant "flood alone CPU%" "forged read/s" "CPU us per forged"
printf '|%s|%s|%s|%s|\n' ---------- ------------------ ---------------------- -------------------
for v in "${variants[@]}"; do
  # shellcheck disable=SC2086
  printf '| %-8s | %16s | %20s | %17s |\n' "$v" "$(median ${vals[$v/alone-cpu]})" "$(median ${vals[$v/alone-read]})" "$(median ${vals[$v/alone-us]})"
done
echo
for v in "${variants[@]}"; do
  echo "$v per round: calm Mbit/s ${vals[$v/calm-mbit]}; flooded Mbit/s ${vals[$v/flood-mbit]}; flooded CPU% ${vals[$v/flood-cpu]}; client's path at the end of the flooded run: ${vals[$v/flood-path]}"
  echo "$v drops after the last flooded run: ${drops[$v]}"
done
echo "rounds=$rounds, ${secs}s TCP per run, ${secs}s flood alone; CPU: router process, % of one core, median; flood/s: forged initiations sent per second (median); rcvbuf: UDP datagrams the router host dropped for a full socket buffer during the flooded run (median); retained: flooded / calm TCP Mbit/s (medians)"
echo "load average (1/5/15 min): $load_start at the start, $(cut -d" " -f1-3 /proc/loadavg) at the end"
