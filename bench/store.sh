#!/usr/bin/env bash
# bench/store: the flash store's proofs at full size, optimized, and their figures:
#   power cuts (sequences, cut points, failures), bit rot (flips detected, rot returned),
#   wear (erase-count spread, write amplification for 100k config updates on 4 blocks),
#   and a replay of the fuzz corpus. About 4 minutes on the host (most of it the power cuts).
# TINYTAIL_TEST_SCALE overrides the size (1 = full). Under qemu use the README's test command
# (debug build, reduced scale) instead.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

cargo test --release -p tinytail-hal \
  --test store_power_cut --test store_bit_rot --test store_wear --test store_fuzz_corpus -- --nocapture 2>&1 |
  tee /dev/stderr | grep -E '^(power-cut|bit-rot|wear|fuzz-corpus):'
