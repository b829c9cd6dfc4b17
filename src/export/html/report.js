"use strict";
// hwprof's HTML report: plain JavaScript, no build step, no network. It renders the
// JSON in #hwprof-data (see src/export/html.rs for its layout).
(function () {
  var D = JSON.parse(document.getElementById("hwprof-data").textContent);
  var S = D.summary || {};
  var NAMES = D.functions.name, MODULES = D.functions.module, KIND = D.functions.kind;
  var PAR = D.nodes.parent, NFN = D.nodes.fn, NN = PAR.length;
  var METRIC = D.metric;
  var ROW = 18;
  var MAX_BOXES = 12000;
  var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(v) {
    if (METRIC === "bytes") return bytes(v);
    if (METRIC === "ns") {
      if (v >= 1e9) return (v / 1e9).toFixed(3) + " s";
      if (v >= 1e6) return (v / 1e6).toFixed(3) + " ms";
      if (v >= 1e3) return (v / 1e3).toFixed(1) + " \u00b5s";
      return Math.round(v) + " ns";
    }
    return String(Math.round(v));
  }
  function bytes(v) {
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(1) : String(Math.round(v))) + " " + u[i];
  }
  function pct(v, of) { return of > 0 ? (100 * v / of).toFixed(2) : "0.00"; }

  // ---- Header -------------------------------------------------------------------
  (function header() {
    var facts = $("facts");
    function fact(k, v) {
      if (v === undefined || v === null || v === "") return;
      facts.appendChild(el("dt", null, k));
      facts.appendChild(el("dd", null, String(v)));
    }
    fact("command", S.command);
    fact("mode", (S.mode || "profile") + (S.filter ? " " + S.filter : ""));
    fact("duration", S.duration_s !== undefined ? S.duration_s + " s" : "");
    fact("samples", S.samples);
    fact("total", fmt(D.total) + " " + METRIC);
    (S.events || []).forEach(function (e) {
      var text = e.opened || "?";
      if (e.requested && e.requested !== e.opened) text += " (requested " + e.requested + ")";
      if (e.note) text += ": " + e.note;
      fact("event", text);
    });
    fact("lost samples", S.lost_samples);
    fact("processes / threads", (S.processes || 0) + " / " + (S.threads || 0));
    if (S.ranks && S.ranks.length) fact("ranks", S.ranks.join(", "));
    if (S.python && S.python !== "off") fact("python", S.python);
    if (S.peak_rss_bytes) fact("peak RSS", bytes(S.peak_rss_bytes));
    var ul = $("notices");
    (S.notices || []).forEach(function (n) { ul.appendChild(el("li", { "class": "notice" }, n)); });
    $("flame-metric").textContent = "(" + METRIC + (D.pruned && D.pruned.value ? "" : "") + ")";
  })();

  // ---- Colors: Okabe–Ito hues by frame kind, lightness by name --------------------
  var HUE = { n: [202, 60], p: [38, 85], k: [326, 45], o: [0, 0] };
  function color(f) {
    var name = NAMES[f], h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    var hs = HUE[KIND.charAt(f)] || HUE.n;
    var l = dark ? 30 + h % 18 : 62 + h % 20;
    return "hsl(" + hs[0] + "," + hs[1] + "%," + l + "%)";
  }

  // ---- Delta view (export --diff BASE NEW --format html): BASE's leaf values on
  // NEW's tree; a frame is colored by the change of its self value, on ColorBrewer's
  // RdBu scale (diverging, readable with color-vision deficiencies): red grew, blue
  // shrank, light grey unchanged; intensity by the relative change.
  var DIFF = D.diff || null, baseLeaf = new Float64Array(NN);
  if (DIFF) for (var di = 0; di < DIFF.weights.length; di += 2) baseLeaf[DIFF.weights[di]] += DIFF.weights[di + 1];
  var NEUTRAL = dark ? [68, 68, 68] : [240, 240, 240], RED = [178, 24, 43], BLUE = [33, 102, 172];
  // Relative change; changes under 0.5% of the run stay pale (a frame going from 1
  // sample to 0 is -100% but says nothing).
  function relChange(b, n) {
    var m = Math.max(b, n, 0.005 * Math.max(DIFF.base.total, DIFF.new.total));
    return m > 0 ? (n - b) / m : 0;
  }
  function deltaColor(b, n) { return rgbOf(relChange(b, n)); }
  function rgbOf(r) {
    var to = r > 0 ? RED : BLUE, a = Math.min(1, Math.abs(r));
    var c = NEUTRAL.map(function (x, i) { return Math.round(x + (to[i] - x) * a); });
    return "rgb(" + c.join(",") + ")";
  }
  function signed(v) { return (v >= 0 ? "+" : "\u2212") + fmt(Math.abs(v)); }
  function deltaText(vn) {
    var bt = cur.baseTotal[vn], nt = cur.total[vn], bs = cur.baseSelf[vn], ns = cur.self[vn];
    return "total: base " + fmt(bt) + ", new " + fmt(nt) + ", delta " + signed(nt - bt) +
      (bt > 0 ? " (" + (nt >= bt ? "+" : "") + (100 * (nt - bt) / bt).toFixed(1) + "%)" : "") +
      "; self: base " + fmt(bs) + ", new " + fmt(ns) + ", delta " + signed(ns - bs);
  }
  if (DIFF) (function diffHeader() {
    var facts = $("facts");
    function side(k, s) {
      facts.appendChild(el("dt", null, k));
      facts.appendChild(el("dd", null, s.dir + (s.command ? " \u2014 " + s.command : "") +
        (s.rank !== null && s.rank !== undefined ? " (rank " + s.rank + ")" : "") +
        " \u2014 total " + fmt(s.total) + " " + METRIC + (s.samples !== undefined ? ", " + s.samples + " samples" : "")));
    }
    side("base", DIFF.base);
    side("new", DIFF.new);
    facts.appendChild(el("dt", null, "normalize"));
    facts.appendChild(el("dd", null, DIFF.normalize + " (BASE's values in NEW's " + METRIC + ")"));
    var lg = el("div", { id: "diff-legend", "class": "legend" });
    lg.appendChild(el("span", null, "delta view, color by self value: "));
    [[-1, "shrank (\u2212100%)"], [-0.5, "\u221250%"], [0, "unchanged"], [0.5, "+50%"], [1, "grew (new only)"]].forEach(function (k) {
      var sw = el("span", { "class": "key" });
      sw.style.background = rgbOf(k[0]);
      lg.appendChild(sw);
      lg.appendChild(el("span", null, " " + k[1] + " "));
    });
    var panel = $("flame-panel");
    panel.insertBefore(lg, $("breadcrumbs"));
    var sec = el("section", { id: "only-base-panel" });
    sec.appendChild(el("h2", null, "Only in base"));
    sec.appendChild(el("p", { "class": "hint" }, DIFF.only_in_base.length ?
      "Frames NEW does not have (caller > frame), BASE's value; in the flame graph it stays with the caller." :
      "Every frame of BASE is in NEW."));
    if (DIFF.only_in_base.length) {
      var t = el("table", { id: "only-base" }), head = el("tr");
      head.appendChild(el("th", null, "caller > frame"));
      head.appendChild(el("th", null, "base " + METRIC));
      t.appendChild(head);
      DIFF.only_in_base.forEach(function (r) {
        var tr = el("tr");
        tr.appendChild(el("td", { "class": "name", title: r.stack }, r.stack));
        tr.appendChild(el("td", null, fmt(r.value)));
        t.appendChild(tr);
      });
      sec.appendChild(t);
    }
    panel.parentNode.insertBefore(sec, panel.nextSibling);
  })();

  // ---- The view tree: the call tree folded by the frames toggle -----------------
  // Nodes come parent first, so one forward pass maps each to its view node.
  var views = {};
  function viewTree(mode) {
    if (views[mode]) return views[mode];
    var v = { fn: [-1], par: [-1], kids: [[]], key: new Map(), of: new Int32Array(NN) };
    var NF = NAMES.length + 1;
    function child(p, f) {
      var k = p * NF + f, c = v.key.get(k);
      if (c === undefined) {
        c = v.fn.length; v.key.set(k, c);
        v.fn.push(f); v.par.push(p); v.kids.push([]); v.kids[p].push(c);
      }
      return c;
    }
    var all = new Int32Array(NN), py = new Int32Array(NN), hasPy = new Uint8Array(NN);
    for (var n = 0; n < NN; n++) {
      var p = PAR[n], f = NFN[n], kind = KIND.charAt(f);
      var pa = p < 0 ? 0 : all[p], pp = p < 0 ? 0 : py[p];
      hasPy[n] = (p >= 0 && hasPy[p]) || kind === "p" ? 1 : 0;
      if (mode === "native") {
        all[n] = kind === "p" ? pa : child(pa, f);
        v.of[n] = all[n];
      } else if (mode === "python") {
        // --frames python: a stack with a Python frame keeps only those (and the
        // (pruned) marker); one without keeps its native frames.
        all[n] = child(pa, f);
        py[n] = kind === "p" || kind === "o" ? child(pp, f) : pp;
        v.of[n] = hasPy[n] ? py[n] : all[n];
      } else {
        all[n] = child(pa, f);
        v.of[n] = all[n];
      }
    }
    views[mode] = v;
    return v;
  }

  // Leaf weights per call-tree node: whole run, or the selected time range.
  var baseCount = new Float64Array(NN), baseValue = new Float64Array(NN);
  for (var i = 0; i < D.weights.length; i += 3) {
    baseCount[D.weights[i]] += D.weights[i + 1];
    baseValue[D.weights[i]] += D.weights[i + 2];
  }
  var TL = D.timeline;
  function leafWeights() {
    if (!TL || !state.sel) return { count: baseCount, value: baseValue };
    // A row's (merged) bucket counts when its middle is in the range.
    var c = new Float64Array(NN), v = new Float64Array(NN), r = TL.rows, m = TL.row_merge || 1;
    for (var i = 0; i < r.length; i += 3) {
      var mid = (r[i + 1] + 0.5) * m;
      if (mid >= state.sel[0] && mid < state.sel[1]) c[r[i]] += r[i + 2];
    }
    // The metric in a range: the node's value per sample times its samples there.
    for (var n = 0; n < NN; n++) if (c[n] > 0) v[n] = baseCount[n] > 0 ? c[n] * baseValue[n] / baseCount[n] : c[n];
    return { count: c, value: v };
  }

  var state = { frames: "all", sel: null, zoom: 0, search: "", focus: -1, sandwich: -1 };
  var cur = null; // { v: view tree, total: Float64Array, self: Float64Array, count }

  function compute() {
    var v = viewTree(state.frames), w = leafWeights();
    var m = v.fn.length, total = new Float64Array(m), self = new Float64Array(m), count = 0;
    for (var n = 0; n < NN; n++) {
      if (w.value[n] > 0 || w.count[n] > 0) { self[v.of[n]] += w.value[n]; count += w.count[n]; }
    }
    for (var k = 0; k < m; k++) total[k] = self[k];
    for (var j = m - 1; j > 0; j--) total[v.par[j]] += total[j];
    cur = { v: v, total: total, self: self, count: count };
    if (DIFF) {
      var bs = new Float64Array(m), bt = new Float64Array(m);
      for (var q = 0; q < NN; q++) if (baseLeaf[q] > 0) bs[v.of[q]] += baseLeaf[q];
      for (var r = 0; r < m; r++) bt[r] = bs[r];
      for (var s2 = m - 1; s2 > 0; s2--) bt[v.par[s2]] += bt[s2];
      bt[0] = DIFF.base.total; // with BASE's stacks that start with no frame NEW has
      cur.baseSelf = bs; cur.baseTotal = bt;
    }
    if (state.zoom >= m) state.zoom = 0;
  }
  function nameOf(vn) { return vn === 0 ? "all" : NAMES[cur.v.fn[vn]]; }
  function sortedKids(vn) {
    var t = cur.total;
    return cur.v.kids[vn].filter(function (c) { return t[c] > 0; })
      .sort(function (a, b) { return t[b] - t[a] || (NAMES[cur.v.fn[a]] < NAMES[cur.v.fn[b]] ? -1 : 1); });
  }
  function ancestors(vn) {
    var out = [];
    for (var a = vn; a >= 0; a = cur.v.par[a]) out.unshift(a);
    return out;
  }

  // ---- Flame graph (icicle: callers above callees) --------------------------------
  var flame = $("flame");
  var drawn = {}; // view node -> box
  function render() {
    var t = cur.total, root = state.zoom, rootTotal = t[root];
    flame.textContent = "";
    drawn = {};
    var frag = document.createDocumentFragment();
    var chain = ancestors(root), depth = 0, boxes = 0;
    function box(vn, d, x, w, cls) {
      var f = cur.v.fn[vn];
      var b = el("div", {
        "class": "box" + (cls ? " " + cls : ""), "data-node": vn, "data-name": nameOf(vn),
        tabindex: "-1", role: "button"
      }, nameOf(vn));
      b.style.left = (x * 100) + "%";
      b.style.width = (w * 100) + "%";
      b.style.top = (d * ROW) + "px";
      b.style.background = vn === 0 ? (dark ? "#555" : "#ccc") :
        DIFF ? deltaColor(cur.baseSelf[vn], cur.self[vn]) : color(f);
      b.title = nameOf(vn) + (vn ? " [" + MODULES[f] + "]" : "") + "\ntotal " + fmt(t[vn]) + " (" +
        pct(t[vn], t[0]) + "%), self " + fmt(cur.self[vn]) + (DIFF ? "\n" + deltaText(vn) : "");
      frag.appendChild(b);
      drawn[vn] = b;
      boxes++;
    }
    // The zoomed node's ancestors stay on top, full width: the path back out.
    chain.forEach(function (a, i) { if (i < chain.length - 1) box(a, depth++, 0, 1, "ancestor"); });
    var minW = 0.0008; // of the width: narrower boxes are not drawn
    var level = [[root, 0]];
    while (level.length && boxes < MAX_BOXES) {
      var next = [];
      for (var i = 0; i < level.length && boxes < MAX_BOXES; i++) {
        var vn = level[i][0], x = level[i][1], w = rootTotal > 0 ? t[vn] / rootTotal : 0;
        box(vn, depth, x, w, "");
        var cx = x;
        sortedKids(vn).forEach(function (c) {
          var cw = t[c] / rootTotal;
          if (cw >= minW) next.push([c, cx]);
          cx += cw;
        });
      }
      level = next;
      depth++;
    }
    flame.style.height = (depth * ROW + 2) + "px";
    flame.appendChild(frag);
    breadcrumbs(chain);
    highlight();
    var pr = D.pruned || {};
    $("pruned-note").textContent = pr.value ? "pruned: " + fmt(pr.value) + " (" + pct(pr.value, D.total) +
      "%) in subtrees under " + (pr.fraction * 100) + "% each, shown as (pruned)" : "";
    var f = drawn[state.focus] || drawn[root];
    if (f) f.setAttribute("tabindex", "0");
  }
  function breadcrumbs(chain) {
    var nav = $("breadcrumbs");
    nav.textContent = "";
    chain.forEach(function (a, i) {
      if (i) nav.appendChild(el("span", { "class": "sep", "aria-hidden": "true" }, "\u203a"));
      var b = el("button", { type: "button", "class": "crumb", "data-node": a }, nameOf(a));
      if (i === chain.length - 1) b.setAttribute("aria-current", "true");
      b.addEventListener("click", function () { zoomTo(a); });
      nav.appendChild(b);
    });
  }
  function zoomTo(vn) {
    state.zoom = vn; state.focus = vn;
    render();
    if (drawn[vn]) drawn[vn].focus();
  }
  function details(vn) {
    var f = cur.v.fn[vn];
    $("details").textContent = nameOf(vn) + (vn ? " [" + MODULES[f] + "]" : "") + " \u2014 total " +
      fmt(cur.total[vn]) + " (" + pct(cur.total[vn], cur.total[0]) + "%), self " + fmt(cur.self[vn]) +
      (DIFF ? " \u2014 " + deltaText(vn) : "");
  }
  flame.addEventListener("click", function (e) {
    var b = e.target.closest(".box");
    if (b) zoomTo(+b.getAttribute("data-node"));
  });
  flame.addEventListener("mouseover", function (e) {
    var b = e.target.closest(".box");
    if (b) details(+b.getAttribute("data-node"));
  });
  flame.addEventListener("focusin", function (e) {
    var b = e.target.closest(".box");
    if (!b) return;
    var vn = +b.getAttribute("data-node");
    if (drawn[state.focus]) drawn[state.focus].setAttribute("tabindex", "-1");
    state.focus = vn;
    b.setAttribute("tabindex", "0");
    details(vn);
  });
  flame.addEventListener("keydown", function (e) {
    var vn = state.focus in drawn ? state.focus : state.zoom, target = -1;
    if (e.target === flame && drawn[vn]) { drawn[vn].focus(); e.preventDefault(); return; }
    var par = cur.v.par[vn];
    if (e.key === "ArrowUp") target = par;
    else if (e.key === "ArrowDown") target = sortedKids(vn)[0];
    else if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      if (par >= 0) {
        var sib = sortedKids(par), i = sib.indexOf(vn) + (e.key === "ArrowLeft" ? -1 : 1);
        target = sib[i];
      }
    } else if (e.key === "Enter" || e.key === " ") { zoomTo(vn); e.preventDefault(); return; }
    else if (e.key === "Escape" || e.key === "Backspace") {
      if (cur.v.par[state.zoom] >= 0) zoomTo(cur.v.par[state.zoom]);
      e.preventDefault(); return;
    } else if (e.key === "s" || e.key === "S") { sandwich(cur.v.fn[vn]); e.preventDefault(); return; }
    else return;
    e.preventDefault();
    if (target !== undefined && target >= 0 && drawn[target]) drawn[target].focus();
  });

  // Search: matching boxes highlighted; the share counts each stack once.
  function highlight() {
    var q = state.search.toLowerCase();
    flame.classList.toggle("searching", q !== "");
    for (var k in drawn) {
      var on = q !== "" && +k !== 0 && NAMES[cur.v.fn[k]].toLowerCase().indexOf(q) >= 0;
      drawn[k].classList.toggle("match", on);
    }
    var m = $("matched");
    if (q === "") { m.textContent = ""; m.removeAttribute("data-share"); return; }
    var matched = 0, v = cur.v, t = cur.total, stack = [[0, false]];
    while (stack.length) {
      var top = stack.pop(), vn = top[0], inside = top[1];
      var on = vn !== 0 && NAMES[v.fn[vn]].toLowerCase().indexOf(q) >= 0;
      if (on && !inside) matched += t[vn];
      var kids = v.kids[vn];
      for (var i = 0; i < kids.length; i++) if (t[kids[i]] > 0) stack.push([kids[i], inside || on]);
    }
    var share = t[0] > 0 ? matched / t[0] : 0;
    m.setAttribute("data-share", share.toFixed(6));
    m.textContent = "matched: " + fmt(matched) + " (" + (share * 100).toFixed(2) + "% of the graph)";
  }
  $("search").addEventListener("input", function (e) { state.search = e.target.value; highlight(); });
  $("reset").addEventListener("click", function () { zoomTo(0); });
  Array.prototype.forEach.call(document.querySelectorAll("input[name=frames]"), function (r) {
    r.addEventListener("change", function () {
      if (!r.checked) return;
      state.frames = r.value; state.zoom = 0; state.focus = -1;
      refresh();
    });
  });

  // ---- Top functions and sandwich (from the current view tree) -------------------
  function functionTotals() {
    var v = cur.v, t = cur.total, self = {}, total = {}, onPath = {};
    function walk(vn) {
      var f = v.fn[vn], fresh = vn !== 0 && !onPath[f];
      if (vn !== 0) {
        self[f] = (self[f] || 0) + cur.self[vn];
        if (fresh) { total[f] = (total[f] || 0) + t[vn]; onPath[f] = true; }
      }
      var kids = v.kids[vn];
      for (var i = 0; i < kids.length; i++) if (t[kids[i]] > 0) walk(kids[i]);
      if (fresh) onPath[f] = false;
    }
    walk(0);
    return { self: self, total: total };
  }
  function topFunctions() {
    var ft = functionTotals(), tot = cur.total[0];
    var fns = Object.keys(ft.total).map(Number).sort(function (a, b) {
      return (ft.self[b] || 0) - (ft.self[a] || 0) || ft.total[b] - ft.total[a];
    }).slice(0, 50);
    var body = document.querySelector("#top tbody");
    body.textContent = "";
    fns.forEach(function (f) {
      var tr = el("tr", { "class": "fn-row", "data-function": NAMES[f], tabindex: "0" });
      var s = ft.self[f] || 0;
      tr.appendChild(el("td", { "class": "name", title: NAMES[f] }, NAMES[f]));
      tr.appendChild(el("td", null, MODULES[f]));
      tr.appendChild(el("td", null, fmt(s)));
      var td = el("td", null, pct(s, tot));
      var bar = el("span", { "class": "bar" });
      bar.style.width = Math.round(100 * s / (tot || 1)) + "px";
      td.appendChild(bar);
      tr.appendChild(td);
      tr.appendChild(el("td", null, fmt(ft.total[f])));
      tr.appendChild(el("td", null, pct(ft.total[f], tot)));
      function pick() {
        sandwich(f);
        state.search = NAMES[f]; $("search").value = NAMES[f]; highlight();
      }
      tr.addEventListener("click", pick);
      tr.addEventListener("keydown", function (e) { if (e.key === "Enter") pick(); });
      body.appendChild(tr);
    });
  }
  function sandwich(f) {
    if (f === undefined || f < 0) return;
    state.sandwich = f;
    var v = cur.v, t = cur.total, callers = {}, callees = {}, sum = 0;
    function walk(vn, inside) {
      var here = vn !== 0 && v.fn[vn] === f;
      if (here && !inside) {
        sum += t[vn];
        var p = v.par[vn];
        callers[p > 0 ? v.fn[p] : -1] = (callers[p > 0 ? v.fn[p] : -1] || 0) + t[vn];
      }
      if (here) {
        v.kids[vn].forEach(function (c) {
          if (v.fn[c] !== f) callees[v.fn[c]] = (callees[v.fn[c]] || 0) + t[c];
        });
        if (cur.self[vn] > 0 && !inside) callees[-2] = (callees[-2] || 0) + cur.self[vn];
      }
      var kids = v.kids[vn];
      for (var i = 0; i < kids.length; i++) if (t[kids[i]] > 0) walk(kids[i], inside || here);
    }
    walk(0, false);
    $("sandwich-name").textContent = NAMES[f] + " \u2014 total " + fmt(sum) + " (" + pct(sum, t[0]) + "%)";
    function fill(id, map) {
      var body = document.querySelector("#" + id + " tbody");
      body.textContent = "";
      Object.keys(map).map(Number).sort(function (a, b) { return map[b] - map[a]; }).slice(0, 30)
        .forEach(function (g) {
          var tr = el("tr");
          tr.appendChild(el("td", { "class": "name" }, g === -1 ? "(root)" : g === -2 ? "(self)" : NAMES[g]));
          tr.appendChild(el("td", null, fmt(map[g])));
          tr.appendChild(el("td", null, pct(map[g], sum)));
          body.appendChild(tr);
        });
    }
    fill("callers", callers);
    fill("callees", callees);
  }

  // ---- Time axis --------------------------------------------------------------------
  var perTrack = null;
  function timeline() {
    if (!TL) return;
    $("timeline-panel").hidden = false;
    var nb = TL.buckets;
    perTrack = TL.track_counts;
    // The busiest tracks first, at most 24 drawn.
    var order = TL.tracks.map(function (_, k) { return k; }).sort(function (a, b) {
      return sum(perTrack[b]) - sum(perTrack[a]);
    }).slice(0, 24);
    var box = $("tracks");
    order.forEach(function (k) {
      var row = el("div", { "class": "track", "data-track": TL.tracks[k] });
      row.appendChild(el("span", { "class": "label", title: TL.tracks[k] }, TL.tracks[k]));
      var c = el("canvas", { width: String(Math.min(nb, 1000)), height: "30", "aria-label": "samples over time of " + TL.tracks[k], role: "img" });
      row.appendChild(c);
      box.appendChild(row);
      draw(c, perTrack[k]);
    });
    var sel = el("div", { id: "selection", hidden: "" });
    box.appendChild(sel);
    var secs = nb * TL.bucket_ns / 1e9;
    var axis = el("div", { "class": "axis" });
    axis.appendChild(el("span", null, "0 s"));
    axis.appendChild(el("span", null, secs.toFixed(3) + " s"));
    box.parentNode.insertBefore(axis, box.nextSibling);
    $("sel-to").max = secs.toFixed(3);
    $("sel-from").max = secs.toFixed(3);
    var down = null;
    function bucketAt(e) {
      var c = box.querySelector("canvas").getBoundingClientRect();
      return Math.max(0, Math.min(nb, Math.round((e.clientX - c.left) / c.width * nb)));
    }
    box.addEventListener("mousedown", function (e) { down = bucketAt(e); e.preventDefault(); });
    window.addEventListener("mouseup", function (e) {
      if (down === null) return;
      var up = bucketAt(e), a = Math.min(down, up), b = Math.max(down, up);
      down = null;
      select(a, b === a ? a + 1 : b);
    });
    function fromInputs() {
      var a = parseFloat($("sel-from").value), b = parseFloat($("sel-to").value);
      if (isNaN(a)) a = 0;
      if (isNaN(b)) b = secs;
      var per = TL.bucket_ns / 1e9;
      select(Math.round(a / per), Math.round(b / per));
    }
    $("sel-from").addEventListener("change", fromInputs);
    $("sel-to").addEventListener("change", fromInputs);
    $("sel-clear").addEventListener("click", function () { select(null); });
    selectionInfo();
  }
  function sum(a) { var s = 0; for (var i = 0; i < a.length; i++) s += a[i]; return s; }
  function draw(c, counts) {
    var ctx = c.getContext("2d"), w = c.width, h = c.height, nb = counts.length, max = 0;
    for (var i = 0; i < nb; i++) max = Math.max(max, counts[i]);
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = dark ? "#56b4e9" : "#0072b2";
    for (var j = 0; j < nb; j++) {
      if (!counts[j]) continue;
      var bh = Math.max(1, counts[j] / max * (h - 2));
      ctx.fillRect(j * w / nb, h - bh, Math.max(w / nb - 0.3, 0.7), bh);
    }
  }
  function select(a, b) {
    if (a === null || a === undefined) state.sel = null;
    else {
      a = Math.max(0, Math.min(TL.buckets, a)); b = Math.max(a + 1, Math.min(TL.buckets, b));
      state.sel = a === 0 && b === TL.buckets ? null : [a, b];
    }
    var s = $("selection");
    if (state.sel) {
      var c = $("tracks").querySelector("canvas"), box = $("tracks").getBoundingClientRect(), cr = c.getBoundingClientRect();
      s.hidden = false;
      s.style.left = (cr.left - box.left + state.sel[0] / TL.buckets * cr.width) + "px";
      s.style.width = ((state.sel[1] - state.sel[0]) / TL.buckets * cr.width) + "px";
      var per = TL.bucket_ns / 1e9;
      $("sel-from").value = (state.sel[0] * per).toFixed(3);
      $("sel-to").value = (state.sel[1] * per).toFixed(3);
    } else {
      s.hidden = true;
      $("sel-from").value = ""; $("sel-to").value = "";
    }
    state.zoom = 0; state.focus = -1;
    refresh();
  }
  function selectionInfo() {
    var info = $("sel-info");
    if (!TL) return;
    var all = 0, r = TL.rows;
    for (var i = 0; i < r.length; i += 3) all += r[i + 2];
    var n = cur.count;
    info.setAttribute("data-samples", String(n));
    info.setAttribute("data-all-samples", String(all));
    var per = TL.bucket_ns / 1e9;
    info.textContent = state.sel
      ? "selected " + (state.sel[0] * per).toFixed(3) + "\u2013" + (state.sel[1] * per).toFixed(3) + " s: " + n + " of " + all + " samples"
      : "whole run: " + all + " samples";
  }

  // ---- Lines ------------------------------------------------------------------------
  function lines() {
    var L = D.lines || { rows: [] }, box = $("lines");
    $("lines-note").textContent = L.frames === "python" ? "(Python lines: the innermost Python frame of each sample)" : "";
    if (!L.rows.length) { box.textContent = "No source lines in this profile (no debug info or line tables)."; return; }
    L.rows.forEach(function (r) {
      var item = el("div", { "class": "line-item", "data-function": r["function"], "data-line": r.line });
      var head = el("div", { "class": "line-head" });
      head.appendChild(el("span", { "class": "pct" }, r.self_pct.toFixed(2) + "%"));
      head.appendChild(document.createTextNode(r["function"] + " \u2014 " + (r.file || "?") + (r.line ? ":" + r.line : "") + " \u2014 self " + fmt(r.self)));
      item.appendChild(head);
      if (r.source) {
        var pre = el("pre", { "class": "src" });
        r.source.lines.forEach(function (text, k) {
          var n = r.source.first + k;
          pre.appendChild(el("span", { "class": n === r.line ? "hot" : "", "data-line": String(n) }, text));
        });
        item.appendChild(pre);
      }
      box.appendChild(item);
    });
  }

  // ---- Memory: RSS over time ----------------------------------------------------------
  var SVGNS = "http://www.w3.org/2000/svg";
  function svgEl(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function rss() {
    var R = D.rss;
    if (!R || !R.points || !R.points.length) return;
    $("memory-panel").hidden = false;
    var pts = R.points, W = 900, H = 220, L = 70, B = 24;
    var tmax = Math.max(pts[pts.length - 1][0], 1e-9), ymax = 0;
    pts.forEach(function (p) { ymax = Math.max(ymax, p[1]); });
    var svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "RSS over time, peak " + bytes(ymax), "data-max-bytes": String(ymax) });
    for (var g = 0; g <= 4; g++) {
      var y = 8 + (H - B - 8) * (1 - g / 4);
      svg.appendChild(svgEl("line", { "class": "grid", x1: L, x2: W - 5, y1: y, y2: y }));
      svg.appendChild(svgEl("text", { x: 4, y: y + 4 }, bytes(ymax * g / 4)));
    }
    svg.appendChild(svgEl("text", { x: L, y: H - 6 }, "0 s"));
    svg.appendChild(svgEl("text", { x: W - 60, y: H - 6 }, tmax.toFixed(2) + " s"));
    var path = pts.map(function (p) {
      return (L + p[0] / tmax * (W - L - 5)).toFixed(1) + "," + (8 + (H - B - 8) * (1 - p[1] / (ymax || 1))).toFixed(1);
    }).join(" ");
    svg.appendChild(svgEl("polyline", { "class": "curve", points: path }));
    $("rss").appendChild(svg);
    $("rss-peak").textContent = R.peak_bytes ? "peak " + bytes(R.peak_bytes) + " at " + (R.peak_s || 0).toFixed(2) + " s" : "";
  }

  // ---- Generic tables (waits, counters) ------------------------------------------------
  function table(boxId, panelId, v, rowsKey) {
    var rows = v && (v[rowsKey] || v.rows || v.functions);
    if (!rows || !rows.length) return;
    $(panelId).hidden = false;
    var cols = Object.keys(rows[0]);
    var t = el("table"), head = el("tr");
    cols.forEach(function (c) { head.appendChild(el("th", null, c)); });
    t.appendChild(el("thead")).appendChild(head);
    var body = el("tbody");
    rows.forEach(function (r) {
      var tr = el("tr");
      cols.forEach(function (c, i) {
        var x = r[c];
        tr.appendChild(el("td", i === 0 ? { "class": "name" } : null, x === null || x === undefined ? "" : typeof x === "number" ? String(Math.round(x * 100) / 100) : String(x)));
      });
      body.appendChild(tr);
    });
    t.appendChild(body);
    $(boxId).appendChild(t);
  }

  // ---- MPI: rank bars and the function × rank heat map ----------------------------------
  function ranks() {
    var R = D.ranks && D.ranks.ranks;
    if (!R || !R.length) return;
    $("ranks-panel").hidden = false;
    var legend = $("rank-legend");
    [["seg-work", "work"], ["seg-mpi", "MPI"], ["seg-idle", "idle"]].forEach(function (k) {
      legend.appendChild(el("span", { "class": "key " + k[0] }));
      legend.appendChild(document.createTextNode(k[1]));
    });
    var max = 0;
    R.forEach(function (r) { max = Math.max(max, r.total); });
    var box = $("rank-bars");
    R.forEach(function (r) {
      var mpi = r.total - r.work, idle = max - r.total;
      var row = el("div", { "class": "rank-row" });
      row.appendChild(el("span", { "class": "label" }, "rank " + (r.rank === null ? "-" : r.rank)));
      var bar = el("div", { "class": "rank-bar", "data-rank": String(r.rank), role: "img",
        "aria-label": "rank " + r.rank + ": work " + fmt(r.work) + ", MPI " + fmt(mpi) + ", idle " + fmt(idle),
        title: "work " + fmt(r.work) + ", MPI " + fmt(mpi) + " (" + r.mpi_pct + "%), idle " + fmt(idle) });
      [["seg-work", r.work], ["seg-mpi", mpi], ["seg-idle", idle]].forEach(function (s) {
        var span = el("span", { "class": s[0] });
        span.style.width = (max > 0 ? 100 * s[1] / max : 0) + "%";
        bar.appendChild(span);
      });
      row.appendChild(bar);
      box.appendChild(row);
    });
    var H = D.heat;
    if (!H || !H.functions.length) return;
    var t = el("table", { id: "heat-table" }), head = el("tr");
    head.appendChild(el("th", null, "function"));
    H.ranks.forEach(function (r) { head.appendChild(el("th", null, "rank " + r)); });
    t.appendChild(el("thead")).appendChild(head);
    var body = el("tbody");
    H.functions.forEach(function (f, i) {
      var tr = el("tr");
      tr.appendChild(el("td", { "class": "name", title: f }, f));
      H.share[i].forEach(function (s) {
        var td = el("td", { "class": "cell" }, s.toFixed(1) + "%");
        var c = cividis(s / 100);
        td.style.background = c[0];
        td.style.color = c[1];
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    t.appendChild(body);
    $("heat").appendChild(t);
  }
  // Cividis (a sequential scale readable with color-vision deficiencies).
  function cividis(x) {
    var stops = [[0, 34, 78], [64, 76, 108], [124, 123, 120], [188, 175, 111], [253, 234, 69]];
    x = Math.max(0, Math.min(1, x)) * (stops.length - 1);
    var i = Math.min(Math.floor(x), stops.length - 2), f = x - i, c = [];
    for (var k = 0; k < 3; k++) c.push(Math.round(stops[i][k] + (stops[i + 1][k] - stops[i][k]) * f));
    var lum = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
    return ["rgb(" + c.join(",") + ")", lum > 140 ? "#000" : "#fff"];
  }

  function toc() {
    var nav = $("toc");
    Array.prototype.forEach.call(document.querySelectorAll("main > section"), function (s) {
      if (s.hidden) return;
      var a = el("a", { href: "#" + s.id }, s.querySelector("h2").firstChild.textContent.trim());
      nav.appendChild(a);
    });
  }

  function refresh() {
    compute();
    render();
    topFunctions();
    if (state.sandwich >= 0) sandwich(state.sandwich);
    selectionInfo();
  }

  var timings = {}, tPrev = performance.now();
  function step(name, fn) {
    fn();
    var now = performance.now();
    timings[name] = Math.round(now - tPrev);
    tPrev = now;
  }
  step("tree", compute);
  step("timeline", timeline);
  step("flame", render);
  step("functions", topFunctions);
  step("lines", lines);
  step("rss", rss);
  step("tables", function () {
    table("wait-classes", "waits-panel", D.wait_classes, "rows");
    table("wait-objects", "waits-panel", D.wait_objects, "rows");
    table("waits", "waits-panel", D.waits, "rows");
    table("counters", "counters-panel", D.counters, "rows");
  });
  step("ranks", ranks);
  toc();
  selectionInfo();
  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () { if (state.sel) select(state.sel[0], state.sel[1]); }, 100);
  });
  // For scripts and tests: the state and a way to select a time range by bucket.
  window.hwprof = { state: state, select: select, sampleCount: function () { return cur.count; }, data: D, timings: timings };
  document.documentElement.setAttribute("data-ready", "1");
})();
