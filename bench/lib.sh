# shellcheck shell=bash
# Shared helpers of the benches that run tinytail and tailscaled side by side in the netns rig
# (bench/netmap.sh, bench/rss.sh). Source after tests/rig/rig.sh.
#
#   bench_header NAME ARGS...   date, machine and the exact command, like the other benches
#   bench_tinytail_bin          the release tinytail under test ($TINYTAIL_BIN, or a release build)
#   bench_control_start N       testcontrol with N fake peers on the control host; exports TC_URL,
#                               BENCH_CONTROL_PID (tinytail-interop control -fake-nodes N)
#   bench_control_stop          stop it (for a restart with another N)
#   bench_ts_join NS NAME [FLAGS...]  a tailscaled in NS, `tailscale up` to TC_URL as NAME with
#                               FLAGS; its pid in BENCH_PID[NAME]
#   bench_tt_join NS NAME [FLAGS...]  a tinytail in NS, `tinytail up` likewise
#   bench_has_peers NAME N      true when NAME lists N peers
#   bench_ip NAME               the client's tailnet IPv4 address
#   bench_stop NAME             stop that client (TERM, then KILL after 5 s)
#   bench_peers NAME            peers the client lists now (tailscale/tinytail status --json)
#   bench_wait_peers NAME N S T0  wait up to S seconds until NAME lists N peers; prints the
#                               seconds since T0 (a bench_now taken before the change)
#   bench_push NAME AS ADD      POST /bench/push (fake_nodes.go); prints "PEERS BYTES": the peer
#                               count NAME will list and the map response's JSON size
#   bench_routes NAME CIDRS     POST /bench/routes: approve NAME's subnet routes
#   bench_mem PID               "VmRSS VmHWM" of PID in KiB
#   bench_lock_json NAME        `lock status --json` of that client (tailscale/tinytail)
#   bench_lock_head NAME        the tailnet-lock head it reports (.Head; "" while lock is off)
#   bench_stats V...            "min median max" of the numbers given
#   bench_now                   seconds since the epoch, with nanoseconds
#   bench_ping_gap LOG FROM TO  the longest stretch in ms without a reply in a `ping -D` log
#                               between FROM and TO (bench_now values; both count as edges, so a
#                               stream that never answered, or stopped answering, is one long gap)

declare -gA BENCH_PID BENCH_KIND BENCH_NS

bench_header() {
  local name="$1"; shift
  echo "$name: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "machine: $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -sr)"
  echo "command: $name${*:+ $*}"
}

bench_tinytail_bin() {
  local bin="${TINYTAIL_BIN:-}"
  if [[ -z "$bin" ]]; then
    local dir="${CARGO_TARGET_DIR:-$HOME/.cache/tinytail/target/host}"
    (cd "$RIG_ROOT" && CARGO_TARGET_DIR="$dir" cargo build --release --quiet) >&2
    bin="$dir/release/tinytail"
  fi
  [[ -x "$bin" ]] || { echo "bench: no tinytail binary at $bin" >&2; return 1; }
  echo "$bin"
}

bench_control_start() {
  # HTTPS on 443 with the rig's CA (as Headscale): tailscaled redials control on 443 when the
  # last dial was under 2 minutes ago, unless the URL is plain HTTP to a private IP, and the rig's
  # 198.18.0.10 is not one. So both clients speak TLS + Noise to it, as to Headscale.
  [[ -n "${RIG_CA:-}" ]] || rig_make_ca
  BENCH_CONTROL_STARTS=$((${BENCH_CONTROL_STARTS:-0} + 1))
  local log="testcontrol-$BENCH_CONTROL_STARTS"
  rig_bg ctl "$log" "$(rig_peers)/tinytail-interop" control -listen 198.18.0.10:443 \
    -tls-cert "$RIG_DIR/pki/control.crt" -tls-key "$RIG_DIR/pki/control.key" \
    -derp-host "$RIG_CONTROL_HOST" -fake-nodes "$1"
  BENCH_CONTROL_PID="$RIG_LAST_PID"
  export TC_URL="https://$RIG_CONTROL_HOST"
  rig_wait_for 30 "testcontrol /key" rig_exec cli curl -sf --cacert "$RIG_CA" "$TC_URL/key?v=113" ||
    { tail -n 20 "$RIG_DIR/$log.log" >&2; rig_fail "testcontrol did not start"; }
}

