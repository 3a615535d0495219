#!/usr/bin/env bash
# bench/netmap: time and memory to apply a 1000-peer map response and then a 100-peer delta,
# tinytail against tailscaled in the same run, in the netns rig (root).
#
# Control is tailscale.com's testcontrol (tinytail-interop control, HTTPS + DERP on the rig's
# control host). tailscaled joins from the client host, tinytail from the router host; each then
# lists one peer (the other). One round, per client, one client at a time (the other idles):
#   full:  control sends that client one full map response with N fake peers more (N = 1000)
#   delta: then one map response with only PeersChanged: D new fake peers (D = 100)
#   reset: then a full map response without the fake peers (untimed)
# A time runs from just before the push to the first `tailscale status --json` / `tinytail
# status --json` that lists every peer; the status commands are polled back to back, so a time
# includes up to one status call (their cost is printed under the table). RSS is VmRSS from
# /proc/PID/status before the push and after each step; HWM is VmHWM after the delta (both KiB).
# Clients alternate which goes first in each round. Round 1 starts from the freshly joined
# process; later rounds start from what the previous round left (neither Go's heap nor tinytail's
# allocator hands all of it back after the reset), hence the spread of rss_before.
#   bench/netmap.sh            5 rounds, N=1000, D=100
#   bench/netmap.sh --smoke    1 round, N=10, D=10 (what the test command runs; seconds)
# TINYTAIL_BIN overrides the release build under test.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
smoke=0
[[ "${1:-}" == "--smoke" ]] && smoke=1
if ((smoke)); then rounds=1 full=10 delta=10; else rounds=5 full=1000 delta=100; fi

source tests/rig/rig.sh
source bench/lib.sh
bench_header bench/netmap.sh "$@"
TT_BIN="$(bench_tinytail_bin)"

rig_up
bench_control_start 0
bench_ts_join cli tailscaled
bench_tt_join rtr tinytail
clients=(tailscaled tinytail)
for c in "${clients[@]}"; do
  rig_wait_for 30 "$c lists its one peer" bench_has_peers "$c" 1 || rig_fail "$c does not list the other client"
done
echo "tinytail: $("$TT_BIN" version)"
echo "tailscaled, tailscale CLI and testcontrol: tailscale.com $("$(rig_peers)/tinytail-interop" version) (tests/interop/go.mod)"
sleep 2  # let both settle after joining

declare -A vals  # "client/metric" -> space-separated values over rounds
note() { vals["$1/$2"]+="$3 "; }
ms() { echo "$1 * 1000" | bc | xargs printf '%.1f'; }
full_bytes="" delta_bytes=""

for ((r = 1; r <= rounds; r++)); do
  order=("${clients[@]}")
  ((r % 2 == 0)) && order=(tinytail tailscaled)
  for c in "${order[@]}"; do
    pid="${BENCH_PID[$c]}"
    read -r rss _ < <(bench_mem "$pid"); note "$c" rss_before_kib "$rss"
    t0="$(bench_now)"; read -r want full_bytes < <(bench_push "$c" full "$full")
    [[ -n "$want" ]] || rig_fail "round $r: push to $c failed"
    t="$(bench_wait_peers "$c" "$want" 120 "$t0")" || rig_fail "round $r: $c full map"
    note "$c" full_ms "$(ms "$t")"
    read -r rss _ < <(bench_mem "$pid"); note "$c" rss_after_full_kib "$rss"
    t0="$(bench_now)"; read -r want delta_bytes < <(bench_push "$c" delta "$delta")
    [[ -n "$want" ]] || rig_fail "round $r: push to $c failed"
    t="$(bench_wait_peers "$c" "$want" 120 "$t0")" || rig_fail "round $r: $c delta"
    note "$c" delta_ms "$(ms "$t")"
    read -r rss hwm < <(bench_mem "$pid"); note "$c" rss_after_delta_kib "$rss"; note "$c" hwm_kib "$hwm"
    # What one poll costs at this size (the resolution of the times above).
    t0="$(bench_now)"; bench_peers "$c" >/dev/null; note "$c" status_call_ms "$(ms "$(echo "$(bench_now) - $t0" | bc)")"
    t0="$(bench_now)"; read -r want _ < <(bench_push "$c" reset)
    bench_wait_peers "$c" "$want" 120 "$t0" >/dev/null || rig_fail "round $r: $c reset"
  done
done

printf '| %-26s | %-10s | %10s | %10s | %10s |\n' metric client min median max
printf '|%s|%s|%s|%s|%s|\n' "----------------------------" "------------" "------------" "------------" "------------"
declare -A med
for m in full_ms delta_ms rss_before_kib rss_after_full_kib rss_after_delta_kib hwm_kib status_call_ms; do
  for c in tinytail tailscaled; do
    # shellcheck disable=SC2086
    read -r lo mid hi < <(bench_stats ${vals[$c/$m]})
    med["$c/$m"]="$mid"
    label="$m"
    case "$m" in full_ms) label="apply_full_${full}_ms" ;; delta_ms) label="apply_delta_${delta}_ms" ;; esac
    printf '| %-26s | %-10s | %10s | %10s | %10s |\n' "$label" "$c" "$lo" "$mid" "$hi"
  done
done
echo
echo "rounds=$rounds full=+$full peers (map response ${full_bytes} B JSON before zstd) delta=+$delta peers (${delta_bytes} B); times include up to one status call (status_call_ms)"
ratio() { echo "scale=2; ${med[tailscaled/$1]} / ${med[tinytail/$1]}" | bc | sed 's/^\./0./'; }
echo "ratio (tailscaled / tinytail, medians): full apply $(ratio full_ms)x, delta apply $(ratio delta_ms)x, RSS after delta $(ratio rss_after_delta_kib)x, HWM $(ratio hwm_kib)x"
