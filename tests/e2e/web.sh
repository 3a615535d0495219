#!/usr/bin/env bash
# End-to-end proof of issue #8 (the local web page and API): Debian's headless chromium, driven
# by playwright-core from the rig's LAN host, against tinytail's page on the router's LAN
# address, with a real Headscale and a real tailscaled peer. Each check prints what it verified;
# the first failure stops the run with a non-zero exit.
#
#   tests/e2e/web.sh     (root; runs tests/browser/setup; builds tinytail in debug unless
#                         TINYTAIL_BIN is set; screenshots land in $TT_SCREENS, default
#                         /tmp/tinytail-screens; the phone screenshot of the status page also
#                         replaces docs/web-status-phone.png in the checkout, for the README)
#
# Checks, in order:
#   listen          `tinytail run` (own state and socket) refuses a web address on the WAN
#                   interface (--wan-interface wan0, 198.18.0.2) and 0.0.0.0 / [::] (exit 1, one
#                   line on stderr) unless --web-listen-any is given, with which it serves
#   rebinding       requests naming another host (Host: attacker.example:PORT, curl) get 403
#                   "forbidden...": GET /, GET /setup, POST /setup with a matching Origin and a
#                   valid double-submit CSRF pair (the password stays unset), GET /api/v2/device/self
#                   (again later with a valid API token)
#   browser join    a second chromium mapping attacker.example to the page's address (DNS
#                   rebinding) gets 403 for /, /setup and its POST /setup, and the page still asks
#                   for the first password; first run sets the password; security headers; cookie flags; CSRF field on
#                   every form; an API key pasted as auth key is refused as the CLI refuses it;
#                   log in with an auth key from the page; the tailscaled peer is listed; the LAN
#                   subnet is added with one click
#   headscale       `headscale nodes list-routes` shows 192.0.2.0/24 available; approve it
#   browser verify  sign in; the page shows the route enabled; phone and desktop screenshots once
#                   the datapath runs and the peer has a direct path (router pings peer1 first);
#                   page weight < 30 KB; an API token shown once; POSTs without the CSRF token,
#                   from a wrong Origin or with a stale session are refused; the 6th wrong
#                   password in a minute is refused (429)
#   api             /api/v2/device/self with fields default|all|default,all against the seed's
#                   device shape; clientConnectivity has magicsock's endpoints and netcheck's
#                   latencies; routes GET and POST round trip; JSON errors; no token -> 401
#   relogin         log out from the page; log in without a key: login URL and QR code shown;
#                   `headscale auth register` brings the node back online on the page; the
#                   password is reset with `tinytail web setup-code` (wrong code refused)
#   store/secrets   the change is in the store (survives a restart of tinytail); the captured
#                   traffic holds responses of every phase (at least MIN_RESPONSES files and
#                   MIN_TRAFFIC_BYTES bytes, so the grep has something to search); no response
#                   body of the run holds the auth key or any private key (every 64-hex or
#                   base64 key-sized string in the captured traffic is checked against the
#                   store image); the auth key is not in the log
#   teardown        rig_assert_clean: no namespace, /etc/netns dir or process of the run is left
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
RIG="tt$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
export RIG
screens="${TT_SCREENS:-/tmp/tinytail-screens}"
# The secret grep needs a capture of the run to search (a full run saved 160 responses, 317 KB).
MIN_RESPONSES=100
MIN_TRAFFIC_BYTES=150000

"$root/tests/browser/setup"
TT="$(source "$here/../rig/rig.sh"; rig_tinytail_bin web)"

pass() { printf 'web: ok  %s\n' "$*"; }

