#!/usr/bin/env bash
# Benchmark: a BIRD peer ("source") announces N prefixes (10,000 by default); how long
# until all are in the kernel, for Weft (weftd, bgp backend, installing with protocol 77)
# and for BIRD itself (a second BIRD learning the same routes from the same source and
# installing them with its kernel protocol), side by side in the same run.
# Target (issue 6): Weft no slower than BIRD; agent RSS under 50 MB.
#
#   [weft ns] 10.98.1.2 --- 10.98.1.1 [source ns: BIRD, N static routes] 10.98.2.1 --- 10.98.2.2 [bird ns]
#
# Each round: the source's routes are disabled (both sides back to 0), then enabled at
# T0; each side is timed by its own kernel route events until it holds N routes
# (bench/route_watch.py). Needs root; namespaces are removed.
# Usage: bench/bgp.sh [PREFIXES] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
ROUNDS=${2:-3}
cargo build --release -q -p weft --bins
BIN=$PWD/target/release
T=wb$$
SRC=${T}src W=${T}weft B=${T}bird
WORK=$(mktemp -d /tmp/weft-bench.XXXXXX)
cleanup() {
  for ns in "$SRC" "$W" "$B"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

for ns in "$SRC" "$W" "$B"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n "$SRC" link add w0 type veth peer name eth0 netns "$W"
ip -n "$SRC" link add b0 type veth peer name eth0 netns "$B"
ip -n "$SRC" addr add 10.98.1.1/24 dev w0; ip -n "$SRC" link set w0 up
ip -n "$SRC" addr add 10.98.2.1/24 dev b0; ip -n "$SRC" link set b0 up
ip -n "$W" addr add 10.98.1.2/24 dev eth0; ip -n "$W" link set eth0 up
ip -n "$W" route add default via 10.98.1.1
ip -n "$B" addr add 10.98.2.2/24 dev eth0; ip -n "$B" link set eth0 up

# N prefixes: consecutive /28s from 172.16.0.0 (room for 65,536 in 172.16.0.0/12).
python3 - "$N" > "$WORK/routes.conf" <<'PY'
import sys
n = int(sys.argv[1])
print("protocol static bench {\n  ipv4;")
for i in range(n):
    a = 0xAC100000 + i * 16   # 172.16.0.0/12 in /28s
    print(f"  route {a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}/28 blackhole;")
print("}")
PY
cat > "$WORK/src.conf" <<EOF2
router id 10.98.1.1;
protocol device {}
include "$WORK/routes.conf";
protocol bgp weft { local 10.98.1.1 as 65000; neighbor 10.98.1.2 as 64512; ipv4 { import none; export all; }; }
protocol bgp receiver { local 10.98.2.1 as 65000; neighbor 10.98.2.2 as 64600; ipv4 { import none; export all; }; }
EOF2
cat > "$WORK/bird.conf" <<EOF2
router id 10.98.2.2;
protocol device {}
protocol kernel { ipv4 { export all; }; merge paths off; }
protocol bgp upstream { local 10.98.2.2 as 64600; neighbor 10.98.2.1 as 65000; ipv4 { import all; export none; }; }
EOF2
ip netns exec "$SRC" bird -c "$WORK/src.conf" -s "$WORK/src.ctl"
ip netns exec "$B" bird -c "$WORK/bird.conf" -s "$WORK/bird.ctl"
birdc -s "$WORK/src.ctl" disable bench >/dev/null

STORE=$WORK/store.db
"$BIN/weftctl" --store-path "$STORE" network init --network 10.244.0.0/16 --backend bgp >/dev/null
"$BIN/weftctl" --store-path "$STORE" store put /coreos.com/network/weft/bgp/peers/src '{"PeerIP":"10.98.1.1","ASNumber":65000}' >/dev/null
ip netns exec "$W" "$BIN/weftd" --store-path "$STORE" --subnet-file "$WORK/subnet.env" \
  --docker-opts-file "$WORK/docker.env" --bgp-status-file "$WORK/bgp.json" > "$WORK/weftd.log" 2>&1 &
WPID=$!
# (weftd logs at info level by default)

count() { ip -n "$1" route show proto "$2" | grep -c -v blackhole || true; }
wait_for() { # what seconds cond...
  local what=$1 secs=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@"; do
    if [ $SECONDS -gt $end ]; then echo "bench/bgp.sh: $what did not happen in ${secs}s" >&2; tail -20 "$WORK/weftd.log" >&2; exit 1; fi
    sleep 0.2
  done
}
established() { grep -q '"state":"Established"' "$WORK/bgp.json" 2>/dev/null && birdc -s "$WORK/bird.ctl" show protocols upstream | grep -q Established; }
wait_for "both sessions" 60 established

declare -a WT BT WF BF
for r in $(seq 1 "$ROUNDS"); do
  birdc -s "$WORK/src.ctl" disable bench >/dev/null
  wait_for "withdrawal" 120 bash -c "[ \$(ip -n $W route show proto 77 | grep -c -v blackhole || true) -eq 0 ] && [ \$(ip -n $B route show proto bird | wc -l) -eq 0 ]"
  sleep 1
  # Each side is timed by its kernel's route events (bench/route_watch.py), not by polling.
  coproc WATCH { exec python3 bench/route_watch.py "$N" "$W:77" "$B:bird"; }
  read -r ready <&"${WATCH[0]}"
  [ "$ready" = ready ] || { echo "bench/bgp.sh: route watcher did not start" >&2; exit 1; }
  t0=$(date +%s.%N)
  birdc -s "$WORK/src.ctl" enable bench >/dev/null
  for _ in 1 2; do
    read -r -t 120 ns first last <&"${WATCH[0]}" || { echo "bench/bgp.sh: round $r timed out" >&2; exit 1; }
    ms=$(awk -v a="$last" -v b="$t0" 'BEGIN{printf "%d", (a-b)*1000}')
    fms=$(awk -v a="$first" -v b="$t0" 'BEGIN{printf "%d", (a-b)*1000}')
    if [ "$ns" = "$W" ]; then WT+=("$ms"); WF+=("$fms"); else BT+=("$ms"); BF+=("$fms"); fi
  done
  wait "$WATCH_PID" 2>/dev/null || true
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
W50=$(median "${WT[@]}"); B50=$(median "${BT[@]}")
RSS=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$WPID/status")
echo
echo "$N prefixes from one BIRD peer until all are in the kernel, median of $ROUNDS rounds"
echo "(from enabling the source's routes to each kernel's N-th route event; same rounds)"
echo
printf '| %-36s | %8s | %-22s |\n' "who" "ms" "vs BIRD"
printf '|%s|%s|%s|\n' -------------------------------------- ---------- ------------------------
printf '| %-36s | %8s | %-22s |\n' "BIRD 2 (bgp + kernel protocol)" "$B50" "1.00 (baseline)"
printf '| %-36s | %8s | %-22s |\n' "weftd (bgp backend)" "$W50" "$(awk -v a="$W50" -v b="$B50" 'BEGIN{printf "%.2f", a/b}')"
echo
echo "rounds (weftd / BIRD ms): ${WT[*]} / ${BT[*]}"
echo "first route in the kernel (weftd / BIRD ms): ${WF[*]} / ${BF[*]}"
echo "weftd RSS with $N routes: $RSS MB"
grep -E "ERROR|WARN" "$WORK/weftd.log" | tail -5
echo "weftd route applies (its own timing):"; grep "applied route plan" "$WORK/weftd.log" | sed -n "s/.*added=\([0-9]*\).*removed=\([0-9]*\).*elapsed_ms=\([0-9]*\).*/  +\1 -\2 routes in \3 ms/p" | tail -8
echo "targets: weftd no slower than BIRD; RSS under 50 MB"
