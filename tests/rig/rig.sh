# shellcheck shell=bash
# The netns rig: a small internet in network namespaces, for end-to-end tests and the demo.
# Source it, then call rig_up; teardown runs on EXIT (also on failure) and is idempotent.
#
#   WAN bridge (ns $RIG-wan, br0), 198.18.0.0/24 and 203.0.113.0/24:
#     control  $RIG-ctl  198.18.0.10   control.tinytail.test: Headscale (HTTPS, private CA) + embedded DERP/STUN
#     client   $RIG-cli  198.18.0.20   a tailscaled peer
#     router   $RIG-rtr  198.18.0.2    tinytail's router; LAN 192.0.2.1/24 on lan0
#     internet $RIG-net  203.0.113.10  a host only the router can reach (exit-node tests; router has 203.0.113.1)
#   LAN (veth router<->lan):
#     lan      $RIG-lan  192.0.2.10    a LAN host behind the router (default route via 192.0.2.1)
#
# Names are unique per run (RIG=tt<4 hex>), so two runs never collide. Addresses come from
# documentation ranges (../shared/harness.md): nothing here can look like a real network.
#
# Functions:
#   rig_up                         build the topology
#   rig_exec NS CMD...             run CMD in namespace NS (ctl|cli|rtr|lan|net|wan)
#   rig_bg NS NAME CMD...          start CMD in NS in the background (pid in RIG_LAST_PID; log in
#                                  $RIG_DIR/NAME.log); never call it in $(...): the pid would be lost
#   rig_headscale_start            start Headscale; exports HS_URL, RIG_CA, HS_USER_ID; with
#                                  RIG_DERP_IPV4 set, DERP/STUN get that address of the control host;
#                                  with RIG_DERP_IPV6 set, the DERP map also names that address
#   rig_testcontrol_start          start tailscale.com's testcontrol (tinytail-interop); exports TC_URL
#   rig_testctl_start [FLAGS...]   start our test control with tailnet lock (testctl) over HTTPS
#                                  with DERP; exports TC_URL, RIG_CA; FLAGS go to testctl
#   rig_testctl PATH               GET PATH from testctl's admin HTTP (/debug/nodes, /debug/tka)
#   rig_hs ARGS...                 headscale CLI against the rig's server
#   rig_hs_node_online NAME        true when Headscale shows node NAME online
#   rig_authkey [FLAGS...]         print a new pre-auth key (reusable, 1h) of the rig's user
#   rig_pebble_start [SECONDS]     start Pebble (ACME test CA, certificates valid SECONDS) and
#                                  pebble-challtestsrv (its DNS) on the control host; exports
#                                  PEBBLE_DIR, PEBBLE_ROOTS_URL, CHALLTESTSRV_URL; a testctl started
#                                  after it gets -challtestsrv
#   rig_tailscaled_start NS NAME [VAR=VALUE...]  start a tailscaled in NS (state in $RIG_DIR/NAME),
#                                  with VAR=VALUE... in its environment
#   rig_ts NAME ARGS...            tailscale CLI for that tailscaled
#   rig_wait_for SECONDS DESC CMD...  retry CMD until it succeeds or time runs out
#   rig_tinytail_bin PREFIX        the binary under test ($TINYTAIL_BIN or a debug build)
#   rig_down                       kill everything started, delete namespaces and files
#   rig_assert_clean PREFIX        fail if a namespace, /etc/netns dir or process of PREFIX is left

RIG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RIG_PIDS=()
RIG_NAMESPACES=()
RIG_CONTROL_HOST=control.tinytail.test

rig_log() { printf '[rig %s] %s\n' "$(date +%T)" "$*" >&2; }
rig_fail() { rig_log "FAIL: $*"; exit 1; }

rig_ns() { printf '%s-%s' "$RIG" "$1"; }

rig_exec() {
  local ns="$1"; shift
  ip netns exec "$(rig_ns "$ns")" "$@"
}

# rig_bg NS NAME CMD...: `ip netns exec` execs, so $! is the program itself and killing it works.
rig_bg() {
  local ns="$1" name="$2"; shift 2
  ip netns exec "$(rig_ns "$ns")" "$@" >"$RIG_DIR/$name.log" 2>&1 &
  RIG_LAST_PID=$!
  RIG_PIDS+=("$RIG_LAST_PID")
}

rig_wait_for() {
  local seconds="$1" desc="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { rig_log "timed out after ${seconds}s waiting for: $desc"; return 1; }
    sleep 0.2
  done
}

