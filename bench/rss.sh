#!/usr/bin/env bash
# bench/rss: resident memory of tinytail vs tailscaled as a subnet router with 10, 100 and 1000
# peers in the netmap, in the netns rig (root); per-peer memory from the slope.
#
# For each size N and each router (tinytail, tailscaled; alternating which goes first), from
# scratch: testcontrol (tinytail-interop control -fake-nodes N, HTTPS + DERP on the control host),
# the router on the router host advertising the LAN 192.0.2.0/24 (approved through testcontrol),
# and a tailscaled client with --accept-routes on the client host. Once the router lists all N+1
# peers and has idled SETTLE seconds:
#   steady = VmRSS, peak = VmHWM of the router (/proc/PID/status, KiB).
# Then the traffic step: the client pings the router's 100.x address and the LAN host 192.0.2.10
# through it once; then iperf3 (client host -> LAN host, through the router) runs for TRAFFIC
# seconds while the router's VmRSS is sampled (traffic = the highest sample, peak_traffic =
# VmHWM after). A ping that gets no answer, an iperf3 that fails or moves nothing fails the run
# (also in --smoke): both routers forward, so no traffic means something broke.
# per-peer = least-squares slope of the median steady (and peak) RSS over the sizes.
#   bench/rss.sh            sizes 10 100 1000, 3 rounds, SETTLE=10, TRAFFIC=10
#   bench/rss.sh --smoke    size 10, 1 round, SETTLE=1, TRAFFIC=2 (what the test command runs)
# TINYTAIL_BIN overrides the release build under test.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
smoke=0
[[ "${1:-}" == "--smoke" ]] && smoke=1
if ((smoke)); then sizes=(10) rounds=1 settle=1 traffic=2; else sizes=(10 100 1000) rounds=3 settle=10 traffic=10; fi

source tests/rig/rig.sh
source bench/lib.sh
bench_header bench/rss.sh "$@"
TT_BIN="$(bench_tinytail_bin)"

rig_up
rig_bg lan iperf3 iperf3 -s -B 192.0.2.10
echo "tinytail: $("$TT_BIN" version)"
echo "tailscaled, tailscale CLI and testcontrol: tailscale.com $("$(rig_peers)/tinytail-interop" version) (tests/interop/go.mod)"

declare -A vals  # "router/N/metric" -> values over rounds
note() { vals["$1/$2/$3"]+="$4 "; }
pings() { rig_exec cli ping -c 1 -W 2 "$1" >/dev/null 2>&1; }

# traffic_step ROUTER CLIENT N
traffic_step() {
  local router="$1" client="$2" n="$3" kind="${BENCH_KIND[$1]}" ip pid="${BENCH_PID[$1]}"
  ip="$(bench_ip "$router")"
  rig_wait_for 5 "client reaches $router" pings "$ip" ||
    rig_fail "traffic: $kind router $ip does not answer ping from the client (N=$n)"
  rig_wait_for 5 "LAN host via $router" pings 192.0.2.10 ||
    rig_fail "traffic: 192.0.2.10 via $kind router does not answer ping from the client (N=$n)"
  local out max=0 rss
  rig_exec cli iperf3 -c 192.0.2.10 -t "$traffic" -J >"$RIG_DIR/iperf3-$router.json" 2>&1 &
  local ipid=$!
  while kill -0 "$ipid" 2>/dev/null; do
    read -r rss _ < <(bench_mem "$pid"); ((rss > max)) && max="$rss"
    sleep 0.5
  done
  wait "$ipid" || rig_fail "traffic: iperf3 through $kind router failed (N=$n): $(head -c 600 "$RIG_DIR/iperf3-$router.json")"
  # iperf3 -J exits 0 even when it cannot connect: its JSON says whether anything moved.
  jq -e '.error == null and (.end.sum_received.bits_per_second // 0) > 0' "$RIG_DIR/iperf3-$router.json" >/dev/null ||
    rig_fail "traffic: iperf3 through $kind router received nothing (N=$n): $(head -c 600 "$RIG_DIR/iperf3-$router.json")"
  note "$kind" "$n" traffic_kib "$max"
  note "$kind" "$n" peak_traffic_kib "$(bench_mem "$pid" | cut -d' ' -f2)"
  note "$kind" "$n" mbit_s "$(jq '.end.sum_received.bits_per_second / 1e6 | floor' "$RIG_DIR/iperf3-$router.json")"
}

