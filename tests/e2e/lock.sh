#!/usr/bin/env bash
# End-to-end proof of issue #14 (tailnet lock), tailscaled part: our test control with tailnet lock
# (tests/interop/cmd/testctl, HTTPS + DERP on the rig's control host) and three real tailscaled
# nodes A, B and C (own namespaces on the WAN bridge, 198.18.0.21-23) driven with the pinned
# `tailscale lock` CLI. Each check prints what it verified; the first failure stops the run with
# a non-zero exit. tinytail's part (it as a signing and enforcing node) comes later; TINYTAIL_BIN
# is taken already so the test command passes it the same way as to the other stages.
#
#   tests/e2e/lock.sh           (root)
#
# Checks, in order:
#   1  before init, `tailscale lock log` on A exits non-zero with "Tailnet Lock is not enabled"
#   2  A and B joined: `lock init --gen-disablements 2 --confirm TLPUB_A TLPUB_B` on A prints two
#      disablement secrets (kept in $RIG_DIR, 0600, for step 5); A and B show ENABLED and this node
#      accessible (signed); testctl's signatures verify; A pings B (ICMP over the tailnet)
#   3  C joins unsigned: A lists C among the locked-out nodes and cannot reach C; C shows itself
#      LOCKED OUT; once no node has changed for 3 s (testctl's quiet_ms), `lock sign NODEKEY_C` on
#      A: A reaches C within 5 s (so the sign itself sent the map update)
#   4  `lock add TLPUB_C` on A: B sees 3 trusted keys; `lock remove --re-sign=false TLPUB_C`: back
#      to 2 on B; `lock log --json` on A and B give the same AUM hashes (genesis, add, remove), the newest being testctl's head
#   5  `lock disable` with a wrong secret fails and changes nothing; with a secret from init: A and
#      B show NOT enabled within 10 s, and testctl sends Disabled
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
RIG="tt$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
export RIG

pass() { printf 'lock: ok  %s\n' "$*"; }
# Output is captured before grep -q looks at it: under pipefail, `cmd | grep -q` fails whenever
# grep's early exit makes cmd die of SIGPIPE.