bench_control_stop() { bench_kill "$BENCH_CONTROL_PID"; }

bench_kill() {
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

bench_ts_join() {
  local ns="$1" name="$2"
  rig_tailscaled_start "$ns" "$name"
  BENCH_PID[$name]="$RIG_LAST_PID"
  BENCH_KIND[$name]=tailscaled
  BENCH_NS[$name]="$ns"
  rig_ts "$name" up --login-server="$TC_URL" --hostname="$name" \
    --accept-dns=false --netfilter-mode=off --timeout=60s "${@:3}" >/dev/null ||
    rig_fail "tailscale up ($name) failed: $(tail -n 5 "$RIG_DIR/$name.log")"
}

bench_tt_join() {
  local ns="$1" name="$2" dir="$RIG_DIR/$2"
  mkdir -p "$dir"
  rig_bg "$ns" "$name" env SSL_CERT_FILE="$RIG_CA" "$TT_BIN" run --state "$dir/state.img" --socket "$dir/tinytail.sock" --web-listen off
  BENCH_PID[$name]="$RIG_LAST_PID"
  BENCH_KIND[$name]=tinytail
  BENCH_NS[$name]="$ns"
  rig_wait_for 10 "$name's socket" test -S "$dir/tinytail.sock" || rig_fail "tinytail run ($name) did not start"
  rig_exec "$ns" "$TT_BIN" up --socket "$dir/tinytail.sock" --login-server "$TC_URL" --hostname "$name" \
    --timeout 60 "${@:3}" >/dev/null || rig_fail "tinytail up ($name) failed: $(tail -n 5 "$RIG_DIR/$name.log")"
}

bench_stop() { bench_kill "${BENCH_PID[$1]}"; }

# Pinned routers and clients for the Headscale-rig benches (throughput, startup). The caller
# declares `declare -A PID`; each start records PID[NAME]; LOG (default NAME) names the log file.
# bench_pinned_tailscaled NS NAME CPU [LOG]: tailscaled as rig_tailscaled_start starts it, on CPU.
bench_pinned_tailscaled() {
  local d="$RIG_DIR/$2"
  mkdir -p "$d"
  rig_bg "$1" "${4:-$2}" env SSL_CERT_FILE="$RIG_CA" taskset -c "$3" "$(rig_peers)/tailscaled" \
    --state="$d/tailscaled.state" --statedir="$d" --socket="$d/tailscaled.sock" \
    --tun="ts-$2" --port=41641 --no-logs-no-support
  PID[$2]="$RIG_LAST_PID"
}
# bench_pinned_tinytail NS NAME CPU [LOG]: tinytail run on CPU, web page off.
bench_pinned_tinytail() {
  local d="$RIG_DIR/$2"
  mkdir -p "$d"
  rig_bg "$1" "${4:-$2}" env SSL_CERT_FILE="$RIG_CA" taskset -c "$3" "$TT_BIN" run \
    --state "$d/state.img" --socket "$d/tinytail.sock" --web-listen off
  PID[$2]="$RIG_LAST_PID"
}
# bench_hs_node_id NAME / bench_hs_approve NAME: Headscale's id for NAME; approve its LAN route.
bench_hs_node_id() { rig_hs nodes list -o json | jq -r --arg n "$1" '.[] | select(.given_name == $n) | .id'; }
bench_hs_approve() { rig_hs nodes approve-routes --identifier "$(bench_hs_node_id "$1")" --routes 192.0.2.0/24 >/dev/null; }

bench_status() {
  local name="$1"
  case "${BENCH_KIND[$name]}" in
    tailscaled) rig_ts "$name" status --json ;;
    tinytail) "$TT_BIN" status --json --socket "$RIG_DIR/$name/tinytail.sock" ;;
  esac
}

bench_peers() { bench_status "$1" | jq '.Peer // {} | length'; }

bench_has_peers() { [[ "$(bench_peers "$1")" == "$2" ]]; }

