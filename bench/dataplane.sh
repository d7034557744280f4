#!/usr/bin/env bash
# Benchmark: container-to-container TCP throughput (iperf3, 1 and 4 streams) and ping RTT
# over three paths measured in the same run, side by side:
#   raw veth  - two namespaces joined by one veth pair (the floor any design pays)
#   host-gw   - a 2-host Weft lab, container -> host -> host -> container, plain routes
#   vxlan     - the same over Weft's VXLAN device (MTU 1450)
#   udp, ipip - the same over Weft's user-space tunnel (TUN weft0; flannel's udp format,
#               MTU 1472; RFC 2003 IP-in-IP over a raw socket, MTU 1480), with the agents'
#               CPU time per Gbit/s measured over the iperf runs
# Each Weft path is measured twice: as the lab runs by default, with --ip-masq (NAT, so
# every packet goes through connection tracking), and without it. A control row,
# "plain routes", is the same 2-host lab topology with the agents stopped (their routes
# stay) and Weft's nftables table removed: kernel routing alone over the same hops, which
# separates what the topology costs from what Weft costs.
# "vxlan, plain (control)" is a vxlan lab without --ip-masq whose agents were stopped and
# whose nftables table was removed: kernel VXLAN alone with the device, routes,
# neighbour and FDB entries Weft left (what flannel's kernel path amounts to without its
# own rules), which shows what Weft's rules (the member filter's input chain) cost.
# "vxlan, flannel's CNI (ctl)" is the same with the containers attached again as
# flannel's CNI plugin attaches them (the reference bridge plugin on cni0, host-local
# IPAM): flannel's whole container path over the same kernel VXLAN, no part of Weft's.
# "host-gw, routed CNI" is host-gw without --ip-masq whose containers attach in routed
# mode (each on its own veth, no bridge: Calico's layout) instead of the default bridge.
# "host-gw, --big-tcp" is host-gw with `weftd --big-tcp` (192 KiB super-packets on every
# hop); its fair floor, "raw veth, BIG TCP", is the raw pair with the same limit.
# "host-gw, dual stack" and "vxlan, dual stack" are labs made with --ip-family dual: the
# same two containers measured over their IPv4 and their IPv6 addresses (IPv6 over
# host-gw's plain routes; over vxlan, IPv6 inside the same VXLAN device on the IPv4
# underlay). "dual stack, plain (control)" is a dual-stack host-gw lab whose agents were
# stopped and whose nftables tables (ip and ip6) were removed: what the kernel's own
# IPv6 path costs against its IPv4 path over the same hops, with no part of Weft's.
# Targets (issue 3): host-gw >= 95% of raw veth; vxlan >= 85% of host-gw.
# Target (issue 30): IPv6 >= 0.95x IPv4 on the same backend, same lab.
# Targets (issue 4): udp >= 70% of vxlan (1 and 4 streams), udp RTT p50 within 2x of vxlan.
# Everything runs in namespaces this script creates and removes. Needs root.
# Usage: bench/dataplane.sh [SECONDS_PER_RUN] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
ROUNDS=${2:-3}  # at least 3: the median of 2 is the slower of two
cargo build --release -q -p weft --bins
W=$PWD/target/release/weftctl
export WEFT_WEFTD=$PWD/target/release/weftd
TAG=b$$
RAW_A=${TAG}ra RAW_B=${TAG}rb BIG_A=${TAG}ba BIG_B=${TAG}bb
OUT=$(mktemp -d /tmp/weft-bench.XXXXXX)
cleanup() {
  for l in g v G V P X F U I B R d D e; do $W lab down --name "${TAG}$l" >/dev/null 2>&1 || true; done
  for ns in "$RAW_A" "$RAW_B" "$BIG_A" "$BIG_B"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$OUT"
}
trap cleanup EXIT

