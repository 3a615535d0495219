#!/usr/bin/env bash
# bench/throughput: forwarding throughput of a subnet router on one core, in the netns rig (root).
#
# The path, the same for every variant: iperf3 client on the client host (198.18.0.20) -> tunnel
# over the WAN bridge, direct UDP -> router host (198.18.0.2) -> kernel forwarding -> LAN host
# 192.0.2.10 running `iperf3 -s`. Variants (one router at a time, alternating rounds, the order
# rotating each round):
#   tinytail     `tinytail run` advertising 192.0.2.0/24 (approved in Headscale; SNAT on, its default)
#   tailscaled   tailscaled advertising the same route (netfilter on, SNAT on: its defaults)
#   wireguard-go Debian's wireguard-go (plain WireGuard, static keys, no control plane) on both
#                hosts, port 51820, MTU 1280 like the tailnet's; the client routes 192.0.2.0/24
#                into it (ip rule, priority 100, above tailscaled's table 52)
# The client side is a tailscaled with --accept-routes (wireguard-go for the wireguard-go row).
# Each measurement has a router node of its own (rtiR, rtaR for round R): it joins, its route is
# approved, it is measured, stopped and deleted from Headscale. (Restarting one node per kind made
# the client keep sending to the stopped one, or break after a first ping: not what is measured
# here; bench/startup.sh measures restarts.) Before measuring, `tailscale ping` must say the path
# is direct (via 198.18.0.2:41641), 192.0.2.10 must answer 3 pings and a TCP SYN.
# Pinning (2-core machine): the router process on CPU 0 (taskset -c 0, all its threads), everything
# else (client tailscaled or wireguard-go, iperf3 client and server) on CPU 1.
# Per round and variant: TCP for SECS seconds (iperf3 -c, client -> LAN host), then UDP at a fixed
# rate (iperf3 -u -b RATE -l 1200: no fragmentation under MTU 1280) for SECS seconds.
#   Mbit/s: TCP as received; UDP as received (sent rate x (1 - loss)), loss in %.
#   router CPU: CPU time of the router process (user + system, all threads, /proc/PID/stat) over
#   the iperf3 run's wall time, in % of one core; kernel work done in softirq context on behalf
#   of the router (forwarding, veth) is not in it.
#   TCP retr: iperf3's retransmits; rcvbuf: UDP datagrams the router host's kernel dropped because
#   a socket's receive buffer was full (RcvbufErrors in the router namespace's /proc/net/snmp).
#   Where drops go with CPU well under 100%, the router does not drain its socket fast enough.
#   For reading the figures: tailscaled (v1.101.0-pre) turns on TCP segmentation offload on its TUN
#   (TUNSETOFFLOAD TSO4/TSO6 in its wireguard-go fork: up to 64 KB per read/write) and forces 7 MiB
#   UDP socket buffers (magicsock socketBufferSize, SO_RCVBUFFORCE); tinytail forces 4 MiB socket
#   buffers but has no TUN offload or UDP GSO/GRO yet, and Debian's wireguard-go 0.0.20220316 has
#   no TUN offload.
#   bench/throughput.sh            5 rounds, 10 s TCP + 10 s UDP each
#   bench/throughput.sh --smoke    1 round, 2 s each (what the test command runs)
# TINYTAIL_BIN overrides the release build under test; UDP_RATE the UDP rate (default 200M).
set -euo pipefail
shopt -s inherit_errexit
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
smoke=0
[[ "${1:-}" == "--smoke" ]] && smoke=1
if ((smoke)); then rounds=1 secs=2; else rounds=5 secs=10; fi
rate="${UDP_RATE:-200M}"
variants=(tinytail tailscaled wireguard-go)
ROUTER_CPU=0 OTHER_CPU=1

source tests/rig/rig.sh
source bench/lib.sh
bench_needs throughput iperf3 taskset wireguard-go wg jq bc
bench_header bench/throughput.sh "$@"
TT_BIN="$(bench_tinytail_bin)"

bench_rig_start
echo "tinytail: $("$TT_BIN" version)"
echo "tailscaled: $("$PEERS/tailscaled" --version | head -n 1) (tests/interop/go.mod); $(wireguard-go --version | head -n 1) (Debian); $(iperf3 --version | head -n 1)"
echo "pinning: router process on CPU $ROUTER_CPU; client tunnel, iperf3 client and server on CPU $OTHER_CPU"

declare -A PID  # name -> pid of the running process
stop() { bench_kill "${PID[$1]}"; unset "PID[$1]"; }

# The client; the routers join fresh for each measurement (up/down below).
bench_client_join "$OTHER_CPU"
rig_bg lan iperf3 taskset -c "$OTHER_CPU" iperf3 -s -B 192.0.2.10

