"""Timing CNI plugin calls, shared by bench/cni.sh and bench/ipam.sh: one call of a
plugin binary as a runtime makes it (CNI_* in the environment, the config on stdin),
and percentiles."""
import json, os, subprocess, sys, time


def call(binary, conf, command, cid, netns, cni_path):
    """Runs one CNI command; its wall time in ms. A failure ends the benchmark."""
    env = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_CONTAINERID": cid,
           "CNI_NETNS": netns, "CNI_IFNAME": "eth0", "CNI_PATH": cni_path}
    t = time.perf_counter()
    p = subprocess.run([binary], input=json.dumps(conf).encode(), env=env, capture_output=True)
    dt = (time.perf_counter() - t) * 1000
    if p.returncode != 0:
        sys.exit(f"{command} failed: {p.stdout.decode()} {p.stderr.decode()}")
    return dt


def interleaved(confs, n, netns, cni_path):
    """ADD then DEL of container bench-i for each configuration in turn, n times:
    {name: {"ADD": [ms], "DEL": [ms]}}."""
    lat = {k: {"ADD": [], "DEL": []} for k in confs}
    for i in range(n):
        for name, (binary, conf) in confs.items():
            cid = f"bench-{i}"
            lat[name]["ADD"].append(call(binary, conf, "ADD", cid, netns, cni_path))
            lat[name]["DEL"].append(call(binary, conf, "DEL", cid, netns, cni_path))
    return lat


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]
