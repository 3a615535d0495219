#!/usr/bin/env bash
# End-to-end proofs of issue #15 (HTTPS certificates), for tailscaled (proof 2: the rig is right)
# and for tinytail (T1-T8): Debian's Pebble (an RFC 8555 test CA that really validates DNS-01; never
# PEBBLE_VA_ALWAYS_VALID) and pebble-challtestsrv (its DNS) on the rig's control host, our test
# control (tests/interop/cmd/testctl -challtestsrv) giving every node CertDomains and answering
# /machine/set-dns, and real tailscaled nodes (the pinned v1.101) running `tailscale cert` with
# TS_DEBUG_ACME_DIRECTORY_URL=$PEBBLE_DIR and SSL_CERT_FILE=$RIG_CA (Pebble's listener has a rig CA
# certificate). Each check prints what it verified; the first failure stops the run with a
# non-zero exit.
#
#   tests/e2e/cert.sh    (root; needs Debian's pebble from scripts/setup-toolchain; builds
#                         tinytail in debug unless TINYTAIL_BIN names a binary)
#
# Checks, in order:
#   1  setup: Pebble (certificates valid 3600 s), challtestsrv, testctl with -challtestsrv; A and B
#      join; each one's CertDomains is exactly its own name (a.tail1234.ts.net, b.tail1234.ts.net)
#   2  `tailscale cert` on A for its name writes the certificate and the key; testctl forwarded
#      exactly one TXT record, _acme-challenge.a.tail1234.ts.net., untampered; challtestsrv got
#      it and Pebble's log shows the validation of A's name
#   3  the files: the certificate file is the leaf and Pebble's intermediate; `openssl verify`
#      of that chain against Pebble's root (its management /roots/0) passes for the name, and
#      against the rig CA fails; the leaf's CN and only SAN are A's name, it lives 3600 s (the
#      configured validity), its key is the key file's (EC P-256, mode 0600); tailscaled keeps
#      the same certificate in its state directory
#   4  A asking for B's name is refused by tailscaled ("invalid domain"), writes nothing and sends
#      no set-dns
#   5  tampered TXT: with testctl forwarding a wrong value, Pebble's validation of B's name sets
#      the authorization INVALID, `tailscale cert` on B fails (order status: invalid), writes no
#      files and leaves no
#      certificate in B's state; testctl's record for B is marked tampered; with tampering off
#      the same command succeeds and the chain verifies (so the TXT value made the difference)
#   T1 tinytail (hostname router) joins; `tinytail cert` without a domain gives tailscale's usage
#      hint naming its CertDomain, another node's name is refused with tailscale's words and
#      nothing written; --status says "No certificate found" with the CT-log notice; control's
#      c2n /tls-cert-status (testctl's /debug/c2n) gets {"Missing":true,...}
#   T2 `tinytail cert` for its name: CT notice, both files (key 0600, P-256, matching), the chain
#      verifies against Pebble's root, status Valid in `cert --status` and `status --json`, `store
#      info` lists the account, chain and key records without values
#   T2b c2n gets {"Valid":true} with the leaf's dates; tailscaled A fetches https://NAME/ on
#      tinytail's tailnet address at 443, verified against Pebble's root only; the LAN page
#      stays; headless chromium in A's namespace loads the page over HTTPS, sets the password,
#      signs in and reads "Valid" in its certificate section
#   T3 after a restart the stored certificate is Valid and reused ("unchanged"), no set-dns
#   T4 a tampered TXT value: Pebble refuses, the error says so, files and store unchanged, status
#      still Valid with LastError
#   T5 kill -9 during an issuance (after its set-dns): the store keeps the old certificate, the
#      next issuance stores a new one
#   T7 renewal on its own (proof 3 and the CA-down fault): Pebble restarted with 5-minute
#      certificates (and no memory of our account, which the agent replaces); renewal planned at
#      2/3 of the lifetime less jitter; tinytail restarted at +60 s; the CA down from +100 s: two
#      failed renewals with backoff, the old certificate Valid and kept, status says why; the CA
#      back: the agent renews on its own before the old certificate expires, and the page
#      serves the new certificate from the same process and listener
#   T8 a 20-second certificate with the CA down: "Certificate expired" in --status, status --json
#      and c2n; tailscaled B's certificate written under our name into the stopped agent's store
#      (hal example store_put_cert, as a restored backup would): Invalid with the reason, in c2n
#      too, and not served; the next `tinytail cert` replaces it
#   T6 Headscale (set-dns 501): one clear line offering --dns-hook; a non-executable hook is
#      refused; with a hook that writes into challtestsrv (its stderr shown) the certificate
#      verifies; a failing hook aborts with its stderr and the store keeps the old certificate
# Not covered: Let's Encrypt itself, ARI (Debian's Pebble offers no renewal info), wildcards.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
RIG="tt$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
export RIG
root="$(cd "$here/../.." && pwd)"
TT="$(source "$here/../rig/rig.sh"; rig_tinytail_bin cert)"
# The page over HTTPS is checked in Debian's headless chromium, as web.sh does (never skipped).
"$root/tests/browser/setup" ||
  { echo "cert: FAIL tests/browser/setup failed: the HTTPS page check needs Debian's chromium and playwright-core" >&2; exit 1; }
# T8 writes another name's certificate into a stopped agent's store (a restored backup).
(cd "$root" && cargo build -q -p tinytail-hal --example store_put_cert) ||
  { echo "cert: FAIL building the store_put_cert example" >&2; exit 1; }
STORE_PUT_CERT="${CARGO_TARGET_DIR:-$root/target}/debug/examples/store_put_cert"

# Pebble comes from Debian (scripts/setup-toolchain installs it).
if ! command -v pebble >/dev/null || ! command -v pebble-challtestsrv >/dev/null; then
  echo "cert: FAIL Debian's pebble is missing (run scripts/setup-toolchain)" >&2
  exit 1
fi
pass() { printf 'cert: ok  %s\n' "$*"; }
# Output is captured before grep looks at it: under pipefail, `cmd | grep -q` fails whenever
# grep's early exit makes cmd die of SIGPIPE.

