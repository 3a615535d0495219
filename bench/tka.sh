#!/usr/bin/env bash
# Tailnet-lock timings on the host and under qemu-armv7 (core/examples/tka_bench.rs): verifying
# a 1000-AUM chain from genesis, reopening it from the store, and one signature check per kind.
# Each runs twice: with the workspace release profile (opt-level "z"), and with curve25519-dalek
# alone at opt-level 3, the per-package override we recommend (see the issue note).
# qemu-user numbers are emulation on this host, for comparing builds, not router speed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
fast=(--config 'profile.release.package.curve25519-dalek.opt-level=3')
run_host() { cargo run -q --release -p tinytail-core --example tka_bench --features std "$@"; }
run_armv7() {
  scripts/cargo-cross run -q --release -p tinytail-core --example tka_bench --features std \
    --target armv7-unknown-linux-musleabihf "$@" 2>/dev/null
}
declare -A col
collect() { # name; the bench output on stdin (not a pipeline: the array must stay in this shell)
  while read -r k v; do col["$1/$k"]="$v"; done
}
collect host < <(run_host)
collect host-o3 < <(run_host "${fast[@]}")
collect armv7 < <(run_armv7)
collect armv7-o3 < <(run_armv7 "${fast[@]}")
printf '%-22s %14s %14s %14s %14s\n' metric host host+o3-curve qemu-armv7 qemu-armv7+o3
for m in chain_1000_aums_ms reopen_1000_aums_ms verify_zip215_us verify_go_stdlib_us node_key_direct_us node_key_rotation_us; do
  printf '%-22s %14s %14s %14s %14s\n' "$m" "${col[host/$m]:-?}" "${col[host-o3/$m]:-?}" "${col[armv7/$m]:-?}" "${col[armv7-o3/$m]:-?}"
done
