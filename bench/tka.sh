#!/usr/bin/env bash
# Tailnet-lock timings, two parts.
#
# 1. core/examples/tka_bench.rs: verifying a 1000-AUM chain from genesis, reopening it from the
#    store, one signature check per kind, and filtering a 1000-peer netmap under lock
#    (filter_peers over 1000 Direct-signed peers, and over 1000 unsigned ones); on the host and
#    under qemu-armv7 (emulation on this host: for comparing builds, not router speed). The
#    filter rows have a tailscale.com column: `tinytail-interop tka-filter-bench`, the per-peer
#    work of tailscaled's tkaFilterNetmapLocked (NodeKeyAuthorizedWithDetails per signed peer,
#    a length check per unsigned one, our own signature; no rotation tracker, no log lines) on
#    the same host; ratio = tailscale.com / tinytail host. The release profile builds
#    curve25519-dalek at opt-level 3 (root Cargo.toml); at the workspace's "z" it was ~60x
#    slower on x86_64 and ~1.6x on armv7.
# 2. Sync of a 1000-AUM chain, end to end, tinytail vs tailscaled (netns rig, root). Per round,
#    from scratch: testctl (tests/interop/cmd/testctl, HTTPS + DERP on the control host), a
#    tinytail (release build) on the router host and a tailscaled on the client host, both joined
#    with lock off. Then `POST /debug/tka/grow?aums=1000`: testctl turns lock on with a 1000-AUM
#    chain of its own (trusting both nodes' keys, both nodes signed) and tells both; each node
#    bootstraps from the genesis and fetches the 999 other AUMs with sync/offer, at the same time.
#      sync_ms     from just before the grow call until `lock status --json` shows testctl's head
#                  (polled every 50 ms, each node in its own loop; so it includes testctl building
#                  the chain, grow_ms under the table, and up to one poll interval + status call)
#      peak_kib    VmHWM after the sync: the process's peak over its whole life (join + sync),
#                  which is why every round starts both agents fresh
#      hwm_join_kib  VmHWM just before the grow call (the join's share of the peak)
#      rss_kib     VmRSS 1 s after both synced
#    Cells: median (min-max) over the rounds; ratio = tailscaled / tinytail medians.
#   bench/tka.sh            both parts, 3 rounds (root)
#   bench/tka.sh --smoke    part 1 on the host only (what the test command runs; no root)
# TINYTAIL_BIN overrides the release build under test (else `cargo build --release` into
# ${CARGO_TARGET_DIR:-target}).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
smoke=0
[[ "${1:-}" == "--smoke" ]] && smoke=1
rounds="${TKA_ROUNDS:-3}" aums=1000

run_host() { cargo run -q --release -p tinytail-core --example tka_bench --features std; }
run_armv7() {
  scripts/cargo-cross run -q --release -p tinytail-core --example tka_bench --features std \
    --target armv7-unknown-linux-musleabihf 2>/dev/null
}
declare -A col
collect() { # name; the bench output on stdin (not a pipeline: the array must stay in this shell)
  while read -r k v; do col["$1/$k"]="$v"; done
}

if ((!smoke)); then
  ((EUID == 0)) || { echo "bench/tka: the end-to-end part needs root (the netns rig); --smoke runs without" >&2; exit 1; }
  source tests/rig/rig.sh
  source bench/lib.sh
  bench_needs tka jq curl bc
  bench_header bench/tka.sh "$@"
fi

collect host < <(run_host)
if ((!smoke)); then
  collect armv7 < <(run_armv7)
  collect go < <("$(rig_peers)/tinytail-interop" tka-filter-bench)
fi
printf '| %-23s | %12s | %12s | %14s | %15s |\n' metric host qemu-armv7 "tailscale.com" "ratio (Go/host)"
printf '|%s|%s|%s|%s|%s|\n' "-------------------------" "--------------" "--------------" "----------------" "-----------------"
for m in chain_1000_aums_ms reopen_1000_aums_ms verify_zip215_us verify_go_stdlib_us node_key_direct_us node_key_rotation_us filter_1000_peers_ms filter_1000_unsigned_ms; do
  [[ -n "${col[host/$m]:-}" ]] || { echo "bench/tka: no $m from the host run" >&2; exit 1; }
  go="-" ratio="-"
  if [[ "$m" == filter_* ]]; then
    go="${col[go/$m]:-(smoke)}"
    [[ -n "${col[go/$m]:-}" ]] && ratio="$(echo "scale=2; ${col[go/$m]} / ${col[host/$m]}" | bc | sed 's/^\./0./')x"
  fi
  printf '| %-23s | %12s | %12s | %14s | %15s |\n' "$m" "${col[host/$m]}" "${col[armv7/$m]:-(smoke)}" "$go" "$ratio"
done
((smoke)) && exit 0

# --- part 2: sync of a 1000-AUM chain in the rig --------------------------------------------
TT_BIN="$(CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}" bench_tinytail_bin)"
echo "tinytail: $("$TT_BIN" version)"
echo "tailscaled, tailscale CLI and testctl: tailscale.com $("$(rig_peers)/tinytail-interop" version) (tests/interop/go.mod)"
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
rig_up
authkey="tskey-auth-bench$RIG"

