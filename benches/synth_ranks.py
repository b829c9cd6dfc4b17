#!/usr/bin/env python3
"""Build a synthetic MPI results directory of N ranks from one recorded rank.

    benches/synth_ranks.py SOURCE_DIR OUT_DIR N [--hosts H] [--time-shift-us US] [--link]

SOURCE_DIR is a results directory with one raw directory (e.g. `PMI_RANK=0 PMI_SIZE=1
hwprof collect --no-finalize -r SOURCE_DIR -- ./hot 60`). OUT_DIR gets a manifest
(world size N) and N raw directories `node<h>.<rank>.<pid>` spread over H hosts. Each
rank's perf.data is a copy of the recorded one whose process and thread ids are
rewritten to ids of its own (every pid/tid field of every record: samples, the
sample_id trailers of the other records, COMM, MMAP, FORK/EXIT...), distinct across
ranks, and named so in the directory name; with --time-shift-us, its record times are
moved r*US microseconds later (ranks that started at different instants), and so is
the sample time range its manifest declares. The other files are hard links to the recorded ones: pids inside them (Python captures, rss.csv)
are not rewritten, so record a native program. With --link, perf.data is a hard link
too (no disk space for 1,024 ranks; every rank then has the recorded pids inside).
finalize reads each raw directory on its own, so this measures the same work as N
distinct recordings of the same size; `perf script` reads the rewritten copies.
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


def records(buf):
    """(type, body offset, body length, sample_type, sample_id_all) of each record of a
    perf.data image, with the attr of the record's own id where there are several."""
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
        yield ty, body, body_len, st, id_all
        off += size


def shift_times(buf, shift_ns):
    """Moves every record time of a perf.data image (bytearray) by shift_ns, in place;
    time 0 (records written before the start) stays 0."""
    for ty, body, body_len, st, id_all in records(buf):
        t = time_offset(ty, body_len, st, id_all)
        if t is not None and t + 8 <= body_len:
            v, = struct.unpack_from("<Q", buf, body + t)
            if v:
                struct.pack_into("<Q", buf, body + t, v + shift_ns)


# Records whose body starts with u32 process/thread ids, and how many.
IDS_AT_START = {1: 2, 3: 2, 4: 4, 7: 4, 8: 2, 10: 2, 12: 2, 16: 2}
SWITCH_CPU_WIDE = 15  # next_prev_pid, next_prev_tid


def id_fields(buf):
    """Offsets of every u32 pid/tid field of a perf.data image: the record bodies'
    own (COMM, MMAP, FORK/EXIT...), a sample's TID and the sample_id trailer's."""
    out = []
    for ty, body, body_len, st, id_all in records(buf):
        if ty == SAMPLE:
            if st & TID:
                t = 8 * sum(bool(st & b) for b in (IDENTIFIER, IP))
                out += [body + t, body + t + 4]
        elif ty < 64:
            n = IDS_AT_START.get(ty, 2 if ty == SWITCH_CPU_WIDE else 0)
            out += [body + 4 * i for i in range(n) if 4 * i + 4 <= body_len]
            if id_all and st & TID:
                tail = 8 * sum(bool(st & b) for b in (TIME, ID, STREAM_ID, CPU, IDENTIFIER)) + 8
                if body_len >= tail + 4 * n:
                    out += [body + body_len - tail, body + body_len - tail + 4]
    return out


def pid_map(buf, fields):
    """The distinct process/thread ids of the image (0, the idle task, and -1 are not
    ids), in order of first appearance."""
    seen = {}
    for f in fields:
        v, = struct.unpack_from("<I", buf, f)
        if v not in (0, 0xFFFFFFFF) and v not in seen:
            seen[v] = len(seen)
    return seen


def rewrite_ids(buf, fields, ids, base):
    """Replaces each id of the image (bytearray) by base + its index in ids."""
    for f in fields:
        v, = struct.unpack_from("<I", buf, f)
        if v in ids:
            struct.pack_into("<I", buf, f, base + ids[v])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("n", type=int)
    ap.add_argument("--hosts", type=int, default=0, help="hosts (default: N/64, at least 1)")
    ap.add_argument("--time-shift-us", type=int, default=0,
                    help="rank r's record times move r*US us later")
    ap.add_argument("--link", action="store_true",
                    help="hard-link perf.data too: the recorded pids (and times) in every rank")
    a = ap.parse_args()
    if a.link and a.time_shift_us:
        sys.exit("--link keeps perf.data as recorded: no --time-shift-us with it")
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
    data = fields = None
    ids = {}
    root = int(raws[0].rsplit(".", 1)[-1])
    if not a.link:
        with open(os.path.join(src, "perf.data"), "rb") as f:
            data = f.read()
        fields = id_fields(data)
        ids = pid_map(data, fields)
        ids.setdefault(root, len(ids))
    # Rank r's ids are FIRST + r * len(ids) + i: distinct across ranks, under pid_max.
    first = 1000
    if first + a.n * max(1, len(ids)) > 4_194_304:
        sys.exit(f"{a.n} ranks x {len(ids)} ids do not fit under pid_max (4194304)")
    for rank in range(a.n):
        base = first + rank * len(ids)
        pid = base + ids[root] if ids else 100000 + rank
        d = os.path.join(a.out, "raw", f"node{rank // per_host}.{rank}.{pid}")
        os.makedirs(d)
        for x in files:
            if x == "perf.data" and data is not None:
                buf = bytearray(data)
                rewrite_ids(buf, fields, ids, base)
                if a.time_shift_us:
                    shift_times(buf, rank * a.time_shift_us * 1000)
                with open(os.path.join(d, x), "wb") as f:
                    f.write(buf)
            elif x == "manifest.json" and a.time_shift_us:
                # The rank's declared sample time range moves with its records.
                with open(os.path.join(src, x)) as f:
                    rm = json.load(f)
                if rm.get("sample_times_ns"):
                    rm["sample_times_ns"] = [t + rank * a.time_shift_us * 1000
                                             for t in rm["sample_times_ns"]]
                with open(os.path.join(d, x), "w") as f:
                    json.dump(rm, f, indent=2)
            else:
                os.link(os.path.join(src, x), os.path.join(d, x))
    size = sum(os.path.getsize(os.path.join(src, x)) for x in files)
    how = ("all hard links" if data is None else
           f"perf.data copied with {len(ids)} ids rewritten per rank"
           + (" and time shifts" if a.time_shift_us else "") + ", the rest hard links")
    print(f"{a.out}: {a.n} ranks on {hosts} hosts, {size / 1e6:.1f} MB per rank ({how})")


if __name__ == "__main__":
    main()
