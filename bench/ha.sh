#!/usr/bin/env bash
# bench/ha: two routers for one LAN (issue #16 scenario 7), tinytail pair vs tailscaled pair,
# alternating which goes first in each run. A run is one tests/e2e/ha.sh (its own rig, Headscale,
# client and the two routers, see there): the figures are its two gaps in the client's 10/s
# pings to the LAN host, from the primary's kill -9 (and later from the new primary's WAN cut)
# to replies through the other router. Most of each gap is Headscale noticing the router gone;
# ha.sh prints the breakdown per run.
#   bench/ha.sh          10 runs per router kind
#   bench/ha.sh N        N runs
# TINYTAIL_BIN overrides the release build under test. Headscale's HA probe is set as in the test
# (interval 5 s, timeout 2 s); HA_PROBE_INTERVAL=10s HA_PROBE_TIMEOUT=5s HA_BOUND_MS=0 measures
# with Headscale's defaults (no bound: a WAN cut then costs up to ~15.2 s for either router).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
runs="${1:-10}"

source tests/rig/rig.sh
source bench/lib.sh
bench_header bench/ha.sh "$@"
TINYTAIL_BIN="$(bench_tinytail_bin)"
export TINYTAIL_BIN
echo "tinytail: $("$TINYTAIL_BIN" version)"
echo "Headscale HA probe: interval ${HA_PROBE_INTERVAL:-5s}, timeout ${HA_PROBE_TIMEOUT:-2s}; bound on each gap: ${HA_BOUND_MS:-15000} ms (0: none)"

declare -A vals
for run in $(seq "$runs"); do
  order=(tinytail tailscaled)
  ((run % 2)) || order=(tailscaled tinytail)
  for v in "${order[@]}"; do
    out="$(HA_ROUTERS="$v" tests/e2e/ha.sh 2>&1)" || { echo "$out" | tail -n 20; echo "bench/ha: run $run ($v) failed" >&2; exit 1; }
    grep '^ha: ok' <<<"$out" | sed "s/^/run $run: /"
    figures="$(sed -n 's/^ha: figures [a-z]* kill=\([0-9]*\) cut=\([0-9]*\)$/\1 \2/p' <<<"$out")"
    read -r kill cut <<<"$figures"
    [[ -n "$kill" && -n "$cut" ]] || { echo "bench/ha: run $run ($v) printed no figures" >&2; exit 1; }
    vals[$v/kill]+="$kill " vals[$v/cut]+="$cut "
  done
done

echo
printf '| %-10s | %-24s | %-24s |\n' router "kill -9: min/median/max ms" "WAN cut: min/median/max ms"
printf '|%s|%s|%s|\n' ------------ -------------------------- --------------------------
for v in tinytail tailscaled; do
  # shellcheck disable=SC2086
  printf '| %-10s | %-24s | %-24s |\n' "$v" "$(bench_stats ${vals[$v/kill]} | tr ' ' /)" "$(bench_stats ${vals[$v/cut]} | tr ' ' /)"
done