# WireGuard keys for the wireguard-go reference.
mkdir -p "$RIG_DIR/wg"
for h in cli rtr; do (umask 077; wg genkey >"$RIG_DIR/wg/$h.key"); wg pubkey <"$RIG_DIR/wg/$h.key" >"$RIG_DIR/wg/$h.pub"; done

# lan_ok: 192.0.2.10 answers three pings in a row, and a TCP SYN to a closed port (9) gets its
# RST back (TCP passes both ways; iperf3's own port is left alone).
lan_ok() {
  local out
  bench_lan_pings || return 1
  out="$(rig_exec cli timeout 2 bash -c 'exec 3<>/dev/tcp/192.0.2.10/9' 2>&1 || true)"
  [[ "$out" == *refused* ]]
}

# up VARIANT: a new router node of that kind joins, advertises 192.0.2.0/24 and is approved;
# wait until 192.0.2.10 answers through it over the direct path. Sets RPID and name.
up() {
  name="r${1:0:2}$r"  # tailscaled names its TUN ts-NAME: keep it short
  case "$1" in
    wireguard-go)
      wg_start rtr "$ROUTER_CPU" 198.19.0.1 198.19.0.2/32 ""
      wg_start cli "$OTHER_CPU" 198.19.0.2 198.19.0.1/32,192.0.2.0/24 198.18.0.2:51820
      rig_exec cli ip route add 192.0.2.0/24 dev "wc$RIG" table 51820
      rig_exec cli ip rule add to 192.0.2.0/24 lookup 51820 priority 100
      RPID="${PID[wg-rtr]}"
      rig_wait_for 10 "192.0.2.10 over wireguard-go" lan_ok || rig_fail "192.0.2.10 unreachable over wireguard-go"
      return 0 ;;
    *) bench_router_join "$1" "$name" "$ROUTER_CPU" ;;
  esac
  RPID="${PID[$name]}"
  rig_wait_for 20 "192.0.2.10 via $name" lan_ok || rig_fail "192.0.2.10 unreachable via $name"
}
# down VARIANT: stop it; a router node is deleted from Headscale, so its route goes at once.
down() {
  case "$1" in
    tinytail | tailscaled)
      stop "$name"
      rig_hs nodes delete --identifier "$(bench_hs_node_id "$name")" >/dev/null ;;
    wireguard-go)
      rig_exec cli ip rule del to 192.0.2.0/24 lookup 51820 priority 100 || true
      stop wg-cli; stop wg-rtr ;;
  esac
}
# wg_start NS CPU ADDR ALLOWED ENDPOINT: wireguard-go in the foreground, configured with wg; the
# interface is wc$RIG (cli) or wr$RIG (rtr): the UAPI socket (/var/run/wireguard/IF.sock) is not per
# namespace, so the name must differ between the hosts and between concurrent runs.
wg_start() {
  local ns="$1" other=cli
  [[ "$ns" == cli ]] && other=rtr
  local ifname="w${ns:0:1}$RIG"
  rig_bg "$ns" "wg-$ns-$r" env WG_PROCESS_FOREGROUND=1 taskset -c "$2" wireguard-go -f "$ifname"
  PID[wg-$ns]="$RIG_LAST_PID"
  rig_wait_for 10 "$ifname in $ns" rig_exec "$ns" wg show "$ifname" || rig_fail "wireguard-go did not start in $ns"
  rig_exec "$ns" wg set "$ifname" private-key "$RIG_DIR/wg/$ns.key" listen-port 51820 \
    peer "$(cat "$RIG_DIR/wg/$other.pub")" allowed-ips "$4" ${5:+endpoint "$5"}
  rig_exec "$ns" ip addr add "$3/30" dev "$ifname"
  rig_exec "$ns" ip link set "$ifname" mtu 1280 up
}

