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


def interleaved(confs, n, netns, cni_path, controls=None):
    """ADD then DEL of container bench-i for each configuration in turn, n times, and
    after them in the same iteration each control (name: function(i) -> ms), so that
    every row sees the same machine at the same moments:
    {name: {"ADD": [ms], "DEL": [ms]}} and {control: [ms]}."""
    lat = {k: {"ADD": [], "DEL": []} for k in confs}
    ctl = {k: [] for k in (controls or {})}
    for i in range(n):
        for name, (binary, conf) in confs.items():
            cid = f"bench-{i}"
            lat[name]["ADD"].append(call(binary, conf, "ADD", cid, netns, cni_path))
            lat[name]["DEL"].append(call(binary, conf, "DEL", cid, netns, cni_path))
        for name, f in (controls or {}).items():
            ctl[name].append(f(i))
    return (lat, ctl) if controls else lat


def timed(argv):
    """Wall time in ms of one process run (a control row's unit: every plugin call is a
    process started, too)."""
    t = time.perf_counter()
    subprocess.run(argv, check=True)
    return (time.perf_counter() - t) * 1000


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def measured_rounds(confs, n, netns, cni_path, rounds, controls=None):
    """`rounds` interleaved runs; each round's p50 and p99 printed as it is measured (so
    a run stopped early still shows what it had), and returned per row:
    {row: {"ADD p50": [ms per round], "ADD p99": [...], "DEL p50": [...], "DEL p99": [...]}}.
    A control row's figures are under "DEL"."""
    controls = controls or {}
    rows = list(confs) + list(controls)
    seen = {r: {"ADD p50": [], "ADD p99": [], "DEL p50": [], "DEL p99": []} for r in rows}
    for r in range(rounds):
        if controls:
            lat, ctl = interleaved(confs, n, netns, cni_path, controls)
        else:
            lat, ctl = interleaved(confs, n, netns, cni_path), {}
        for name in confs:
            for cmd in ("ADD", "DEL"):
                seen[name][f"{cmd} p50"].append(pct(lat[name][cmd], .5))
                seen[name][f"{cmd} p99"].append(pct(lat[name][cmd], .99))
        for name, t in ctl.items():
            seen[name]["DEL p50"].append(pct(t, .5))
            seen[name]["DEL p99"].append(pct(t, .99))
        print(f"round {r + 1}: " + "; ".join(
            f"{name} " + " ".join(f"{k} {v[-1]:.2f}" for k, v in seen[name].items() if v)
            for name in rows), flush=True)
    return seen


def cell(xs):
    """'median (min-max)' of per-round figures."""
    if not xs:
        return ""
    xs = sorted(xs)
    return f"{xs[(len(xs) - 1) // 2]:.2f} ({xs[0]:.2f}-{xs[-1]:.2f})"


def summary(seen, rounds, what="plugin"):
    """The table of medians and ranges over the rounds."""
    print(f"\nMedian of the {rounds} rounds (range), ms\n")
    print(f"| {what:<27} | ADD p50              | ADD p99              | DEL p50              | DEL p99              |")
    print("|-----------------------------|----------------------|----------------------|----------------------|----------------------|")
    for name, v in seen.items():
        print(f"| {name:<27} | {cell(v['ADD p50']):<20} | {cell(v['ADD p99']):<20} | {cell(v['DEL p50']):<20} | {cell(v['DEL p99']):<20} |")


def ratios(a, b, key):
    """Per-round a/b of one figure, as 'median (min-max)'."""
    return cell([x / y for x, y in zip(a[key], b[key])])
