#!/usr/bin/env python3
"""Build a synthetic MPI results directory of N ranks from one recorded rank.

    benches/synth_ranks.py SOURCE_DIR OUT_DIR N [--hosts H]

SOURCE_DIR is a results directory with one raw directory (e.g. `PMI_RANK=0 PMI_SIZE=1
hwprof collect --no-finalize -r SOURCE_DIR -- ./hot 60`). OUT_DIR gets a manifest
(world size N) and N raw directories `node<h>.<rank>.<pid>` spread over H hosts, each
with distinct (synthetic) pids in its name. The files of every raw directory are hard
links to the recorded ones, so 1,024 ranks cost no disk space: the perf.data contents
(pids inside, timestamps) are the same in every rank. finalize reads each raw
directory on its own, so this measures the same work as N distinct recordings of the
same size; what it does not exercise is cross-rank time alignment (no time shifts).
"""

import argparse
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("n", type=int)
    ap.add_argument("--hosts", type=int, default=0, help="hosts (default: N/64, at least 1)")
    a = ap.parse_args()
    raws = sorted(os.listdir(os.path.join(a.source, "raw")))
    if len(raws) != 1:
        sys.exit(f"{a.source}/raw has {len(raws)} raw directories; record one rank")
    src = os.path.join(a.source, "raw", raws[0])
    if os.path.exists(a.out):
        sys.exit(f"{a.out} exists; choose another OUT_DIR")
    hosts = a.hosts or max(1, a.n // 64)
    per_host = -(-a.n // hosts)
    os.makedirs(os.path.join(a.out, "raw"))
    with open(os.path.join(a.source, "manifest.json")) as f:
        m = json.load(f)
    m["world_size"] = a.n
    m["mpi_job"] = m.get("mpi_job") or "synthetic"
    m["hosts"] = [f"node{h}" for h in range(hosts)]
    m["finalized"] = False
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(m, f, indent=2)
    files = [x for x in os.listdir(src) if os.path.isfile(os.path.join(src, x))]
    for rank in range(a.n):
        d = os.path.join(a.out, "raw", f"node{rank // per_host}.{rank}.{100000 + rank}")
        os.makedirs(d)
        for x in files:
            os.link(os.path.join(src, x), os.path.join(d, x))
    size = sum(os.path.getsize(os.path.join(src, x)) for x in files)
    print(f"{a.out}: {a.n} ranks on {hosts} hosts, {size / 1e6:.1f} MB per rank (hard links)")


if __name__ == "__main__":
    main()
