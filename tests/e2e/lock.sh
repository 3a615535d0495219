#!/usr/bin/env bash
# End-to-end proof of issue #14 (tailnet lock): our test control with tailnet lock
# (tests/interop/cmd/testctl, HTTPS + DERP on the rig's control host), tinytail as the subnet
# router (LAN 192.0.2.0/24 behind it, its web page on 192.0.2.1:8088) and real tailscaled nodes
# A-F (own namespaces on the WAN bridge, 198.18.0.21-26) driven with the pinned `tailscale lock`
# CLI, and Debian's headless chromium on the LAN host (tests/browser/web.mjs lock-sign). Each
# check prints what it verified; the first failure stops the run with a non-zero exit.
#
#   tests/e2e/lock.sh           (root; runs tests/browser/setup and fails if the browser tooling
#                                cannot be installed; builds tinytail in debug unless TINYTAIL_BIN
#                                is set)
#
# Checks, in order (numbers are the issue's proofs):
#   1  before init, `lock log` exits 1 with "Tailnet Lock is not enabled" on A (tailscale) and
#      on tinytail
#   2  `tailscale lock init --gen-disablements 2 --confirm` on A trusting A, B and tinytail: two
#      disablement secrets (kept in $RIG_DIR, 0600); A, B and tinytail show ENABLED and signed;
#      tinytail's `lock status --json`: the three keys with their votes, its own among them, the
#      head testctl has; A reaches the LAN host through tinytail
#   3  C joins unsigned: tinytail lists it as locked out (lock status, FilteredCounts.Unsigned);
#      C's pings to the LAN host and to tinytail's 100.x get nothing, and tinytail counts C's
#      handshakes as UnknownPeer drops; once the tailnet is quiet, `tinytail lock sign NODEKEY_C
#      TLPUB_C`: C reaches the LAN host within 5 s, and A reaches C
#   7: web Sign  F joins unsigned and is locked out; headless chromium on the LAN host sets the
#      page's admin password (a setup code from `tinytail web setup-code` if the form asks for
#      one), signs in, finds F in the tailnet-lock section and clicks its Sign button (dismissing
#      the confirm sends nothing, accepting it signs): the page's note says signed; tinytail
#      stops listing F within 5 s and F reaches the LAN host within 10 s of the note (its
#      tailscaled retries the handshake tinytail refused every 5 s); testctl has F
#      signed_by tinytail's tlpub
#   4  `tinytail lock add TLPUB_C` seen by A; `tailscale lock remove --re-sign=false TLPUB_C` on A
#      seen by tinytail; `lock log --json` on tinytail and A: the same hashes, in the same order;
#      removing tinytail's key without re-signing cuts C and F (signed by it) off on A and
#      tinytail, adding it back brings C back; `tinytail lock remove TLPUB_A` (re-signing by
#      default): A, B and tinytail, signed by A's key at init, keep their connectivity
#   7  restart (SIGTERM) and an unplugged power (SIGKILL right after a `lock add`): tinytail comes
#      back with the lock state, catches up to testctl's head, and C still reaches the LAN
#   6  D joins unsigned and is locked out; `tinytail lock disable` with a wrong secret is refused
#      and changes nothing; with a secret from init, A, B and tinytail show NOT enabled and D
#      reaches the LAN host; after a new init, E joins unsigned, `tinytail lock local-disable`
#      lets E through tinytail while A still drops E, and a restart keeps it disabled here
#   8  bad input: a malformed node key or tlpub, signing with no key, removing an unknown key:
#      one-line errors, exit 1, head unchanged; no disablement secret or auth key in tinytail's
#      log; `store info` lists the chain records without values
#   wrap  `tinytail lock sign tskey-auth-…` prints the wrapped key; G joins with it, signs itself
#      and reaches the LAN host
#   5  C (trusted) re-signs A; `tinytail lock revoke-keys TLPUB_C`, `tailscale lock revoke-keys
#      --cosign` on B, `tinytail lock revoke-keys --finish`: C's key is gone on tinytail and B,
#      and A, signed by it, is cut off on every node
# Not covered here: a forged AUM from control (agent/src/tka.rs unit tests, the tka_sync fuzz
# target).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
RIG="tt$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
export RIG

# Check 7 (web Sign) needs chromium and playwright-core: as web.sh, install them here; when that
# fails the run fails, it never skips the check.
"$root/tests/browser/setup" ||
  { echo "lock: FAIL tests/browser/setup failed: check 7 (web Sign) needs Debian's chromium and playwright-core" >&2; exit 1; }
TT="$(source "$here/../rig/rig.sh"; rig_tinytail_bin lock)"
pass() { printf 'lock: ok  %s\n' "$*"; }
# Output is captured before grep looks at it: under pipefail, `cmd | grep -q` fails whenever
# grep's early exit makes cmd die of SIGPIPE.

