#!/usr/bin/env python3
"""Open one hwprof HTML report in headless Chromium and measure what the e2e test
(tests/cli/html.rs) asserts on. Prints one JSON object on stdout.

Usage: check_report.py PAGE.html SCREENSHOT.png [--click NAME] [--search NAME]
       [--frames all|python|native] [--dark] [--diff NAME]...

--diff NAME (a delta view from `export --diff ... --format html`, repeatable): the
background rgb, tooltip and details text of NAME's first flame-graph box, and the
"only in base" rows.

Drives the system Chromium (/usr/bin/chromium, Debian's package) through Python
playwright; never downloads a browser. Each run uses a fresh profile directory.
"""
import argparse
import json
import pathlib
import sys
import tempfile
import time

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def box_widths(page, name):
    """Widths (px) of the drawn, non-ancestor flame-graph boxes of a function."""
    return page.eval_on_selector_all(
        "#flame .box:not(.ancestor)",
        "(bs, n) => bs.filter(b => b.dataset.name === n).map(b => b.getBoundingClientRect().width)",
        name,
    )


def visible_names(page):
    return page.eval_on_selector_all(
        "#flame .box",
        "bs => bs.filter(b => { const r = b.getBoundingClientRect(); return r.width > 0 && r.height > 0; })"
        ".map(b => b.dataset.name)",
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("page")
    ap.add_argument("screenshot")
    ap.add_argument("--click")
    ap.add_argument("--search")
    ap.add_argument("--frames")
    ap.add_argument("--dark", action="store_true")
    ap.add_argument("--diff", action="append", default=[])
    a = ap.parse_args()
    out = {"console_errors": []}
    with sync_playwright() as p, tempfile.TemporaryDirectory(prefix="hwprof-chromium-") as prof:
        ctx = p.chromium.launch_persistent_context(
            prof, executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
            color_scheme="dark" if a.dark else "light",
        )
        page = ctx.new_page()
        page.on("console", lambda m: out["console_errors"].append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: out["console_errors"].append(str(e)))
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        t0 = time.monotonic()
        page.goto(pathlib.Path(a.page).resolve().as_uri())
        page.wait_for_selector("html[data-ready]", timeout=60000)
        out["load_s"] = time.monotonic() - t0
        out["network_requests"] = [u for u in requests if not u.startswith("file:") and not u.startswith("data:")]
        out["title"] = page.title()
        out["notices"] = page.eval_on_selector_all("#notices li", "ls => ls.map(l => l.textContent)")
        out["facts"] = page.eval_on_selector_all("#facts dt", "ds => ds.map(d => d.textContent)")
        out["boxes"] = page.eval_on_selector_all("#flame .box", "bs => bs.length")
        out["names"] = sorted(set(visible_names(page)))
        if a.diff:
            out["diff"] = {}
            for n in a.diff:
                sel = f'#flame .box:not(.ancestor)[data-name="{n}"]'
                rgb = page.eval_on_selector(sel, "b => getComputedStyle(b).backgroundColor")
                page.hover(sel)
                out["diff"][n] = {
                    "rgb": [int(x) for x in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3]],
                    "title": page.get_attribute(sel, "title"),
                    "details": page.text_content("#details"),
                }
            out["only_in_base"] = page.eval_on_selector_all("#only-base tr td.name", "ts => ts.map(t => t.textContent)")
            out["legend"] = page.is_visible("#diff-legend")
        if a.frames:
            page.check(f"input[name=frames][value={a.frames}]")
            out["names_after_frames"] = sorted(set(visible_names(page)))
        if a.search:
            out["widths"] = {a.search: box_widths(page, a.search)}
            page.fill("#search", a.search)
            out["search_share"] = float(page.get_attribute("#matched", "data-share") or "nan")
            out["search_matches"] = page.eval_on_selector_all("#flame .box.match", "bs => bs.length")
            page.screenshot(path=a.screenshot.replace(".png", "-search.png"))
            page.fill("#search", "")
        if a.click:
            # Widths of the clicked function and its siblings before zooming.
            out["widths_before_click"] = {
                n: box_widths(page, n) for n in set(visible_names(page))
            }
            page.click(f'#flame .box:not(.ancestor)[data-name="{a.click}"]')
            out["breadcrumbs"] = page.eval_on_selector_all("#breadcrumbs .crumb", "bs => bs.map(b => b.textContent)")
            out["names_after_click"] = sorted(set(visible_names(page)))
            out["clicked_width"] = max(box_widths(page, a.click) or [0])
            out["flame_width"] = page.eval_on_selector("#flame", "f => f.clientWidth")
            # Keyboard: Escape zooms out one level, Enter zooms back in.
            page.keyboard.press("Escape")
            out["breadcrumbs_after_escape"] = page.eval_on_selector_all("#breadcrumbs .crumb", "bs => bs.map(b => b.textContent)")
            page.click("#reset")
        out["lines"] = page.eval_on_selector_all(
            ".line-item",
            "items => items.map(i => ({function: i.dataset.function, line: parseInt(i.dataset.line) || null,"
            " hot: (i.querySelector('pre.src span.hot') || {}).textContent || null}))",
        )
        if page.is_visible("#timeline-panel"):
            info = "#sel-info"
            out["all_samples"] = int(page.get_attribute(info, "data-all-samples"))
            out["samples_before"] = int(page.get_attribute(info, "data-samples"))
            end = float(page.get_attribute("#sel-to", "max"))
            page.fill("#sel-from", "0")
            page.fill("#sel-to", f"{end / 2:.6f}")
            page.dispatch_event("#sel-to", "change")
            out["samples_first_half"] = int(page.get_attribute(info, "data-samples"))
            out["tracks"] = page.eval_on_selector_all(".track", "ts => ts.map(t => t.dataset.track)")
            page.screenshot(path=a.screenshot.replace(".png", "-selection.png"), full_page=True)
            page.click("#sel-clear")
        if page.is_visible("#memory-panel"):
            out["rss_max_bytes"] = float(page.get_attribute("#rss svg", "data-max-bytes"))
        if page.is_visible("#ranks-panel"):
            out["rank_bars"] = page.eval_on_selector_all(".rank-bar", "bs => bs.map(b => b.dataset.rank)")
            out["heat_rows"] = page.eval_on_selector_all("#heat tbody tr", "rs => rs.length")
        # Keyboard: the flame graph takes focus and arrows move between frames.
        page.focus("#flame")
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")
        out["focused_after_keys"] = page.evaluate("document.activeElement.dataset.name || null")
        page.screenshot(path=a.screenshot, full_page=True)
        ctx.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
