#!/usr/bin/env bash
# Benchmark (issue 20): network policy, all rows in the same run on one 2-host lab
# (host-gw, routed CNI, embedded store). A client container on h1 and a server on h2,
# both in namespace x and selected by no policy, so every new connection runs past
# every rule of their namespace and is then allowed.
#  1. Data path: TCP throughput (iperf3, one stream), ping RTT (established flows) and
#     new-connection time (connect over 500 fresh TCP connections: the one packet per
#     connection that meets the rules), for:
#       no policy               - nothing loaded: first, after the iptables row, and
#                                 as a control right after each of three weft rounds
#                                 (the agents stopped, the policy table removed; the
#                                 agents started again, reloading it, for the next);
#       iptables, linear        - the same rules as the weft row, 10 per policy and one
#                                 isolation drop each (11,000), as a linear legacy
#                                 iptables chain in FORWARD on both hosts, established
#                                 accepted first (Calico's iptables mode, the anchor);
#       weft, 1000 policies     - 1,000 NetworkPolicies of 10 ingress rules each in
#                                 namespace x, each selecting other endpoints, with
#                                 5,000 endpoint identities, in Weft's nftables table.
#     Target: weft's throughput >= 0.95x no policy (weft against the control after it).
#  2. Programming: the 5,000 endpoints and 1,000 policies from an empty table to
#     enforced (written to the store, then until h1's agent reports the revision in
#     /metrics), beside iptables-restore loading the linear chain; and one endpoint
#     added with those present, timed to enforcement through the agent's socket as the
#     CNI plugin records it (p50, p99 over 200), beside the same with no policy.
#     Target: p50 <= 10 ms. And why dispatch is by sets: one element per transaction
#     into a dispatch set, and into a verdict map jumping to a chain, in a copy of the
#     loaded table.
#  3. Dual stack: the same two "one endpoint added" rows on a dual-stack lab (every
#     endpoint with an IPv6 address too, so each agent keeps the IPv6 policy table
#     beside the IPv4 one and an ADD waits for both), beside section 2's IPv4 rows.
# Runs in namespaces it creates (a lab). Needs root.
# Usage: bench/policy.sh [SECONDS_PER_RUN]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
cargo build --release -q -p weft --bins
cargo build --release -q -p weft-alloc --example policy_load
cargo build --release -q -p weft-kernel --example element_cost
BIN=$PWD/target/release
W=$BIN/weftctl
export WEFT_WEFTD=$BIN/weftd
LAB=pb$$
LAB6=pd$$
OUT=$(mktemp -d /tmp/weft-polbench.XXXXXX)
cleanup() { "$W" lab down --name "$LAB" >/dev/null 2>&1 || true; "$W" lab down --name "$LAB6" >/dev/null 2>&1 || true; rm -rf "$OUT"; }
trap cleanup EXIT
"$W" lab up --name "$LAB" --hosts 2 --cni-mode routed >/dev/null
"$W" --lab "$LAB" lab container add x/client --host h1 --label app=bench-client >/dev/null
SERVER=$("$W" --lab "$LAB" lab container add x/server --host h2 --label app=bench-server --serve tcp:80 | awk '{print $4}')
CNS=$(python3 -c "import json;print(json.load(open('/run/weft-lab/$LAB/lab.json'))['pods']['x/client']['netns'])")
SNS=$(python3 -c "import json;print(json.load(open('/run/weft-lab/$LAB/lab.json'))['pods']['x/server']['netns'])")

measure() { # $1: row name
  ip netns exec "$SNS" pkill -x iperf3 2>/dev/null || true
  ip netns exec "$SNS" iperf3 -s -D >/dev/null
  sleep 0.3
  local gbps rtt conn
  gbps=$(ip netns exec "$CNS" iperf3 -c "$SERVER" -t "$SECS" -J | python3 -c "import json,sys;print(f\"{json.load(sys.stdin)['end']['sum_received']['bits_per_second']/1e9:.2f}\")")
  rtt=$(ip netns exec "$CNS" ping -c 200 -i 0.005 -q "$SERVER" | awk -F/ '/rtt/ {print $5}')
  conn=$(ip netns exec "$CNS" python3 - "$SERVER" <<'PY'
import socket, sys, time
t = []
for _ in range(500):
    s = socket.socket(); a = time.perf_counter(); s.connect((sys.argv[1], 80)); t.append((time.perf_counter() - a) * 1e6); s.close()
t.sort(); print(f"{t[len(t)//2]:.0f} {t[int(len(t)*.99)]:.0f}")
PY
)
  echo "$1|$gbps|$rtt|$conn" >> "$OUT/rows"
  # As measured, so a run stopped early still shows what it had.
  echo "measured: $1: $gbps Gbit/s, ping avg $rtt ms, connect p50/p99 $conn us"
}