hz="$(getconf CLK_TCK)"
declare -A vals  # "variant/metric" -> values over rounds
note() { vals["$1/$2"]+="$3 "; }
# iperf VARIANT PROTO ARGS...: one iperf3 run; notes Mbit/s (received), CPU % and, for UDP, loss.
iperf() {
  local v="$1" proto="$2" out="$RIG_DIR/iperf3-$1-$2-$r.json" c0 c1 t0 t1 d0 try
  for try in 1 2 3; do
    c0="$(bench_cpu_ticks "$RPID")"; t0="$(bench_now)"; d0="$(bench_rcvbuf_errors)"
    # iperf3 -J exits 0 when it cannot connect: the JSON must have no error and some traffic.
    rig_exec cli taskset -c "$OTHER_CPU" iperf3 -c 192.0.2.10 -t "$secs" --connect-timeout 5000 -J "${@:3}" >"$out" 2>&1 &&
      jq -e '.error == null and ((.end.sum_received.bits_per_second // .end.sum.bits_per_second // 0) > 0)' "$out" >/dev/null &&
      break
    # Counted and shown under the table: a path that broke after lan_ok passed.
    echo "bench/throughput: round $r: iperf3 $proto through $v failed (try $try): $(jq -r '.error // empty' "$out" 2>/dev/null)" >&2
    note "$v" failures 1
    ((try < 3)) || rig_fail "iperf3 $proto through $v failed 3 times"
    rig_wait_for 30 "192.0.2.10 via $v again" lan_ok || rig_fail "192.0.2.10 unreachable via $v"
  done
  c1="$(bench_cpu_ticks "$RPID")"; t1="$(bench_now)"
  note "$v" "$proto-rcvbuf" $(($(bench_rcvbuf_errors) - d0))
  note "$v" "$proto-cpu" "$(echo "scale=1; 100 * ($c1 - $c0) / $hz / ($t1 - $t0)" | bc)"
  if [[ "$proto" == tcp ]]; then
    note "$v" tcp-mbit "$(jq '.end.sum_received.bits_per_second / 1e6 * 10 | floor / 10' "$out")"
    note "$v" tcp-retr "$(jq '.end.sum_sent.retransmits' "$out")"
  else
    note "$v" udp-loss "$(jq '.end.sum.lost_percent * 100 | floor / 100' "$out")"
    note "$v" udp-mbit "$(jq '.end.sum.bits_per_second * (1 - .end.sum.lost_percent / 100) / 1e6 * 10 | floor / 10' "$out")"
  fi
}

for ((r = 1; r <= rounds; r++)); do
  k=$(((r - 1) % ${#variants[@]}))
  order=("${variants[@]:k}" "${variants[@]:0:k}")
  for v in "${order[@]}"; do
    up "$v"
    iperf "$v" tcp
    iperf "$v" udp -u -b "$rate" -l 1200
    down "$v"
  done
done

printf '| %-12s | %22s | %9s | %9s | %10s | %22s | %17s | %9s | %10s |\n' variant "TCP Mbit/s min/med/max" "TCP CPU %" "TCP retr" "TCP rcvbuf" "UDP $rate Mbit/s recv" "UDP loss %" "UDP CPU %" "UDP rcvbuf"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' "--------------" "------------------------" "-----------" "-----------" "------------" "------------------------" "-------------------" "-----------" "------------"
median() { bench_stats "$@" | cut -d' ' -f2; }
mmm() { bench_stats "$@" | tr ' ' /; }
for v in "${variants[@]}"; do
  # shellcheck disable=SC2086
  printf '| %-12s | %22s | %9s | %9s | %10s | %22s | %17s | %9s | %10s |\n' "$v" "$(mmm ${vals[$v/tcp-mbit]})" \
    "$(median ${vals[$v/tcp-cpu]})" "$(median ${vals[$v/tcp-retr]})" "$(median ${vals[$v/tcp-rcvbuf]})" "$(mmm ${vals[$v/udp-mbit]})" "$(mmm ${vals[$v/udp-loss]})" \
    "$(median ${vals[$v/udp-cpu]})" "$(median ${vals[$v/udp-rcvbuf]})"
done
echo
fails=""
for v in "${variants[@]}"; do [[ -z "${vals[$v/failures]:-}" ]] || fails+=" $v $(wc -w <<<"${vals[$v/failures]}")"; done
[[ -z "$fails" ]] || echo "iperf3 runs that failed to connect and were retried (path broke after the checks):$fails"
echo "rounds=$rounds, ${secs}s TCP + ${secs}s UDP (-b $rate -l 1200) per round and variant; CPU: router process, % of one core, median; TCP retr: iperf3's retransmits per run; rcvbuf: UDP datagrams the router host dropped for a full socket buffer (/proc/net/snmp RcvbufErrors) per run; medians; UDP Mbit/s received = sent x (1 - loss)"
echo "load average (1/5/15 min): $load_start at the start, $(cut -d" " -f1-3 /proc/loadavg) at the end"
# shellcheck disable=SC2086
ratio() { echo "$(median ${vals[tinytail/$1]}) $(median ${vals[$2/$1]})" | awk '{ if ($2 > 0) printf "%.2fx", $1 / $2; else print "n/a" }'; }
echo "ratio (TCP Mbit/s, medians): tinytail/tailscaled $(ratio tcp-mbit tailscaled), tinytail/wireguard-go $(ratio tcp-mbit wireguard-go); UDP received: tinytail/tailscaled $(ratio udp-mbit tailscaled), tinytail/wireguard-go $(ratio udp-mbit wireguard-go)"
