#!/usr/bin/env bash
# Benchmark: a BIRD peer ("source") announces N prefixes (10,000 by default); how long
# until all are in the kernel, for Weft (weftd, bgp backend, installing with protocol 77)
# and for BIRD itself (a second BIRD learning the same routes from the same source and
# installing them with its kernel protocol), side by side in the same run.
# Target (issue 6): Weft no slower than BIRD; agent RSS under 50 MB.
#
#   [weft ns] 10.98.1.2 --- 10.98.1.1 [source ns: BIRD, N static routes] 10.98.2.1 --- 10.98.2.2 [bird ns]
#
# Each round measures twice: one at a time (the source's routes go to weftd alone, then
# to the BIRD receiver alone, the order alternating), and both at once (the same burst to
# both, which then share the 2 cores and the kernel's route lock). Each side is timed by
# its own kernel's route events until it holds N routes (bench/route_watch.py), from
# the moment the source's routes are enabled. Needs root; namespaces are removed.
# Then, in the same run: MD5 on the weftd session against off, alternating by round
# (target within 1.05x), and weftd killed -9 and restarted holding the N routes: how
# many routes either side deletes meanwhile (graceful restart; target 0).
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
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
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
# Three identical static protocols: "bench" goes to both receivers at once, "onlyw" to
# weftd alone and "onlyb" to the BIRD receiver alone (export filters below).
python3 - "$N" > "$WORK/routes.conf" <<'PY'
import sys
n = int(sys.argv[1])
for name in ("bench", "onlyw", "onlyb"):
    print(f"protocol static {name} {{\n  ipv4;")
    for i in range(n):
        a = 0xAC100000 + i * 16   # 172.16.0.0/12 in /28s
        print(f"  route {a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}/28 blackhole;")
    print("}")
PY
cat > "$WORK/src.conf" <<EOF2
router id 10.98.1.1;
protocol device {}
include "$WORK/routes.conf";
protocol kernel { ipv4 { import none; export where proto = "weft"; }; }
protocol bgp weft { local 10.98.1.1 as 65000; neighbor 10.98.1.2 as 64512; ipv4 { import all; export where proto = "bench" || proto = "onlyw"; }; }
protocol bgp receiver { local 10.98.2.1 as 65000; neighbor 10.98.2.2 as 64600; ipv4 { import none; export where proto = "bench" || proto = "onlyb"; }; }
EOF2
cat > "$WORK/bird.conf" <<EOF2
router id 10.98.2.2;
protocol device {}
protocol kernel { ipv4 { export all; }; merge paths off; }
protocol bgp upstream { local 10.98.2.2 as 64600; neighbor 10.98.2.1 as 65000; ipv4 { import all; export none; }; }
EOF2
ip netns exec "$SRC" bird -c "$WORK/src.conf" -s "$WORK/src.ctl"
ip netns exec "$B" bird -c "$WORK/bird.conf" -s "$WORK/bird.ctl"
for p in bench onlyw onlyb; do birdc -s "$WORK/src.ctl" disable $p >/dev/null; done

STORE=$WORK/store.db
"$BIN/weftctl" --store-path "$STORE" network init --network 10.244.0.0/16 --backend bgp >/dev/null
"$BIN/weftctl" --store-path "$STORE" store put /coreos.com/network/weft/bgp/peers/src '{"PeerIP":"10.98.1.1","ASNumber":65000}' >/dev/null
ip netns exec "$W" "$BIN/weftd" --store-path "$STORE" --subnet-file "$WORK/subnet.env" \
  --docker-opts-file "$WORK/docker.env" --bgp-status-file "$WORK/bgp.json" \
  --api-socket "$WORK/weftd.sock" > "$WORK/weftd.log" 2>&1 &
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