# rig_tinytail_bin PREFIX: prints the tinytail under test: $TINYTAIL_BIN, or a debug build of
# the checkout; fails (naming PREFIX) when there is no binary.
rig_tinytail_bin() {
  local bin="${TINYTAIL_BIN:-}"
  if [[ -z "$bin" ]]; then
    (cd "$RIG_ROOT" && cargo build -q) >&2
    bin="${CARGO_TARGET_DIR:-$RIG_ROOT/target}/debug/tinytail"
  fi
  [[ -x "$bin" ]] || { echo "$1: no tinytail binary at $bin" >&2; return 1; }
  echo "$bin"
}

rig_peers() {
  [[ -n "${RIG_PEERS:-}" ]] || RIG_PEERS="$("$RIG_ROOT/tests/interop/build-peers" | tail -n 1)"
  echo "$RIG_PEERS"
}

rig_add_ns() {
  local ns
  ns="$(rig_ns "$1")"
  ip netns add "$ns"
  RIG_NAMESPACES+=("$ns")
  ip -n "$ns" link set lo up
  # Lookups fail at once instead of timing out, and the control host has a name (harness.md).
  mkdir -p "/etc/netns/$ns"
  echo "nameserver 127.0.0.1" >"/etc/netns/$ns/resolv.conf"
  printf '127.0.0.1 localhost\n::1 localhost\n198.18.0.10 %s\n' "$RIG_CONTROL_HOST" >"/etc/netns/$ns/hosts"
}

# rig_attach NS IF PORT ADDR/LEN: a veth from NS into the WAN bridge.
rig_attach() {
  local ns="$1" ifname="$2" port="$3" addr="$4"
  ip link add "$ifname" netns "$(rig_ns "$ns")" type veth peer name "$port" netns "$(rig_ns wan)"
  ip -n "$(rig_ns wan)" link set "$port" master br0 up
  ip -n "$(rig_ns "$ns")" addr add "$addr" dev "$ifname"
  ip -n "$(rig_ns "$ns")" link set "$ifname" up
}

rig_up() {
  RIG="${RIG:-tt$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')}"
  RIG_DIR="$(mktemp -d "/tmp/$RIG.XXXX")"
  chmod 700 "$RIG_DIR"
  export RIG RIG_DIR
  trap rig_down EXIT
  trap 'exit 130' INT TERM
  rig_log "up: $RIG (files in $RIG_DIR)"
  RIG_PEERS="$(rig_peers)"
  export RIG_PEERS

  local ns
  for ns in wan ctl cli rtr lan net; do rig_add_ns "$ns"; done
  ip -n "$(rig_ns wan)" link add br0 type bridge
  ip -n "$(rig_ns wan)" link set br0 up
  rig_attach ctl eth0 p-ctl 198.18.0.10/24
  rig_attach cli eth0 p-cli 198.18.0.20/24
  rig_attach rtr wan0 p-rtr 198.18.0.2/24
  rig_attach net eth0 p-net 203.0.113.10/24
  ip -n "$(rig_ns rtr)" addr add 203.0.113.1/24 dev wan0
  ip -n "$(rig_ns net)" route add default via 203.0.113.1

  ip link add lan0 netns "$(rig_ns rtr)" type veth peer name eth0 netns "$(rig_ns lan)"
  ip -n "$(rig_ns rtr)" addr add 192.0.2.1/24 dev lan0
  ip -n "$(rig_ns rtr)" link set lan0 up
  ip -n "$(rig_ns lan)" addr add 192.0.2.10/24 dev eth0
  ip -n "$(rig_ns lan)" link set eth0 up
  ip -n "$(rig_ns lan)" route add default via 192.0.2.1
  rig_exec rtr sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
}

