#!/usr/bin/env bash
# Benchmark (issue 19): block IPAM against the per-node subnet IPAM, same run.
#  1. CNI ADD and DEL latency (p50, p99 over N calls each, interleaved) of the `weft`
#     plugin in routed mode on one lab host: addresses from blocks (through the agent's
#     socket) and from the node's subnet (files), with the reference bridge + host-local
#     pair beside them. Target: blocks' ADD p50 and p99 within 1.2x of the subnet IPAM's.
#  2. 1000 allocations over 3 nodes claiming blocks concurrently on etcd: total time and
#     store requests per allocation, with the store read before each allocation beside
#     the agent's picture. Target: one request for an allocation from a held block.
# Runs in namespaces it creates (a one-host lab). Needs root.
# CNI rounds (3 by default) are printed as measured, then the median and range.
# Usage: bench/ipam.sh [CALLS] [ALLOCS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
ALLOCS=${2:-1000}
ROUNDS=${3:-3}
cargo build --release -q -p weft --bins
cargo build --release -q -p weft-alloc --example block_allocations
BIN=$PWD/target/release
REF=/usr/lib/cni
[ -x "$REF/bridge" ] || { echo "needs containernetworking-plugins (scripts/setup)" >&2; exit 1; }
LAB=ipb$$
WORK=$(mktemp -d /tmp/weft-ipambench.XXXXXX)
cleanup() { "$BIN/weftctl" lab down --name "$LAB" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
WEFT_WEFTD=$BIN/weftd "$BIN/weftctl" lab up --name "$LAB" --hosts 1 --ipam blocks >/dev/null
DIR=/run/weft-lab/$LAB/h1
CTR=$LAB-c9
ip netns add "$CTR"
grep -v '^WEFT_IPAM=' "$DIR/subnet.env" > "$WORK/subnet.env"

ip netns exec "$LAB-h1" python3 - "$N" "$BIN/weft" "$REF" "/run/netns/$CTR" "$WORK" "$DIR" "$ROUNDS" <<'PY'
import os, subprocess, sys, time
sys.path.insert(0, os.path.join(os.getcwd(), "bench/lib"))
from cni_calls import measured_rounds, ratios, summary
n, plugin, ref, netns, work, lab, rounds = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], int(sys.argv[7])
base = {"cniVersion": "1.0.0", "type": "weft", "mode": "routed", "agentSocket": f"{lab}/weftd.sock"}
confs = {
    "weft, blocks": (plugin, dict(base, name="blk", subnetFile=f"{lab}/subnet.env", dataDir=f"{work}/blk")),
    "weft, node subnet": (plugin, dict(base, name="sub", subnetFile=f"{work}/subnet.env", dataDir=f"{work}/sub")),
    "bridge+host-local": (f"{ref}/bridge", {"cniVersion": "1.0.0", "name": "refnet", "type": "bridge",
                      "bridge": "refbr0", "isGateway": True, "mtu": 1450,
                      "ipam": {"type": "host-local", "subnet": "10.250.10.0/24", "dataDir": f"{work}/ref"}}),
}
print(f"CNI latency, routed, one lab host: {rounds} rounds of {n} ADD and {n} DEL calls per configuration, interleaved", flush=True)
seen = measured_rounds(confs, n, netns, ref, rounds)
summary(seen, rounds, "configuration")
b, s = seen["weft, blocks"], seen["weft, node subnet"]
print(f"\nblocks / node subnet, per round: ADD p50 {ratios(b, s, 'ADD p50')}, ADD p99 {ratios(b, s, 'ADD p99')}"
      f", DEL p50 {ratios(b, s, 'DEL p50')}  (target: ADD within 1.20)")
print("The lab's store is the embedded one (SQLite on this machine): an allocation from a held"
      " block is one write to it, made by the agent.")
PY

"$BIN/examples/block_allocations" "$ALLOCS" 3
