# shellcheck shell=bash
# tinytail joins the rig's tailnet: for scripts/demo (README command (a)) and anyone poking at
# the rig by hand. Source after tests/rig/rig.sh, rig_up and rig_headscale_start, then:
#
#   control_join TINYTAIL_BIN [HOSTNAME]
#
# It starts `tinytail run` on the router host (store and socket in $RIG_DIR/tinytail), runs
# `tinytail up` with a fresh pre-auth key, advertising the LAN 192.0.2.0/24, approves that route
# in Headscale and prints `tinytail status`. Exports TT_SOCK; `control_tt VERB ARGS...` runs
# a CLI verb against it.

control_tt() {
  rig_exec rtr "$TT_BIN" "$1" --socket "$TT_SOCK" "${@:2}"
}

control_join() {
  TT_BIN="$1"
  local name="${2:-router}" dir="$RIG_DIR/tinytail" id
  mkdir -p "$dir"
  export TT_SOCK="$dir/tinytail.sock" TT_BIN
  rig_bg rtr tinytail env SSL_CERT_FILE="$RIG_CA" "$TT_BIN" run --state "$dir/state.img" --socket "$TT_SOCK"
  rig_wait_for 10 "tinytail socket" test -S "$TT_SOCK" || rig_fail "tinytail run did not start"
  control_tt up --login-server "$HS_URL" --auth-key "$(rig_authkey)" --hostname "$name" \
    --advertise-routes 192.0.2.0/24 --timeout 60 >/dev/null || rig_fail "tinytail up failed"
  id="$(rig_hs nodes list -o json | jq -r --arg n "$name" '.[] | select(.given_name == $n) | .id')"
  rig_hs nodes approve-routes --identifier "$id" --routes 192.0.2.0/24 >/dev/null
  rig_wait_for 10 "route enabled" bash -c \
    "'$TT_BIN' status --json --socket '$TT_SOCK' | jq -e '.Self.enabledRoutes == [\"192.0.2.0/24\"]'" ||
    rig_fail "tinytail's route was not enabled"
  echo "== tinytail status on the router host (node $id, LAN 192.0.2.0/24 advertised and approved):"
  control_tt status
  echo "== tinytail ip: $(control_tt ip -4)"
}
