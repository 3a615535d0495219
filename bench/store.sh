#!/usr/bin/env bash
# bench/store: the flash store's proofs at full size, optimized, with their figures:
#   power cuts (sequences, cut points, failures), bit rot (flips detected, rot returned),
#   wear (erase-count spread, write amplification for 100k config updates on 4 blocks).
#   bench/store.sh                  on the host (about 4 minutes)
#   bench/store.sh --target TRIPLE  under qemu-user via scripts/cargo-cross (scale 0.05)
# TINYTAIL_TEST_SCALE overrides the size (1 = full).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

tests=(--test store_power_cut --test store_bit_rot --test store_wear)
if [[ "${1:-}" == "--target" ]]; then
  target="${2:?--target needs a triple}"
  export TINYTAIL_TEST_SCALE="${TINYTAIL_TEST_SCALE:-0.05}"
  cargo=(scripts/cargo-cross test --release -p tinytail-hal --target "$target")
else
  cargo=(cargo test --release -p tinytail-hal)
fi
"${cargo[@]}" "${tests[@]}" -- --nocapture 2>&1 | tee /dev/stderr | grep -E '^(power-cut|bit-rot|wear):' 
