#!/usr/bin/env bash
# End-to-end proof 2 of issue #15 (HTTPS certificates), the ground a Rust ACME client will be
# proven on: Debian's Pebble (an RFC 8555 test CA that really validates DNS-01; never
# PEBBLE_VA_ALWAYS_VALID) and pebble-challtestsrv (its DNS) on the rig's control host, our test
# control (tests/interop/cmd/testctl -challtestsrv) giving every node CertDomains and answering
# /machine/set-dns, and real tailscaled nodes (the pinned v1.101) running `tailscale cert` with
# TS_DEBUG_ACME_DIRECTORY_URL=$PEBBLE_DIR and SSL_CERT_FILE=$RIG_CA (Pebble's listener has a rig CA
# certificate). Each check prints what it verified; the first failure stops the run with a
# non-zero exit.
#
#   tests/e2e/cert.sh    (root; needs Debian's pebble from scripts/setup-toolchain; TINYTAIL_BIN
#                         is accepted and unused: tinytail has no ACME client yet)
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
# Not covered here: renewal (`--min-validity`), wildcards; the c2n /tls-cert-status answer (no
# certificate) is tests/e2e/c2n.sh's.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
RIG="tt$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
export RIG

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
  pebble_pid="$RIG_LAST_PID"
  rig_testctl_start -auth-key "$authkey" -magicdns "$domain"
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
)

source "$here/../rig/rig.sh"
rig_assert_clean "$RIG"
echo "cert: teardown left nothing of $RIG"
echo "cert: all checks passed"