rig_make_ca() {
  local d="$RIG_DIR/pki"
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$d/ca.key" -out "$d/ca.crt" -subj "/CN=tinytail rig CA" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$d/control.key" -out "$d/control.csr" -subj "/CN=$RIG_CONTROL_HOST" 2>/dev/null
  printf 'subjectAltName=DNS:%s,IP:198.18.0.10\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    "$RIG_CONTROL_HOST" >"$d/ext.cnf"
  openssl x509 -req -in "$d/control.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 2 -extfile "$d/ext.cnf" -out "$d/control.crt" 2>/dev/null
  chmod 600 "$d"/*.key
  export RIG_CA="$d/ca.crt"
}

rig_headscale_start() {
  local peers hs="$RIG_DIR/headscale" listen=198.18.0.10 derp_ip="${RIG_DERP_IPV4:-198.18.0.10}"
  local stun="198.18.0.10:3478" derp_ip6="${RIG_DERP_IPV6:-}"
  peers="$(rig_peers)"
  if [[ "$derp_ip" != 198.18.0.10 ]]; then
    # DERP and STUN at their own address (what the DERP map names), so that a test can cut
    # them off while control stays reachable, or the other way round.
    rig_exec ctl ip addr replace "$derp_ip/24" dev eth0
    listen="[::]" stun="$derp_ip:3478"
  fi
  if [[ -n "$derp_ip6" ]]; then
    # The DERP map names an IPv6 address too; Headscale listens on both families (the test
    # gives the control host its IPv6 addresses when it wants them reachable).
    listen="[::]" stun="[::]:3478"
  fi
  # Keep an existing CA: Pebble (tests/e2e/cert.sh) serves a certificate from it.
  [[ -n "${RIG_CA:-}" ]] || rig_make_ca
  mkdir -p "$hs"
  cat >"$hs/config.yaml" <<EOF
server_url: https://$RIG_CONTROL_HOST
listen_addr: "$listen:443"
metrics_listen_addr: 127.0.0.1:0
grpc_listen_addr: 127.0.0.1:0
grpc_allow_insecure: false
tls_cert_path: $RIG_DIR/pki/control.crt
tls_key_path: $RIG_DIR/pki/control.key
noise:
  private_key_path: $hs/noise_private.key
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
  allocation: sequential
derp:
  server:
    enabled: true
    region_id: 999
    region_code: rig
    region_name: tinytail rig DERP
    verify_clients: true
    stun_listen_addr: "$stun"
    private_key_path: $hs/derp_server_private.key
    automatically_add_embedded_derp_region: true
    ipv4: $derp_ip
    ipv6: "${derp_ip6:-}"
  urls: []
  paths: []
  auto_update_enabled: false
database:
  type: sqlite
  sqlite:
    path: $hs/db.sqlite
dns:
  magic_dns: false
  base_domain: tailnet.test
  override_local_dns: false
unix_socket: $hs/headscale.sock
unix_socket_permission: "0770"
log:
  level: info
policy:
  mode: file
  path: "${RIG_HS_POLICY:-}"
${RIG_HS_EXTRA_YAML:-}
EOF
  rig_bg ctl headscale env SSL_CERT_FILE="$RIG_CA" "$peers/headscale" -c "$hs/config.yaml" serve
  export HS_URL="https://$RIG_CONTROL_HOST"
  rig_wait_for 60 "headscale health" rig_exec cli curl -sf --cacert "$RIG_CA" "$HS_URL/health" ||
    { tail -n 20 "$RIG_DIR/headscale.log" >&2; rig_fail "headscale did not start"; }
  rig_hs users create rig >/dev/null
  HS_USER_ID="$(rig_hs users list -o json | jq -r '.[] | select(.name=="rig") | .id')"
  export HS_USER_ID
  rig_log "headscale up at $HS_URL (user rig = $HS_USER_ID)"
}

# rig_testcontrol_start: tailscale.com's test control server (our tinytail-interop program) on the
# control host, port 8080, for what Headscale lacks (tailnet lock, set-dns); exports TC_URL.
rig_testcontrol_start() {
  rig_bg ctl testcontrol "$(rig_peers)/tinytail-interop" control -listen 198.18.0.10:8080
  export TC_URL="http://198.18.0.10:8080"
  rig_wait_for 30 "testcontrol /key" rig_exec cli curl -sf "$TC_URL/key?v=113" ||
    { tail -n 20 "$RIG_DIR/testcontrol.log" >&2; rig_fail "testcontrol did not start"; }
}

# rig_testctl_start [FLAGS...]: tests/interop/cmd/testctl on the control host, HTTPS on 443 with
# the rig's CA and DERP/STUN as region 999 (as Headscale: tailscaled redials control on 443, and
# only reaches Running with a home DERP); exports TC_URL.
# With rig_pebble_start run before, testctl gets -challtestsrv $CHALLTESTSRV_URL (set-dns works).
rig_testctl_start() {
  [[ -n "${RIG_CA:-}" ]] || rig_make_ca
  local dns=()
  [[ -z "${CHALLTESTSRV_URL:-}" ]] || dns=(-challtestsrv "$CHALLTESTSRV_URL")
  rig_bg ctl testctl "$(rig_peers)/testctl" -listen 198.18.0.10:443 \
    -tls-cert "$RIG_DIR/pki/control.crt" -tls-key "$RIG_DIR/pki/control.key" \
    -derp-host "$RIG_CONTROL_HOST" "${dns[@]}" "$@"
  export TC_URL="https://$RIG_CONTROL_HOST"
  rig_wait_for 30 "testctl /key" rig_exec ctl curl -sf --cacert "$RIG_CA" "$TC_URL/key?v=115" ||
    { tail -n 20 "$RIG_DIR/testctl.log" >&2; rig_fail "testctl did not start"; }
  rig_log "testctl up at $TC_URL"
}

rig_testctl() { rig_exec ctl curl -sf --cacert "$RIG_CA" "$TC_URL$1"; }

# rig_pebble_start [SECONDS]: Debian's pebble (an RFC 8555 test CA) and pebble-challtestsrv on the
# control host, for certificate tests (tests/e2e/cert.sh).
#   challtestsrv  DNS on 198.18.0.10:8053 (UDP and TCP) answering what its management API on
#                 198.18.0.10:8055 was given (POST /set-txt {"host": "NAME.", "value": V}; testctl's
#                 -challtestsrv does that for set-dns); exported as CHALLTESTSRV_URL
#   pebble        ACME directory https://198.18.0.10:14000/dir (PEBBLE_DIR), served with the control
#                 host's certificate from the rig CA, so SSL_CERT_FILE=$RIG_CA trusts it; management
#                 on :15000, whose /roots/0 (PEBBLE_ROOTS_URL, same CA) is the root issued chains end
#                 at (a new one every start)
# Pebble validates every DNS-01 challenge for real against challtestsrv: PEBBLE_VA_ALWAYS_VALID is
# removed from its environment, no authorization is reused (PEBBLE_AUTHZREUSE=0: each order is
# validated), no nonce is rejected at random (PEBBLE_WFE_NONCEREJECT=0) and validation does not
# sleep (PEBBLE_VA_NOSLEEP=1). Certificates are valid for SECONDS (default $RIG_PEBBLE_VALIDITY,
# else 3600). Start it before rig_testctl_start.
rig_pebble_start() {
  local validity="${1:-${RIG_PEBBLE_VALIDITY:-3600}}" d="$RIG_DIR/pebble"
  [[ "$validity" =~ ^[1-9][0-9]*$ ]] || rig_fail "rig_pebble_start: validity $validity is not a number of seconds"
  command -v pebble >/dev/null && command -v pebble-challtestsrv >/dev/null ||
    rig_fail "rig_pebble_start: pebble and pebble-challtestsrv are missing (Debian package pebble)"
  [[ -n "${RIG_CA:-}" ]] || rig_make_ca
  mkdir -p "$d"
  cat >"$d/config.json" <<EOF
{"pebble": {
  "listenAddress": "198.18.0.10:14000", "managementListenAddress": "198.18.0.10:15000",
  "certificate": "$RIG_DIR/pki/control.crt", "privateKey": "$RIG_DIR/pki/control.key",
  "httpPort": 5002, "tlsPort": 5001, "ocspResponderURL": "", "externalAccountBindingRequired": false,
  "certificateValidityPeriod": $validity}}
EOF
  # The flag is -dns01 in Debian's 2.4.0 (-dnsserver in later releases).
  rig_bg ctl challtestsrv pebble-challtestsrv -defaultIPv4 198.18.0.10 -defaultIPv6 "" \
    -http01 "" -https01 "" -tlsalpn01 "" -dns01 198.18.0.10:8053 -management 198.18.0.10:8055
  export CHALLTESTSRV_URL="http://198.18.0.10:8055"
  # Any HTTP answer (404 at /) means the management API is up.
  rig_wait_for 20 "challtestsrv management" rig_exec ctl curl -s -o /dev/null "$CHALLTESTSRV_URL/" ||
    { tail -n 20 "$RIG_DIR/challtestsrv.log" >&2; rig_fail "pebble-challtestsrv did not start"; }
  rig_bg ctl pebble env -u PEBBLE_VA_ALWAYS_VALID PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 \
    PEBBLE_AUTHZREUSE=0 pebble -config "$d/config.json" -dnsserver 198.18.0.10:8053 -strict
  export PEBBLE_DIR="https://198.18.0.10:14000/dir" PEBBLE_ROOTS_URL="https://198.18.0.10:15000/roots/0"
  rig_wait_for 30 "pebble directory" rig_exec ctl curl -sf --cacert "$RIG_CA" "$PEBBLE_DIR" ||
    { tail -n 20 "$RIG_DIR/pebble.log" >&2; rig_fail "pebble did not start"; }
  rig_log "pebble up at $PEBBLE_DIR (certificates valid ${validity}s), challtestsrv at $CHALLTESTSRV_URL, DNS 198.18.0.10:8053"
}

rig_hs() {
  "$(rig_peers)/headscale" -c "$RIG_DIR/headscale/config.yaml" --force "$@"
}

# rig_hs_node_online NAME: true when Headscale lists a node of that name as online.
rig_hs_node_online() {
  rig_hs nodes list -o json | jq -e --arg n "$1" '.[] | select(.given_name == $n and .online == true)' >/dev/null
}

rig_authkey() {
  rig_hs preauthkeys create --user "$HS_USER_ID" --reusable --expiration 1h -o json "$@" | jq -r '.key'
}

# rig_tailscaled_start NS NAME [VAR=VALUE...]: the VAR=VALUEs (e.g. TS_DEBUG_ACME_DIRECTORY_URL)
# go into tailscaled's environment, after SSL_CERT_FILE=$RIG_CA (so they may override it).
rig_tailscaled_start() {
  local ns="$1" name="$2" d="$RIG_DIR/$2"
  mkdir -p "$d"
  # TUN names are per namespace, but keep them unique anyway for readable logs.
  rig_bg "$ns" "$name" env SSL_CERT_FILE="$RIG_CA" "${@:3}" "$(rig_peers)/tailscaled" \
    --state="$d/tailscaled.state" --statedir="$d" --socket="$d/tailscaled.sock" \
    --tun="ts-$name" --port=41641 --no-logs-no-support
  rig_wait_for 30 "$name's socket" test -S "$d/tailscaled.sock" || rig_fail "tailscaled $name did not start"
}

rig_ts() {
  local name="$1"; shift
  "$(rig_peers)/tailscale" --socket="$RIG_DIR/$name/tailscaled.sock" "$@"
}

# rig_block_udp / rig_unblock_udp: drop, then allow again, all UDP between the client host
# (198.18.0.20) and the router host (198.18.0.2) on the WAN bridge (nft bridge family in the WAN
# namespace): direct paths die, DERP (TCP) stays.
rig_block_udp() {
  rig_exec wan nft -f - <<'EOF'
table bridge rigblock {
  chain forward {
    type filter hook forward priority 0; policy accept;
    ip saddr 198.18.0.20 ip daddr 198.18.0.2 meta l4proto udp drop
    ip saddr 198.18.0.2 ip daddr 198.18.0.20 meta l4proto udp drop
  }
}
EOF
}
rig_unblock_udp() { rig_exec wan nft delete table bridge rigblock; }

# rig_lacks DESC STRING FILE...: each FILE exists, is readable and non-empty, and does not hold
# STRING (grep's 2, an unreadable file, fails the run instead of passing as "not found").
rig_lacks() {
  local desc="$1" s="$2" f rc; shift 2
  for f in "$@"; do
    [[ -f "$f" && -r "$f" && -s "$f" ]] || rig_fail "$desc: $f is missing, unreadable or empty"
    rc=0; grep -qaF -- "$s" "$f" || rc=$?
    ((rc != 0)) || rig_fail "$desc: $f holds it"
    ((rc == 1)) || rig_fail "$desc: grep $f exited $rc"
  done
}

rig_down() {
  local rc=$?
  trap - EXIT
  [[ -n "${RIG:-}" ]] || return "$rc"
  rig_log "down: $RIG"
  local pid
  for pid in "${RIG_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${RIG_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  RIG_PIDS=()
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep "^$RIG-" || true); do
    # Anything still running in the namespace (a child the test forgot) goes too.
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
  [[ "${RIG_KEEP_DIR:-0}" == 1 ]] || rm -rf "$RIG_DIR"
  return "$rc"
}

rig_assert_clean() {
  local prefix="$1" left=""
  left+="$(ip netns list | grep "^$prefix-" || true)"
  left+="$(ls -d /etc/netns/"$prefix"-* 2>/dev/null || true)"
  left+="$(pgrep -af "/tmp/$prefix\." || true)"
  # Our links are made inside the namespaces; none may ever appear in the host's.
  left+="$(ip -o link show | grep -E ': (p-(ctl|cli|rtr|net)|ts-[a-z0-9]+)[@:]' || true)"
  [[ -z "$left" ]] || { echo "left behind by $prefix:"; echo "$left"; return 1; }
}