# One measurement: enable the source's static protocol $1, time each namespace in
# "NS:PROTO ..." ($2...) by its kernel's route events (bench/route_watch.py, not polling)
# until it holds N routes, disable it and wait until both sides are empty again.
# Appends "protocol ns ms first_ms" lines to $WORK/times.
measure() {
  local proto=$1; shift
  coproc WATCH { exec python3 bench/route_watch.py "$N" "$@"; }
  local ready; read -r ready <&"${WATCH[0]}"
  [ "$ready" = ready ] || { echo "bench/bgp.sh: route watcher did not start" >&2; exit 1; }
  local t0; t0=$(date +%s.%N)
  birdc -s "$WORK/src.ctl" enable "$proto" >/dev/null
  local ns first last
  for _ in "$@"; do
    read -r -t 120 ns first last <&"${WATCH[0]}" || { echo "bench/bgp.sh: $proto timed out" >&2; exit 1; }
    awk -v n="$ns" -v p="$proto" -v a="$last" -v f="$first" -v b="$t0" \
      'BEGIN{printf "%s %s %d %d\n", p, n, (a-b)*1000, (f-b)*1000}' >> "$WORK/times"
  done
  wait "${WATCH_PID:-}" 2>/dev/null || true # (unset once the coprocess has ended)
  # weftd's RSS while it holds the routes (its largest over the rounds where it learns).
  if [ "$proto" != onlyb ]; then
    local rss; rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$WPID/status")
    RSS_HELD=$(awk -v a="${RSS_HELD:-0}" -v b="$rss" 'BEGIN {print (b > a) ? b : a}')
  fi
  birdc -s "$WORK/src.ctl" disable "$proto" >/dev/null
  wait_for "withdrawal" 120 bash -c "[ \$(ip -n $W route show proto 77 | grep -c -v blackhole || true) -eq 0 ] && [ \$(ip -n $B route show proto bird | wc -l) -eq 0 ]"
  sleep 2 # let the freeing of the withdrawn routes (RCU callbacks) settle
}

: > "$WORK/times"
for r in $(seq 1 "$ROUNDS"); do
  # Apart: each learns alone, the order alternating by round.
  if [ $((r % 2)) -eq 1 ]; then
    measure onlyw "$W:77"; measure onlyb "$B:bird"
  else
    measure onlyb "$B:bird"; measure onlyw "$W:77"
  fi
  # Together: both learn the same burst at the same time.
  measure bench "$W:77" "$B:bird"
done
RSS_AFTER=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$WPID/status")

# MD5 (RFC 2385) on the weftd session against off, alternating by round: the source's
# `password` and weftd's peer record naming a file with the same key.
src_sees_weft() { birdc -s "$WORK/src.ctl" show protocols weft | grep -q Established; }
md5() { # on|off
  if [ "$1" = on ]; then
    printf 'bench-key\n' > "$WORK/md5.key"
    sed -i 's|neighbor 10.98.1.2 as 64512;|neighbor 10.98.1.2 as 64512; password "bench-key";|' "$WORK/src.conf"
    "$BIN/weftctl" --store-path "$STORE" store put /coreos.com/network/weft/bgp/peers/src "{\"PeerIP\":\"10.98.1.1\",\"ASNumber\":65000,\"Password\":{\"File\":\"$WORK/md5.key\"}}" >/dev/null
  else
    sed -i 's| password "bench-key";||' "$WORK/src.conf"
    "$BIN/weftctl" --store-path "$STORE" store put /coreos.com/network/weft/bgp/peers/src '{"PeerIP":"10.98.1.1","ASNumber":65000}' >/dev/null
  fi
  birdc -s "$WORK/src.ctl" configure >/dev/null
  # A reconfiguration enables the static protocols again: back to none announced.
  for p in bench onlyw onlyb; do birdc -s "$WORK/src.ctl" disable $p >/dev/null; done
  sleep 2
  wait_for "the weft session with MD5 $1" 60 src_sees_weft
  wait_for "weftd empty again" 60 bash -c "[ \$(ip -n $W route show proto 77 | grep -c -v blackhole || true) -eq 0 ]"
  sleep 1
}
for r in $(seq 1 "$ROUNDS"); do
  md5 on; measure onlyw "$W:77"; sed -i '$ s/^onlyw /md5on /' "$WORK/times"
  md5 off; measure onlyw "$W:77"; sed -i '$ s/^onlyw /md5off /' "$WORK/times"
  echo "round $r, MD5 on / off: $(awk '$1 == "md5on" {v=$3} END {print v}' "$WORK/times") / $(awk '$1 == "md5off" {v=$3} END {print v}' "$WORK/times") ms"
done

# weftd killed (-9) and started again with the N routes learned: how many routes each
# side deletes meanwhile, by kernel events (graceful restart; target 0 and 0).
birdc -s "$WORK/src.ctl" enable onlyw >/dev/null
wait_for "weftd to hold the routes" 120 bash -c "[ \$(ip -n $W route show proto 77 | grep -c -v blackhole || true) -ge $N ]"
wait_for "the source to hold weftd's subnet" 60 bash -c "ip -n $SRC route show proto bird | grep -q 10.244."
ip -n "$W" monitor route > "$WORK/restart.w" & MW=$!
ip -n "$SRC" monitor route > "$WORK/restart.src" & MS=$!
sleep 0.3
kill -9 "$WPID"; wait "$WPID" 2>/dev/null || true
sleep 1
ip netns exec "$W" "$BIN/weftd" --store-path "$STORE" --subnet-file "$WORK/subnet.env" \
  --docker-opts-file "$WORK/docker.env" --bgp-status-file "$WORK/bgp.json" \
  --api-socket "$WORK/weftd.sock" >> "$WORK/weftd.log" 2>&1 &
