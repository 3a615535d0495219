#!/usr/bin/env bash
# End-to-end proof of issue #8 (the local web page and API): Debian's headless chromium, driven
# by playwright-core from the rig's LAN host, against tinytail's page on the router's LAN
# address, with a real Headscale and a real tailscaled peer. Each check prints what it verified;
# the first failure stops the run with a non-zero exit.
#
#   tests/e2e/web.sh     (root; runs tests/browser/setup; builds tinytail in debug unless
#                         TINYTAIL_BIN is set; screenshots land in $TT_SCREENS, default
#                         /tmp/tinytail-screens)
#
# Checks, in order:
#   browser join    first run sets the password; security headers; cookie flags; CSRF field on
#                   every form; an API key pasted as auth key is refused as the CLI refuses it;
#                   log in with an auth key from the page; the tailscaled peer is listed; the LAN
#                   subnet is added with one click
#   headscale       `headscale nodes list-routes` shows 192.0.2.0/24 available; approve it
#   browser verify  sign in; the page shows the route enabled; phone and desktop screenshots;
#                   page weight < 30 KB; an API token shown once; POSTs without the CSRF token,
#                   from a wrong Origin or with a stale session are refused; the 6th wrong
#                   password in a minute is refused (429)
#   api             /api/v2/device/self with fields default|all|default,all against the seed's
#                   device shape; clientConnectivity has magicsock's endpoints and netcheck's
#                   latencies; routes GET and POST round trip; JSON errors; no token -> 401
#   relogin         log out from the page; log in without a key: login URL and QR code shown;
#                   `headscale auth register` brings the node back online on the page; the
#                   password is reset with `tinytail web setup-code` (wrong code refused)
#   store/secrets   the change is in the store (survives a restart of tinytail); no response
#                   body of the run holds the auth key or any private key (every 64-hex or
#                   base64 key-sized string in the captured traffic is checked against the
#                   store image); the auth key is not in the log
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
RIG="tt$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
export RIG
screens="${TT_SCREENS:-/tmp/tinytail-screens}"

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
      --web-listen 192.0.2.1:8088
    TT_PID="$RIG_LAST_PID"
    rig_wait_for 10 "tinytail socket" test -S "$tt_sock" || rig_fail "tinytail run did not start"
    rig_wait_for 10 "the page" rig_exec lan curl -sf -o /dev/null "$page_url" || rig_fail "no page on $page_url"
  }
  tt() { rig_exec rtr "$TT" "$1" --socket "$tt_sock" "${@:2}"; }
  browser() {
    rig_exec lan env TT_URL="$page_url" HS_URL="$HS_URL" TT_AUTHKEY="${key:-}" TT_PASSWORD="$password" \
      TT_SETUP_CODE="${TT_SETUP_CODE:-}" \
      TT_OUT="$out" TT_TRAFFIC="$traffic" HOME="$RIG_DIR" node "$root/tests/browser/web.mjs" "$1"
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

  rig_tailscaled_start cli peer1
  key="$(rig_authkey)"
  rig_ts peer1 up --login-server="$HS_URL" --auth-key="$key" --hostname=peer1 \
    --accept-dns=false --netfilter-mode=off --timeout=60s
  password="web-test-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
  tt_start 1
  [[ "$(rig_exec rtr "$TT" web setup-code --socket "$tt_sock")" =~ ^[2-9a-z]{12} ]] || rig_fail "tinytail web setup-code printed no code"
  pass "tinytail web setup-code prints a one-time code"

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
  key="" browser verify || rig_fail "browser verify phase"
  echo "web: page weight: $(cat "$out/page-weight.txt") bytes transferred for a full load"
  tt status --json | jq -e '.Prefs.Hostname == "gw-web" and .Prefs.SNATSubnetRoutes == true and
      .Prefs.AdvertiseExitNode == false and .Self.HostName == "gw-web"' >/dev/null ||
    rig_fail "the page's changes are not what the CLI sees: $(tt status --json | jq -c .Prefs)"
  pass "the CLI (tinytail status) sees the page's hostname, SNAT and exit-node changes"

  # --- the API -------------------------------------------------------------------------------
  token="$(cat "$out/api-token")"
  seed="$root/agent/src/web/fixtures/device_all.json"
  [[ "$(api default GET /api/v2/device/self)" == 200 ]] || rig_fail "GET device/self: $(body default)"
  [[ "$(api all GET '/api/v2/device/self?fields=all')" == 200 ]] || rig_fail "GET device/self?fields=all"
  [[ "$(api union GET '/api/v2/device/self?fields=default,all')" == 200 ]] || rig_fail "fields=default,all"
  # Every key of ours is one the seed's device object has (nodeId is the API's too), and with
  # fields=all we have every seed key a node can know (not user, isExternal, updateAvailable).
  jq -e -s '(.[1] | keys) - (.[0] | keys) - ["nodeId"] == []' "$seed" "$traffic/api-all.json" >/dev/null ||
    rig_fail "fields=all has keys the seed does not: $(body all | jq -c keys)"
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
  "$TT" store info --state "$tt_state" | grep -Eq '^ +config\.web-password-hash .* secret$' ||
    rig_fail "the web's credentials record is not in the store"
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
  n="$(find "$traffic" -type f | wc -l)"
  ! grep -rqaF "$key" "$traffic" || rig_fail "a response body holds the auth key"
  ! grep -qaF "$key" "$RIG_DIR"/tinytail-*.log || rig_fail "the log holds the auth key"
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
sys.exit(1 if found else 0)
EOF
  pass "no response body of the run ($n captured) holds the auth key or a private key; the log has no auth key"

  mkdir -p "$screens"
  cp "$out"/web-*.png "$screens/"
  echo "web: screenshots in $screens: $(cd "$screens" && echo web-*.png)"
)
echo "web: all checks passed"
