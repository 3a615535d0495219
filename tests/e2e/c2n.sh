#!/usr/bin/env bash
# testctl's c2n trigger against a real tailscaled (the pinned v1.101): POST /debug/c2n on
# testctl's admin HTTP sends the node, on its open map stream, a keep-alive carrying a c2n
# PingRequest; tailscaled serves the request with its c2n handlers and POSTs the HTTP response back
# over Noise; the call answers {"status": N, "body": "..."}.
#
#   tests/e2e/c2n.sh    (root)
#
# Checks:
#   1  A joins testctl; GET /tls-cert-status?domain=a.tail1234.ts.net (A has no certificate)
#      answers status 200 and tailscaled's C2NTLSCertInfo {"Error":"no certificate","Missing":true}
#   2  /tls-cert-status without domain: tailscaled's 400 "no 'domain'" comes back as status 400
#   3  unknown node: 404 from /debug/c2n; bad timeout: 400
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
RIG="tt$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
export RIG
pass() { printf 'c2n: ok  %s\n' "$*"; }

(
  source "$here/../rig/rig.sh"
  rig_up
  domain=tail1234.ts.net
  authkey="tskey-auth-rig$RIG"
  rig_testctl_start -auth-key "$authkey" -magicdns "$domain"
  rig_tailscaled_start cli a
  rig_ts a up --login-server="$TC_URL" --auth-key="$authkey" --hostname=a \
    --accept-dns=false --netfilter-mode=off --timeout=60s >/dev/null ||
    rig_fail "tailscale up (a) failed: $(tail -n 5 "$RIG_DIR/a.log")"
  # c2n QUERY: POST /debug/c2n?QUERY; prints the body, then the HTTP status on its own line.
  c2n() {
    rig_exec ctl curl -sS --cacert "$RIG_CA" -X POST -w '\n%{http_code}' "$TC_URL/debug/c2n?$1"
  }

  out="$(c2n "node=a&timeout=20s&path=$(jq -rn --arg p "/tls-cert-status?domain=a.$domain" '$p|@uri')")"
  [[ "$(tail -n 1 <<<"$out")" == 200 ]] || rig_fail "1: /debug/c2n: $out"
  json="$(head -n -1 <<<"$out")"
  jq -e '.status == 200 and (.body | fromjson) == {"Error": "no certificate", "Missing": true}' <<<"$json" >/dev/null ||
    rig_fail "1: $json"
  grep -q "answerC2NPing: got c2n request for /tls-cert-status" "$RIG_DIR/a.log" || rig_fail "1: tailscaled did not log the c2n request"
  pass "1: tailscaled answered /tls-cert-status over c2n: $(jq -c . <<<"$json")"

  out="$(c2n "node=a&path=%2Ftls-cert-status")"
  json="$(head -n -1 <<<"$out")"
  [[ "$(tail -n 1 <<<"$out")" == 200 ]] && jq -e '.status == 400 and (.body | startswith("no '"'"'domain'"'"'"))' <<<"$json" >/dev/null ||
    rig_fail "2: $out"
  pass "2: without domain: $(jq -c . <<<"$json")"

  out="$(c2n "node=nobody&path=%2Fecho")"
  [[ "$(tail -n 1 <<<"$out")" == 404 ]] || rig_fail "3: unknown node: $out"
  out2="$(c2n "node=a&path=%2Fecho&timeout=ten")"
  [[ "$(tail -n 1 <<<"$out2")" == 400 ]] || rig_fail "3: bad timeout: $out2"
  pass "3: unknown node 404 ($(head -n 1 <<<"$out")), bad timeout 400"
)

source "$here/../rig/rig.sh"
rig_assert_clean "$RIG"
echo "c2n: teardown left nothing of $RIG"
echo "c2n: all checks passed"