WPID=$!
wait_for "the restarted weftd's initial exchange" 150 bash -c "[ \$(grep -c 'initial exchange over' $WORK/weftd.log) -ge 2 ]"
sleep 1
kill "$MW" "$MS" 2>/dev/null || true
LOST_W=$(grep -c '^Deleted' "$WORK/restart.w" || true)
LOST_SRC=$(grep -c '^Deleted' "$WORK/restart.src" || true)
RESTART_EOR=$(grep 'initial exchange over' "$WORK/weftd.log" | tail -1 | grep -o 'timed_out=[a-z]*' || true)
birdc -s "$WORK/src.ctl" disable onlyw >/dev/null

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { awk -v p="$1" -v n="$2" -v c="$3" '$1 == p && $2 == n {print $c}' "$WORK/times" | xargs; }
echo
echo "$N prefixes from one BIRD peer until all are in the kernel, median of $ROUNDS rounds"
echo "(from enabling the source's routes to the receiving kernel's N-th route event)"
echo
printf '| %-44s | %8s | %-16s |\n' "who" "ms" "vs BIRD"
printf '|%s|%s|%s|\n' ---------------------------------------------- ---------- ------------------
for mode in apart together; do
  if [ $mode = apart ]; then pw=onlyw; pb=onlyb; what="one at a time"; else pw=bench; pb=bench; what="both at once"; fi
  read -r -a wt <<< "$(col $pw "$W" 3)"; read -r -a bt <<< "$(col $pb "$B" 3)"
  w50=$(median "${wt[@]}"); b50=$(median "${bt[@]}")
  printf '| %-44s | %8s | %-16s |\n' "BIRD 2 (bgp + kernel protocol), $what" "$b50" "1.00 (baseline)"
  printf '| %-44s | %8s | %-16s |\n' "weftd (bgp backend), $what" "$w50" "$(awk -v a="$w50" -v b="$b50" 'BEGIN{printf "%.2f", a/b}')"
done
echo
ratios() { # per-round weftd / BIRD for weftd's and BIRD's protocol names
  local -a wt bt r=(); read -r -a wt <<< "$(col "$1" "$W" 3)"; read -r -a bt <<< "$(col "$2" "$B" 3)"
  for i in "${!wt[@]}"; do r+=("$(awk -v a="${wt[$i]}" -v b="${bt[$i]}" 'BEGIN{printf "%.2f", a/b}')"); done
  echo "  weftd / BIRD per round: ${r[*]} (median $(median "${r[@]}"))"
}
echo "rounds, one at a time (weftd / BIRD ms): $(col onlyw "$W" 3) / $(col onlyb "$B" 3)"
ratios onlyw onlyb
echo "  first route in the kernel: $(col onlyw "$W" 4) / $(col onlyb "$B" 4)"
echo "rounds, both at once (weftd / BIRD ms): $(col bench "$W" 3) / $(col bench "$B" 3)"
ratios bench bench
echo "  first route in the kernel: $(col bench "$W" 4) / $(col bench "$B" 4)"
echo "weftd RSS with $N routes held: $RSS_HELD MB (largest over the rounds; after they were withdrawn: $RSS_AFTER MB)"
read -r -a on <<< "$(col md5on "$W" 3)"; read -r -a off <<< "$(col md5off "$W" 3)"
m_on=$(median "${on[@]}"); m_off=$(median "${off[@]}")
echo "MD5 on the weftd session, one at a time, alternating by round (ms): on ${on[*]} / off ${off[*]}"
echo "  median on $m_on, off $m_off: $(awk -v a="$m_on" -v b="$m_off" 'BEGIN{printf "%.2f", a/b}')x (target: within 1.05x)"
echo "weftd killed -9 and restarted holding $N learned routes: routes deleted in weftd's kernel $LOST_W, at the source BIRD $LOST_SRC (target 0 and 0; the exchange ended with $RESTART_EOR)"
grep -E "ERROR|WARN" "$WORK/weftd.log" | tail -5 || true # (none is the usual case)
echo "weftd route applies (its own timing):"; grep "applied route plan" "$WORK/weftd.log" | sed -n "s/.*added=\([0-9]*\).*removed=\([0-9]*\).*elapsed_ms=\([0-9]*\).*/  +\1 -\2 routes in \3 ms/p" | tail -8
echo "targets: weftd no slower than BIRD (one at a time); RSS under 50 MB"