bench_ip() {
  case "${BENCH_KIND[$1]}" in
    tailscaled) rig_ts "$1" ip -4 ;;
    tinytail) "$TT_BIN" ip -4 --socket "$RIG_DIR/$1/tinytail.sock" ;;
  esac
}

# bench_wait_peers NAME N SECONDS T0: polls as fast as the status command allows (no sleep), so
# the figure is the apply time plus at most one status call; prints seconds since T0 or fails.
bench_wait_peers() {
  local name="$1" want="$2" t0="$4" now deadline
  deadline="$(echo "$t0 + $3" | bc)"
  while true; do
    [[ "$(bench_peers "$name" 2>/dev/null)" == "$want" ]] && break
    now="$(bench_now)"
    (($(echo "$now > $deadline" | bc))) && { echo "bench: $name did not list $want peers in $3 s (has $(bench_peers "$name"))" >&2; return 1; }
  done
  echo "$(bench_now) - $t0" | bc
}

bench_push() {
  rig_exec cli curl -sf --cacert "$RIG_CA" -X POST "$TC_URL/bench/push?node=$1&as=$2&add=${3:-0}" | jq -r '"\(.peers) \(.bytes)"'
}

bench_routes() {
  rig_exec cli curl -sf --cacert "$RIG_CA" -X POST "$TC_URL/bench/routes?node=$1&routes=$2" >/dev/null
}

bench_mem() {
  awk '/^VmRSS:/{r=$2} /^VmHWM:/{h=$2} END{print r, h}' "/proc/$1/status"
}

bench_stats() {
  printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{
    m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2
    print v[1], m, v[NR]}'
}

bench_now() { date +%s.%N; }

# The reply times (bench_now's form) in a `ping -D` log, in order.
bench_reply_times() { sed -n 's/^\[\([0-9.]*\)\] [0-9]* bytes from .*/\1/p' "$1"; }

# bench_first_reply LOG T: the time of the first reply after T; fails when there is none yet.
bench_first_reply() { bench_reply_times "$1" | awk -v t="$2" '$1 > t {print; f=1; exit} END {exit !f}'; }

# bench_secs_to_reply LOG T: seconds (3 decimals) from T to the first reply after it.
bench_secs_to_reply() {
  local at
  at="$(bench_first_reply "$1" "$2")" || return 1
  awk -v a="$at" -v t="$2" 'BEGIN {printf "%.3f\n", a - t}'
}

bench_ping_gap() {
  { echo "$2"; bench_reply_times "$1"; echo "$3"; } |
    awk -v from="$2" -v to="$3" '$1 >= from && $1 <= to {
      if (n++ && $1 - prev > max) max = $1 - prev; prev = $1 } END {printf "%d\n", max * 1000}'
}

