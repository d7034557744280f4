#!/usr/bin/env bash
# Benchmark: CNI ADD and DEL latency (p50, p99 over N calls each) of the `weft` plugin
# against the reference `bridge` + `host-local` pair from containernetworking-plugins,
# measured in the same run on the same node, calls interleaved. Target (issue 5): weft's
# p50 at most half of the reference's. Runs in namespaces it creates. Needs root.
# Three rounds by default, each printed as measured, then the median and range.
# Usage: bench/cni.sh [CALLS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
ROUNDS=${2:-3}
cargo build --release -q -p weft --bins
PLUGIN=$PWD/target/release/weft
REF=/usr/lib/cni
[ -x "$REF/bridge" ] || { echo "needs containernetworking-plugins (scripts/setup)" >&2; exit 1; }
HOST=cnibench$$h CTR=cnibench$$c
WORK=$(mktemp -d /tmp/weft-cnibench.XXXXXX)
cleanup() { ip netns del "$CTR" 2>/dev/null || true; ip netns del "$HOST" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
ip netns add "$HOST"; ip netns add "$CTR"
ip -n "$HOST" link set lo up
printf 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.9.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n' > "$WORK/subnet.env"

ip netns exec "$HOST" python3 - "$N" "$PLUGIN" "$REF" "/run/netns/$CTR" "$WORK" "$ROUNDS" <<'PY'
import os, subprocess, sys, time
sys.path.insert(0, os.path.join(os.getcwd(), "bench/lib"))
from cni_calls import measured_rounds, ratios, summary, timed
n, plugin, ref, netns, work, rounds = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
confs = {
    "weft": (plugin, {"cniVersion": "1.0.0", "name": "weftnet", "type": "weft",
                      "subnetFile": f"{work}/subnet.env", "dataDir": f"{work}/weft"}),
    "bridge+host-local": (f"{ref}/bridge", {"cniVersion": "1.0.0", "name": "refnet", "type": "bridge",
                      "bridge": "refbr0", "isGateway": True, "mtu": 1450,
                      "ipam": {"type": "host-local", "subnet": "10.244.10.0/24", "dataDir": f"{work}/ref"}}),
}
def veth_del(i):
    # Outside the timing: the pair to delete.
    subprocess.run(["ip", "link", "add", f"flr{i}", "type", "veth", "peer", "name", f"flp{i}"], check=True)
    return timed(["ip", "link", "del", f"flr{i}"])


# Control rows, measured in the same iterations as the plugins: starting a process that
# does nothing (every plugin call pays it), and a process (`ip`) deleting a veth pair
# with nothing else around it (what every plugin's DEL does at least).
controls = {"(process: /bin/true)": lambda i: timed(["/bin/true"]), "(process: ip link del veth)": veth_del}
print(f"CNI latency, {rounds} rounds of {n} ADD and {n} DEL calls per plugin, interleaved, same node", flush=True)
seen = measured_rounds(confs, n, netns, ref, rounds, controls)
summary(seen, rounds)
w, r = seen["weft"], seen["bridge+host-local"]
print(f"\nweft / reference, p50 per round: ADD {ratios(w, r, 'ADD p50')}, DEL {ratios(w, r, 'DEL p50')}  (target: at most 0.50)")
print("The control rows ran in the same iterations, each a process started as a plugin is:"
      " /bin/true is the start-up alone; `ip link del` of a lone veth pair is what every DEL"
      " removes, with `ip`'s own start-up (a larger binary than /bin/true).")
PY
