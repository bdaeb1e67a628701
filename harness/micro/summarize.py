#!/usr/bin/env python3
"""Summarise `make micro`'s JSON against the overhead targets.

    python3 harness/micro/summarize.py results/<label>/micro.json

Prints Markdown tables for docs/results.md ("Library overhead"): each
target with the median (and the fastest repetition, for noise), and
whether the median meets it. "caller CPU" is the calling thread's CPU
time in the same unit: at W = 1 it is what the run would take undisturbed,
a check on the noise of a shared machine. Standard library only.
"""
import json
import sys

# (backend, target) for each question; backends not in the file are left out.
PER_ITEM_NS = {"threads": 2.0, "openmp": 2.0, "fork": 3.0}
SMALL_MAP_US = {"threads": 5.0, "openmp": 5.0, "fork": 500.0}
SEED_RATIO = {"threads": 1.05, "openmp": 1.05}
TO_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}


def load(path):
    with open(path) as f:
        data = json.load(f)
    stats = {}  # run_name -> {aggregate: entry}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" and not b.get("error_occurred"):
            stats.setdefault(b["run_name"], {})[b["aggregate_name"]] = b
    return data.get("context", {}), stats


def find(stats, prefix):
    """The run names starting with prefix, sorted."""
    return sorted(name for name in stats if name.startswith(prefix))


def workers_of(name):
    return int(name.split("/workers:")[1].split("/")[0])


def cpu_ratio(entry):
    """Calling thread's CPU time over real time: near 1 at W = 1 on a
    quiet machine, well below it when other processes took the CPU."""
    return entry["cpu_time"] / entry["real_time"] if entry["real_time"] else float("nan")


def verdict(value, target):
    return "met" if value <= target else "**missed**"


def main(path):
    context, stats = load(path)
    print(f"Host `{context.get('host_name', '?')}`, {context.get('num_cpus', '?')} CPUs, "
          f"{context.get('date', '?')}, load average {context.get('load_avg', '?')}, "
          f"backends {context.get('manyhands_backends', '?')}.\n")

    print("| per-item overhead, empty fn, 10^7 items, adaptive chunk | W | median ns/item "
          "| min | caller CPU | target | |")
    print("|---|---|---|---|---|---|---|")
    for backend in ["seq", "threads", "openmp", "fork", "raw_openmp"]:
        for name in find(stats, f"map_empty/{backend}/workers:"):
            if "/n:10000000/" not in name or ("chunk:adaptive" not in name and
                                              backend != "raw_openmp"):
                continue
            med = stats[name]["median"]["ns_per_item"]
            low = stats[name].get("min", {}).get("ns_per_item", float("nan"))
            target = PER_ITEM_NS.get(backend)
            print(f"| {backend} | {workers_of(name)} | {med:.2f} | {low:.2f} | {cpu_ratio(stats[name]['median']) * med:.2f} | "
                  f"{'≤ %g ns' % target if target else 'floor' if backend == 'raw_openmp' else '—'} | "
                  f"{verdict(med, target) if target else ''} |")

    print("\n| small map, n = W, pool open | W | median µs | min | target | |")
    print("|---|---|---|---|---|---|")
    for backend in ["seq", "threads", "openmp", "fork", "raw_openmp"]:
        for name in find(stats, f"map_small/{backend}/workers:"):
            unit = TO_US[stats[name]["median"]["time_unit"]]
            med = stats[name]["median"]["real_time"] * unit
            low = stats[name].get("min", {}).get("real_time", float("nan")) * unit
            target = SMALL_MAP_US.get(backend)
            print(f"| {backend} | {workers_of(name)} | {med:.2f} | {low:.2f} | "
                  f"{'≤ %g µs' % target if target else '—'} | "
                  f"{verdict(med, target) if target else ''} |")

    print("\n| seed workload, 10^6 GMP factorials | W | median ms | min | caller CPU | vs raw OpenMP "
          "(median) | target | |")
    print("|---|---|---|---|---|---|---|---|")
    raw = {workers_of(n): stats[n]["median"]["real_time"]
           for n in find(stats, "seed_factorial/raw_openmp/workers:")}
    for backend in ["seq", "threads", "openmp", "fork", "raw_openmp"]:
        for name in find(stats, f"seed_factorial/{backend}/workers:"):
            w = workers_of(name)
            med = stats[name]["median"]["real_time"]
            low = stats[name].get("min", {}).get("real_time", float("nan"))
            ratio = med / raw[w] if w in raw else float("nan")
            target = SEED_RATIO.get(backend)
            cpu = stats[name]["median"]["cpu_time"]
            print(f"| {backend} | {w} | {med:.0f} | {low:.0f} | {cpu:.0f} | {ratio:.3f}× | "
                  f"{'≤ %g×' % target if target else '—'} | "
                  f"{verdict(ratio, target) if target else ''} |")

    print("\n| other (no target) | W | median | min |")
    print("|---|---|---|---|")
    for family, key, unit in [("pool_open_close", "real_time", "µs"),
                              ("reduce_sumsq", "ns_per_item", "ns/item")]:
        for name in find(stats, family + "/"):
            entry = stats[name]["median"]
            scale = TO_US[entry["time_unit"]] if key == "real_time" else 1.0
            med = entry[key] * scale
            low = stats[name].get("min", {}).get(key, float("nan")) * scale
            backend = name.split("/")[1]
            print(f"| {family} {backend} | {workers_of(name)} | {med:.2f} {unit} | {low:.2f} |")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