(
  source "$here/../rig/rig.sh"
  source "$here/../../bench/lib.sh" # bench_now
  rig_up
  authkey="tskey-auth-rig$RIG"
  rig_testctl_start -auth-key "$authkey"
  lan_host=192.0.2.10

  # --- setup: tinytail on the router host, nodes a-f on the WAN bridge ----------------------
  n=21
  for name in a b c d e f g; do
    rig_add_ns "$name"
    rig_attach "$name" eth0 "p-$name" "198.18.0.$n/24"
    n=$((n + 1))
  done
  # up NAME: `tailscale up` to testctl with the right auth key (tailscaled NAME already running).
  up() {
    rig_ts "$1" up --login-server="$TC_URL" --auth-key="$authkey" --hostname="$1" \
      --accept-dns=false --netfilter-mode=off --accept-routes --timeout=60s >/dev/null ||
      rig_fail "tailscale up ($1) failed: $(tail -n 5 "$RIG_DIR/$1.log")"
  }
  join() { rig_tailscaled_start "$1" "$1"; up "$1"; }
  lock_json() { rig_ts "$1" lock status --json; }
  lock_text() { rig_ts "$1" lock status; }
  tlpub() { lock_json "$1" | jq -r .PublicKey; }
  node_ip() { rig_ts "$1" ip -4; }
  nodekey() { rig_ts "$1" status --json | jq -r .Self.PublicKey; }
  # can_ping FROM IP: one ICMP echo from FROM's namespace.
  can_ping() { rig_exec "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1; }
  # never_pings FROM IP: three echoes, none answered.
  never_pings() { ! rig_exec "$1" ping -c 3 -i 0.3 -W 1 "$2" >/dev/null 2>&1; }
  testctl_head() { rig_testctl /debug/tka | jq -r '.head // ""'; }
  ntrusted() { lock_json "$1" | jq '.TrustedKeys | length'; }

  tt_dir="$RIG_DIR/tinytail"
  mkdir -p "$tt_dir"
  tt_sock="$tt_dir/tinytail.sock"
  tt() { rig_exec rtr "$TT" --socket "$tt_sock" "$@"; }
  # The page on the router's LAN address, for the browser on the LAN host (check 7: web Sign).
  page_url="http://192.0.2.1:8088/"
  tt_start() {
    rm -f "$tt_sock" # a SIGKILLed agent leaves its socket behind
    rig_bg rtr tinytail env SSL_CERT_FILE="$RIG_CA" "$TT" run --state "$tt_dir/state.img" --socket "$tt_sock" \
      --lan-interface lan0 --wan-interface wan0 --web-listen 192.0.2.1:8088
    TT_PID="$RIG_LAST_PID"
    rig_wait_for 10 "tinytail socket" test -S "$tt_sock" || rig_fail "tinytail run did not start"
  }
  tt_json() { tt lock status --json; }
  tt_text() { tt lock status; }
  tt_head() { tt_json | jq -r '.Head // ""'; }
  tt_status() { tt status --json; }
  tt_trusts() { tt_json | jq -e --arg k "$1" '[.TrustedKeys[]?.Public] | index($k)' >/dev/null; }
  tt_filters() { tt_json | jq -e --arg k "$1" '[.FilteredPeers[]?.NodeKey] | index($k)' >/dev/null; }
  tt_synced() { local h; h="$(testctl_head)"; [[ -n "$h" && "$(tt_head)" == "$h" ]]; }
  # Sign only once no node has changed anything for 3 s: a node's own churn (a new hostinfo after
  # joining) also sends everyone a map update, and would hide a sign that notified nobody.
  quiet() { rig_testctl /debug/nodes | jq -e 'all(.[]; .quiet_ms > 3000)'; }

  tt_start
  tt up --login-server "$TC_URL" --auth-key "$authkey" --hostname router \
    --advertise-routes 192.0.2.0/24 --timeout 60 >/dev/null || rig_fail "tinytail up failed"
  tt_ip="$(tt ip -4)"
  join a
  rig_wait_for 20 "A reaches the LAN host through tinytail" can_ping a "$lan_host" ||
    rig_fail "setup: A cannot reach $lan_host through tinytail before lock"
  # A wrong auth key is refused (and says why).
  rig_tailscaled_start c c
  out="$(rig_ts c up --login-server="$TC_URL" --auth-key=tskey-auth-wrong --hostname=c \
    --accept-dns=false --netfilter-mode=off --timeout=20s 2>&1)" && rig_fail "a wrong auth key joined: $out"
  grep -q "invalid auth key" <<<"$out" || rig_fail "wrong auth key: unexpected error: $out"
  pass "setup: tinytail at $tt_ip routes the LAN for A; a wrong auth key is refused: $(tail -n 1 <<<"$out")"

  # --- 1: lock log before init ---------------------------------------------------------------
  rc=0
  rig_ts a lock log >"$RIG_DIR/log.out" 2>"$RIG_DIR/log.err" || rc=$?
  ((rc != 0)) || rig_fail "1: lock log succeeded before init: $(cat "$RIG_DIR/log.out")"
  [[ "$(cat "$RIG_DIR/log.err")" == "Tailnet Lock is not enabled" ]] ||
    rig_fail "1: lock log stderr: $(cat "$RIG_DIR/log.err")"
  [[ ! -s "$RIG_DIR/log.out" ]] || rig_fail "1: lock log stdout: $(cat "$RIG_DIR/log.out")"
  rc=0
  tt lock log >"$RIG_DIR/tt-log.out" 2>"$RIG_DIR/tt-log.err" || rc=$?
  ((rc == 1)) && grep -q "Tailnet Lock is not enabled" "$RIG_DIR/tt-log.err" && [[ ! -s "$RIG_DIR/tt-log.out" ]] ||
    rig_fail "1: tinytail lock log exited $rc: $(cat "$RIG_DIR/tt-log.out" "$RIG_DIR/tt-log.err")"
  pass "1: lock log exits non-zero with 'Tailnet Lock is not enabled' on A and on tinytail"

  # --- 2: init on A, trusting A, B and tinytail ------------------------------------------------
  join b
  tl_a="$(tlpub a)"
  tl_b="$(tlpub b)"
  tl_tt="$(tt_json | jq -r .PublicKey)"
  [[ "$tl_a" == tlpub:* && "$tl_b" == tlpub:* && "$tl_tt" == tlpub:* ]] ||
    rig_fail "2: tlpubs: '$tl_a' '$tl_b' '$tl_tt'"
  # testctl stored the keys the nodes registered with (tinytail's as nlpub:, shown as tlpub:).
  rig_testctl /debug/nodes | jq -e --arg a "$tl_a" --arg b "$tl_b" --arg t "$tl_tt" \
    '[.[] | .nlkey] == [$t, $a, $b]' >/dev/null || rig_fail "2: testctl's nlkeys: $(rig_testctl /debug/nodes)"
  out="$(rig_ts a lock init --gen-disablements 2 --confirm "$tl_a" "$tl_b" "$tl_tt" 2>&1)" ||
    rig_fail "2: lock init: $out"
  secrets="$RIG_DIR/disablement-secrets"
  (umask 077 && grep -oE 'disablement-secret:[0-9A-F]{64}' <<<"$out" >"$secrets") ||
    rig_fail "2: no disablement secrets in: $out"
  [[ "$(wc -l <"$secrets")" == 2 && "$(stat -c %a "$secrets")" == 600 ]] ||
    rig_fail "2: expected 2 secrets in a 0600 file: $(wc -l <"$secrets") lines, mode $(stat -c %a "$secrets")"
  grep -q "Initialization complete." <<<"$out" || rig_fail "2: lock init: $out"
  for node in a b; do
    accessible() { grep -q 'This node is accessible under Tailnet Lock' <<<"$(lock_text "$1")"; }
    rig_wait_for 10 "$node: lock enabled and signed" accessible "$node" || rig_fail "2: $node: $(lock_text "$node")"
    grep -qx "Tailnet Lock is ENABLED." <<<"$(lock_text "$node")" || rig_fail "2: $node not ENABLED"
  done
  rig_wait_for 10 "tinytail synced" tt_synced || rig_fail "2: tinytail head '$(tt_head)', testctl '$(testctl_head)'"
  text="$(tt_text)"
  grep -qx "Tailnet Lock is ENABLED." <<<"$text" && grep -q "This node is accessible under Tailnet Lock" <<<"$text" &&
    grep -qP "^\t$tl_tt\t1\t\(self\)$" <<<"$text" || rig_fail "2: tinytail lock status: $text"
  json="$(tt_json)"
  jq -e --arg a "$tl_a" --arg b "$tl_b" --arg t "$tl_tt" '.Enabled and .NodeKeySigned and
      ([.TrustedKeys[] | "\(.Public)/\(.Votes)"] | sort) == ([$a, $b, $t] | map(. + "/1") | sort)' \
    <<<"$json" >/dev/null || rig_fail "2: tinytail lock status --json: $json"
  rig_testctl /debug/nodes | jq -e 'all(.[]; .key_signature and .signature_verifies)' >/dev/null ||
    rig_fail "2: testctl /debug/nodes: $(rig_testctl /debug/nodes)"
  rig_wait_for 10 "A reaches the LAN host" can_ping a "$lan_host" || rig_fail "2: A cannot reach $lan_host under lock"
  pass "2: lock init on A: 2 secrets saved (0600); A, B and tinytail ENABLED and signed; tinytail trusts the 3 keys (1 vote each, its own marked self) at head $(tt_head | cut -c1-12)…; A reaches $lan_host through it"

  # --- 3: C joins unsigned ---------------------------------------------------------------------
  up c # its tailscaled runs since the wrong-key attempt
  nk_c="$(nodekey c)"
  tl_c="$(tlpub c)"
  ip_c="$(node_ip c)"
  rig_wait_for 15 "tinytail lists C as locked out" tt_filters "$nk_c" ||
    rig_fail "3: tinytail does not list C: $(tt_json | jq -c .FilteredPeers)"
  grep -q "$nk_c" <<<"$(tt_text)" || rig_fail "3: tinytail's lock status text lacks C's node key"
  [[ "$(tt_status | jq '.TailnetLock.FilteredCounts.Unsigned')" == 1 ]] ||
    rig_fail "3: FilteredCounts: $(tt_status | jq -c .TailnetLock.FilteredCounts)"
  drops_before="$(tt_status | jq '.Datapath.Drops.UnknownPeer')"
  never_pings c "$lan_host" || rig_fail "3: unsigned C reaches the LAN host"
  never_pings c "$tt_ip" || rig_fail "3: unsigned C reaches tinytail at $tt_ip"
  never_pings a "$ip_c" || rig_fail "3: A reaches unsigned C"
  drops_after="$(tt_status | jq '.Datapath.Drops.UnknownPeer')"
  ((drops_after > drops_before)) || rig_fail "3: no UnknownPeer drops counted ($drops_before -> $drops_after)"
  rig_wait_for 30 "no node changed for 3 s" quiet || rig_fail "3: the tailnet never went quiet"
  out="$(tt lock sign "$nk_c" "$tl_c" 2>&1)" || rig_fail "3: tinytail lock sign: $out"
  start=$(bench_now)
  rig_wait_for 5 "C reaches the LAN host after sign" can_ping c "$lan_host" ||
    rig_fail "3: C cannot reach $lan_host 5 s after tinytail signed it"
  took="$(echo "$(bench_now) - $start" | bc | xargs printf '%.1f')"
  rig_wait_for 5 "A reaches C" can_ping a "$ip_c" || rig_fail "3: A cannot reach C after the sign"
  rig_testctl /debug/nodes | jq -e --arg k "$nk_c" --arg t "$tl_tt" \
    '.[] | select(.nodekey == $k) | .signature_verifies and .signed_by == $t' >/dev/null ||
    rig_fail "3: testctl: C is not signed by tinytail: $(rig_testctl /debug/nodes | jq -c --arg k "$nk_c" '.[] | select(.nodekey == $k)')"
  pass "3: unsigned C locked out ($((drops_after - drops_before)) handshakes dropped), no reply from $lan_host or $tt_ip; tinytail lock sign: C reaches $lan_host in ${took} s, A reaches C"

  # --- 7: web Sign: F joins unsigned, the page's Sign button signs it in headless chromium ------
  join f
  nk_f="$(nodekey f)"
  rig_wait_for 15 "tinytail lists F as locked out" tt_filters "$nk_f" ||
    rig_fail "7 web: tinytail does not list F: $(tt_json | jq -c .FilteredPeers)"
  never_pings f "$lan_host" || rig_fail "7 web: unsigned F reaches the LAN host"
  tt_trusts "$tl_tt" || rig_fail "7 web: tinytail's key is not trusted: $(tt_json | jq -c .TrustedKeys)"
  rig_wait_for 10 "the page" rig_exec lan curl -sf -o /dev/null "$page_url" ||
    rig_fail "7 web: no page on $page_url: $(tail -n 5 "$RIG_DIR/tinytail.log")"
  # Captured whole, then its first line: `| head -n 1` can SIGPIPE the second line's write.
  setup_code="$(tt web setup-code)" || rig_fail "7 web: tinytail web setup-code failed: $setup_code"
  setup_code="${setup_code%%$'\n'*}"
  [[ "$setup_code" =~ ^[2-9a-z]{12} ]] || rig_fail "7 web: tinytail web setup-code printed '$setup_code'"
  web_out="$RIG_DIR/web"
  mkdir -p "$web_out/traffic"
  # As for the CLI's sign above: only on a quiet tailnet, so F's own churn cannot hide it.
  rig_wait_for 30 "no node changed for 3 s" quiet || rig_fail "7 web: the tailnet never went quiet"
  rig_exec lan env TT_URL="$page_url" TT_PASSWORD="lock-web-$RIG-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')" \
    TT_SETUP_CODE="$setup_code" TT_NODE="$nk_f" TT_OUT="$web_out" TT_TRAFFIC="$web_out/traffic" HOME="$RIG_DIR" \
    node "$root/tests/browser/web.mjs" lock-sign || rig_fail "7 web: the browser's lock-sign scenario failed"
  signed_at="$(cat "$web_out/signed-at")"
  since_sign() { echo "$(bench_now) - $signed_at" | bc | xargs printf '%.1f'; }
  # Tinytail's share first: it lets F through within ~0.2 s of the note. F's path to tinytail
  # then comes up at its next disco ping / handshake retry, on tailscaled's 5 s cadence, so the
  # ping's time depends on where the sign falls in F's cycle (3.8-4.1 s in our runs).
  rig_wait_for 5 "tinytail lets F through" eval '! tt_filters "$nk_f"' ||
    rig_fail "7 web: tinytail still lists F as locked out $(since_sign) s after the page's Sign"
  let_through="$(since_sign)"
  rig_wait_for 10 "F reaches the LAN host after the page's Sign" can_ping f "$lan_host" ||
    rig_fail "7 web: F cannot reach $lan_host after the page's Sign: tinytail filters $(tt_json | jq -c '[.FilteredPeers[].NodeKey]')"
  took="$(since_sign)"
  (($(echo "$took <= 10" | bc))) || rig_fail "7 web: F reached $lan_host ${took} s after the page's note (want <= 10 s)"
  rig_testctl /debug/nodes | jq -e --arg k "$nk_f" --arg t "$tl_tt" \
    '.[] | select(.nodekey == $k) | .signature_verifies and .signed_by == $t' >/dev/null ||
    rig_fail "7 web: testctl: F is not signed by tinytail: $(rig_testctl /debug/nodes | jq -c --arg k "$nk_f" '.[] | select(.nodekey == $k)')"
  grep -qF "tailnet lock: signed $nk_f" "$RIG_DIR/tinytail.log" || rig_fail "7 web: no 'signed' line in tinytail's log"
  pass "7: web Sign: unsigned F locked out; in headless chromium the page's Sign button (confirm accepted) signed it: tinytail lets F through ${let_through} s and F reaches $lan_host ${took} s after the page's note, testctl has F signed_by tinytail's $(cut -c1-16 <<<"$tl_tt")…"

  # --- 4: add and remove, both ways; logs; cut off without re-signing; re-signing -------------
  out="$(tt lock add "$tl_c" 2>&1)" || rig_fail "4: tinytail lock add: $out"
  rig_wait_for 10 "A sees 4 trusted keys" eval '[[ "$(ntrusted a)" == 4 ]]' ||
    rig_fail "4: A has $(ntrusted a) trusted keys after tinytail's add"
  lock_json a | jq -e --arg k "$tl_c" '[.TrustedKeys[].Public] | index($k)' >/dev/null ||
    rig_fail "4: A does not trust C's key: $(lock_json a | jq -c .TrustedKeys)"
  out="$(rig_ts a lock remove --re-sign=false "$tl_c" 2>&1)" || rig_fail "4: tailscale lock remove: $out"
  rig_wait_for 10 "tinytail drops C's key" eval '! tt_trusts "$tl_c" && tt_synced' ||
    rig_fail "4: tinytail still trusts C's key: $(tt_json | jq -c .TrustedKeys)"
  pass "4: tinytail lock add seen by tailscale on A (4 keys); tailscale lock remove on A seen by tinytail (3 keys)"
  hashes_a() { rig_ts a lock log --json | jq -c '[.Messages[].Hash]'; }
  hashes_tt() { tt lock log --json | jq -c '[.Messages[].Hash]'; }
  logs_agree() { [[ "$(hashes_a)" == "$(hashes_tt)" ]]; }
  rig_wait_for 10 "tinytail and A logs agree" logs_agree || rig_fail "4: logs differ: A $(hashes_a), tinytail $(hashes_tt)"
  log_a="$(hashes_a)"
  [[ "$(jq length <<<"$log_a")" == 3 && "$(jq -r '.[0]' <<<"$log_a")" == "$(testctl_head)" ]] ||
    rig_fail "4: expected 3 AUMs (genesis, add, remove), newest = testctl's head: $log_a"
  log_text="$(tt lock log)"
  [[ "$(grep -c '^update ' <<<"$log_text")" == 3 ]] && grep -q "(remove-key)" <<<"$log_text" &&
    grep -q "(add-key)" <<<"$log_text" && grep -q "(checkpoint)" <<<"$log_text" || rig_fail "4: lock log: $log_text"
  pass "4: lock log --json on tinytail and A: the same 3 hashes in the same order: $log_a"

  rig_wait_for 30 "no node changed for 3 s" quiet || rig_fail "4: the tailnet never went quiet"
  out="$(rig_ts a lock remove --re-sign=false "$tl_tt" 2>&1)" || rig_fail "4: remove tinytail's key: $out"
  rig_wait_for 10 "tinytail drops C (signed by a removed key)" tt_filters "$nk_c" ||
    rig_fail "4: tinytail still lets C through: $(tt_json | jq -c .FilteredPeers)"
  # C and F: both signed by tinytail's key (C by the CLI in 3, F from the page in 7).
  [[ "$(tt_status | jq '.TailnetLock.FilteredCounts.BadSignature')" == 2 ]] ||
    rig_fail "4: FilteredCounts: $(tt_status | jq -c .TailnetLock.FilteredCounts)"
  tt_json | jq -e '.NodeKeySigned' >/dev/null || rig_fail "4: tinytail (signed by A's key) lost its signature"
  never_pings c "$lan_host" || rig_fail "4: C (signed by a removed key) still reaches the LAN host"
  out="$(rig_ts a lock add "$tl_tt" 2>&1)" || rig_fail "4: add tinytail's key back: $out"
  # C still holds the WireGuard session tinytail dropped with the peer: its packets are refused
  # until C's own rekey timer (5 s + 10 s without a reply, as in wireguard-go) makes it handshake.
  rig_wait_for 25 "C reaches the LAN host again" can_ping c "$lan_host" ||
    rig_fail "4: C cannot reach the LAN host after tinytail's key came back: tinytail filters $(tt_json | jq -c '[.FilteredPeers[].DNSName]'), trusts $(tt_json | jq -c '[.TrustedKeys[].Public]'); C: $(lock_text c | head -n 3)"
  pass "4: removing tinytail's key without re-signing cut C and F off (BadSignature 2 on tinytail, no reply from $lan_host); adding it back restored C"
  out="$(tt lock remove "$tl_a" 2>&1)" || rig_fail "4: tinytail lock remove (re-sign): $out"
  rig_wait_for 10 "tinytail no longer trusts A's key" eval '! tt_trusts "$tl_a" && tt_synced' ||
    rig_fail "4: tinytail still trusts A's key"
  rig_wait_for 10 "A no longer trusts its own key" eval '! lock_json a | jq -e --arg k "$tl_a" "[.TrustedKeys[].Public] | index(\$k)"' ||
    rig_fail "4: A still trusts its key"
  tt_json | jq -e '.NodeKeySigned and (.FilteredPeers | length) == 0' >/dev/null ||
    rig_fail "4: after re-signing: $(tt_json | jq -c '{NodeKeySigned, FilteredPeers}')"
  grep -q 'This node is accessible under Tailnet Lock' <<<"$(lock_text a)" || rig_fail "4: A lost its signature: $(lock_text a)"
  can_ping a "$lan_host" && can_ping a "$(node_ip b)" || rig_fail "4: A lost connectivity after re-signing"
  rig_testctl /debug/nodes | jq -e --arg t "$tl_tt" --arg k "$(nodekey a)" \
    '.[] | select(.nodekey == $k) | .signature_verifies and .signed_by == $t' >/dev/null ||
    rig_fail "4: A is not re-signed by tinytail"
  pass "4: tinytail lock remove $tl_a re-signed A, B and itself: all keep connectivity, A's key is gone"

  # --- 7: restart and an unplugged power ---------------------------------------------------------
  head_before="$(tt_head)"
  kill -TERM "$TT_PID"
  rig_wait_for 10 "tinytail stops" eval '! kill -0 "$TT_PID"' || rig_fail "7: tinytail ignored SIGTERM"
  tt_start
  tt up --timeout 60 >/dev/null || rig_fail "7: tinytail up after restart failed"
  rig_wait_for 15 "tinytail enabled again" eval '[[ "$(tt_head)" == "$head_before" ]]' ||
    rig_fail "7: after restart: head '$(tt_head)', want $head_before"
  rig_wait_for 10 "C reaches the LAN host" can_ping c "$lan_host" || rig_fail "7: C lost the LAN after a restart"
  out="$(tt lock add "$tl_c" 2>&1)" || rig_fail "7: tinytail lock add: $out"
  kill -KILL "$TT_PID"
  rig_wait_for 5 "tinytail is gone" eval '! kill -0 "$TT_PID"'
  tt_start
  tt up --timeout 60 >/dev/null || rig_fail "7: tinytail up after the power cut failed"
  rig_wait_for 15 "tinytail catches up" eval 'tt_synced && tt_trusts "$tl_c"' ||
    rig_fail "7: after SIGKILL: head '$(tt_head)', testctl '$(testctl_head)'"
  grep -q "stored chain dropped\|tka-aum" "$RIG_DIR/tinytail.log" && rig_fail "7: store warnings: $(grep tka "$RIG_DIR/tinytail.log")"
  rig_wait_for 10 "C reaches the LAN host" can_ping c "$lan_host" || rig_fail "7: C lost the LAN after a power cut"
  # One store record per AUM of the chain, listed by name and size only.
  store="$(rig_exec rtr "$TT" store info --state "$tt_dir/state.img")"
  n_aums="$(tt lock log --json | jq '.Messages | length')"
  [[ "$(grep -c '^  tka-aum ' <<<"$store")" == "$n_aums" ]] && grep -q '^  tka-state ' <<<"$store" ||
    rig_fail "7: store info does not list the $n_aums AUMs: $store"
  pass "7: SIGTERM restart kept head $(cut -c1-12 <<<"$head_before")…; SIGKILL right after lock add: back with the lock state, caught up to testctl's head, C still routed"

  # --- signing a pre-auth key: G joins with the wrapped key and signs itself ----------------------
  wrapped="$(tt lock sign "$authkey")" || rig_fail "wrap: tinytail lock sign $authkey failed"
  [[ "$wrapped" =~ ^tskey-auth-rig$RIG--TL[A-Za-z0-9+/]+-[A-Za-z0-9+/]+$ ]] || rig_fail "wrap: not a wrapped key: $wrapped"
  rig_wait_for 10 "tinytail trusts the wrapping key" eval '[[ "$(tt_json | jq ".TrustedKeys | length")" == 4 ]]' ||
    rig_fail "wrap: the key signing the credential is not trusted: $(tt_json | jq -c .TrustedKeys)"
  rig_tailscaled_start g g
  rig_ts g up --login-server="$TC_URL" --auth-key="$wrapped" --hostname=g --accept-dns=false \
    --netfilter-mode=off --accept-routes --timeout=60s >/dev/null || rig_fail "wrap: G could not join with the wrapped key"
  nk_g="$(nodekey g)"
  rig_wait_for 10 "tinytail sees G" eval 'tt_json | jq -e --arg k "$nk_g" "[.VisiblePeers[].NodeKey] | index(\$k)"' ||
    rig_fail "wrap: G (signed by its wrapped key) is not a visible peer: filtered $(tt_json | jq -c '[.FilteredPeers[].NodeKey]')"
  rig_wait_for 15 "G reaches the LAN host" can_ping g "$lan_host" || rig_fail "wrap: G cannot reach $lan_host"
  pass "wrap: tinytail lock sign tskey-auth-…: G joined with the wrapped key, signed itself, and reaches $lan_host"

  # --- 5: revoke-keys: tinytail starts, tailscaled co-signs, tinytail finishes ---------------------
  # C's key is trusted again (check 7 added it); C re-signs A with it, so A hangs on C's key.
  nk_a="$(nodekey a)"
  out="$(rig_ts c lock sign "$nk_a" "$tl_a" 2>&1)" || rig_fail "5: C signing A: $out"
  signed_by_c() { rig_testctl /debug/nodes | jq -e --arg k "$nk_a" --arg t "$tl_c" '.[] | select(.nodekey == $k) | .signed_by == $t'; }
  rig_wait_for 10 "A signed by C's key" signed_by_c || rig_fail "5: A is not signed by C's key"
  rig_wait_for 10 "A reaches the LAN host" can_ping a "$lan_host" || rig_fail "5: A (signed by C) cannot reach the LAN"
  out="$(tt lock revoke-keys "$tl_c" 2>&1)" || rig_fail "5: tinytail lock revoke-keys: $out"
  aum1="$(grep -oE -- '--cosign [0-9A-F]+' <<<"$out" | cut -d' ' -f2)"
  [[ -n "$aum1" ]] || rig_fail "5: no --cosign command in: $out"
  out="$(rig_ts b lock revoke-keys --cosign "$aum1" 2>&1)" || rig_fail "5: tailscale lock revoke-keys --cosign: $out"
  grep -q "Co-signing completed successfully." <<<"$out" || rig_fail "5: cosign: $out"
  aum2="$(grep -oE -- '--finish [0-9A-F]+' <<<"$out" | cut -d' ' -f2)"
  [[ -n "$aum2" && "$aum2" != "$aum1" ]] || rig_fail "5: no new --finish AUM in: $out"
  out="$(tt lock revoke-keys --finish "$aum2" 2>&1)" || rig_fail "5: tinytail lock revoke-keys --finish: $out"
  [[ "$out" == "Recovery completed." ]] || rig_fail "5: finish: $out"
  rig_wait_for 10 "tinytail no longer trusts C's key" eval '! tt_trusts "$tl_c" && tt_synced' ||
    rig_fail "5: tinytail still trusts C's key or lags: head $(tt_head), testctl $(testctl_head)"
  b_distrusts_c() { ! lock_json b | jq -e --arg k "$tl_c" '[.TrustedKeys[].Public] | index($k)' >/dev/null; }
  rig_wait_for 10 "B no longer trusts C's key" b_distrusts_c || rig_fail "5: B still trusts C's key"
  rig_wait_for 10 "tinytail drops A" tt_filters "$nk_a" || rig_fail "5: tinytail still lets A (signed by the revoked key) through"
  b_drops_a() { lock_json b | jq -e --arg k "$nk_a" '[.FilteredPeers[]?.NodeKey] | index($k)' >/dev/null; }
  rig_wait_for 10 "B drops A" b_drops_a || rig_fail "5: B still lets A through"
  never_pings a "$lan_host" || rig_fail "5: A (signed by the revoked key) still reaches the LAN host"
  [[ "$(hashes_a)" == "$(hashes_tt)" ]] || rig_wait_for 10 "logs agree" logs_agree || rig_fail "5: logs differ after the revocation"
  pass "5: revoke-keys: tinytail made the recovery AUM, tailscale on B co-signed, tinytail finished; C's key is gone on tinytail and B, and A (signed by it) is cut off everywhere"

  # --- 6: disable, then local-disable --------------------------------------------------------------
  join d
  nk_d="$(nodekey d)"
  rig_wait_for 15 "tinytail lists D as locked out" tt_filters "$nk_d" || rig_fail "6: D is not locked out"
  never_pings d "$lan_host" || rig_fail "6: unsigned D reaches the LAN host"
  head="$(tt_head)"
  wrong="disablement-secret:$(printf '%064X' 0)"
  rc=0; out="$(tt lock disable "$wrong" 2>&1)" || rc=$?
  ((rc == 1)) && [[ "$out" == *"incorrect disablement secret"* ]] || rig_fail "6: wrong secret: exit $rc: $out"
  [[ "$(tt_head)" == "$head" ]] && rig_testctl /debug/tka | jq -e '.enabled' >/dev/null ||
    rig_fail "6: a wrong secret changed the lock"
  pass "6: a wrong disablement secret is refused (exit 1: $out), nothing changed"
  out="$(tt lock disable "$(head -n 1 "$secrets")" 2>&1)" || rig_fail "6: tinytail lock disable: $out"
  for node in a b; do
    not_enabled() { grep -qx 'Tailnet Lock is NOT enabled.' <<<"$(lock_text "$1")"; }
    rig_wait_for 10 "$node: lock NOT enabled" not_enabled "$node" || rig_fail "6: $node still: $(lock_text "$node" | head -n 1)"
  done
  rig_wait_for 10 "tinytail: lock NOT enabled" eval '[[ "$(tt_json | jq .Enabled)" == false ]]' ||
    rig_fail "6: tinytail still enabled"
  rig_wait_for 10 "D reaches the LAN host" can_ping d "$lan_host" || rig_fail "6: D cannot reach the LAN host after disable"
  pass "6: tinytail lock disable with a secret from init: A, B and tinytail NOT enabled; unsigned D reaches $lan_host"

  out="$(rig_ts b lock init --gen-disablements 1 --confirm "$tl_b" "$tl_tt" 2>&1)" || rig_fail "6: second init: $out"
  rig_wait_for 10 "tinytail synced" tt_synced || rig_fail "6: tinytail did not follow the second init"
  join e
  nk_e="$(nodekey e)"
  rig_wait_for 15 "tinytail lists E as locked out" tt_filters "$nk_e" || rig_fail "6: E is not locked out"
  never_pings e "$lan_host" || rig_fail "6: unsigned E reaches the LAN host"
  out="$(tt lock local-disable 2>&1)" || rig_fail "6: local-disable: $out"
  [[ "$(tt_json | jq .Enabled)" == false ]] || rig_fail "6: tinytail still enabled after local-disable"
  rig_wait_for 10 "E reaches the LAN host" can_ping e "$lan_host" || rig_fail "6: E cannot reach the LAN host after local-disable"
  never_pings a "$(node_ip e)" || rig_fail "6: A (still enforcing) reaches E"
  rig_testctl /debug/tka | jq -e '.enabled' >/dev/null || rig_fail "6: local-disable changed control's lock"
  kill -TERM "$TT_PID"
  rig_wait_for 10 "tinytail stops" eval '! kill -0 "$TT_PID"'
  tt_start
  tt up --timeout 60 >/dev/null || rig_fail "6: tinytail up failed"
  sleep 3
  [[ "$(tt_json | jq .Enabled)" == false ]] || rig_fail "6: local-disable did not survive a restart"
  grep -q "disabled locally" "$RIG_DIR/tinytail.log" || rig_fail "6: no log line for the refused bootstrap"
  pass "6: local-disable: E passes through tinytail, A still drops E, control keeps its lock; a restart keeps it off here"

  # --- 8: bad input --------------------------------------------------------------------------------
  bad() { # DESC EXPECTED ARGS...: exit 1, one line containing EXPECTED
    local desc="$1" want="$2" rc=0 out; shift 2
    out="$(tt lock "$@" 2>&1)" || rc=$?
    ((rc != 0)) && [[ "$out" == *"$want"* ]] || rig_fail "8: $desc: exit $rc: $out"
    [[ "$(wc -l <<<"$out")" -le 3 ]] || rig_fail "8: $desc: not a short error: $out"
  }
  bad "malformed node key" "decoding node-key" sign nodekey:zz
  bad "no node key" "usage" sign
  bad "malformed tlpub" "parsing key" add tlpub:1234
  bad "no keys" "missing argument" add
  bad "unknown verb" "unknown lock subcommand" frobnicate
  bad "wrong secret format" "incorrect disablement secret" disable disablement-secret:xyz
  if grep -aE "disablement-secret:[0-9A-Fa-f]{8}|$authkey" "$RIG_DIR/tinytail.log"; then
    rig_fail "8: a secret reached tinytail's log"
  fi
  store="$(rig_exec rtr "$TT" store info --state "$tt_dir/state.img")"
  ! grep -q '^  tka-aum ' <<<"$store" && grep -q '^  tka-state ' <<<"$store" ||
    rig_fail "8: after local-disable the store should keep only tka-state: $store"
  pass "8: bad input gives one-line errors with exit 1; no disablement secret or auth key in tinytail's log; after local-disable the store holds tka-state only"
)

source "$here/../rig/rig.sh"
rig_assert_clean "$RIG"
echo "lock: teardown left nothing of $RIG"
echo "lock: all checks passed"