# The subnet-router benches' checks (throughput, flood, fallback): the tailscaled client on `cli`,
# the router host `rtr` at 198.18.0.2, the LAN host 192.0.2.10.
# bench_client_sees NAME: the client lists NAME online as the primary router for 192.0.2.0/24.
bench_client_sees() {
  rig_ts client status --json | jq -e --arg n "$1" \
    '.Peer[] | select(.HostName == $n and .Online == true and ((.PrimaryRoutes // []) | index("192.0.2.0/24")))' >/dev/null
}
# bench_direct NAME: `tailscale ping` from the client reaches NAME over direct UDP at 198.18.0.2:41641.
bench_direct() {
  local ip out
  ip="$(rig_ts client status --json | jq -r --arg n "$1" '.Peer[] | select(.HostName == $n) | .TailscaleIPs[0]')"
  out="$(rig_ts client ping -c 20 --until-direct=true --timeout=2s "$ip" 2>&1 || true)"
  [[ "$(tail -n 1 <<<"$out")" == *"via 198.18.0.2:41641 "* ]]
}
# bench_lan_pings: 192.0.2.10 answers three pings in a row from the client.
bench_lan_pings() { rig_exec cli ping -c 3 -i 0.2 -W 1 192.0.2.10 >/dev/null 2>&1; }
# bench_cpu_ticks PID: user + system clock ticks of a process, all its threads.
bench_cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# bench_rcvbuf_errors: UDP datagrams the router host dropped for a full socket buffer so far.
bench_rcvbuf_errors() { rig_exec rtr awk '/^Udp:/ && ++n == 2 {print $6}' /proc/net/snmp; }
# bench_router_join KIND NAME CPU: a router node NAME of KIND (tinytail, the build in $TT_BIN, or
# tailscaled) starts on the router host pinned to CPU, joins advertising 192.0.2.0/24 and is
# approved; returns once the client lists it as the route's router and reaches it directly.
# Records PID[NAME] (the caller declares PID).
bench_router_join() {
  local kind="$1" name="$2" cpu="$3"
  case "$kind" in
    tinytail)
      bench_pinned_tinytail rtr "$name" "$cpu"
      rig_wait_for 10 "$name's socket" test -S "$RIG_DIR/$name/tinytail.sock" || rig_fail "tinytail run ($name) did not start"
      rig_exec rtr "$TT_BIN" up --socket "$RIG_DIR/$name/tinytail.sock" --login-server "$HS_URL" \
        --auth-key "$(rig_authkey)" --hostname "$name" --advertise-routes 192.0.2.0/24 --timeout 60 >/dev/null ||
        rig_fail "tinytail up failed: $(tail -n 5 "$RIG_DIR/$name.log")" ;;
    tailscaled)
      bench_pinned_tailscaled rtr "$name" "$cpu"
      rig_wait_for 30 "$name's socket" test -S "$RIG_DIR/$name/tailscaled.sock" || rig_fail "tailscaled $name did not start"
      rig_ts "$name" up --login-server="$HS_URL" --auth-key="$(rig_authkey)" --hostname="$name" \
        --advertise-routes=192.0.2.0/24 --accept-dns=false --timeout=60s >/dev/null ||
        rig_fail "tailscaled router up failed: $(tail -n 5 "$RIG_DIR/$name.log")" ;;
    *) rig_fail "bench_router_join: unknown kind $kind" ;;
  esac
  bench_hs_approve "$name"
  rig_wait_for 30 "client sees $name as the router" bench_client_sees "$name" ||
    rig_fail "the client does not list $name online with 192.0.2.0/24: $(rig_ts client status 2>&1 | tail -n 5)"
  rig_wait_for 20 "direct path to $name" bench_direct "$name" ||
    rig_fail "no direct path to $name: $(rig_ts client ping -c 3 "$name" 2>&1 | tail -n 2)"
}
# bench_client_join CPU: the tailscaled client on the client host, pinned to CPU, joins and
# accepts the routers' routes. Records PID[client].
bench_client_join() {
  bench_pinned_tailscaled cli client "$1"
  rig_wait_for 30 "client's socket" test -S "$RIG_DIR/client/tailscaled.sock" || rig_fail "tailscaled client did not start"
  rig_ts client up --login-server="$HS_URL" --auth-key="$(rig_authkey)" --hostname=client \
    --accept-routes --accept-dns=false --timeout=60s >/dev/null || rig_fail "client up failed"
}
# bench_needs NAME TOOL...: stops bench/NAME with a message naming the first tool missing.
bench_needs() {
  local name="$1" tool; shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "bench/$name: needs $tool (scripts/setup-toolchain installs it)" >&2; exit 1; }
  done
}
# bench_rig_start: the netns rig with Headscale and its embedded DERP; sets PEERS (the Go peers'
# directory) and load_start (the machine may be shared: shown under the table).
bench_rig_start() {
  rig_up
  rig_headscale_start
  PEERS="$(rig_peers)"
  load_start="$(cut -d" " -f1-3 /proc/loadavg)"
}
# bench_lock_json NAME / bench_lock_head NAME: the client's tailnet-lock status (bench/tka.sh).
bench_lock_json() {
  case "${BENCH_KIND[$1]}" in
    tailscaled) rig_ts "$1" lock status --json ;;
    tinytail) "$TT_BIN" lock status --json --socket "$RIG_DIR/$1/tinytail.sock" ;;
  esac
}
bench_lock_head() { bench_lock_json "$1" | jq -r '.Head // ""'; }
