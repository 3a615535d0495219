#!/usr/bin/env bash
# build.rs must refuse a bad board file with a message naming the file, the field and what is
# expected: a misspelled field, a missing field, a bad value, and a board for another target.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tinytail/target/host}"
pass=0

# expect_failure NAME SED-EXPR GREP...: the build with the edited board must fail with every GREP.
expect_failure() {
  local name="$1" edit="$2"; shift 2
  local file="$tmp/$name.toml"
  sed -e "s/^name = \"generic-linux\"/name = \"$name\"/" -e "$edit" "$root/board-configs/generic-linux.toml" >"$file"
  local out
  if out="$(cd "$root" && TINYTAIL_BOARD="$file" cargo build --quiet -p tinytail 2>&1)"; then
    echo "board-config: $name: build succeeded, expected a failure"; exit 1
  fi
  for want in "$file" "$@"; do
    grep -qF -- "$want" <<<"$out" || { echo "board-config: $name: message lacks \"$want\":"; echo "$out"; exit 1; }
  done
  echo "board-config: $name refused: $(grep -m1 -E 'unknown field|missing field|field `|invalid' <<<"$out" | sed 's/^ *//')"
  pass=$((pass + 1))
}

expect_failure misspelled 's/^lan_interface =/lan_interfce =/' 'unknown field `lan_interfce`' 'lan_interface'
expect_failure missing '/^tun_name =/d' 'missing field `tun_name`'
expect_failure bad-listen 's/^listen = .*/listen = "192.168.1.1"/' 'field `web.listen`' 'ADDR:PORT'
# `datapath.packet_buffers` was removed (the datapath never used it): an old board file says so.
expect_failure old-datapath '$a [datapath]\npacket_buffers = 64' 'unknown field `datapath`'
expect_failure bad-backend 's/^backend = .*/backend = "nand"/' 'unknown variant `nand`' 'file'
expect_failure wrong-target 's/^target = .*/target = "mipsel-unknown-linux-musl"/' 'field `board.target`' 'TINYTAIL_BOARD'
expect_failure long-ifname 's/^tun_name = .*/tun_name = "tailscale0123456789"/' 'field `net.tun_name`'

# Every shipped board parses (for its own target, build.rs is run by the cross builds; here we
# check the files are complete by building each one as if it were for the host).
for f in "$root"/board-configs/*.toml; do
  b="$(basename "$f" .toml)"
  sed -e "s/^target = .*/target = \"$(rustc -vV | sed -n 's/^host: //p')\"/" "$f" >"$tmp/$b.toml"
  (cd "$root" && TINYTAIL_BOARD="$tmp/$b.toml" cargo build --quiet -p tinytail) || { echo "board-config: shipped board $b does not build"; exit 1; }
  pass=$((pass + 1))
done
echo "board-config: $pass checks passed"
