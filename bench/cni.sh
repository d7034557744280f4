#!/usr/bin/env bash
# Benchmark: CNI ADD and DEL latency (p50, p99 over N calls each) of the `weft` plugin
# against the reference `bridge` + `host-local` pair from containernetworking-plugins,
# measured in the same run on the same node, calls interleaved. Target (issue 5): weft's
# p50 at most half of the reference's. Runs in namespaces it creates. Needs root.
# Usage: bench/cni.sh [CALLS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
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

ip netns exec "$HOST" python3 - "$N" "$PLUGIN" "$REF" "/run/netns/$CTR" "$WORK" <<'PY'
import os, subprocess, sys, time
sys.path.insert(0, os.path.join(os.getcwd(), "bench/lib"))
from cni_calls import interleaved, pct
n, plugin, ref, netns, work = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
confs = {
    "weft": (plugin, {"cniVersion": "1.0.0", "name": "weftnet", "type": "weft",
                      "subnetFile": f"{work}/subnet.env", "dataDir": f"{work}/weft"}),
    "bridge+host-local": (f"{ref}/bridge", {"cniVersion": "1.0.0", "name": "refnet", "type": "bridge",
                      "bridge": "refbr0", "isGateway": True, "mtu": 1450,
                      "ipam": {"type": "host-local", "subnet": "10.244.10.0/24", "dataDir": f"{work}/ref"}}),
}
lat = interleaved(confs, n, netns, ref)
print(f"\nCNI latency over {n} ADD and {n} DEL calls per plugin, interleaved, same node, same run\n")
print("| plugin              | ADD p50 ms | ADD p99 ms | DEL p50 ms | DEL p99 ms |")
print("|---------------------|------------|------------|------------|------------|")
for name in confs:
    a, d = lat[name]["ADD"], lat[name]["DEL"]
    print(f"| {name:<19} | {pct(a,.5):10.2f} | {pct(a,.99):10.2f} | {pct(d,.5):10.2f} | {pct(d,.99):10.2f} |")
# The kernel's floor for DEL: deleting a veth pair with nothing else around it.
floor = []
for i in range(min(n, 50)):
    subprocess.run(["ip", "link", "add", f"flr{i}", "type", "veth", "peer", "name", f"flp{i}"], check=True)
    t = time.perf_counter()
    subprocess.run(["ip", "link", "del", f"flr{i}"], check=True)
    floor.append((time.perf_counter() - t) * 1000)
print(f"| {'(ip link del veth)':<19} | {'':>10} | {'':>10} | {pct(floor,.5):10.2f} | {pct(floor,.99):10.2f} |")
w, r = lat["weft"], lat["bridge+host-local"]
print(f"\nweft / reference, p50: ADD {pct(w['ADD'],.5)/pct(r['ADD'],.5):.2f}, DEL {pct(w['DEL'],.5)/pct(r['DEL'],.5):.2f}"
      "  (target: at most 0.50)")
print("(ip link del veth) is the kernel's cost of removing a veth pair alone, with `ip` started"
      " as a process: a floor every plugin that removes the interface pays in DEL.")
PY
