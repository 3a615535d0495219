#!/usr/bin/env bash
# Tailnet-lock timings (core/examples/tka_bench.rs): verifying a 1000-AUM chain from genesis,
# reopening it from the store, and one signature check per kind; on the host and under
# qemu-armv7 (emulation on this host: for comparing builds, not router speed). The release
# profile builds curve25519-dalek at opt-level 3 (root Cargo.toml); at the workspace's "z" it was
# ~60x slower on x86_64 and ~1.6x on armv7.
#   bench/tka.sh            host and qemu-armv7
#   bench/tka.sh --smoke    host only (what the test command runs)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
smoke=0
[[ "${1:-}" == "--smoke" ]] && smoke=1

run_host() { cargo run -q --release -p tinytail-core --example tka_bench --features std; }
run_armv7() {
  scripts/cargo-cross run -q --release -p tinytail-core --example tka_bench --features std \
    --target armv7-unknown-linux-musleabihf 2>/dev/null
}
declare -A col
collect() { # name; the bench output on stdin (not a pipeline: the array must stay in this shell)
  while read -r k v; do col["$1/$k"]="$v"; done
}
collect host < <(run_host)
((smoke)) || collect armv7 < <(run_armv7)
printf '| %-22s | %12s | %12s |\n' metric host qemu-armv7
printf '|%s|%s|%s|\n' "------------------------" "--------------" "--------------"
for m in chain_1000_aums_ms reopen_1000_aums_ms verify_zip215_us verify_go_stdlib_us node_key_direct_us node_key_rotation_us; do
  [[ -n "${col[host/$m]:-}" ]] || { echo "bench/tka: no $m from the host run" >&2; exit 1; }
  printf '| %-22s | %12s | %12s |\n' "$m" "${col[host/$m]}" "${col[armv7/$m]:-(smoke)}"
done