(
  source "$here/../rig/rig.sh"
  source "$here/../../bench/lib.sh" # bench_now
  rig_up
  rig_testctl_start -auth-key "tskey-auth-rig$RIG"

  # --- setup: nodes a, b, c on the WAN bridge --------------------------------------------------
  n=21
  for name in a b c; do
    rig_add_ns "$name"
    rig_attach "$name" eth0 "p-$name" "198.18.0.$n/24"
    n=$((n + 1))
  done
  # up NAME: `tailscale up` to testctl with the right auth key (tailscaled NAME already running).
  up() {
    rig_ts "$1" up --login-server="$TC_URL" --auth-key="tskey-auth-rig$RIG" --hostname="$1" \
      --accept-dns=false --netfilter-mode=off --timeout=60s >/dev/null ||
      rig_fail "tailscale up ($1) failed: $(tail -n 5 "$RIG_DIR/$1.log")"
  }
  join() { rig_tailscaled_start "$1" "$1"; up "$1"; }
  lock_json() { rig_ts "$1" lock status --json; }
  tlpub() { lock_json "$1" | jq -r .PublicKey; }
  node_ip() { rig_ts "$1" ip -4; }
  # can_ping FROM IP: one ICMP echo over the tailnet from FROM's namespace.
  can_ping() { rig_exec "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1; }

  join a
  # A wrong auth key is refused (and says why).
  rig_tailscaled_start c c
  out="$(rig_ts c up --login-server="$TC_URL" --auth-key=tskey-auth-wrong --hostname=c \
    --accept-dns=false --netfilter-mode=off --timeout=20s 2>&1)" && rig_fail "a wrong auth key joined: $out"
  grep -q "invalid auth key" <<<"$out" || rig_fail "wrong auth key: unexpected error: $out"
  pass "setup: a wrong auth key is refused: $(tail -n 1 <<<"$out")"

  # --- 1: lock log before init ---------------------------------------------------------------
  rc=0
  rig_ts a lock log >"$RIG_DIR/log.out" 2>"$RIG_DIR/log.err" || rc=$?
  ((rc != 0)) || rig_fail "1: lock log succeeded before init: $(cat "$RIG_DIR/log.out")"
  [[ "$(cat "$RIG_DIR/log.err")" == "Tailnet Lock is not enabled" ]] ||
    rig_fail "1: lock log stderr: $(cat "$RIG_DIR/log.err")"
  [[ ! -s "$RIG_DIR/log.out" ]] || rig_fail "1: lock log stdout: $(cat "$RIG_DIR/log.out")"
  pass "1: lock log exits $rc with 'Tailnet Lock is not enabled'"

  # --- 2: init on A, trusting A and B ----------------------------------------------------------
  join b
  tl_a="$(tlpub a)"
  tl_b="$(tlpub b)"
  [[ "$tl_a" == tlpub:* && "$tl_b" == tlpub:* ]] || rig_fail "2: tlpubs: '$tl_a' '$tl_b'"
  # testctl stored the keys the nodes registered with.
  rig_testctl /debug/nodes | jq -e --arg a "$tl_a" --arg b "$tl_b" \
    '[.[] | .nlkey] == [$a, $b]' >/dev/null || rig_fail "2: testctl's nlkeys: $(rig_testctl /debug/nodes)"
  out="$(rig_ts a lock init --gen-disablements 2 --confirm "$tl_a" "$tl_b" 2>&1)" ||
    rig_fail "2: lock init: $out"
  secrets="$RIG_DIR/disablement-secrets"
  (umask 077 && grep -oE 'disablement-secret:[0-9A-F]{64}' <<<"$out" >"$secrets") ||
    rig_fail "2: no disablement secrets in: $out"
  [[ "$(wc -l <"$secrets")" == 2 && "$(stat -c %a "$secrets")" == 600 ]] ||
    rig_fail "2: expected 2 secrets in a 0600 file: $(wc -l <"$secrets") lines, mode $(stat -c %a "$secrets")"
  grep -q "Initialization complete." <<<"$out" || rig_fail "2: lock init: $out"
  for node in a b; do
    rig_wait_for 10 "$node: lock enabled and signed" bash -c \
      "'$RIG_PEERS/tailscale' --socket='$RIG_DIR/$node/tailscaled.sock' lock status |
       grep -q 'This node is accessible under Tailnet Lock'" ||
      rig_fail "2: $node: $(rig_ts "$node" lock status)"
    grep -qx "Tailnet Lock is ENABLED." <<<"$(rig_ts "$node" lock status)" || rig_fail "2: $node not ENABLED"
  done
  rig_testctl /debug/tka | jq -e '.enabled and (.trusted_keys | length) == 2' >/dev/null ||
    rig_fail "2: testctl /debug/tka: $(rig_testctl /debug/tka)"
  rig_testctl /debug/nodes | jq -e 'all(.[]; .key_signature and .signature_verifies)' >/dev/null ||
    rig_fail "2: testctl /debug/nodes: $(rig_testctl /debug/nodes)"
  ip_b="$(node_ip b)"
  rig_wait_for 20 "A pings B" can_ping a "$ip_b" || rig_fail "2: A cannot ping B ($ip_b)"
  pass "2: lock init on A: 2 secrets saved (0600), A and B ENABLED and signed, A pings B at $ip_b"

  # --- 3: C joins unsigned ---------------------------------------------------------------------
  up c # its tailscaled runs since the wrong-key attempt
  nk_c="$(rig_ts c status --json | jq -r .Self.PublicKey)"
  ip_c="$(node_ip c)"
  rig_wait_for 15 "A lists C as locked out" bash -c \
    "'$RIG_PEERS/tailscale' --socket='$RIG_DIR/a/tailscaled.sock' lock status --json |
     jq -e --arg k '$nk_c' '[.FilteredPeers[]?.NodeKey] | index(\$k)'" ||
    rig_fail "3: A does not list C as filtered: $(lock_json a | jq -c .FilteredPeers)"
  grep -q "$nk_c" <<<"$(rig_ts a lock status)" || rig_fail "3: A's lock status text lacks C's node key"
  rig_wait_for 10 "C sees itself locked out" bash -c \
    "'$RIG_PEERS/tailscale' --socket='$RIG_DIR/c/tailscaled.sock' lock status | grep -q 'LOCKED OUT'" ||
    rig_fail "3: C: $(rig_ts c lock status)"
  ! can_ping a "$ip_c" || rig_fail "3: A reaches unsigned C"
  ! can_ping a "$ip_c" || rig_fail "3: A reaches unsigned C"
  rig_testctl /debug/nodes | jq -e --arg k "$nk_c" '.[] | select(.nodekey == $k) | .key_signature == false' \
    >/dev/null || rig_fail "3: testctl says C is signed"
  # Sign only once no node has changed anything for 3 s: a node's own churn (a new hostinfo after
  # joining) also sends everyone a map update, and would hide a sign that notified nobody.
  quiet() { rig_testctl /debug/nodes | jq -e 'all(.[]; .quiet_ms > 3000)'; }
  rig_wait_for 30 "no node changed for 3 s" quiet || rig_fail "3: the tailnet never went quiet"
  out="$(rig_ts a lock sign "$nk_c" 2>&1)" || rig_fail "3: lock sign: $out"
  start=$(bench_now)
  rig_wait_for 5 "A reaches C after sign" can_ping a "$ip_c" || rig_fail "3: A cannot reach C 5 s after signing"
  took="$(echo "$(bench_now) - $start" | bc | xargs printf '%.1f')"
  rig_testctl /debug/nodes | jq -e --arg k "$nk_c" '.[] | select(.nodekey == $k) | .signature_verifies' \
    >/dev/null || rig_fail "3: testctl: C's signature does not verify"
  pass "3: unsigned C is locked out on A and unreachable; after lock sign, A reaches C at $ip_c in ${took} s"

  # --- 4: add and remove C's key ---------------------------------------------------------------
  tl_c="$(tlpub c)"
  ntrusted() { lock_json "$1" | jq '.TrustedKeys | length'; }
  out="$(rig_ts a lock add "$tl_c" 2>&1)" || rig_fail "4: lock add: $out"
  rig_wait_for 10 "B sees 3 trusted keys" bash -c \
    "[[ \$('$RIG_PEERS/tailscale' --socket='$RIG_DIR/b/tailscaled.sock' lock status --json |
       jq '.TrustedKeys | length') == 3 ]]" || rig_fail "4: B has $(ntrusted b) trusted keys after add"
  lock_json b | jq -e --arg k "$tl_c" '[.TrustedKeys[].Public] | index($k)' >/dev/null ||
    rig_fail "4: B does not trust C's key: $(lock_json b | jq -c .TrustedKeys)"
  pass "4: lock add on A: B trusts 3 keys, C's among them"
  out="$(rig_ts a lock remove --re-sign=false "$tl_c" 2>&1)" || rig_fail "4: lock remove: $out"
  rig_wait_for 10 "B back to 2 trusted keys" bash -c \
    "[[ \$('$RIG_PEERS/tailscale' --socket='$RIG_DIR/b/tailscaled.sock' lock status --json |
       jq '.TrustedKeys | length') == 2 ]]" || rig_fail "4: B has $(ntrusted b) trusted keys after remove"
  hashes() { rig_ts "$1" lock log --json | jq -c '[.Messages[].Hash]'; }
  logs_agree() { [[ "$(hashes a)" == "$(hashes b)" ]]; }
  rig_wait_for 10 "A and B logs agree" logs_agree ||
    rig_fail "4: logs differ: A $(hashes a), B $(hashes b)"
  log_a="$(hashes a)"
  [[ "$(jq length <<<"$log_a")" == 3 ]] || rig_fail "4: expected 3 AUMs (genesis, add, remove): $log_a"
  [[ "$(jq -r '.[0]' <<<"$log_a")" == "$(rig_testctl /debug/tka | jq -r .head)" ]] ||
    rig_fail "4: newest AUM $(jq -r '.[0]' <<<"$log_a") is not testctl's head $(rig_testctl /debug/tka | jq -r .head)"
  pass "4: lock remove on A: B back to 2 keys; lock log --json on A and B: the same 3 hashes, newest = testctl's head"

  # --- 5: disable ------------------------------------------------------------------------------
  wrong="disablement-secret:$(printf '%064X' 0)"
  out="$(rig_ts a lock disable "$wrong" 2>&1)" && rig_fail "5: a wrong secret disabled lock: $out"
  grep -q "incorrect disablement secret" <<<"$out" || rig_fail "5: wrong secret: unexpected error: $out"
  grep -qx "Tailnet Lock is ENABLED." <<<"$(rig_ts a lock status)" || rig_fail "5: lock not enabled after a wrong secret"
  rig_testctl /debug/tka | jq -e '.enabled' >/dev/null || rig_fail "5: testctl disabled on a wrong secret"
  pass "5: wrong secret refused: $out"
  out="$(rig_ts a lock disable "$(head -n 1 "$secrets")" 2>&1)" || rig_fail "5: lock disable: $out"
  for node in a b; do
    rig_wait_for 10 "$node: lock NOT enabled" bash -c \
      "'$RIG_PEERS/tailscale' --socket='$RIG_DIR/$node/tailscaled.sock' lock status | grep -qx 'Tailnet Lock is NOT enabled.'" ||
      rig_fail "5: $node still: $(rig_ts "$node" lock status | head -n 1)"
  done
  rig_testctl /debug/tka | jq -e '.disabled and (.enabled | not)' >/dev/null ||
    rig_fail "5: testctl /debug/tka: $(rig_testctl /debug/tka)"
  pass "5: lock disable with a secret from init: A and B show NOT enabled"
)

source "$here/../rig/rig.sh"
rig_assert_clean "$RIG"
echo "lock: teardown left nothing of $RIG"
echo "lock: all checks passed"