# The rules as a linear chain: the addresses policy_load gives its endpoints.
python3 - > "$OUT/iptables.rules" <<'PY'
def addr(i): return f"10.250.{i // 250}.{i % 250 + 1}"
subj, peers = {}, {}
for i in range(5000):
    if i % 5 == 0: subj.setdefault((i // 5) % 1000, []).append(addr(i))
    else: peers.setdefault((i % 1000, i % 10), []).append(addr(i))
print("*filter\n:FORWARD ACCEPT [0:0]\n:WEFT-BENCH - [0:0]\n-A FORWARD -j WEFT-BENCH")
print("-A WEFT-BENCH -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
for p in range(1000):
    s = ",".join(subj.get(p, ["192.0.2.254"]))
    for r in range(10):
        src = ",".join(peers.get((p, r), ["192.0.2.253"]))
        print(f"-A WEFT-BENCH -s {src} -d {s} -p tcp --dport {8000 + r} -j ACCEPT")
    print(f"-A WEFT-BENCH -d {s} -j DROP")
print("COMMIT")
PY

measure "no policy"
START=$(date +%s.%N)
for h in h1 h2; do ip netns exec "$LAB-$h" iptables-legacy-restore < "$OUT/iptables.rules"; done
IPT_LOAD=$(python3 -c "import time;print(f'{(time.time()-$START)/2:.2f}')")
echo "measured: iptables-legacy-restore of the linear chain, per host: $IPT_LOAD s"
RULES=$(ip netns exec "$LAB-h1" iptables-legacy -S WEFT-BENCH | wc -l)
measure "iptables, linear ($((RULES - 1)) rules)"
for h in h1 h2; do ip netns exec "$LAB-$h" iptables-legacy -D FORWARD -j WEFT-BENCH; ip netns exec "$LAB-$h" iptables-legacy -F WEFT-BENCH; ip netns exec "$LAB-$h" iptables-legacy -X WEFT-BENCH; done
measure "no policy (again)"

SOCK=/run/weft-lab/$LAB/h1/weftd.sock
EMPTY=$(ip netns exec "$LAB-h1" "$BIN/examples/policy_load" identify "$SOCK" 200)
echo "measured: one endpoint added, no policy: $EMPTY ms"
POP=$(ip netns exec "$LAB-h1" "$BIN/examples/policy_load" populate "/run/weft-lab/$LAB/store.db" 192.168.77.1 5000 1000)
echo "measured: $POP"
# Both agents done (the same revision, unchanged for 3 s) before a row is measured.
settle() { # $1: the lab (default: the first)
  local lab=${1:-$LAB} last="" same=0 r1 r2
  for _ in $(seq 600); do
    r1=$(ip netns exec "$lab-h1" curl -s localhost:9462/metrics 2>/dev/null | awk '/^weft_policy_enforced_revision/ {print $2}')
    r2=$(ip netns exec "$lab-h2" curl -s localhost:9462/metrics 2>/dev/null | awk '/^weft_policy_enforced_revision/ {print $2}')
    if [ -n "$r1" ] && [ "$r1" != 0 ] && [ "$r1" = "$r2" ] && [ "$r1" = "$last" ]; then same=$((same + 1)); else same=0; fi
    last=$r1
    [ "$same" -ge 6 ] && return
    sleep 0.5
  done
}
settle
FULL=$(ip netns exec "$LAB-h1" "$BIN/examples/policy_load" identify "$SOCK" 200)
echo "measured: one endpoint added, 1000 policies + 5000 endpoints: $FULL ms"
NFT_RULES=$(ip netns exec "$LAB-h2" nft -a list chain ip weftpol in_ns_x_np | grep -c 'comment "')
# A copy of the loaded table, for the dispatch row at the end.
ip netns exec "$LAB-h2" nft list table ip weftpol | sed 's/^table ip weftpol /table ip weftvm /' > "$OUT/copy.nft"
# Interleaved: weft's table, then a control (the agents stopped, their routes stay,
# and the policy table removed: the same hosts with nothing loaded), three times over,
# the agents started again (and their table loaded) between rounds.
for r in 1 2 3; do
  measure "weft, 1000 policies ($NFT_RULES rules) #$r"
  for h in h1 h2; do "$W" lab agent --name "$LAB" "$h" stop >/dev/null; ip netns exec "$LAB-$h" nft delete table ip weftpol; done
  measure "no policy, control #$r"
  [ "$r" = 3 ] && break
  for h in h1 h2; do "$W" lab agent --name "$LAB" "$h" start >/dev/null; done
  settle
done

# Why dispatch is by sets: in the copy of weft's table (the agents stopped), one
# element per transaction added to a plain dispatch set, and to a verdict map that
# jumps to the namespace's chain (what per-endpoint verdict-map dispatch would add).
ip netns exec "$LAB-h2" nft -f "$OUT/copy.nft"
ip netns exec "$LAB-h2" nft add map ip weftvm vm_if '{ type ifname : verdict ; }'
ip netns exec "$LAB-h2" nft insert rule ip weftvm forward iifname vmap @vm_if
COST=$BIN/examples/element_cost
SET_COST=$(ip netns exec "$LAB-h2" "$COST" weftvm in_ns_x_if '"vs{}"' 50)
MAP_COST=$(ip netns exec "$LAB-h2" "$COST" weftvm vm_if '"vm{}"' 50 in_ns_x)
ip netns exec "$LAB-h2" nft delete table ip weftvm

# Dual stack: the same endpoint rows with both policy tables kept.
"$W" lab down --name "$LAB" >/dev/null
"$W" lab up --name "$LAB6" --hosts 2 --cni-mode routed --ip-family dual >/dev/null
SOCK6=/run/weft-lab/$LAB6/h1/weftd.sock
EMPTY6=$(ip netns exec "$LAB6-h1" "$BIN/examples/policy_load" identify "$SOCK6" 200 ipv6)
echo "measured: dual stack, one endpoint added, no policy: $EMPTY6 ms"
POP6=$(ip netns exec "$LAB6-h1" "$BIN/examples/policy_load" populate "/run/weft-lab/$LAB6/store.db" 192.168.77.1 5000 1000 ipv6)
echo "measured: dual stack, $POP6"
settle "$LAB6"
FULL6=$(ip netns exec "$LAB6-h1" "$BIN/examples/policy_load" identify "$SOCK6" 200 ipv6)
echo "measured: dual stack, one endpoint added, 1000 policies + 5000 endpoints: $FULL6 ms"
TABLES6=$(ip netns exec "$LAB6-h1" nft list tables | tr '\n' ' ')

echo
echo "Data path, client on h1 -> server on h2 (host-gw, routed CNI), ${SECS} s iperf3, one stream"
echo
echo "| configuration                     | Gbit/s | ratio | ping avg ms | connect p50 us | connect p99 us |"
echo "|-----------------------------------|--------|-------|-------------|----------------|----------------|"
BASE=$(head -1 "$OUT/rows" | cut -d'|' -f2)
while IFS='|' read -r name gbps rtt conn; do
  set -- $conn
  printf "| %-33s | %6s | %5.2f | %11s | %14s | %14s |\n" "$name" "$gbps" "$(python3 -c "print($gbps/$BASE)")" "$rtt" "$1" "$2"
done < "$OUT/rows"
echo
echo "ratio: against the first no-policy run (single-stream throughput on 2 vCPUs drifts by
10-20% between runs of the same configuration, so weft is compared with the control
measured right after it):"
python3 - "$OUT/rows" <<'PY'
import sys
rows = [l.rstrip("\n").split("|") for l in open(sys.argv[1])]
w = [float(r[1]) for r in rows if r[0].startswith("weft")]
c = [float(r[1]) for r in rows if r[0].startswith("no policy, control")]
ratios = sorted(a / b for a, b in zip(w, c))
print("weft / control, the three rounds, sorted:", ", ".join(f"{x:.2f}" for x in ratios), f"(median {ratios[len(ratios)//2]:.2f}; target >= 0.95)")
PY
echo ""
echo
echo "Programming"
echo
echo "| what                                                  | figure |"
echo "|-------------------------------------------------------|--------|"
echo "| weft: $POP |"
echo "| iptables-legacy-restore, the linear chain, per host     | ${IPT_LOAD} s |"
echo "| weft: one endpoint added, no policy, ms                 | $EMPTY |"
echo "| weft: one endpoint added, 1000 policies + 5000 endpoints, ms | $FULL |"
echo "| one element into a dispatch set (weft), same table, ms    | $SET_COST |"
echo "| one element into a verdict map (jump), same table, ms     | $MAP_COST |"
echo "| dual stack ($TABLES6): $POP6 |"
echo "| dual stack: one endpoint added, no policy, ms             | $EMPTY6 |"
echo "| dual stack: one endpoint added, 1000 policies + 5000 endpoints, ms | $FULL6 |"
echo
echo "Target: one endpoint added with policies present, p50 <= 10 ms to enforcement."
