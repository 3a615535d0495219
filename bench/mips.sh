#!/usr/bin/env bash
# bench/mips: per-packet cost of our datapath against wireguard-go's own benchmark, both built
# for mipsel (soft-float, as MT7621 needs) and run under qemu-mipsel -cpu 24Kc in the same run,
# alternating rounds.
#
# Emulated: qemu-user translates MIPS instructions to x86, so the numbers are a proxy for
# instruction cost on a MIPS core, not the speed of a real router.
#
# Ours:   core/examples/wg_bench.rs: route + encrypt + decrypt + cryptokey check + filter, one
#         thread, 1400-byte TCP packets and 32-byte pings.
# Theirs: BenchmarkThroughput from the wireguard-go fork tailscaled uses (version pinned by
#         tests/interop/go.mod): two in-memory devices, 32-byte pings, its goroutine pipeline.
#         The comparable row is ping-32; tcp-1400 shows what a full-size packet costs us.
#   bench/mips.sh            3 rounds, 20000 packets each
#   bench/mips.sh --smoke    1 round, 500 packets (what the test command runs)
set -euo pipefail
shopt -s inherit_errexit
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

rounds=3 packets=20000
[[ "${1:-}" == "--smoke" ]] && rounds=1 packets=500
QEMU=(qemu-mipsel-static -cpu 24Kc)
target=mipsel-unknown-linux-musl
cross_dir="${TINYTAIL_CROSS_TARGET_DIR:-$HOME/.cache/tinytail/target/cross}"

TINYTAIL_CROSS_TARGET_DIR="$cross_dir" scripts/cargo-cross build --release --quiet \
  -p tinytail-core --features wg --example wg_bench --target "$target" >&2
ours="$cross_dir/$target/release/examples/wg_bench"

wg_version="$(cd tests/interop && go list -m -f '{{.Version}}' github.com/tailscale/wireguard-go)"
theirs="$HOME/.cache/tinytail/bench-mips/wireguard-go-device-$wg_version-mipsle.test"
if [[ ! -x "$theirs" ]]; then
  mkdir -p "$(dirname "$theirs")"
  echo "bench/mips: building wireguard-go's device benchmark for mipsle (first time takes a minute)" >&2
  (cd tests/interop && CGO_ENABLED=0 GOOS=linux GOARCH=mipsle GOMIPS=softfloat \
    go test -c -o "$theirs.tmp" github.com/tailscale/wireguard-go/device)
  mv "$theirs.tmp" "$theirs"
fi

declare -A samples
for ((r = 1; r <= rounds; r++)); do
  while read -r _ name _ ns _; do
    samples[$name]+="${ns#ns_per_packet=} "
  done < <("${QEMU[@]}" "$ours" "$packets")
  ns="$("${QEMU[@]}" "$theirs" -test.run '^$' -test.bench '^BenchmarkThroughput$' \
    -test.benchtime "${packets}x" -test.cpu 1 | awk '/^BenchmarkThroughput/ {print $3}')"
  samples[wireguard-go-ping-32]+="$ns "
done

stats() { # "a b c" -> "min median max"
  tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{v[NR] = $1} END {print v[1], v[int((NR + 1) / 2)], v[NR]}'
}
printf '| %-22s | %12s | %12s | %12s | %12s |\n' "datapath (qemu mipsel)" "min ns/pkt" "median" "max" "packets/s"
printf '|%s|%s|%s|%s|%s|\n' "------------------------" "--------------" "--------------" "--------------" "--------------"
for name in tcp-1400 ping-32 wireguard-go-ping-32; do
  read -r min med max <<<"$(stats "${samples[$name]}")"
  label="tinytail $name"
  [[ "$name" == wireguard-go-* ]] && label="$name"
  printf '| %-22s | %12s | %12s | %12s | %12.0f |\n' "$label" "$min" "$med" "$max" "$(awk -v n="$med" 'BEGIN {print 1e9 / n}')"
done
read -r _ ours_med _ <<<"$(stats "${samples[ping-32]}")"
read -r _ theirs_med _ <<<"$(stats "${samples[wireguard-go-ping-32]}")"
echo
echo "rounds=$rounds packets=$packets wireguard-go=$wg_version (GOMIPS=softfloat, -test.cpu 1)"
awk -v a="$theirs_med" -v b="$ours_med" \
  'BEGIN {printf "ratio (ping-32 packets/s, tinytail / wireguard-go, medians): %.2fx\n", a / b}'
