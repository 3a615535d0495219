#!/usr/bin/env bash
# Smoke test of the rig: Headscale starts in its namespace, a real tailscaled registers with a
# pre-auth key and shows online; our testcontrol program starts and serves its Noise key;
# afterwards nothing of the run is left.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
RIG="tt$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"
export RIG

(
  source "$here/../rig/rig.sh"
  rig_up
  rig_headscale_start
  rig_tailscaled_start cli client
  key="$(rig_authkey)"
  rig_ts client up --login-server="$HS_URL" --auth-key="$key" --hostname=smoke-client \
    --accept-dns=false --netfilter-mode=off --timeout=60s
  rig_wait_for 30 "client online in headscale" rig_hs_node_online smoke-client
  ip4="$(rig_ts client ip -4)"
  [[ "$ip4" == 100.* ]] || rig_fail "client has no 100.x address: $ip4"
  rig_ts client status --json | jq -e '.BackendState == "Running" and .Self.Online == true' >/dev/null ||
    rig_fail "tailscale status does not show Running/online"
  rig_testcontrol_start
  rig_exec cli curl -sf "$TC_URL/key?v=113" | jq -e '.publicKey | startswith("mkey:")' >/dev/null ||
    rig_fail "testcontrol /key has no mkey: publicKey"
  echo "smoke: testcontrol (tailscale.com $("$RIG_PEERS/tinytail-interop" version)) serves /key at $TC_URL"
  echo "smoke: headscale $(rig_hs version 2>/dev/null | head -n1 | awk '{print $3}'), tailscaled registered as smoke-client $ip4, online"
)

source "$here/../rig/rig.sh"
rig_assert_clean "$RIG"
echo "smoke: teardown left no namespace, /etc/netns entry or process of $RIG"
echo "smoke: PASS"