(
  source "$here/../rig/rig.sh"
  rig_up
  validity=3600
  domain=tail1234.ts.net
  authkey="tskey-auth-rig$RIG"
  rig_pebble_start "$validity"
  pebble_pid="$RIG_LAST_PID" challtestsrv_pid="${RIG_PIDS[-2]}"
  rig_testctl_start -auth-key "$authkey" -magicdns "$domain"
  testctl_pid="$RIG_LAST_PID"
  out="$RIG_DIR/out"
  mkdir -p "$out"

  rig_add_ns b
  rig_attach b eth0 p-b 198.18.0.21/24
  # join NS NAME: tailscaled NAME in NS, told where Pebble is, then `tailscale up` to testctl.
  join() {
    rig_tailscaled_start "$1" "$2" TS_DEBUG_ACME_DIRECTORY_URL="$PEBBLE_DIR"
    rig_ts "$2" up --login-server="$TC_URL" --auth-key="$authkey" --hostname="$2" \
      --accept-dns=false --netfilter-mode=off --timeout=60s >/dev/null ||
      rig_fail "tailscale up ($2) failed: $(tail -n 5 "$RIG_DIR/$2.log")"
  }
  cert_domains() { rig_ts "$1" status --json | jq -c '.CertDomains'; }
  # cert NAME DOMAIN: `tailscale cert` on NAME into $out/NAME.{crt,key}; output in $out/NAME.cert.out.
  cert() {
    timeout 120 "$(rig_peers)/tailscale" --socket="$RIG_DIR/$1/tailscaled.sock" cert \
      --cert-file "$out/$1.crt" --key-file "$out/$1.key" "$2" >"$out/$1.cert.out" 2>&1
  }
  setdns() { rig_testctl /debug/set-dns; }
  # verify_chain CHAIN ROOT DOMAIN: openssl verify of CHAIN's first certificate, with the others
  # as intermediates, against ROOT alone, for DOMAIN; output in CHAIN.verify.
  verify_chain() {
    local chain="$1" root="$2" name="$3"
    awk -v leaf="$chain.leaf" -v rest="$chain.rest" '
      /-----BEGIN CERTIFICATE-----/ { n++ }
      { print > (n == 1 ? leaf : rest) }' "$chain"
    openssl verify -no-CApath -no-CAstore -CAfile "$root" -untrusted "$chain.rest" \
      -verify_hostname "$name" "$chain.leaf" >"$chain.verify" 2>&1
  }
  ncerts() { grep -c -- '-----BEGIN CERTIFICATE-----' "$1"; }

  a_name="a.$domain"
  b_name="b.$domain"
  join cli a
  join b b
  [[ "$(cert_domains a)" == "[\"$a_name\"]" ]] || rig_fail "1: A's CertDomains: $(cert_domains a)"
  [[ "$(cert_domains b)" == "[\"$b_name\"]" ]] || rig_fail "1: B's CertDomains: $(cert_domains b)"
  rig_exec ctl curl -sf --cacert "$RIG_CA" -o "$out/pebble-root.pem" "$PEBBLE_ROOTS_URL" ||
    rig_fail "1: fetching Pebble's root from $PEBBLE_ROOTS_URL"
  pebble_env="$(tr '\0' '\n' <"/proc/$pebble_pid/environ")"
  ! grep -q '^PEBBLE_VA_ALWAYS_VALID=' <<<"$pebble_env" || rig_fail "1: pebble runs with PEBBLE_VA_ALWAYS_VALID"
  pass "1: pebble at $PEBBLE_DIR validating for real (no PEBBLE_VA_ALWAYS_VALID), challtestsrv at $CHALLTESTSRV_URL;" \
    "A and B joined testctl with CertDomains [$a_name] and [$b_name]; Pebble's root: $(openssl x509 -in "$out/pebble-root.pem" -noout -subject)"

  # --- 2: tailscale cert on A ----------------------------------------------------------------
  start=$SECONDS
  cert a "$a_name" || rig_fail "2: tailscale cert $a_name failed: $(cat "$out/a.cert.out"); tailscaled: $(grep -i acme "$RIG_DIR/a.log" | tail -n 5)"
  took=$((SECONDS - start))
  grep -q "Wrote public cert to $out/a.crt" "$out/a.cert.out" && grep -q "Wrote private key to $out/a.key" "$out/a.cert.out" ||
    rig_fail "2: tailscale cert output: $(cat "$out/a.cert.out")"
  recs="$(setdns)"
  [[ "$(jq length <<<"$recs")" == 1 ]] || rig_fail "2: testctl forwarded $(jq length <<<"$recs") records: $recs"
  jq -e --arg h "_acme-challenge.$a_name." '.[0] | .host == $h and .tampered == false and .forwarded == .value and (.value | length) == 43' \
    <<<"$recs" >/dev/null || rig_fail "2: testctl's record: $recs"
  grep -q "Added DNS-01 TXT challenge for Host \"_acme-challenge.$a_name.\"" "$RIG_DIR/challtestsrv.log" ||
    rig_fail "2: challtestsrv did not get the record: $(tail -n 5 "$RIG_DIR/challtestsrv.log")"
  grep -q "vaTask{Identifier:acme.Identifier{Type:\"dns\", Value:\"$a_name\"}" "$RIG_DIR/pebble.log" &&
    grep -q "set VALID by completed challenge" "$RIG_DIR/pebble.log" ||
    rig_fail "2: no validation in pebble's log: $(tail -n 10 "$RIG_DIR/pebble.log")"
  pass "2: tailscale cert $a_name wrote the certificate and key in ${took}s; testctl put one TXT record" \
    "into challtestsrv: $(jq -r '.[0] | .host + " = " + .value' <<<"$recs")"

  # --- 3: the certificate and the key ---------------------------------------------------------
  [[ "$(ncerts "$out/a.crt")" == 2 ]] || rig_fail "3: $out/a.crt holds $(ncerts "$out/a.crt") certificates, want leaf + intermediate"
  verify_chain "$out/a.crt" "$out/pebble-root.pem" "$a_name" ||
    rig_fail "3: openssl verify against Pebble's root: $(cat "$out/a.crt.verify")"
  ! verify_chain "$out/a.crt" "$RIG_CA" "$a_name" || rig_fail "3: the chain verifies against the rig CA too"
  grep -q "unable to get local issuer certificate\|unable to get issuer certificate" "$out/a.crt.verify" ||
    rig_fail "3: verify against the rig CA failed for another reason: $(cat "$out/a.crt.verify")"
  verify_chain "$out/a.crt" "$out/pebble-root.pem" "$a_name" # back to the passing run's files
  san="$(openssl x509 -in "$out/a.crt.leaf" -noout -ext subjectAltName | tail -n +2 | tr -d ' ')"
  [[ "$san" == "DNS:$a_name" ]] || rig_fail "3: SAN is $san, want DNS:$a_name"
  subject="$(openssl x509 -in "$out/a.crt.leaf" -noout -subject -nameopt RFC2253)"
  [[ "$subject" == "subject=CN=$a_name" ]] || rig_fail "3: $subject"
  issuer="$(openssl x509 -in "$out/a.crt.leaf" -noout -issuer)"
  grep -q "Pebble Intermediate CA" <<<"$issuer" || rig_fail "3: $issuer"
  nb="$(date -d "$(openssl x509 -in "$out/a.crt.leaf" -noout -startdate | cut -d= -f2)" +%s)"
  na="$(date -d "$(openssl x509 -in "$out/a.crt.leaf" -noout -enddate | cut -d= -f2)" +%s)"
  life=$((na - nb))
  ((life >= validity - 1 && life <= validity)) || rig_fail "3: the leaf lives ${life}s, want ${validity}s"
  grep -q -- "-----BEGIN EC PRIVATE KEY-----" "$out/a.key" || rig_fail "3: the key file is not a PEM EC private key"
  openssl pkey -in "$out/a.key" -noout -text 2>/dev/null | grep -q "ASN1 OID: prime256v1" || rig_fail "3: the key is not P-256"
  [[ "$(openssl pkey -in "$out/a.key" -pubout)" == "$(openssl x509 -in "$out/a.crt.leaf" -noout -pubkey)" ]] ||
    rig_fail "3: the key file's key is not the certificate's"
  [[ "$(stat -c %a "$out/a.key")" == 600 ]] || rig_fail "3: key file mode $(stat -c %a "$out/a.key")"
  cmp -s "$out/a.crt" "$RIG_DIR/a/certs/$a_name.crt" || rig_fail "3: tailscaled's own copy ($RIG_DIR/a/certs) differs or is missing"
  pass "3: chain of 2 verifies against Pebble's root for $a_name ($(cat "$out/a.crt.verify")), not against the rig CA;" \
    "CN and SAN $a_name, issuer '${issuer#issuer=}', ${life}s of validity, EC P-256 key 0600 matching the leaf; tailscaled keeps the same chain"

  # --- 4: another node's name -----------------------------------------------------------------
  rm -f "$out"/a.crt* "$out"/a.key
  ! cert a "$b_name" || rig_fail "4: A got a certificate for B's name: $(cat "$out/a.cert.out")"
  grep -q "invalid domain" "$out/a.cert.out" || rig_fail "4: unexpected error: $(cat "$out/a.cert.out")"
  [[ ! -e "$out/a.crt" && ! -e "$out/a.key" ]] || rig_fail "4: files were written"
  [[ "$(setdns | jq length)" == 1 ]] || rig_fail "4: a set-dns went out: $(setdns)"
  pass "4: A asking for $b_name is refused, nothing written, no set-dns: $(tail -n 1 "$out/a.cert.out")"

  # --- 5: a tampered TXT record ---------------------------------------------------------------
  rig_exec ctl curl -sf --cacert "$RIG_CA" -X POST "$TC_URL/debug/set-dns/tamper?on=true" >/dev/null || rig_fail "5: tamper on"
  ! cert b "$b_name" || rig_fail "5: B got a certificate with a tampered TXT record: $(cat "$out/b.cert.out")"
  grep -q "order .*status: invalid" "$out/b.cert.out" ||
    rig_fail "5: unexpected error: $(cat "$out/b.cert.out"); pebble: $(tail -n 5 "$RIG_DIR/pebble.log")"
  grep -q "Value:\"$b_name\"" "$RIG_DIR/pebble.log" && grep -q "set INVALID by completed challenge" "$RIG_DIR/pebble.log" ||
    rig_fail "5: pebble did not refuse the challenge: $(tail -n 5 "$RIG_DIR/pebble.log")"
  [[ ! -e "$out/b.crt" && ! -e "$out/b.key" ]] || rig_fail "5: files were written"
  [[ ! -e "$RIG_DIR/b/certs/$b_name.crt" ]] || rig_fail "5: tailscaled B stored a certificate"
  jq -e --arg h "_acme-challenge.$b_name." '.[-1] | .host == $h and .tampered and .forwarded != .value' <<<"$(setdns)" >/dev/null ||
    rig_fail "5: testctl's last record: $(setdns | jq -c '.[-1]')"
  refused="$(tail -n 1 "$out/b.cert.out"); pebble: $(grep -o "authz .* set INVALID by completed challenge" "$RIG_DIR/pebble.log" | head -n 1 | cut -c1-20)... set INVALID"
  rig_exec ctl curl -sf --cacert "$RIG_CA" -X POST "$TC_URL/debug/set-dns/tamper?on=false" >/dev/null || rig_fail "5: tamper off"
  cert b "$b_name" || rig_fail "5: with tampering off, tailscale cert $b_name failed: $(cat "$out/b.cert.out")"
  verify_chain "$out/b.crt" "$out/pebble-root.pem" "$b_name" || rig_fail "5: B's chain: $(cat "$out/b.crt.verify")"
  [[ "$(setdns | jq '[.[] | select(.tampered | not)] | length')" == 2 ]] || rig_fail "5: records: $(setdns)"
  pass "5: with a tampered TXT value B's tailscale cert fails ($refused), no files, none stored;" \
    "with the right value it succeeds and verifies against Pebble's root"

  # === tinytail ================================================================================
  # T1-T6: the same CA and control for tinytail on the router host (hostname "router").
  r_name="router.$domain"
  tt_dir="$RIG_DIR/tinytail"
  mkdir -p "$tt_dir"
  tt_sock="$tt_dir/tinytail.sock"
  tt() { rig_exec rtr "$TT" --socket "$tt_sock" "$@"; }
  tt_start() {
    rm -f "$tt_sock" # a SIGKILLed agent leaves its socket behind
    rig_bg rtr tinytail-$((++tt_runs)) env SSL_CERT_FILE="$RIG_CA" TS_DEBUG_ACME_DIRECTORY_URL="$PEBBLE_DIR" \
      "$TT" run --state "$tt_dir/state.img" --socket "$tt_sock" \
      --lan-interface lan0 --wan-interface wan0 --web-listen 192.0.2.1:8088
    TT_PID="$RIG_LAST_PID"
    rig_wait_for 10 "tinytail socket" test -S "$tt_sock" || rig_fail "tinytail run did not start: $(tail -n 5 "$RIG_DIR/tinytail-$tt_runs.log")"
  }
  tt_logs() { cat "$RIG_DIR"/tinytail-*.log; }
  tt_running() { [[ "$(tt status --json | jq -r .BackendState)" == Running ]]; }
  # tt_cert OUT ARGS...: `tinytail cert ARGS`, stdout and stderr in $out/OUT.
  tt_cert() { local o="$1"; shift; rig_exec rtr timeout 150 "$TT" --socket "$tt_sock" cert "$@" >"$out/$o" 2>&1; }
  tt_status_of() { tt cert --status --json "$r_name" | jq -r '.[0].Status'; }
  tt_field() { tt cert --status --json "$r_name" | jq -r ".[0].$1 // \"\""; }
  leaf_serial() { openssl x509 -in "$1" -noout -serial; }
  # c2n_cert DOMAIN: testctl asks tinytail for /tls-cert-status over c2n; prints testctl's
  # {status, body} with the body decoded.
  c2n_cert() {
    local path
    path="$(jq -rn --arg p "/tls-cert-status?domain=$1" '$p|@uri')"
    rig_exec ctl curl -sS --cacert "$RIG_CA" -X POST "$TC_URL/debug/c2n?node=router&timeout=20s&path=$path" |
      jq -c '.body as $b | .body = ($b | try fromjson catch $b)'
  }
  # The certificate tinytail serves on its tailnet address, as a tailscaled peer (A) sees it.
  served_serial() {
    local pem
    pem="$(rig_exec cli openssl s_client -connect "$tt_ip:443" -servername "$r_name" </dev/null 2>/dev/null)" || true
    openssl x509 -noout -serial <<<"$pem" 2>/dev/null || true
  }
  served_is() { [[ "$(served_serial)" == "$1" ]]; }
  # https_get PATH: GET https://NAME/PATH from A over the tailnet, verified against Pebble's root.
  https_get() {
    rig_exec cli curl -sS --max-time 10 --cacert "$out/pebble-root.pem" --resolve "$r_name:443:$tt_ip" \
      -o "$out/https.body" -w '%{http_code}' "https://$r_name/$1"
  }
  tt_runs=0
  tt_start
  tt up --login-server "$TC_URL" --auth-key "$authkey" --hostname router --timeout 60 >/dev/null ||
    rig_fail "T1: tinytail up failed: $(tt_logs | tail -n 5)"
  [[ "$(tt status --json | jq -c .CertDomains)" == "[\"$r_name\"]" ]] ||
    rig_fail "T1: tinytail's CertDomains: $(tt status --json | jq -c .CertDomains)"

  # --- T1: usage, wrong name, status before the first certificate --------------------------
  ! tt_cert usage.out || rig_fail "T1: tinytail cert without a domain succeeded"
  grep -q "Usage: tinytail cert \[flags\] <domain>" "$out/usage.out" && grep -qF "For domain, use \"$r_name\"." "$out/usage.out" ||
    rig_fail "T1: usage: $(cat "$out/usage.out")"
  ! tt_cert wrong.out --cert-file "$out/w.crt" --key-file "$out/w.key" "$a_name" || rig_fail "T1: tinytail got A's name"
  grep -qF "invalid domain \"$a_name\"; must be one of [\"$r_name\"]" "$out/wrong.out" || rig_fail "T1: wrong name: $(cat "$out/wrong.out")"
  [[ ! -e "$out/w.crt" && ! -e "$out/w.key" ]] || rig_fail "T1: files were written for a refused name"
  ndns_before="$(setdns | jq length)"
  [[ "$(tt_status_of)" == "No certificate found" ]] || rig_fail "T1: status before issuance: $(tt cert --status "$r_name")"
  tt cert --status "$r_name" >"$out/status0.out"
  grep -q "Certificate Transparency" "$out/status0.out" || rig_fail "T1: no CT notice before the first certificate: $(cat "$out/status0.out")"
  c2n_cert "$r_name" >"$out/c2n0.json"
  jq -e '.status == 200 and .body == {"Error": "no certificate", "Missing": true}' "$out/c2n0.json" >/dev/null ||
    rig_fail "T1: c2n /tls-cert-status before issuance: $(cat "$out/c2n0.json")"
  pass "T1: usage hint names $r_name; $a_name refused ($(tail -n 1 "$out/wrong.out")), nothing written;" \
    "status 'No certificate found' with the CT-log notice; control's c2n gets $(jq -c .body "$out/c2n0.json")"

  # --- T2: the first certificate ------------------------------------------------------------
  start=$SECONDS
  tt_cert t2.out --cert-file "$out/r.crt" --key-file "$out/r.key" "$r_name" ||
    rig_fail "T2: tinytail cert failed: $(cat "$out/t2.out"); log: $(tt_logs | grep cert | tail -n 5)"
  took=$((SECONDS - start))
  grep -q "Certificate Transparency" "$out/t2.out" || rig_fail "T2: no CT notice on the first issuance: $(cat "$out/t2.out")"
  grep -q "Wrote public cert to $out/r.crt" "$out/t2.out" && grep -q "Wrote private key to $out/r.key" "$out/t2.out" ||
    rig_fail "T2: output: $(cat "$out/t2.out")"
  recs="$(setdns)"
  jq -e --arg h "_acme-challenge.$r_name." '.[-1] | .host == $h and .tampered == false and (.value | length) == 43' \
    <<<"$recs" >/dev/null || rig_fail "T2: testctl's last record: $(jq -c '.[-1]' <<<"$recs")"
  [[ "$(ncerts "$out/r.crt")" == 2 ]] || rig_fail "T2: $out/r.crt holds $(ncerts "$out/r.crt") certificates"
  verify_chain "$out/r.crt" "$out/pebble-root.pem" "$r_name" || rig_fail "T2: openssl verify: $(cat "$out/r.crt.verify")"
  [[ "$(openssl pkey -in "$out/r.key" -pubout)" == "$(openssl x509 -in "$out/r.crt.leaf" -noout -pubkey)" ]] ||
    rig_fail "T2: the key file's key is not the certificate's"
  openssl pkey -in "$out/r.key" -noout -text 2>/dev/null | grep -q "ASN1 OID: prime256v1" || rig_fail "T2: the key is not P-256"
  [[ "$(stat -c %a "$out/r.key")" == 600 ]] || rig_fail "T2: key file mode $(stat -c %a "$out/r.key")"
  [[ "$(tt_status_of)" == Valid ]] || rig_fail "T2: status after issuance: $(tt cert --status "$r_name")"
  [[ "$(tt status --json | jq -r --arg d "$r_name" '.Certificates[] | select(.Domain == $d) | .Status')" == Valid ]] ||
    rig_fail "T2: status --json: $(tt status --json | jq -c .Certificates)"
  tt store info --state "$tt_dir/state.img" >"$out/store-info.out" 2>&1 || true
  for kind in acme-account-key certificate certificate-key; do
    grep -q "$kind" "$out/store-info.out" || rig_fail "T2: store info lacks $kind: $(cat "$out/store-info.out")"
  done
  ! grep -q "BEGIN\|PRIVATE" "$out/store-info.out" || rig_fail "T2: store info shows values"
  serial1="$(leaf_serial "$out/r.crt.leaf")"
  pass "T2: tinytail cert $r_name in ${took}s: chain verifies against Pebble's root, P-256 key 0600 matches," \
    "status Valid (cert --status, status --json); store info lists the account, chain and key records without values"

  # --- T2b: c2n, the page over HTTPS on the tailnet, in curl and in chromium ---------------
  c2n_cert "$r_name" >"$out/c2n1.json"
  jq -e --arg nb "$(tt_field NotBefore)" --arg na "$(tt_field NotAfter)" \
    '.status == 200 and .body == {"Valid": true, "NotBefore": $nb, "NotAfter": $na}' "$out/c2n1.json" >/dev/null ||
    rig_fail "T2b: c2n after issuance: $(cat "$out/c2n1.json") (status $(tt cert --status --json "$r_name"))"
  tt_ip="$(tt status --json | jq -r '.Self.TailscaleIPs[0]')"
  rig_wait_for 15 "tinytail serving $serial1 on $tt_ip:443" served_is "$serial1" ||
    rig_fail "T2b: no HTTPS on $tt_ip:443: $(served_serial); log: $(tt_logs | grep 'web:' | tail -n 3)"
  code="$(https_get "")" || rig_fail "T2b: curl https://$r_name/ from A: $code"
  [[ "$code" == 200 || "$code" == 303 ]] || rig_fail "T2b: https://$r_name/ answered $code: $(head -c 300 "$out/https.body")"
  ! rig_exec cli curl -sS --max-time 10 --cacert "$RIG_CA" --resolve "$r_name:443:$tt_ip" -o /dev/null "https://$r_name/" 2>/dev/null ||
    rig_fail "T2b: the page verified against the rig CA too"
  rig_exec lan curl -sf -o /dev/null "http://192.0.2.1:8088/" || rig_fail "T2b: the LAN listener is gone"
  setup_code="$(tt web setup-code)" || rig_fail "T2b: tinytail web setup-code failed: $setup_code"
  setup_code="${setup_code%%$'\n'*}"
  spki="$(openssl x509 -in "$out/r.crt.rest" -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -binary | base64)"
  mkdir -p "$out/web/traffic"
  rig_exec cli env TT_URL="https://$r_name/" TT_TAILNET_IP="$tt_ip" TT_SPKI="$spki" TT_SETUP_CODE="$setup_code" \
    TT_PASSWORD="cert-web-$RIG-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')" TT_OUT="$out/web" \
    TT_TRAFFIC="$out/web/traffic" HOME="$RIG_DIR" node "$root/tests/browser/web.mjs" https >"$out/browser.out" 2>&1 ||
    rig_fail "T2b: the browser's https scenario: $(tr "\n" " " <"$out/browser.out" | cut -c1-1500)"
  pass "T2b: control's c2n gets $(jq -c .body "$out/c2n1.json"); A fetches https://$r_name/ on $tt_ip:443 (HTTP $code," \
    "verified against Pebble's root only); the LAN page stays; chromium: $(grep -o 'over HTTPS.*' "$out/browser.out")"

  # --- T3: restart, unchanged files ---------------------------------------------------------
  kill "$TT_PID"; wait "$TT_PID" 2>/dev/null || true
  tt_start
  rig_wait_for 30 "tinytail running again" tt_running || rig_fail "T3: not running after restart"
  [[ "$(tt_status_of)" == Valid ]] || rig_fail "T3: status after restart: $(tt cert --status "$r_name")"
  tt_cert t3.out --cert-file "$out/r.crt" --key-file "$out/r.key" "$r_name" || rig_fail "T3: $(cat "$out/t3.out")"
  grep -q "Public cert unchanged at $out/r.crt" "$out/t3.out" && grep -q "Private key unchanged at $out/r.key" "$out/t3.out" ||
    rig_fail "T3: output: $(cat "$out/t3.out")"
  [[ "$(setdns | jq length)" == "$(jq length <<<"$recs")" ]] || rig_fail "T3: a valid certificate sent a new set-dns"
  pass "T3: after a restart the stored certificate is Valid and reused: $(tr '\n' ' ' <"$out/t3.out")"

  # --- T4: a tampered TXT value: Pebble refuses, nothing stored, the old certificate stays -----
  rig_exec ctl curl -sf --cacert "$RIG_CA" -X POST "$TC_URL/debug/set-dns/tamper?on=true" >/dev/null || rig_fail "T4: tamper on"
  cp "$out/r.crt" "$out/r.crt.before"
  ! tt_cert t4.out --min-validity 100000h --cert-file "$out/r.crt" --key-file "$out/r.key" "$r_name" ||
    rig_fail "T4: tinytail got a certificate with a tampered record"
  grep -qi "incorrect TXT\|unauthorized\|invalid" "$out/t4.out" || rig_fail "T4: unclear error: $(cat "$out/t4.out")"
  cmp -s "$out/r.crt" "$out/r.crt.before" || rig_fail "T4: the certificate file changed"
  [[ "$(tt_status_of)" == Valid ]] || rig_fail "T4: status after the refusal: $(tt cert --status "$r_name")"
  [[ -n "$(tt_field LastError)" ]] || rig_fail "T4: status does not say why: $(tt cert --status --json "$r_name")"
  tt_cert t4b.out --cert-file - --key-file "$out/stdout-run.key" "$r_name" >/dev/null || rig_fail "T4: $(cat "$out/t4b.out")"
  [[ "$(openssl x509 -in "$out/t4b.out" -noout -serial 2>/dev/null)" == "$serial1" ]] || rig_fail "T4: the stored certificate changed"
  rig_exec ctl curl -sf --cacert "$RIG_CA" -X POST "$TC_URL/debug/set-dns/tamper?on=false" >/dev/null || rig_fail "T4: tamper off"
  pass "T4: a tampered TXT record: $(tail -n 1 "$out/t4.out" | cut -c1-160); files and store unchanged, status Valid with LastError"

  # --- T5: kill -9 during an issuance, then a clean one -------------------------------------
  rig_exec ctl curl -sf --cacert "$RIG_CA" -X POST "$TC_URL/debug/set-dns/delay?d=30s" >/dev/null || rig_fail "T5: delay on"
  ndns="$(setdns | jq length)"
  more_records() { (($(setdns | jq length) > ndns)); }
  rig_exec rtr timeout 150 "$TT" --socket "$tt_sock" cert --min-validity 100000h --cert-file "$out/k.crt" \
    --key-file "$out/k.key" "$r_name" >"$out/t5.out" 2>&1 &
  cli_pid=$!
  rig_wait_for 60 "the record of the interrupted issuance" more_records ||
    rig_fail "T5: no set-dns during the issuance: $(cat "$out/t5.out")"
  kill -9 "$TT_PID"; wait "$TT_PID" "$cli_pid" 2>/dev/null || true
  rig_exec ctl curl -sf --cacert "$RIG_CA" -X POST "$TC_URL/debug/set-dns/delay?d=0s" >/dev/null || rig_fail "T5: delay off"
  [[ ! -e "$out/k.crt" ]] || rig_fail "T5: the interrupted issuance wrote a file"
  tt_start
  rig_wait_for 30 "tinytail running again" tt_running || rig_fail "T5: not running after kill -9"
  [[ "$(tt_status_of)" == Valid ]] || rig_fail "T5: status after kill -9: $(tt cert --status "$r_name")"
  tt_cert t5b.out --cert-file - --key-file "$out/stdout-run.key" "$r_name" >/dev/null || rig_fail "T5: $(cat "$out/t5b.out")"
  [[ "$(openssl x509 -in "$out/t5b.out" -noout -serial)" == "$serial1" ]] || rig_fail "T5: the store lost the old certificate"
  tt_cert t5c.out --min-validity 100000h --cert-file "$out/r.crt" --key-file "$out/r.key" "$r_name" ||
    rig_fail "T5: the next issuance failed: $(cat "$out/t5c.out")"
  verify_chain "$out/r.crt" "$out/pebble-root.pem" "$r_name" || rig_fail "T5: new chain: $(cat "$out/r.crt.verify")"
  serial2="$(leaf_serial "$out/r.crt.leaf")"
  [[ "$serial2" != "$serial1" ]] || rig_fail "T5: --min-validity did not renew"
  grep -q "Wrote public cert" "$out/t5c.out" || rig_fail "T5: output: $(cat "$out/t5c.out")"
  pass "T5: kill -9 mid-issuance left the old certificate ($serial1) intact; the next issuance stored $serial2"

  # --- T7: renewal on its own: 5-minute certificates, a restart in the middle, the CA down ----
  # pebble_restart SECONDS: a new Pebble (new root, no memory of our account) and challtestsrv.
  pebble_restart() {
    kill "$pebble_pid" "$challtestsrv_pid" 2>/dev/null || true
    wait "$pebble_pid" "$challtestsrv_pid" 2>/dev/null || true
    rig_pebble_start "$1"
    pebble_pid="$RIG_LAST_PID" challtestsrv_pid="${RIG_PIDS[-2]}"
    rig_exec ctl curl -sf --cacert "$RIG_CA" -o "$out/pebble-root.pem" "$PEBBLE_ROOTS_URL" || rig_fail "Pebble's new root"
  }
  epoch() { date -d "$1" +%s; }
  sleep_until() { local now; now="$(date +%s)"; (($1 <= now)) || sleep $(($1 - now)); }
  renewal_failures() { tt_logs | grep -c "cert: renewing $r_name failed" || true; }
  tt_serial() { tt cert --cert-file - --key-file "$out/stdout-run.key" "$r_name" 2>/dev/null | openssl x509 -noout -serial; }
  pebble_restart 300
  tt_cert t7a.out --min-validity 100000h --cert-file "$out/s.crt" --key-file "$out/s.key" "$r_name" ||
    rig_fail "T7: the 5-minute certificate: $(cat "$out/t7a.out")"
  grep -q "does not know our account any more" "$out/t7a.out" || rig_fail "T7: the forgotten account: $(cat "$out/t7a.out")"
  verify_chain "$out/s.crt" "$out/pebble-root.pem" "$r_name" || rig_fail "T7: chain: $(cat "$out/s.crt.verify")"
  s1="$(leaf_serial "$out/s.crt.leaf")"
  nb1="$(epoch "$(tt_field NotBefore)")" na1="$(epoch "$(tt_field NotAfter)")"
  # The renewal task plans the new certificate's renewal on its next tick (<= 5 s).
  planned() { [[ -n "$(tt_field RenewAt)" ]]; }
  rig_wait_for 10 "the renewal planned" planned || rig_fail "T7: no RenewAt: $(tt cert --status --json "$r_name")"
  due1="$(epoch "$(tt_field RenewAt)")"
  ((na1 - nb1 >= 299 && na1 - nb1 <= 300 && due1 >= nb1 + 189 && due1 <= nb1 + 200)) ||
    rig_fail "T7: lifetime $((na1 - nb1))s, renewal planned at +$((due1 - nb1))s (want 2/3 less <= 1/30):" \
      "$(tt cert --status --json "$r_name"); $(tt_logs | grep "cert: $r_name renews" | tail -n 2)"
  sleep_until $((nb1 + 60))
  kill "$TT_PID"; wait "$TT_PID" 2>/dev/null || true
  tt_start
  rig_wait_for 30 "tinytail running again" tt_running || rig_fail "T7: not running after the restart"
  rig_wait_for 15 "the 5-minute certificate served after the restart" served_is "$s1" ||
    rig_fail "T7: served after the restart: $(served_serial)"
  serving_pid="$TT_PID" serving_log="$RIG_DIR/tinytail-$tt_runs.log"
  sleep_until $((nb1 + 100))
  kill "$pebble_pid" "$challtestsrv_pid"; wait "$pebble_pid" "$challtestsrv_pid" 2>/dev/null || true
  two_failures() { (($(renewal_failures) >= 2)); }
  rig_wait_for 200 "two failed renewals while the CA is down" two_failures ||
    rig_fail "T7: renewals while the CA is down: $(tt_logs | grep 'cert:' | tail -n 5)"
  [[ "$(tt_status_of)" == Valid && "$(tt_serial)" == "$s1" ]] || rig_fail "T7: the old certificate is not kept: $(tt cert --status "$r_name")"
  served_is "$s1" || rig_fail "T7: with the CA down the page serves $(served_serial), not the old $s1"
  why="$(tt_field LastError)" retry="$(tt_field RetryAt)"
  [[ "$why" == *"ACME server: cannot reach https://198.18.0.10:14000"* && -n "$retry" ]] || rig_fail "T7: status does not say why: $(tt cert --status --json "$r_name")"
  gaps="$(tt_logs | grep "cert: renewing $r_name failed" | head -n 2 | grep -o 'retry at [0-9T:Z-]*' | cut -c10- | paste -sd ' ')"
  pebble_restart 300
  renewed() { [[ "$(tt_serial)" != "$s1" ]]; }
  rig_wait_for 90 "the renewal after the CA came back" renewed ||
    rig_fail "T7: no renewal after the CA came back: $(tt_logs | grep 'cert:' | tail -n 5)"
  renewed_at="$(date +%s)"
  s2="$(tt_serial)"
  rig_wait_for 10 "the renewed certificate served" served_is "$s2" || rig_fail "T7: served after renewal: $(served_serial), want $s2"
  [[ "$TT_PID" == "$serving_pid" ]] && kill -0 "$serving_pid" || rig_fail "T7: the agent restarted during the renewal"
  [[ "$(grep -c 'web: page also at https://' "$serving_log")" == 1 ]] && ! grep -q "stopped listening for HTTPS" "$serving_log" ||
    rig_fail "T7: the HTTPS listener was not kept: $(grep 'web:' "$serving_log")"
  tt_cert t7b.out --cert-file "$out/s2.crt" --key-file "$out/s2.key" "$r_name" || rig_fail "T7: $(cat "$out/t7b.out")"
  verify_chain "$out/s2.crt" "$out/pebble-root.pem" "$r_name" || rig_fail "T7: renewed chain: $(cat "$out/s2.crt.verify")"
  nb2="$(epoch "$(tt_field NotBefore)")"
  ((nb2 < na1 && renewed_at < na1)) || rig_fail "T7: renewed at +$((nb2 - nb1))s, after the old one expired (+300s)"
  [[ "$(tt_status_of)" == Valid && -z "$(tt_field LastError)" ]] || rig_fail "T7: status after renewal: $(tt cert --status "$r_name")"
  pass "T7: a 5-minute certificate planned for renewal at +$((due1 - nb1))s; restarted at +60s; with the CA down" \
    "the old certificate stayed Valid and served, status said '$(cut -c1-80 <<<"$why")', retries at $gaps;" \
    "once the CA came back the agent renewed on its own at +$((nb2 - nb1))s, before the old one expired;" \
    "the page served $s1, then $s2 from the same listener (one bind in the log)"

  # --- T8: status of an expired certificate, of another name's, over the CLI and c2n ----------
  pebble_restart 20
  tt_cert t8a.out --min-validity 100000h --cert-file "$out/e.crt" --key-file "$out/e.key" "$r_name" ||
    rig_fail "T8: the 20-second certificate: $(cat "$out/t8a.out")"
  na3="$(epoch "$(tt_field NotAfter)")"
  kill "$pebble_pid" "$challtestsrv_pid"; wait "$pebble_pid" "$challtestsrv_pid" 2>/dev/null || true
  sleep_until $((na3 + 2))
  [[ "$(tt_status_of)" == "Certificate expired" ]] || rig_fail "T8: status after NotAfter: $(tt cert --status "$r_name")"
  [[ "$(tt status --json | jq -r --arg d "$r_name" '.Certificates[] | select(.Domain == $d) | .Status')" == "Certificate expired" ]] ||
    rig_fail "T8: status --json: $(tt status --json | jq -c .Certificates)"
  c2n_cert "$r_name" >"$out/c2n2.json"
  jq -e --arg na "$(tt_field NotAfter)" '.status == 200 and .body.Expired == true and .body.NotAfter == $na and
    (.body | has("Valid") or has("Missing") | not)' "$out/c2n2.json" >/dev/null || rig_fail "T8: c2n for the expired one: $(cat "$out/c2n2.json")"
  # Another name's certificate under ours: tailscaled B's, as a restored backup would put it.
  kill "$TT_PID"; wait "$TT_PID" 2>/dev/null || true
  openssl pkcs8 -topk8 -nocrypt -in "$out/b.key" -outform DER -out "$out/b.pk8"
  "$STORE_PUT_CERT" "$tt_dir/state.img" "$r_name" "$out/b.crt" "$out/b.pk8" || rig_fail "T8: store_put_cert"
  tt_start
  rig_wait_for 30 "tinytail running again" tt_running || rig_fail "T8: not running after the restart"
  [[ "$(tt_status_of)" == Invalid && -n "$(tt_field Error)" ]] || rig_fail "T8: another name's certificate: $(tt cert --status --json "$r_name")"
  c2n_cert "$r_name" >"$out/c2n3.json"
  jq -e --arg e "$(tt_field Error)" '.status == 200 and .body.Error == $e and
    (.body | has("Valid") or has("Expired") or has("Missing") | not)' "$out/c2n3.json" >/dev/null ||
    rig_fail "T8: c2n for another name's certificate: $(cat "$out/c2n3.json")"
  ! served_is "$(leaf_serial "$out/b.crt.leaf")" || rig_fail "T8: the page serves B's certificate"
  pebble_restart 3600
  tt_cert t8b.out --cert-file "$out/r.crt" --key-file "$out/r.key" "$r_name" || rig_fail "T8: issuance over the invalid one: $(cat "$out/t8b.out")"
  verify_chain "$out/r.crt" "$out/pebble-root.pem" "$r_name" && [[ "$(tt_status_of)" == Valid ]] ||
    rig_fail "T8: after the new issuance: $(tt cert --status "$r_name")"
  pass "T8: expired: cert --status and status --json 'Certificate expired', c2n $(jq -c .body "$out/c2n2.json");" \
    "B's certificate stored under $r_name: Invalid, c2n $(jq -c .body "$out/c2n3.json"), not served;" \
    "the next tinytail cert replaced it with a Valid one"

  # --- T6: Headscale (no set-dns) and --dns-hook ----------------------------------------------
  kill "$testctl_pid"; wait "$testctl_pid" 2>/dev/null || true
  rig_headscale_start
  rig_exec rtr timeout 30 "$TT" --socket "$tt_sock" logout >/dev/null 2>&1 || true
  tt up --login-server "$HS_URL" --auth-key "$(rig_authkey)" --hostname router --timeout 60 >/dev/null ||
    rig_fail "T6: tinytail up to Headscale failed: $(tt_logs | tail -n 5)"
  h_name="router.hooked.test"
  ! tt_cert t6a.out --cert-file "$out/h.crt" --key-file "$out/h.key" "$h_name" || rig_fail "T6: a certificate without set-dns"
  grep -q "this control server cannot publish ACME DNS records" "$out/t6a.out" && grep -q -- "--dns-hook" "$out/t6a.out" ||
    rig_fail "T6: Headscale's 501: $(cat "$out/t6a.out")"
  [[ ! -e "$out/h.crt" ]] || rig_fail "T6: a file was written"
  printf '#!/bin/sh\nexit 0\n' >"$RIG_DIR/not-a-hook"
  chmod 644 "$RIG_DIR/not-a-hook"
  ! tt cert --dns-hook "$RIG_DIR/not-a-hook" >"$out/t6b.out" 2>&1 || rig_fail "T6: a non-executable hook was taken"
  grep -q "not an executable file" "$out/t6b.out" || rig_fail "T6: bad hook: $(cat "$out/t6b.out")"
  # The hook a Headscale user writes for their DNS provider; here the provider is challtestsrv.
  hook="$RIG_DIR/dns-hook"
  cat >"$hook" <<EOF
#!/bin/sh
# dns-hook set|clear NAME VALUE
case "\$1" in
  set) curl -sf -X POST -d "{\"host\":\"\$2.\",\"value\":\"\$3\"}" $CHALLTESTSRV_URL/set-txt || { echo "provider refused \$2" >&2; exit 1; }
       echo "published \$2" >&2 ;;
  clear) curl -sf -X POST -d "{\"host\":\"\$2.\"}" $CHALLTESTSRV_URL/clear-txt; echo "cleared \$2" >&2 ;;
  *) exit 2 ;;
