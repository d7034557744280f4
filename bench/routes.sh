#!/usr/bin/env bash
# Benchmark: program routes for 1,000 remote leases into one host, against `ip -batch`
# adding the same 1,000 routes, side by side in the same run (issue: within 2x of
# `ip -batch`, agent RSS under 30 MB). Everything happens inside a network namespace
# this script creates and removes. Needs root.
# Usage: bench/routes.sh [LEASES] [ROUNDS] [FAMILY]
# FAMILY 4 (the default): IPv4 leases. FAMILY 6: dual-stack leases (the network config
# has an IPv6 network; each lease also holds an IPv6 subnet and its node a public IPv6
# address), so weftd programs LEASES IPv6 routes beside the IPv4 ones, and `ip -batch`
# adds the same routes of both families; both sides are timed to the last of them.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
ROUNDS=${2:-3}
FAMILY=${3:-4}
cargo build --release -q -p weft --bins
BIN=$PWD/target/release
NS=weftbench$$
PEER=weftbenchp$$
WORK=$(mktemp -d /tmp/weft-bench.XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  ip netns del "$PEER" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$NS"
ip netns add "$PEER"
ip -n "$NS" link add eth0 type veth peer name eth0 netns "$PEER"
ip -n "$NS" link set lo up
ip -n "$NS" link set eth0 up
ip -n "$PEER" link set eth0 up
# One /16 L2 segment, so every peer's public IP is on-link (host-gw's requirement).
ip -n "$NS" addr add 192.168.0.1/16 dev eth0
ip -n "$NS" route add default via 192.168.0.2
if [ "$FAMILY" = 6 ]; then
  ip -n "$NS" addr add fd00:192:168::1/64 dev eth0 nodad
  ip -n "$PEER" addr add fd00:192:168::2/64 dev eth0 nodad
fi

# Lease i: subnet 10.(i/256).(i%256).0/24 at public IP 192.168.(1+i/250).(1+i%250).
subnet() { echo "10.$(( $1 / 256 )).$(( $1 % 256 )).0"; }
pubip() { echo "192.168.$(( 1 + $1 / 250 )).$(( 1 + $1 % 250 ))"; }
# Its IPv6 subnet fd00:10:0:<i in hex>::/64 at fd00:192:168::<i in hex> (dual stack).
subnet6() { printf 'fd00:10:0:%x::' "$1"; }
pubip6() { printf 'fd00:192:168::%x' "$(( $1 + 2 ))"; }
for i in $(seq 1 "$N"); do
  echo "route add $(subnet "$i")/24 via $(pubip "$i") dev eth0 proto 77"
  if [ "$FAMILY" = 6 ]; then echo "route add $(subnet6 "$i")/64 via $(pubip6 "$i") dev eth0 proto 77"; fi
done > "$WORK/batch"
ROUTES=$N
if [ "$FAMILY" = 6 ]; then ROUTES=$(( 2 * N )); export ROUTE_WATCH_FAMILIES=46; fi

STORE="--store=embedded --store-path=$WORK/store.db"
if [ "$FAMILY" = 6 ]; then
  $BIN/weftctl $STORE network init --network 10.0.0.0/8 --subnet-len 24 --ipv6-network fd00:10::/48 --backend host-gw >/dev/null
  for i in $(seq 1 "$N"); do
    printf '%s\t{"PublicIP":"%s","PublicIPv6":"%s","BackendType":"host-gw","BackendData":null}\n' \
      "/coreos.com/network/subnets/$(subnet "$i")-24&$(subnet6 "$i")-64" "$(pubip "$i")" "$(pubip6 "$i")"
  done > "$WORK/leases.tsv"
else
  $BIN/weftctl $STORE network init --network 10.0.0.0/8 --subnet-len 24 --backend host-gw >/dev/null
  for i in $(seq 1 "$N"); do
    printf '%s\t{"PublicIP":"%s","PublicIPv6":null,"BackendType":"host-gw","BackendData":null}\n' \
      "/coreos.com/network/subnets/$(subnet "$i")-24" "$(pubip "$i")"
  done > "$WORK/leases.tsv"
fi
python3 - "$WORK/store.db" "$WORK/leases.tsv" <<'PY'
# Seed the embedded store directly in one transaction (1,000 `weftctl store put` calls
# would only measure process start-up). Same schema the store creates.
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rev = db.execute("SELECT value FROM meta WHERE name='rev'").fetchone()[0]
for line in open(sys.argv[2]):
    key, value = line.rstrip("\n").split("\t")
    rev += 1
    db.execute("INSERT INTO kv(key,value,create_rev,mod_rev,lease) VALUES(?,?,?,?,0)", (key, value.encode(), rev, rev))
    db.execute("INSERT INTO events(rev,key,value,create_rev,lease) VALUES(?,?,?,?,0)", (rev, key, value.encode(), rev))
db.execute("UPDATE meta SET value=? WHERE name='rev'", (rev,))
db.commit()
PY

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
count() { { ip -n "$NS" route show proto 77; if [ "$FAMILY" = 6 ]; then ip -n "$NS" -6 route show proto 77; fi; } | wc -l; }

# Runs "$@" (in the background if the first word is `bg`) and prints the ms from its
# start to the kernel's event for the N-th proto-77 route in $NS: both sides are timed
# the same way, by their routes' events (bench/route_watch.py), not by polling and not
# by a process's exit.
to_routes() {
  coproc WATCH { exec python3 bench/route_watch.py "$ROUTES" "$NS:77"; }
  local ready; read -r ready <&"${WATCH[0]}"
  [ "$ready" = ready ] || { echo "bench/routes.sh: route watcher did not start" >&2; exit 1; }
  local t0; t0=$(date +%s.%N)
  if [ "$1" = bg ]; then
    shift; "$@" >/dev/null 2> "$WORK/weftd.log" &
  else
    "$@"
  fi
  local ns first last
  read -r -t 60 ns first last <&"${WATCH[0]}" || { cat "$WORK/weftd.log" >&2; echo "bench/routes.sh: timed out" >&2; exit 1; }
  wait "${WATCH_PID:-}" 2>/dev/null || true
  awk -v a="$last" -v b="$t0" 'BEGIN{printf "%d\n", (a-b)*1000}'
}

flush() { ip -n "$NS" route flush proto 77; [ "$FAMILY" != 6 ] || ip -n "$NS" -6 route flush proto 77; }
declare -a IPB EMPTY APPLY START RSS
: > "$WORK/empty"
echo "rounds as measured (ms): ip -batch | ip -batch of an empty file | weftd apply (own timer) | weftd start to routes | RSS kB"
for r in $(seq 1 "$ROUNDS"); do
  flush
  IPB+=($(to_routes ip -n "$NS" -batch "$WORK/batch"))
  [ "$(count)" -eq "$ROUTES" ] || { echo "ip -batch installed $(count) routes, expected $ROUTES" >&2; exit 1; }
  # ip's own start-up and exit with nothing to do.
  t0=$(now_ms); ip -n "$NS" -batch "$WORK/empty"; t1=$(now_ms)
  EMPTY+=($(( t1 - t0 )))

  flush
  rm -f "$WORK/subnet.env" "$WORK/weftd.log"
  PID=
  START+=($(to_routes bg ip netns exec "$NS" $BIN/weftd $STORE --iface eth0 --subnet-file "$WORK/subnet.env" \
     --docker-opts-file "$WORK/docker.env" --api-socket "$WORK/weftd.sock"))
  PID=$(pgrep -n -f "weftd $STORE" || true)
  APPLY+=($(grep -o 'applied route plan.*elapsed_ms=[0-9]*' "$WORK/weftd.log" | head -1 | grep -o 'elapsed_ms=[0-9]*' | cut -d= -f2))
  sleep 0.5
  RSS+=($(awk '/VmRSS/ {print $2}' /proc/$PID/status))
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
  echo "round $r: ${IPB[-1]} | ${EMPTY[-1]} | ${APPLY[-1]} | ${START[-1]} | ${RSS[-1]}"
done

# "median (min-max)" of the arguments.
summary() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%s (%s-%s)", a[int((NR+1)/2)], a[1], a[NR]}'; }
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -a WORKONLY
for i in "${!IPB[@]}"; do WORKONLY+=($(( IPB[i] - EMPTY[i] ))); done
ipb=$(med "${IPB[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) b = 1; printf "%.2f", a / b }'; }
echo
if [ "$FAMILY" = 6 ]; then
  echo "Routes for $N dual-stack remote leases ($N IPv4 + $N IPv6 routes), median (range) of $ROUNDS rounds (same namespace, same run)"
else
  echo "Routes for $N remote leases, median (range) of $ROUNDS rounds (same namespace, same run)"
fi
echo
printf '| %-58s | %-16s | %-13s |\n' "what" "ms" "vs ip -batch"
printf '|%s|%s|%s|\n' "------------------------------------------------------------" "------------------" "---------------"
printf '| %-58s | %-16s | %-13s |\n' "ip -batch: $ROUTES x 'route add', start to the last route" "$(summary "${IPB[@]}")" "1.00 (baseline)"
printf '| %-58s | %-16s | %-13s |\n' "weftd: process start to $ROUTES routes in the kernel" "$(summary "${START[@]}")" "$(ratio "$(med "${START[@]}")" "$ipb")"
printf '| %-58s | %-16s | %-13s |\n' "control: ip -batch of an empty file (start to exit)" "$(summary "${EMPTY[@]}")" ""
printf '| %-58s | %-16s | %-13s |\n' "ip -batch less its start-up (per round)" "$(summary "${WORKONLY[@]}")" ""
printf '| %-58s | %-16s | %-13s |\n' "weftd: netlink apply of $ROUTES routes (its own timer)" "$(summary "${APPLY[@]}")" "$(ratio "$(med "${APPLY[@]}")" "$(med "${WORKONLY[@]}")") of the row above"
echo
echo "weftd RSS after convergence: $(awk -v k="$(med "${RSS[@]}")" 'BEGIN { printf "%.1f", k / 1024 }') MB (target: under 30 MB)"
echo "target: weftd within 2x of ip -batch (process start to the N-th route's kernel event, both)."
echo "The last row is weftd's own timer around its netlink batch; it is set against ip -batch"
echo "less ip's start-up, the nearest like-for-like figure, not against the baseline."