(
  source "$here/../rig/rig.sh"
  rig_up
  rig_headscale_start

  tt_dir="$RIG_DIR/tt"; mkdir -p "$tt_dir"
  tt_sock="$tt_dir/tinytail.sock"; tt_state="$tt_dir/state.img"
  out="$RIG_DIR/web"; traffic="$RIG_DIR/traffic"; mkdir -p "$out" "$traffic"
  page_url="http://192.0.2.1:8088/"
  tt_start() {
    rig_bg rtr "tinytail-$1" env SSL_CERT_FILE="$RIG_CA" "$TT" run --state "$tt_state" --socket "$tt_sock" \
      --lan-interface lan0 --wan-interface wan0 --web-listen 192.0.2.1:8088
    TT_PID="$RIG_LAST_PID"
    rig_wait_for 10 "tinytail socket" test -S "$tt_sock" || rig_fail "tinytail run did not start"
    rig_wait_for 10 "the page" rig_exec lan curl -sf -o /dev/null "$page_url" || rig_fail "no page on $page_url"
  }
  tt() { rig_exec rtr "$TT" "$1" --socket "$tt_sock" "${@:2}"; }
  browser() {
    rig_exec lan env TT_URL="$page_url" HS_URL="$HS_URL" TT_AUTHKEY="${key:-}" TT_PASSWORD="$password" \
      TT_SETUP_CODE="${TT_SETUP_CODE:-}" TT_DOCS="$root/docs" \
      TT_OUT="$out" TT_TRAFFIC="$traffic" HOME="$RIG_DIR" node "$root/tests/browser/web.mjs" "$1"
  }
  # refused DESC PATTERN ARGS...: `tinytail run ARGS` with a state and socket of its own exits 1
  # at once (20 s at most) with one line on stderr containing PATTERN.
  refused() {
    local desc="$1" pattern="$2" err rc=0 d; shift 2
    d="$(mktemp -d "$RIG_DIR/short.XXXX")"
    err="$(rig_exec rtr timeout 20 "$TT" run --state "$d/state.img" --socket "$d/tinytail.sock" "$@" 2>&1 >/dev/null)" ||
      rc=$?
    ((rc == 1)) || rig_fail "$desc: exited $rc (want 1): $err"
    [[ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ]] || rig_fail "$desc: expected one line on stderr, got: $err"
    grep -qF -- "$pattern" <<<"$err" || rig_fail "$desc: stderr lacks \"$pattern\": $err"
    pass "$desc -> exit 1: $err"
  }
  # foreign NAME METHOD PATH [CURL ARGS...]: from the LAN host to the page's address, but with
  # Host and Origin naming attacker.example (what a DNS-rebinding page sends): must be 403 with
  # a body starting "forbidden".
  evil="attacker.example:${page_url##*:}"; evil="${evil%/}"
  foreign() {
    local name="$1" method="$2" path="$3" code f="$traffic/foreign-$1.txt"; shift 3
    code="$(rig_exec lan curl -s -o "$f" -w '%{http_code}' -X "$method" \
      -H "Host: $evil" -H "Origin: http://$evil" "$@" "${page_url%/}$path")"
    [[ "$code" == 403 && "$(head -c 9 "$f")" == forbidden ]] ||
      rig_fail "$method $path with Host $evil: HTTP $code (want 403 forbidden): $(head -c 200 "$f")"
    pass "$method $path with Host/Origin $evil -> $code $(head -n1 "$f")"
  }
  # api NAME METHOD PATH [BODY]: curl from the LAN host; the body is kept with the traffic.
  api() {
    local name="$1" method="$2" path="$3" body="${4:-}" code
    local args=(-s -o "$traffic/api-$name.json" -w '%{http_code}' -X "$method")
    [[ -z "${token:-}" ]] || args+=(-H "Authorization: Bearer $token")
    [[ -z "$body" ]] || args+=(-H 'Content-Type: application/json' --data-binary "$body")
    code="$(rig_exec lan curl "${args[@]}" "${page_url%/}$path")"
    echo "$code"
  }
  body() { cat "$traffic/api-$1.json"; }
  # hs_available ROUTE: Headscale lists ROUTE as available (advertised) for our node.
  hs_available() {
    rig_hs nodes list-routes -o json | jq -e --argjson id "$node_id" --arg r "$1" \
      '.[] | select(.id == $id) | .available_routes | index($r)' >/dev/null
  }

  # --- where the page may listen: never the WAN, the wildcard only when asked for ------------
  refused "run --wan-interface wan0 --web-listen 198.18.0.2:8088 (WAN address) refused" "WAN interface" \
    --wan-interface wan0 --web-listen 198.18.0.2:8088
  refused "run --web-listen 0.0.0.0:8088 refused without --web-listen-any" "--web-listen-any" \
    --lan-interface lan0 --wan-interface wan0 --web-listen 0.0.0.0:8088
  refused "run --web-listen [::]:8088 refused without --web-listen-any" "--web-listen-any" \
    --lan-interface lan0 --wan-interface wan0 --web-listen "[::]:8088"
  any_dir="$RIG_DIR/any"; mkdir -p "$any_dir"
  rig_bg rtr tinytail-any "$TT" run --state "$any_dir/state.img" --socket "$any_dir/tinytail.sock" \
    --lan-interface lan0 --wan-interface wan0 --web-listen 0.0.0.0:8088 --web-listen-any
  any_pid="$RIG_LAST_PID"
  rig_wait_for 10 "the page on 0.0.0.0:8088" rig_exec lan curl -sf -o /dev/null "$page_url" ||
    rig_fail "run --web-listen 0.0.0.0:8088 --web-listen-any serves no page on $page_url: $(cat "$RIG_DIR/tinytail-any.log")"
  code="$(rig_exec lan curl -s -o "$any_dir/index.html" -w '%{http_code}' "$page_url")"
  [[ "$code" == 200 ]] && grep -q 'name="password2"' "$any_dir/index.html" ||
    rig_fail "run --web-listen-any: GET / -> $code, no first-run form"
  kill -TERM "$any_pid"; wait "$any_pid" 2>/dev/null || true
  rig_wait_for 10 "port 8088 free" bash -c "! ip netns exec '$(rig_ns lan)' curl -s -o /dev/null '$page_url'" ||
    rig_fail "port 8088 still answers after the --web-listen-any run stopped"
  pass "run --web-listen 0.0.0.0:8088 --web-listen-any starts and serves the page (stopped again)"

  rig_tailscaled_start cli peer1
  key="$(rig_authkey)"
  rig_ts peer1 up --login-server="$HS_URL" --auth-key="$key" --hostname=peer1 \
    --accept-dns=false --netfilter-mode=off --timeout=60s
  password="web-test-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
  tt_start 1
  [[ "$(rig_exec rtr "$TT" web setup-code --socket "$tt_sock")" =~ ^[2-9a-z]{12} ]] || rig_fail "tinytail web setup-code printed no code"
  pass "tinytail web setup-code prints a one-time code"

  # --- DNS rebinding: requests naming another host are refused ---------------------------------
  # POST /setup carries everything a rebinding page could: a matching Origin and a valid
  # double-submit pair (the cookie is set by the page itself); only the Host check stops it.
  pre="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  foreign index GET /
  foreign setup-get GET /setup
  foreign setup-post POST /setup -H "Cookie: tt_csrf=$pre" --data-urlencode "csrf=$pre" \
    --data-urlencode "password=rebound-$pre" --data-urlencode "password2=rebound-$pre"
  foreign api GET /api/v2/device/self
  [[ "$(rig_exec lan curl -s "$page_url")" == *'name="password2"'* ]] ||
    rig_fail "after the foreign POST /setup the page no longer asks for the first password"
  pass "after the foreign POST /setup the page still asks for the first password"

  # --- browser, phase 1 ----------------------------------------------------------------------
  browser join || rig_fail "browser join phase"

  # --- Headscale sees the route; approve it ----------------------------------------------------
  tt status --json | jq -e '.Prefs.AdvertiseRoutes == ["192.0.2.0/24"]' >/dev/null ||
    rig_fail "the page's route did not reach the prefs: $(tt status --json | jq -c .Prefs)"
  node_id="$(tt status --json | jq -r '.NodeID')"
  hs_available 192.0.2.0/24 || rig_fail "headscale nodes list-routes does not show 192.0.2.0/24 for node $node_id"
  pass "headscale nodes list-routes shows 192.0.2.0/24 available for node $node_id"
  rig_hs nodes approve-routes --identifier "$node_id" --routes 192.0.2.0/24 >/dev/null
  pass "approved 192.0.2.0/24 in Headscale"

  # --- browser, phase 2 ----------------------------------------------------------------------
  # Traffic through the datapath first, so the screenshot shows the peer's direct path.
  peer_ip="$(rig_ts peer1 ip -4)"
  rig_wait_for 30 "router pings peer1 ($peer_ip) over the tailnet" rig_exec rtr ping -c 1 -W 1 "$peer_ip" ||
    rig_fail "the router does not reach peer1 at $peer_ip over the tailnet"
  pass "the router pings peer1 at $peer_ip through tinytail's datapath"
  key="" browser verify || rig_fail "browser verify phase"
  echo "web: page weight: $(cat "$out/page-weight.txt") bytes transferred for a full load"
  tt status --json | jq -e '.Prefs.Hostname == "gw-web" and .Prefs.SNATSubnetRoutes == true and
      .Prefs.AdvertiseExitNode == false and .Self.HostName == "gw-web"' >/dev/null ||
    rig_fail "the page's changes are not what the CLI sees: $(tt status --json | jq -c .Prefs)"
  pass "the CLI (tinytail status) sees the page's hostname, SNAT and exit-node changes"

  # --- the API -------------------------------------------------------------------------------
  token="$(cat "$out/api-token")"
  foreign api-token GET /api/v2/device/self -H "Authorization: Bearer $token"
  seed="$root/agent/src/web/fixtures/device_all.json"
  [[ "$(api default GET /api/v2/device/self)" == 200 ]] || rig_fail "GET device/self: $(body default)"
  [[ "$(api all GET '/api/v2/device/self?fields=all')" == 200 ]] || rig_fail "GET device/self?fields=all"
  [[ "$(api union GET '/api/v2/device/self?fields=default,all')" == 200 ]] || rig_fail "fields=default,all"
  # Every key of ours is one the seed's device object has (nodeId, tailnetLockKey and
  # tailnetLockError are the current API's too; the seed's copy is older; tlsCertificates is
  # tinytail's own, README says so), and with fields=all we have every seed key a node can know
  # (not user, isExternal, updateAvailable).
  jq -e -s '(.[1] | keys) - (.[0] | keys) - ["nodeId", "tailnetLockKey", "tailnetLockError", "tlsCertificates"] == []' \
    "$seed" "$traffic/api-all.json" >/dev/null ||
    rig_fail "fields=all has keys the seed does not: $(jq -c -s '(.[1] | keys) - (.[0] | keys)' "$seed" "$traffic/api-all.json")"
  jq -e '(.tailnetLockKey | startswith("nlpub:")) and .tailnetLockError == ""' "$traffic/api-all.json" >/dev/null ||
    rig_fail "fields=all: tailnetLockKey/tailnetLockError: $(jq -c '{tailnetLockKey, tailnetLockError}' "$traffic/api-all.json")"
  jq -e -s '(.[0] | keys) - (.[1] | keys) - ["user", "isExternal", "updateAvailable"] == []' \
    "$seed" "$traffic/api-all.json" >/dev/null || rig_fail "fields=all lacks seed keys: $(body all | jq -c keys)"
  jq -e 'has("enabledRoutes") or has("advertisedRoutes") or has("clientConnectivity") | not' \
    "$traffic/api-default.json" >/dev/null || rig_fail "fields=default has the all-only groups"
  jq -e -s 'map(del(.lastSeen, .clientConnectivity.latency[]?.latencyMs)) | .[0] == .[1]' \
    "$traffic/api-all.json" "$traffic/api-union.json" >/dev/null ||
    rig_fail "fields=default,all differs from fields=all (lastSeen and measured latencies aside)"
  # clientConnectivity from the running datapath: magicsock's endpoints, netcheck's latencies
  # in the seed's shape (region name -> {latencyMs}, preferred: true on the home region only).
  jq -e '.clientConnectivity | (.endpoints | length > 0) and .clientSupports.udp == true and
      (.latency | length > 0 and all(.[]; .latencyMs > 0) and ([.[] | select(.preferred == true)] | length == 1))' \
    "$traffic/api-all.json" >/dev/null || rig_fail "clientConnectivity: $(body all | jq -c .clientConnectivity)"
  jq -e --argjson id "$node_id" '.id == ($id | tostring) and .authorized == true and
      (.nodeKey | startswith("nodekey:")) and (.machineKey | startswith("mkey:")) and
      (.addresses | length == 2) and .enabledRoutes == ["192.0.2.0/24"] and .advertisedRoutes == ["192.0.2.0/24"]' \
    "$traffic/api-all.json" >/dev/null || rig_fail "device object values: $(body all)"
  pass "GET /api/v2/device/self: default leaves out the route and connectivity groups; all and default,all have the seed's keys; clientConnectivity: $(body all | jq -c '.clientConnectivity | {endpoints, latency}')"
  [[ "$(api routes GET /api/v2/device/self/routes)" == 200 ]] || rig_fail "GET routes"
  jq -e '. == {"advertisedRoutes": ["192.0.2.0/24"], "enabledRoutes": ["192.0.2.0/24"]}' \
    "$traffic/api-routes.json" >/dev/null || rig_fail "GET routes: $(body routes)"
  [[ "$(api set POST /api/v2/device/self/routes '{"routes":["192.0.2.0/24","198.51.100.0/24"]}')" == 200 ]] ||
    rig_fail "POST routes: $(body set)"
  jq -e '.advertisedRoutes == ["192.0.2.0/24", "198.51.100.0/24"] and .enabledRoutes == ["192.0.2.0/24"]' \
    "$traffic/api-set.json" >/dev/null || rig_fail "POST routes reply: $(body set)"
  rig_wait_for 15 "198.51.100.0/24 available in headscale" hs_available 198.51.100.0/24 ||
    rig_fail "headscale does not see the route posted to the API"
  pass "POST /api/v2/device/self/routes {routes:[...]} -> advertisedRoutes/enabledRoutes; Headscale sees the new route"
  [[ "$(api bad POST /api/v2/device/self/routes '{"routes":["192.0.2.1/24"]}')" == 400 ]] || rig_fail "bad route"
  jq -e '.message | test("192.0.2.1/24")' "$traffic/api-bad.json" >/dev/null || rig_fail "bad route: $(body bad)"
  [[ "$(api fields GET '/api/v2/device/self?fields=everything')" == 400 ]] || rig_fail "bad fields"
  [[ "$(api other GET /api/v2/device/12345)" == 404 ]] || rig_fail "another device"
  token="" ; [[ "$(api noauth GET /api/v2/device/self)" == 401 ]] || rig_fail "no token"
  jq -e '.message == "API token invalid"' "$traffic/api-noauth.json" >/dev/null || rig_fail "401 body"
  token="$(cat "$out/api-token")"
  pass "API errors are JSON {message}: bad route 400, bad fields 400, other device 404, no token 401"

  # --- persisted in the store: a restart keeps the routes, the password and the token -------------
  kill -TERM "$TT_PID"; wait "$TT_PID" 2>/dev/null || true
  tt_start 2
  rig_wait_for 30 "running after restart" bash -c "'$TT' status --json --socket '$tt_sock' | jq -e '.BackendState == \"Running\"'" ||
    rig_fail "not running after restart"
  tt status --json | jq -e '.Prefs.AdvertiseRoutes == ["192.0.2.0/24", "198.51.100.0/24"]' >/dev/null ||
    rig_fail "routes set from the web/API were not persisted: $(tt status --json | jq -c .Prefs)"
  [[ "$(api persisted GET /api/v2/device/self/routes)" == 200 ]] || rig_fail "the API token did not survive a restart"
  rc=0; store="$("$TT" store info --state "$tt_state" 2>&1)" || rc=$?
  ((rc == 0)) || rig_fail "tinytail store info exited $rc: $store"
  grep -Eq '^ +config\.web-password-hash .* secret$' <<<"$store" ||
    rig_fail "the web's credentials record is not in the store: $store"
  [[ "$(stat -c %a "$tt_state")" == 600 ]] || rig_fail "store image not 0600"
  pass "after a restart: routes from the page/API are in the store, the API token still works, the web's record is there; store is 0600"

  # --- log out and log in interactively from the page (the restart reset the rate limit) ---------
  browser relogin || rig_fail "browser relogin phase"
  auth_url="$(cat "$out/auth-url")"
  rig_hs auth register --auth-id "${auth_url##*/}" --user rig >/dev/null
  pass "headscale auth register for the URL the page showed"
  TT_SETUP_CODE="$(rig_exec rtr "$TT" web setup-code --socket "$tt_sock" | head -n1)" browser online ||
    rig_fail "browser online phase"

  # --- no secret in any response ---------------------------------------------------------------
  # The greps below only mean something if the capture holds the run's responses: every
  # browser phase's, the API's, and enough of them.
  n="$(find "$traffic" -type f | wc -l)"
  bytes="$(find "$traffic" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')"
  ((n >= MIN_RESPONSES && bytes >= MIN_TRAFFIC_BYTES)) ||
    rig_fail "the capture holds $n responses, $bytes bytes (want >= $MIN_RESPONSES and >= $MIN_TRAFFIC_BYTES)"
  for phase in join verify relogin online api-all api-routes; do
    find "$traffic" -type f -name "$phase*" -size +0 | grep -q . || rig_fail "no captured response of $phase"
  done
  grep -qaF 'id="peers"' "$traffic"/verify-* || rig_fail "no captured response is the status page"
  pass "the capture holds $n responses ($bytes bytes) from every browser phase and the API"
  [[ -n "$key" ]] || rig_fail "no auth key to look for"
  ! grep -rqaF "$key" "$traffic" || rig_fail "a response body holds the auth key"
  rig_lacks "the log holds the auth key" "$key" "$RIG_DIR"/tinytail-*.log
  ! grep -rqa 'privkey:' "$traffic" || rig_fail "a response holds a privkey: string"
  python3 - "$tt_state" "$traffic" <<'EOF' || rig_fail "a response body holds a stored secret"
import base64, os, re, sys
image = open(sys.argv[1], "rb").read()
found = checked = 0
for name in sorted(os.listdir(sys.argv[2])):
    data = open(os.path.join(sys.argv[2], name), "rb").read()
    for h in set(re.findall(rb"[0-9a-fA-F]{64}", data)):
        checked += 1
        raw = bytes.fromhex(h.decode())
        if raw in image or h.lower() in image:
            print(f"web: {name}: {h[:8].decode()}... is in the store image"); found += 1
    for b in set(re.findall(rb"[A-Za-z0-9+/]{43}=", data)):
        checked += 1
        if base64.b64decode(b) in image:
            print(f"web: {name}: {b[:8].decode()}... (base64) is in the store image"); found += 1
print(f"web: {checked} key-sized strings in the responses checked against the store image")
if checked == 0:
    print("web: no key-sized string in the capture: nothing was checked")
sys.exit(1 if found or checked == 0 else 0)
EOF
  pass "no response body of the run ($n captured) holds the auth key or a private key; the log has no auth key"

  mkdir -p "$screens"
  cp "$out"/web-*.png "$screens/"
  echo "web: screenshots in $screens: $(cd "$screens" && echo web-*.png); README's phone screenshot: docs/web-status-phone.png"
)
source "$here/../rig/rig.sh"
rig_assert_clean "$RIG"
echo "web: teardown left nothing of $RIG"
echo "web: all checks passed"