raw_pair() { # a b: two namespaces joined by one veth pair, 192.168.200.1 and .2
  ip netns add "$1"; ip netns add "$2"
  ip -n "$1" link add eth0 type veth peer name eth0 netns "$2"
  for ns in "$1" "$2"; do ip -n "$ns" link set lo up; ip -n "$ns" link set eth0 up; done
  ip -n "$1" addr add 192.168.200.1/24 dev eth0
  ip -n "$2" addr add 192.168.200.2/24 dev eth0
}
raw_pair "$RAW_A" "$RAW_B"
raw_pair "$BIG_A" "$BIG_B"
for ns in "$BIG_A" "$BIG_B"; do ip netns exec "$ns" python3 bench/lib/big-tcp.py eth0 196608; done

$W lab up --name "${TAG}g" --hosts 2 --backend host-gw >/dev/null
$W lab up --name "${TAG}v" --hosts 2 --backend vxlan >/dev/null
$W lab up --name "${TAG}G" --hosts 2 --backend host-gw --no-ip-masq >/dev/null
$W lab up --name "${TAG}V" --hosts 2 --backend vxlan --no-ip-masq >/dev/null
$W lab up --name "${TAG}P" --hosts 2 --backend host-gw --no-ip-masq >/dev/null
$W lab up --name "${TAG}X" --hosts 2 --backend vxlan --no-ip-masq >/dev/null
$W lab up --name "${TAG}F" --hosts 2 --backend vxlan --no-ip-masq >/dev/null
$W lab up --name "${TAG}U" --hosts 2 --backend udp >/dev/null
$W lab up --name "${TAG}I" --hosts 2 --backend ipip >/dev/null
$W lab up --name "${TAG}B" --hosts 2 --backend host-gw --agent-arg=--big-tcp >/dev/null
$W lab up --name "${TAG}R" --hosts 2 --backend host-gw --no-ip-masq --cni-mode routed >/dev/null
$W lab up --name "${TAG}d" --hosts 2 --backend host-gw --ip-family dual >/dev/null
$W lab up --name "${TAG}D" --hosts 2 --backend vxlan --ip-family dual >/dev/null
$W lab up --name "${TAG}e" --hosts 2 --backend host-gw --ip-family dual --no-ip-masq >/dev/null
for lab in P X F e; do
  for h in h1 h2; do
    $W lab agent --name "${TAG}$lab" $h stop >/dev/null
    ip netns exec "${TAG}$lab-$h" nft delete table ip weft
    [ "$lab" != e ] || ip netns exec "${TAG}$lab-$h" nft delete table ip6 weft
  done
done
ctr_addr() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["containers"]["2"])' "/run/weft-lab/$1/lab.json"; }
ctr_addr6() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["containers6"]["2"])' "/run/weft-lab/$1/lab.json"; }
# Re-attaches lab $1's container $2 as flannel's CNI plugin would (its delegate: the
# reference bridge plugin on cni0, host-local IPAM from the subnet file, a route to the
# network); prints the container's new address.
flannel_attach() {
  local lab=$1 i=$2 env="/run/weft-lab/$1/h$2/subnet.env"
  local gw net mtu subnet
  gw=$(sed -n 's/^FLANNEL_SUBNET=//p' "$env"); net=$(sed -n 's/^FLANNEL_NETWORK=//p' "$env")
  mtu=$(sed -n 's/^FLANNEL_MTU=//p' "$env")
  subnet=$(python3 -c 'import ipaddress,sys; print(ipaddress.ip_interface(sys.argv[1]).network)' "$gw")
  ip -n "$lab-c$i" link del eth0
  ip -n "$lab-h$i" link del weftbr0
  printf '{"cniVersion":"1.0.0","name":"cbr0","type":"bridge","bridge":"cni0","mtu":%s,"ipMasq":false,"isGateway":true,"hairpinMode":true,"ipam":{"type":"host-local","subnet":"%s","dataDir":"%s","routes":[{"dst":"%s"}]}}' \
    "$mtu" "$subnet" "$OUT/host-local-$lab-$i" "$net" |
    CNI_COMMAND=ADD CNI_CONTAINERID="bench-$i" CNI_NETNS="/run/netns/$lab-c$i" CNI_IFNAME=eth0 \
    CNI_PATH=/usr/lib/cni ip netns exec "$lab-h$i" /usr/lib/cni/bridge |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["ips"][0]["address"].split("/")[0])'
}
flannel_attach "${TAG}F" 1 >/dev/null
F2=$(flannel_attach "${TAG}F" 2)

