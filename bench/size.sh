#!/usr/bin/env bash
# bench/size: stripped size of tinytail per target against tailscaled+CLI combined, plus the
# gzip -9 and xz -9e sizes (what a squashfs image pays, roughly). No UPX on either side.
#
# tailscaled is built from the tailscale.com version pinned in tests/interop/go.mod with the
# OpenWrt package's build tags (ts_include_cli + its ts_omit_* list), -trimpath, -ldflags "-s -w",
# CGO off, and GOARCH/GOARM/GOMIPS per target (mipsel: softfloat, as MT7621 needs).
#   bench/size.sh            all four targets
#   bench/size.sh --smoke    x86_64 only (what the test command runs; cached after the first time)
set -euo pipefail
shopt -s inherit_errexit  # a failed build inside $(...) must stop the run
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

OPENWRT_TAGS="ts_include_cli,ts_omit_aws,ts_omit_bird,ts_omit_completion,ts_omit_kube,ts_omit_systray,ts_omit_taildrop,ts_omit_tap,ts_omit_tpm,ts_omit_relayserver,ts_omit_capture,ts_omit_syspolicy,ts_omit_debugeventbus,ts_omit_webclient"
# rust target | GOARCH | extra Go env | tinytail binary
TARGETS=(
  "armv7-unknown-linux-musleabihf|arm|GOARM=7"
  "aarch64-unknown-linux-musl|arm64|"
  "mipsel-unknown-linux-musl|mipsle|GOMIPS=softfloat"
  "x86_64-unknown-linux-gnu|amd64|"
)
smoke=0
[[ "${1:-}" == "--smoke" ]] && smoke=1

host_dir="${CARGO_TARGET_DIR:-$HOME/.cache/tinytail/target/host}"
cross_dir="${TINYTAIL_CROSS_TARGET_DIR:-$HOME/.cache/tinytail/target/cross}"
ts_version="$(cd tests/interop && go list -m -f '{{.Version}}' tailscale.com)"
ts_cache="$HOME/.cache/tinytail/bench-size/tailscale-$ts_version-$(echo "$OPENWRT_TAGS" | sha256sum | cut -c1-8)"
mkdir -p "$ts_cache"

tinytail_bin() {
  local t="$1"
  if [[ "$t" == x86_64-unknown-linux-gnu ]]; then
    CARGO_TARGET_DIR="$host_dir" cargo build --release --quiet >&2
    echo "$host_dir/release/tinytail"
  else
    TINYTAIL_CROSS_TARGET_DIR="$cross_dir" scripts/cargo-cross build --release --quiet --target "$t" >&2
    echo "$cross_dir/$t/release/tinytail"
  fi
}

tailscale_bin() {
  local goarch="$1" extra="$2" out="$ts_cache/tailscaled-$1${2:+-${2//=/-}}"
  if [[ ! -x "$out" ]]; then
    echo "bench/size: building tailscaled+CLI for $goarch $extra (first time takes minutes)" >&2
    (cd tests/interop && env CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" $extra \
      go build -trimpath -tags "$OPENWRT_TAGS" -ldflags "-s -w" -o "$out.tmp" tailscale.com/cmd/tailscaled)
    mv "$out.tmp" "$out"
  fi
  echo "$out"
}

sizes() { # FILE -> "raw gzip xz"
  echo "$(stat -c %s "$1") $(gzip -9c "$1" | wc -c) $(xz -9e -T1 -c "$1" | wc -c)"
}

printf '| %-31s | %-10s | %10s | %10s | %10s | %7s |\n' target binary stripped gzip-9 xz-9e ratio
printf '|%s|%s|%s|%s|%s|%s|\n' "---------------------------------" "------------" "------------" "------------" "------------" "---------"
ratios=()
for row in "${TARGETS[@]}"; do
  IFS='|' read -r t goarch extra <<<"$row"
  ((smoke == 0)) || [[ "$t" == x86_64-unknown-linux-gnu ]] || continue
  tt="$(tinytail_bin "$t")"
  ts="$(tailscale_bin "$goarch" "$extra")"
  read -r tt_raw tt_gz tt_xz <<<"$(sizes "$tt")"
  read -r ts_raw ts_gz ts_xz <<<"$(sizes "$ts")"
  ratio="$(awk -v a="$ts_raw" -v b="$tt_raw" 'BEGIN {printf "%.1fx", a / b}')"
  ratios+=("$t $ratio")
  printf '| %-31s | %-10s | %10s | %10s | %10s | %7s |\n' "$t" tinytail "$tt_raw" "$tt_gz" "$tt_xz" ""
  printf '| %-31s | %-10s | %10s | %10s | %10s | %7s |\n' "" tailscaled "$ts_raw" "$ts_gz" "$ts_xz" "$ratio"
done
echo
echo "tailscaled: tailscale.com $ts_version, tags $OPENWRT_TAGS"
echo "ratio (tailscaled+CLI stripped / tinytail stripped): ${ratios[*]}"
