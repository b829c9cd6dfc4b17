#!/usr/bin/env python3
"""Build a synthetic MPI results directory of N ranks from one recorded rank.

    benches/synth_ranks.py SOURCE_DIR OUT_DIR N [--hosts H] [--time-shift-us US]

SOURCE_DIR is a results directory with one raw directory (e.g. `PMI_RANK=0 PMI_SIZE=1
hwprof collect --no-finalize -r SOURCE_DIR -- ./hot 60`). OUT_DIR gets a manifest
(world size N) and N raw directories `node<h>.<rank>.<pid>` spread over H hosts, each
with distinct (synthetic) pids in its name. The files of every raw directory are hard
links to the recorded ones, so 1,024 ranks cost no disk space: the perf.data contents
(pids inside, timestamps) are the same in every rank. finalize reads each raw
directory on its own, so this measures the same work as N distinct recordings of the
same size. With --time-shift-us, rank r's perf.data is a copy whose record times are
moved r*US microseconds later (ranks that started at different instants); the pids
inside stay those of the recorded rank.
"""

import argparse
import json
import os
import struct
import sys

SAMPLE = 9
# sample_type bits
IP, TID, TIME, ID, CPU, STREAM_ID, IDENTIFIER = 1, 2, 4, 64, 128, 512, 1 << 16


def attrs_of(buf):
    """(sample_type, sample_id_all, ids) of each attr of a perf.data image."""
    attr_size, a_off, a_size = struct.unpack_from("<QQQ", buf, 16)
    out = []
    for off in range(a_off, a_off + a_size, attr_size):
        sample_type, = struct.unpack_from("<Q", buf, off + 24)
        flags, = struct.unpack_from("<Q", buf, off + 40)
        i_off, i_size = struct.unpack_from("<QQ", buf, off + attr_size - 16)
        ids = struct.unpack_from(f"<{i_size // 8}Q", buf, i_off) if i_size else ()
        out.append((sample_type, bool(flags >> 18 & 1), ids))
    return out


def time_offset(ty, body_len, st, id_all):
    """Offset of the time field in a record's body (as the reader finds it), or None."""
    if not st & TIME:
        return None
    if ty == SAMPLE:
        return 8 * sum(bool(st & b) for b in (IDENTIFIER, IP, TID))
    if ty >= 64 or not id_all:
        return None
    tail = 8 * sum(bool(st & b) for b in (ID, STREAM_ID, CPU, IDENTIFIER)) + 8
    return body_len - tail if body_len >= tail else None


def shift_times(buf, shift_ns):
    """Moves every record time of a perf.data image (bytearray) by shift_ns, in place;
    time 0 (records written before the start) stays 0."""
    attrs = attrs_of(buf)
    by_id = {i: a for a in attrs for i in a[2]}
    d_off, d_size = struct.unpack_from("<QQ", buf, 40)
    off, end = d_off, d_off + d_size
    while off + 8 <= end:
        ty, _misc, size = struct.unpack_from("<IHH", buf, off)
        if size < 8 or off + size > end:
            break
        body, body_len = off + 8, size - 8
        st, id_all, _ = attrs[0]
        if len(attrs) > 1 and st & IDENTIFIER and ty < 64 and body_len >= 8:
            at = body if ty == SAMPLE else body + body_len - 8
            st, id_all, _ = by_id.get(struct.unpack_from("<Q", buf, at)[0], attrs[0])
        t = time_offset(ty, body_len, st, id_all)
        if t is not None and t + 8 <= body_len:
            v, = struct.unpack_from("<Q", buf, body + t)
            if v:
                struct.pack_into("<Q", buf, body + t, v + shift_ns)
        off += size


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("n", type=int)
    ap.add_argument("--hosts", type=int, default=0, help="hosts (default: N/64, at least 1)")
    ap.add_argument("--time-shift-us", type=int, default=0,
                    help="rank r's record times move r*US us later (copies perf.data)")
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
    data = None
    if a.time_shift_us:
        with open(os.path.join(src, "perf.data"), "rb") as f:
            data = f.read()
    for rank in range(a.n):
        d = os.path.join(a.out, "raw", f"node{rank // per_host}.{rank}.{100000 + rank}")
        os.makedirs(d)
        for x in files:
            if x == "perf.data" and data is not None:
                buf = bytearray(data)
                shift_times(buf, rank * a.time_shift_us * 1000)
                with open(os.path.join(d, x), "wb") as f:
                    f.write(buf)
            else:
                os.link(os.path.join(src, x), os.path.join(d, x))
    size = sum(os.path.getsize(os.path.join(src, x)) for x in files)
    how = "perf.data copied with time shifts, the rest" if data is not None else "all"
    print(f"{a.out}: {a.n} ranks on {hosts} hosts, {size / 1e6:.1f} MB per rank ({how} hard links)")


if __name__ == "__main__":
    main()