# path -> "client-namespace server-namespace server-address"
declare -A PATHS=(
  [raw-veth]="$RAW_A $RAW_B 192.168.200.2"
  [raw-big]="$BIG_A $BIG_B 192.168.200.2"
  [host-gw-big]="${TAG}B-c1 ${TAG}B-c2 $(ctr_addr "${TAG}B")"
  [host-gw]="${TAG}g-c1 ${TAG}g-c2 $(ctr_addr "${TAG}g")"
  [vxlan]="${TAG}v-c1 ${TAG}v-c2 $(ctr_addr "${TAG}v")"
  [host-gw-routed]="${TAG}R-c1 ${TAG}R-c2 $(ctr_addr "${TAG}R")"
  [host-gw-nomasq]="${TAG}G-c1 ${TAG}G-c2 $(ctr_addr "${TAG}G")"
  [vxlan-nomasq]="${TAG}V-c1 ${TAG}V-c2 $(ctr_addr "${TAG}V")"
  [plain]="${TAG}P-c1 ${TAG}P-c2 $(ctr_addr "${TAG}P")"
  [vxlan-plain]="${TAG}X-c1 ${TAG}X-c2 $(ctr_addr "${TAG}X")"
  [vxlan-flannel]="${TAG}F-c1 ${TAG}F-c2 $F2"
  [udp]="${TAG}U-c1 ${TAG}U-c2 $(ctr_addr "${TAG}U")"
  [ipip]="${TAG}I-c1 ${TAG}I-c2 $(ctr_addr "${TAG}I")"
  [dual-host-gw-4]="${TAG}d-c1 ${TAG}d-c2 $(ctr_addr "${TAG}d")"
  [dual-host-gw-6]="${TAG}d-c1 ${TAG}d-c2 $(ctr_addr6 "${TAG}d")"
  [dual-vxlan-4]="${TAG}D-c1 ${TAG}D-c2 $(ctr_addr "${TAG}D")"
  [dual-vxlan-6]="${TAG}D-c1 ${TAG}D-c2 $(ctr_addr6 "${TAG}D")"
  [dual-plain-4]="${TAG}e-c1 ${TAG}e-c2 $(ctr_addr "${TAG}e")"
  [dual-plain-6]="${TAG}e-c1 ${TAG}e-c2 $(ctr_addr6 "${TAG}e")"
)
ORDER=(raw-veth plain host-gw vxlan udp ipip host-gw-nomasq vxlan-nomasq vxlan-plain vxlan-flannel host-gw-routed raw-big host-gw-big dual-host-gw-4 dual-host-gw-6 dual-vxlan-4 dual-vxlan-6 dual-plain-4 dual-plain-6)
# The labs whose agents carry the data (their CPU time is measured).
declare -A AGENT_LAB=([udp]="${TAG}U" [ipip]="${TAG}I")
agent_cpu() { # lab -> CPU seconds used so far by both hosts' agents
  local lab=$1 total=0
  for h in h1 h2; do
    pid=$(cat "/run/weft-lab/$lab/$h/weftd.pid")
    total=$(awk -v t="$total" '{ print t + ($14 + $15) }' "/proc/$pid/stat")
  done
  awk -v t="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", t / hz }'
}