esac
EOF
  chmod 755 "$hook"
  tt cert --dns-hook "$hook" >"$out/t6c.out" 2>&1 || rig_fail "T6: setting the hook: $(cat "$out/t6c.out")"
  tt_cert t6d.out --cert-file "$out/h.crt" --key-file "$out/h.key" "$h_name" ||
    rig_fail "T6: tinytail cert with the hook failed: $(cat "$out/t6d.out")"
  grep -q "dns hook: published _acme-challenge.$h_name" "$out/t6d.out" || rig_fail "T6: the hook's stderr is not shown: $(cat "$out/t6d.out")"
  verify_chain "$out/h.crt" "$out/pebble-root.pem" "$h_name" || rig_fail "T6: chain: $(cat "$out/h.crt.verify")"
  h_serial="$(leaf_serial "$out/h.crt.leaf")"
  failing="$RIG_DIR/dns-hook-failing"
  printf '#!/bin/sh\necho "provider API: quota exceeded" >&2\nexit 3\n' >"$failing"
  chmod 755 "$failing"
  tt cert --dns-hook "$failing" >/dev/null || rig_fail "T6: setting the failing hook"
  ! tt_cert t6e.out --min-validity 100000h --cert-file "$out/h2.crt" --key-file "$out/h2.key" "$h_name" ||
    rig_fail "T6: a failing hook gave a certificate"
  grep -q "quota exceeded" "$out/t6e.out" || rig_fail "T6: the failing hook's stderr: $(cat "$out/t6e.out")"
  [[ ! -e "$out/h2.crt" ]] || rig_fail "T6: the failing hook wrote a file"
  tt_cert t6f.out --cert-file - --key-file "$out/stdout-run.key" "$h_name" >/dev/null || rig_fail "T6: $(cat "$out/t6f.out")"
  [[ "$(openssl x509 -in "$out/t6f.out" -noout -serial)" == "$h_serial" ]] || rig_fail "T6: the failing hook changed the store"
  pass "T6: Headscale: $(grep -o 'this control server[^;]*' "$out/t6a.out" | head -n 1); with --dns-hook" \
    "the certificate for $h_name verifies (hook said: $(grep -o 'dns hook: published .*' "$out/t6d.out" | head -n 1));" \
    "a failing hook aborts with its stderr ($(grep -o 'quota exceeded' "$out/t6e.out" | head -n 1)) and nothing stored"
)

source "$here/../rig/rig.sh"
rig_assert_clean "$RIG"
echo "cert: teardown left nothing of $RIG"
echo "cert: all checks passed"
