#!/usr/bin/env bash
# Benchmark: self-healing. On a 2-host vxlan lab, Weft's objects on host 1 are deleted
# by hand, one at a time: the route to host 2's subnet, its neighbour entry, its FDB
# entry, and the VXLAN device itself (healed when the route through it is back). Each
# figure is the gap between the kernel's deletion event and the event that restores the
# object, both seen by one `ip -ts monitor` on the host. The reference row, in the same
# run: the same route deletion answered by a shell loop on `ip monitor` that puts the
# route back at once (host 1's agent stopped meanwhile): the floor any event-driven
# repair has on this machine. docs/claims.md and docs/benchmarks.md cite these figures.
# Runs in namespaces the lab makes. Needs root. Usage: bench/healing.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
cargo build --release -q -p weft --bins
BIN=$PWD/target/release
LAB=heal$$
H1=$LAB-h1
WORK=$(mktemp -d /tmp/weft-heal.XXXXXX)
LOOP=
cleanup() {
  [ -n "$LOOP" ] && kill -- -"$LOOP" 2>/dev/null || true
  "$BIN/weftctl" lab down --name "$LAB" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
"$BIN/weftctl" lab up --name "$LAB" --hosts 2 --backend vxlan >/dev/null

ROUTE=$(ip -n "$H1" route show proto 77 | head -1)
SUBNET=${ROUTE%% *}
NEIGH=$(ip -n "$H1" neigh show dev weft.1 | awk 'NR==1 {print $1}')
MAC=$(bridge -n "$H1" fdb show dev weft.1 | awk 'NR==1 {print $1}')
DST=$(bridge -n "$H1" fdb show dev weft.1 | awk 'NR==1 {print $3}')
[ -n "$SUBNET" ] && [ -n "$NEIGH" ] && [ -n "$MAC" ] && [ -n "$DST" ] ||
  { echo "host 1 lacks Weft's route, neighbour or FDB entry" >&2; exit 1; }

# One timing: monitor, delete, wait for the object to be back, read the gap.
# Args: NAME DELETE-CMD DELETED-PREFIX RESTORED-PREFIX
time_one() {
  local name=$1 del=$2 deleted=$3 restored=$4 mon=$WORK/mon
  ip -n "$H1" -ts monitor route neigh link >"$mon" &
  local pid=$!
  sleep 0.3
  eval "$del"
  for _ in $(seq 100); do
    ip -n "$H1" route show proto 77 | grep -q "^$SUBNET " &&
      ip -n "$H1" neigh show dev weft.1 2>/dev/null | grep -q "^$NEIGH " && break
    sleep 0.05
  done
  sleep 0.3
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 bench/lib/heal_times.py "$mon" "$deleted" "$restored" >>"$WORK/$name"
}

for r in $(seq "$ROUNDS"); do
  time_one route "ip -n $H1 route del $SUBNET" "Deleted $SUBNET " "$SUBNET via"
  time_one neighbour "ip -n $H1 neigh del $NEIGH dev weft.1" "Deleted $NEIGH dev weft.1" "$NEIGH dev weft.1 lladdr"
  time_one fdb "bridge -n $H1 fdb del $MAC dev weft.1 dst $DST" "Deleted $DST dev weft.1 lladdr $MAC" "$DST dev weft.1 lladdr $MAC"
  time_one device "ip -n $H1 link del weft.1" "Deleted " "$SUBNET via"
  sleep 0.5
done

# Reference: the agent stopped, a shell loop puts the route back on its deletion event.
"$BIN/weftctl" lab agent --name "$LAB" h1 stop >/dev/null
setsid bash -c "ip -n $H1 monitor route | while read -r l; do case \"\$l\" in 'Deleted $SUBNET '*) ip -n $H1 route replace ${ROUTE% } proto 77;; esac; done" &
LOOP=$!
sleep 0.5
for r in $(seq "$ROUNDS"); do
  time_one reference "ip -n $H1 route del $SUBNET" "Deleted $SUBNET " "$SUBNET via"
done
kill -- -"$LOOP" 2>/dev/null || true
LOOP=

python3 - "$WORK" "$ROUNDS" <<'PY'
import statistics, sys
work, rounds = sys.argv[1], sys.argv[2]
rows = ["route", "neighbour", "fdb", "device", "reference"]
label = {
    "route": "route deleted by hand",
    "neighbour": "neighbour entry deleted",
    "fdb": "FDB entry deleted",
    "device": "VXLAN device deleted (until its route is back)",
    "reference": "reference: shell loop on `ip monitor`, route",
}
t = {r: [float(x) for x in open(f"{work}/{r}")] for r in rows}
ref = statistics.median(t["reference"])
print(f"\nSelf-healing on a 2-host vxlan lab, {rounds} rounds; deletion event to restoring event, ms\n")
print("| what                                            | median | range         | vs reference |")
print("|-------------------------------------------------|--------|---------------|--------------|")
for r in rows:
    m = statistics.median(t[r])
    print(f"| {label[r]:<47} | {m:6.1f} | {min(t[r]):5.1f} – {max(t[r]):5.1f} | {m / ref:11.1f}x |")
PY