iperf() { # client server addr streams -> Gbit/s
  ip netns exec "$2" iperf3 -s -1 -D -p 5201 >/dev/null
  sleep 0.3
  ip netns exec "$1" iperf3 -c "$3" -p 5201 -t "$SECS" -P "$4" -J > "$OUT/iperf.json"
  python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 1e9))' "$OUT/iperf.json"
}
rtt() { # client addr -> p50 ms
  ip netns exec "$1" ping -c 40 -i 0.02 -q -W 1 "$2" >/dev/null 2>&1 || true
  ip netns exec "$1" ping -c 100 -i 0.01 -W 1 "$2" | sed -n 's/.*time=\([0-9.]*\) ms/\1/p' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

declare -A ONE FOUR RTT CPU
for r in $(seq 1 "$ROUNDS"); do
  for p in "${ORDER[@]}"; do
    read -r cl sv addr <<< "${PATHS[$p]}"
    lab=${AGENT_LAB[$p]:-}
    [ -n "$lab" ] && before=$(agent_cpu "$lab")
    one=$(iperf "$cl" "$sv" "$addr" 1)
    four=$(iperf "$cl" "$sv" "$addr" 4)
    ONE[$p]+="$one "
    FOUR[$p]+="$four "
    if [ -n "$lab" ]; then
      # Percent of one core per Gbit/s carried, both agents together, over both runs.
      CPU[$p]+="$(awk -v a="$before" -v b="$(agent_cpu "$lab")" -v s="$SECS" -v g1="$one" -v g4="$four" \
        'BEGIN { printf "%.1f", 100 * (b - a) / (s * (g1 + g4)) }') "
    fi
    rtt_now=$(rtt "$cl" "$addr")
    RTT[$p]+="$rtt_now "
    # As measured, so a run stopped early still shows what it had.
    echo "round $r: $p: $one / $four Gbit/s, RTT p50 $rtt_now ms"
  done
done
median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%", 100 * a / b }'; }

declare -A M1 M4 MR MC
for p in "${ORDER[@]}"; do
  M1[$p]=$(echo "${ONE[$p]}" | median); M4[$p]=$(echo "${FOUR[$p]}" | median); MR[$p]=$(echo "${RTT[$p]}" | median)
  MC[$p]=$(echo "${CPU[$p]:-}" | median)
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
row() { printf '| %-26s | %8s | %9s | %8s | %-34s |\n' "$@"; }
echo
echo "Container to container, median of $ROUNDS rounds of ${SECS}s per test, all in this run"
echo
row path "1 stream" "4 streams" "RTT p50" "ratio (1 / 4 streams)"
row "" "Gbit/s" "Gbit/s" "ms" ""
printf '|%s|%s|%s|%s|%s|\n' ---------------------------- ---------- ----------- ---------- ------------------------------------
row "raw veth" "${M1[raw-veth]}" "${M4[raw-veth]}" "${MR[raw-veth]}" "baseline"
row "plain routes (control)" "${M1[plain]}" "${M4[plain]}" "${MR[plain]}" "$(pct "${M1[plain]}" "${M1[raw-veth]}") / $(pct "${M4[plain]}" "${M4[raw-veth]}") of raw veth"
for m in "" -nomasq; do
  label=$([ -z "$m" ] && echo "with --ip-masq" || echo "without --ip-masq")
  g=host-gw$m; v=vxlan$m
  row "host-gw, $label" "${M1[$g]}" "${M4[$g]}" "${MR[$g]}" "$(pct "${M1[$g]}" "${M1[raw-veth]}") / $(pct "${M4[$g]}" "${M4[raw-veth]}") of raw veth"
  row "" "" "" "" "$(pct "${M1[$g]}" "${M1[plain]}") / $(pct "${M4[$g]}" "${M4[plain]}") of plain routes"
  row "vxlan, $label" "${M1[$v]}" "${M4[$v]}" "${MR[$v]}" "$(pct "${M1[$v]}" "${M1[$g]}") / $(pct "${M4[$v]}" "${M4[$g]}") of host-gw"
done
v=vxlan-plain
row "vxlan, plain (control)" "${M1[$v]}" "${M4[$v]}" "${MR[$v]}" "RTT: vxlan without --ip-masq is $(ratio "${MR[vxlan-nomasq]}" "${MR[$v]}") of it"
v=vxlan-flannel
row "vxlan, flannel's CNI (ctl)" "${M1[$v]}" "${M4[$v]}" "${MR[$v]}" "RTT: vxlan without --ip-masq is $(ratio "${MR[vxlan-nomasq]}" "${MR[$v]}") of it"
g=host-gw-routed
row "host-gw, routed CNI" "${M1[$g]}" "${M4[$g]}" "${MR[$g]}" "$(pct "${M1[$g]}" "${M1[raw-veth]}") / $(pct "${M4[$g]}" "${M4[raw-veth]}") of raw veth"
row "  (without --ip-masq)" "" "" "" "$(pct "${M1[$g]}" "${M1[host-gw-nomasq]}") / $(pct "${M4[$g]}" "${M4[host-gw-nomasq]}") of host-gw with a bridge"
row "raw veth, BIG TCP" "${M1[raw-big]}" "${M4[raw-big]}" "${MR[raw-big]}" "$(pct "${M1[raw-big]}" "${M1[raw-veth]}") / $(pct "${M4[raw-big]}" "${M4[raw-veth]}") of raw veth"
row "host-gw, --big-tcp" "${M1[host-gw-big]}" "${M4[host-gw-big]}" "${MR[host-gw-big]}" "$(pct "${M1[host-gw-big]}" "${M1[raw-veth]}") / $(pct "${M4[host-gw-big]}" "${M4[raw-veth]}") of raw veth"
row "" "" "" "" "$(pct "${M1[host-gw-big]}" "${M1[raw-big]}") / $(pct "${M4[host-gw-big]}" "${M4[raw-big]}") of raw veth, BIG TCP"
row "" "" "" "" "$(pct "${M1[host-gw-big]}" "${M1[host-gw]}") / $(pct "${M4[host-gw-big]}" "${M4[host-gw]}") of host-gw"
for b in host-gw vxlan plain; do
  row "$b, dual stack: IPv4" "${M1[dual-$b-4]}" "${M4[dual-$b-4]}" "${MR[dual-$b-4]}" "the same lab's IPv4"
  row "$b, dual stack: IPv6" "${M1[dual-$b-6]}" "${M4[dual-$b-6]}" "${MR[dual-$b-6]}" "$(ratio "${M1[dual-$b-6]}" "${M1[dual-$b-4]}") / $(ratio "${M4[dual-$b-6]}" "${M4[dual-$b-4]}") of IPv4"
done
for t in udp ipip; do
  row "$t (user space)" "${M1[$t]}" "${M4[$t]}" "${MR[$t]}" "$(pct "${M1[$t]}" "${M1[vxlan]}") / $(pct "${M4[$t]}" "${M4[vxlan]}") of vxlan"
  row "" "" "" "" "RTT $(ratio "${MR[$t]}" "${MR[vxlan]}") of vxlan"
  row "" "" "" "" "agents: ${MC[$t]}% of a core per Gbit/s"
done
echo
echo "Ranges over the $ROUNDS rounds (min-max): 1 stream Gbit/s | 4 streams Gbit/s | RTT p50 ms"
range() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -n | awk 'NR==1 {a=$1} {b=$1} END {printf "%s-%s", a, b}'; }
for p in "${ORDER[@]}"; do
  printf '  %-16s %-13s | %-13s | %s\n' "$p" "$(echo "${ONE[$p]}" | range)" "$(echo "${FOUR[$p]}" | range)" "$(echo "${RTT[$p]}" | range)"
done
echo
echo "targets: host-gw >= 95% of raw veth; vxlan >= 85% of host-gw;"
echo "         udp >= 70% of vxlan (1 and 4 streams) with RTT p50 <= 2x vxlan;"
echo "         IPv6 >= 0.95x IPv4 on host-gw and vxlan (dual-stack labs)"