for ((r = 1; r <= rounds; r++)); do
  for n in "${sizes[@]}"; do
    order=(tinytail tailscaled)
    ((r % 2 == 0)) && order=(tailscaled tinytail)
    for kind in "${order[@]}"; do
      router="r${kind:0:2}$n-$r" client="c$n-$r"  # short: tailscaled names its TUN ts-NAME
      bench_control_start "$n"
      if [[ "$kind" == tinytail ]]; then
        bench_tt_join rtr "$router" --advertise-routes 192.0.2.0/24
      else
        bench_ts_join rtr "$router" --advertise-routes=192.0.2.0/24
      fi
      bench_routes "$router" 192.0.2.0/24
      bench_ts_join cli "$client" --accept-routes
      rig_wait_for 60 "$router lists $((n + 1)) peers" bench_has_peers "$router" $((n + 1)) ||
        rig_fail "$router lists $(bench_peers "$router") peers, want $((n + 1))"
      sleep "$settle"
      read -r rss hwm < <(bench_mem "${BENCH_PID[$router]}")
      note "$kind" "$n" steady_kib "$rss"
      note "$kind" "$n" peak_kib "$hwm"
      traffic_step "$router" "$client" "$n"
      bench_stop "$client"; bench_stop "$router"; bench_control_stop
    done
  done
done

# median VALUES... / range VALUES...
median() { bench_stats "$@" | cut -d' ' -f2; }
range() { local s; s="$(bench_stats "$@")"; echo "${s%% *}-${s##* }"; }
col() { # router n metric -> "median (min-max)" or "-"
  local v="${vals[$1/$2/$3]:-}"
  # shellcheck disable=SC2086
  [[ -n "$v" ]] && echo "$(median $v) ($(range $v))" || echo "-"
}
printf '| %5s | %-10s | %-23s | %-23s | %-23s | %-23s | %13s |\n' peers router "steady KiB" "peak KiB" "traffic KiB" "peak w/ traffic KiB" "iperf3 Mbit/s"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' "-------" "------------" "-------------------------" "-------------------------" "-------------------------" "-------------------------" "---------------"
for n in "${sizes[@]}"; do
  for kind in tinytail tailscaled; do
    printf '| %5s | %-10s | %-23s | %-23s | %-23s | %-23s | %13s |\n' "$n" "$kind" \
      "$(col "$kind" "$n" steady_kib)" "$(col "$kind" "$n" peak_kib)" "$(col "$kind" "$n" traffic_kib)" \
      "$(col "$kind" "$n" peak_traffic_kib)" "$(col "$kind" "$n" mbit_s | cut -d' ' -f1)"
  done
done
echo
echo "rounds=$rounds settle=${settle}s traffic=${traffic}s; cells: median (min-max) over rounds; '-': not measured"

# slope KIND METRIC: least squares of the per-size medians, KiB per peer
slope() {
  local n
  for n in "${sizes[@]}"; do
    # shellcheck disable=SC2086
    echo "$n $(median ${vals[$1/$n/$2]})"
  done | awk '{x[NR]=$1; y[NR]=$2; sx+=$1; sy+=$2} END{
    mx=sx/NR; my=sy/NR; for(i=1;i<=NR;i++){num+=(x[i]-mx)*(y[i]-my); den+=(x[i]-mx)^2}
    printf "%.2f", num/den}'
}
big="${sizes[-1]}"
ratio() { # metric n
  # shellcheck disable=SC2086
  echo "scale=2; $(median ${vals[tailscaled/$2/$1]}) / $(median ${vals[tinytail/$2/$1]})" | bc | sed 's/^\./0./'
}
if ((${#sizes[@]} > 1)); then
  echo "per-peer (least-squares slope over ${sizes[*]} peers, KiB/peer): steady tinytail $(slope tinytail steady_kib) tailscaled $(slope tailscaled steady_kib); peak tinytail $(slope tinytail peak_kib) tailscaled $(slope tailscaled peak_kib)"
else
  echo "per-peer: needs two sizes or more (smoke runs one)"
fi
line="ratio (tailscaled / tinytail RSS, medians, $big peers): steady $(ratio steady_kib "$big")x, peak $(ratio peak_kib "$big")x"
if [[ -n "${vals[tinytail/$big/traffic_kib]:-}" && -n "${vals[tailscaled/$big/traffic_kib]:-}" ]]; then
  # shellcheck disable=SC2086
  line+=", with traffic $(ratio traffic_kib "$big")x; iperf3 (tinytail / tailscaled Mbit/s): $(echo "scale=2; $(median ${vals[tinytail/$big/mbit_s]}) / $(median ${vals[tailscaled/$big/mbit_s]})" | bc | sed 's/^\./0./')x"
else
  line+=", with traffic: not measured"
fi
echo "$line"