declare -A vals # "kind/metric" -> values over rounds
note() { vals["$1/$2"]+="$3 "; }
ms() { echo "$1 * 1000" | bc | xargs printf '%.0f'; }
# wait_head NAME HEAD T0 OUT: polls NAME's lock head every 50 ms for up to 120 s; writes the
# seconds since T0 to OUT once it is HEAD.
wait_head() {
  local end=$((SECONDS + 120))
  while ((SECONDS < end)); do
    if [[ "$(bench_lock_head "$1" 2>/dev/null)" == "$2" ]]; then
      echo "$(bench_now) - $3" | bc >"$4"
      return 0
    fi
    sleep 0.05
  done
  return 1
}
both_registered() {
  rig_testctl /debug/nodes | jq -e 'length == 2 and all(.[]; .online and (.nlkey | startswith("tlpub:")))' >/dev/null
}

for ((r = 1; r <= rounds; r++)); do
  rig_testctl_start -auth-key "$authkey"
  ctl_pid="$RIG_LAST_PID"
  tt="tt$r" ts="ts$r"
  bench_tt_join rtr "$tt" --auth-key "$authkey"
  bench_ts_join cli "$ts" --auth-key="$authkey"
  for c in "$tt" "$ts"; do
    rig_wait_for 30 "$c lists its one peer" bench_has_peers "$c" 1 || rig_fail "round $r: $c does not list the other node"
  done
  rig_wait_for 10 "both nodes registered with tlpubs" both_registered ||
    rig_fail "round $r: testctl /debug/nodes: $(rig_testctl /debug/nodes)"
  [[ -z "$(bench_lock_head "$tt")" && -z "$(bench_lock_head "$ts")" ]] || rig_fail "round $r: lock on before grow"
  for c in "$tt" "$ts"; do note "${BENCH_KIND[$c]}" hwm_join_kib "$(bench_mem "${BENCH_PID[$c]}" | cut -d' ' -f2)"; done

  t0="$(bench_now)"
  grow="$(rig_exec ctl curl -sf --cacert "$RIG_CA" -X POST "$TC_URL/debug/tka/grow?aums=$aums")" ||
    rig_fail "round $r: grow failed: $(tail -n 3 "$RIG_DIR/testctl.log")"
  note testctl grow_ms "$(ms "$(echo "$(bench_now) - $t0" | bc)")"
  head="$(jq -r .head <<<"$grow")"
  [[ "$(jq -r .aums <<<"$grow")" == "$aums" && -n "$head" ]] || rig_fail "round $r: grow answered $grow"
  wait_head "$tt" "$head" "$t0" "$RIG_DIR/sync-$tt" & w_tt=$!
  wait_head "$ts" "$head" "$t0" "$RIG_DIR/sync-$ts" & w_ts=$!
  for c in tt ts; do
    w="w_$c" name="${!c}"
    wait "${!w}" || rig_fail "round $r: $name (${BENCH_KIND[$name]}) did not reach head $head in 120 s: $(bench_lock_json "$name" | jq -c '{Enabled, Head}'); $(tail -n 5 "$RIG_DIR/$name.log")"
  done
  sleep 1
  for c in "$tt" "$ts"; do
    kind="${BENCH_KIND[$c]}"
    note "$kind" sync_ms "$(ms "$(cat "$RIG_DIR/sync-$c")")"
    read -r rss hwm < <(bench_mem "${BENCH_PID[$c]}")
    note "$kind" peak_kib "$hwm"
    note "$kind" rss_kib "$rss"
    # The lock works, not just the head: the node trusts its signature.
    bench_lock_json "$c" | jq -e '.NodeKeySigned == true' >/dev/null ||
      rig_fail "round $r: $c ($kind) at the head but not signed: $(bench_lock_json "$c" | jq -c '{Head, NodeKeySigned}')"
    t1="$(bench_now)"; bench_lock_head "$c" >/dev/null; note "$kind" status_call_ms "$(ms "$(echo "$(bench_now) - $t1" | bc)")"
  done
  bench_stop "$tt"; bench_stop "$ts"; bench_kill "$ctl_pid"
done

echo
echo "sync of a $aums-AUM chain from testctl (tinytail vs tailscaled, same run, both syncing at once)"
median() { bench_stats "$@" | cut -d' ' -f2; }
cell() { # kind metric -> "median (min-max)"
  local s
  # shellcheck disable=SC2086
  s="$(bench_stats ${vals[$1/$2]})"
  read -r lo mid hi <<<"$s"
  echo "$mid ($lo-$hi)"
}
printf '| %-16s | %-20s | %-20s | %19s |\n' metric tinytail tailscaled "ratio (ts/tinytail)"
printf '|%s|%s|%s|%s|\n' "------------------" "----------------------" "----------------------" "---------------------"
for m in sync_ms peak_kib hwm_join_kib rss_kib status_call_ms; do
  # shellcheck disable=SC2086
  ratio="$(echo "scale=2; $(median ${vals[tailscaled/$m]}) / $(median ${vals[tinytail/$m]})" | bc | sed 's/^\./0./')x"
  printf '| %-16s | %-20s | %-20s | %19s |\n' "$m" "$(cell tinytail "$m")" "$(cell tailscaled "$m")" "$ratio"
done
echo
echo "rounds=$rounds; cells: median (min-max); testctl's grow call (building the chain, inside sync_ms): $(cell testctl grow_ms) ms; polled every 50 ms"
echo "load at start: $load_start on $(nproc) cpus"
