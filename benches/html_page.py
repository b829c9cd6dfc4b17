#!/usr/bin/env python3
"""Size and draw time of the HTML report for a large profile (issue 19's bound: a
1 M-sample profile with deep stacks gives a page under 10 MB that opens and draws in
under 2 s in headless Chromium).

Writes a synthetic profile.db (the schema of src/profile/mod.rs) with SAMPLES samples
over a random call tree of NODES stack nodes up to DEPTH deep (every node a distinct
function: no two subtrees merge), 8 threads and a 500-bucket timeline; exports it with
`hwprof export --format html`; opens the page in headless Chromium (system
/usr/bin/chromium through playwright) RUNS times, each in a fresh profile directory,
and reports the median time from navigation to the page's `data-ready` mark plus one
animation frame (parse, JSON, first render of every panel).

Usage: benches/html_page.py [--samples 1000000] [--nodes 60000] [--depth 120]
       [--runs 5] [--hwprof target/release/hwprof]
"""
import argparse
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

from playwright.sync_api import sync_playwright

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE events(id INTEGER PRIMARY KEY, name TEXT NOT NULL, requested TEXT, note TEXT);
CREATE TABLE processes(id INTEGER PRIMARY KEY, host TEXT, rank INTEGER, pid INTEGER, command TEXT, raw_dir TEXT);
CREATE TABLE threads(id INTEGER PRIMARY KEY, process INTEGER NOT NULL, tid INTEGER, name TEXT);
CREATE TABLE functions(id INTEGER PRIMARY KEY, name TEXT NOT NULL, module TEXT NOT NULL, file TEXT, start_line INTEGER, kind TEXT NOT NULL);
CREATE TABLE frames(id INTEGER PRIMARY KEY, function INTEGER NOT NULL, file TEXT, line INTEGER, inlined INTEGER NOT NULL DEFAULT 0);
CREATE TABLE stacks(id INTEGER PRIMARY KEY, parent INTEGER, frame INTEGER NOT NULL);
CREATE TABLE samples(stack INTEGER, thread INTEGER NOT NULL, event INTEGER NOT NULL, count INTEGER NOT NULL, value INTEGER NOT NULL);
CREATE TABLE rss(process INTEGER NOT NULL, time_ns INTEGER NOT NULL, rss_bytes INTEGER NOT NULL);
CREATE TABLE counts(stack INTEGER, thread INTEGER NOT NULL, event INTEGER NOT NULL, value REAL NOT NULL);
CREATE TABLE timeline(stack INTEGER, thread INTEGER NOT NULL, bucket INTEGER NOT NULL, count INTEGER NOT NULL);
"""


def make_profile(dirname, samples, nodes, depth, seed=1):
    rnd = random.Random(seed)
    db = sqlite3.connect(os.path.join(dirname, "profile.db"))
    db.executescript(SCHEMA)
    threads = 8
    buckets = 500
    meta = {"mode": "hotspots", "metric": "samples", "samples": samples, "total": samples,
            "lost_samples": 0, "duration_s": "125.0", "frequency_hz": 999,
            "command": "synthetic --deep", "python": "off", "events": "[]", "notices": "[]",
            "timeline_start_ns": 0, "timeline_bucket_ns": 250_000_000, "timeline_buckets": buckets}
    db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])
    db.execute("INSERT INTO events VALUES (1, 'cpu-clock', 'cycles', '')")
    db.execute("INSERT INTO processes VALUES (1, 'node1', NULL, 4242, 'synthetic --deep', 'raw')")
    db.executemany("INSERT INTO threads VALUES (?, 1, ?, ?)",
                   [(t + 1, 4242 + t, f"worker-{t}") for t in range(threads)])
    # The tree: node i's parent is a random earlier node not yet at DEPTH; a chain
    # of depth/2 first, so stacks are deep.
    parent = [None]
    dep = [1]
    for i in range(1, nodes):
        if i < depth // 2:
            p = i - 1
        else:
            while True:
                p = rnd.randrange(i)
                if dep[p] < depth:
                    break
        parent.append(p)
        dep.append(dep[p] + 1)
    db.executemany("INSERT INTO functions VALUES (?, ?, 'synthetic', 'synthetic.c', ?, 'native')",
                   [(i + 1, f"function_{i}_with_a_longish_name", i) for i in range(nodes)])
    db.executemany("INSERT INTO frames VALUES (?, ?, 'synthetic.c', ?, 0)",
                   [(i + 1, i + 1, i + 3) for i in range(nodes)])
    db.executemany("INSERT INTO stacks VALUES (?, ?, ?)",
                   [(i + 1, None if parent[i] is None else parent[i] + 1, i + 1) for i in range(nodes)])
    # Samples on leaves and inner nodes, Zipf-like weights.
    has_child = set(p for p in parent if p is not None)
    leaves = [i for i in range(nodes) if i not in has_child] + rnd.sample(range(nodes), nodes // 10)
    weights = [1.0 / (k + 1) ** 0.9 for k in range(len(leaves))]
    rnd.shuffle(weights)
    agg, tl = {}, {}
    picks = rnd.choices(range(len(leaves)), weights=weights, k=samples)
    for s in picks:
        node = leaves[s]
        th = rnd.randrange(threads)
        b = rnd.randrange(buckets)
        agg[(node, th)] = agg.get((node, th), 0) + 1
        tl[(node, th, b)] = tl.get((node, th, b), 0) + 1
    db.executemany("INSERT INTO samples VALUES (?, ?, 1, ?, ?)",
                   [(n + 1, t + 1, c, c) for (n, t), c in agg.items()])
    db.executemany("INSERT INTO timeline VALUES (?, ?, ?, ?)",
                   [(n + 1, t + 1, b, c) for (n, t, b), c in tl.items()])
    db.commit()
    db.close()
    return len(agg), len(tl)


def open_time(page_path, runs):
    times = []
    with sync_playwright() as p:
        for _ in range(runs):
            with tempfile.TemporaryDirectory(prefix="hwprof-bench-chromium-") as prof:
                ctx = p.chromium.launch_persistent_context(
                    prof, executable_path="/usr/bin/chromium", headless=True, args=ARGS,
                    viewport={"width": 1280, "height": 900})
                page = ctx.new_page()
                errors = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                t0 = time.monotonic()
                page.goto("file://" + os.path.abspath(page_path), wait_until="commit")
                page.wait_for_selector("html[data-ready]", timeout=120000)
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
                times.append(time.monotonic() - t0)
                boxes = page.eval_on_selector_all("#flame .box", "bs => bs.length")
                print("phases (ms):", page.evaluate("JSON.stringify(window.hwprof.timings)"),
                      "navigation to DOMContentLoaded (ms):",
                      page.evaluate("Math.round(performance.getEntriesByType('navigation')[0].domContentLoadedEventStart)"))
                ctx.close()
                if errors:
                    sys.exit(f"page errors: {errors}")
    return times, boxes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--nodes", type=int, default=60_000)
    ap.add_argument("--depth", type=int, default=120)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--hwprof", default="target/release/hwprof")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hwprof-bench-html-") as d:
        rows, tl_rows = make_profile(d, a.samples, a.nodes, a.depth)
        page = os.path.join(d, "report.html")
        t0 = time.monotonic()
        subprocess.run([a.hwprof, "export", d, "--format", "html", "-o", page], check=True)
        export_s = time.monotonic() - t0
        size = os.path.getsize(page)
        times, boxes = open_time(page, a.runs)
        print(f"profile: {a.samples} samples, {a.nodes} stack nodes up to {a.depth} deep, "
              f"{rows} sample rows, {tl_rows} timeline rows")
        print(f"export: {export_s:.2f} s; page: {size / 1e6:.2f} MB")
        print(f"open+draw in headless Chromium: median {statistics.median(times):.2f} s "
              f"(runs: {', '.join(f'{t:.2f}' for t in times)}); {boxes} boxes drawn")


if __name__ == "__main__":
    main()
