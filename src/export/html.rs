//! One self-contained HTML report: no network, no external script or style; open the
//! file in any browser.
//!
//! The page holds the profile as JSON in `<script type="application/json"
//! id="hwprof-data">` and a plain inline script that renders, once loaded:
//! - a table of the top functions (`<tr class="fn-row">`: function, module, self,
//!   self %, total, total %; a recursive function counts once per stack in its total),
//!   sorted by self; clicking a row searches for the function;
//! - an icicle view (root on top) in SVG (`<svg id="icicle">`, one `<g class="node">`
//!   per drawn call-tree node, with a `<title>` tooltip); click a node to zoom into
//!   it, "Reset zoom" to go back, the search box highlights matching functions and
//!   shows the share of the metric they cover.
//!
//! The JSON: `{"title", "metric", "total", "names": [label...], "modules": [...],
//! "top": [[function, self, total]...], "tree": [function, total, self, [children]]}`
//! (function = index into `names`, -1 for the root). `<`, `>` and `&` inside it are
//! written as `\u003c`, `\u003e`, `\u0026` so no string can close the script element.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{Value, json};

use super::{ExportError, Model};

/// How many functions the table lists.
pub const TOP_FUNCTIONS: usize = 50;

#[derive(Default)]
struct Node {
    total: u64,
    self_value: u64,
    children: BTreeMap<usize, Node>,
}

impl Node {
    fn to_json(&self, function: i64) -> Value {
        let mut kids: Vec<(&usize, &Node)> = self.children.iter().collect();
        kids.sort_by(|a, b| b.1.total.cmp(&a.1.total).then(a.0.cmp(b.0)));
        let kids: Vec<Value> = kids
            .into_iter()
            .map(|(&f, n)| n.to_json(f as i64))
            .collect();
        json!([function, self.total, self.self_value, kids])
    }
}

/// The data the page renders.
pub fn data(model: &Model) -> Value {
    let mut root = Node::default();
    for s in &model.stacks {
        root.total += s.value;
        let mut node = &mut root;
        for &fr in &s.frames {
            node = node.children.entry(model.frames[fr].function).or_default();
            node.total += s.value;
        }
        node.self_value += s.value;
    }
    let totals = model.function_totals();
    let mut top: Vec<usize> = (0..totals.len())
        .filter(|&f| totals[f].total_value > 0)
        .collect();
    top.sort_by(|&a, &b| {
        totals[b]
            .self_value
            .cmp(&totals[a].self_value)
            .then(totals[b].total_value.cmp(&totals[a].total_value))
            .then(model.functions[a].label.cmp(&model.functions[b].label))
    });
    top.truncate(TOP_FUNCTIONS);
    json!({
        "title": model.title(),
        "metric": model.metric.name(),
        "total": model.total_value(),
        "names": model.functions.iter().map(|f| super::one_line(&f.label)).collect::<Vec<_>>(),
        "modules": model.functions.iter().map(|f| super::one_line(&f.function.module)).collect::<Vec<_>>(),
        "top": top.iter().map(|&f| json!([f, totals[f].self_value, totals[f].total_value])).collect::<Vec<_>>(),
        "tree": root.to_json(-1),
    })
}

/// JSON safe inside a `<script>` element.
fn script_safe_json(v: &Value) -> Result<String, ExportError> {
    let s = serde_json::to_string(v)?;
    Ok(s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026"))
}

/// Text escaped for HTML.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Write the model as one HTML file.
pub fn write(model: &Model, out: &mut dyn Write) -> Result<(), ExportError> {
    let page = TEMPLATE
        .replace("__TITLE__", &escape_html(&model.title()))
        .replace("__DATA__", &script_safe_json(&data(model))?);
    out.write_all(page.as_bytes())?;
    Ok(())
}

const TEMPLATE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #222; }
h1 { font-size: 1.3em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
tr.fn-row { cursor: pointer; }
tr.fn-row:hover { background: #f4f4ff; }
td.name { font-family: ui-monospace, monospace; max-width: 60em; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
#controls { margin: .5em 0; }
#icicle { width: 100%; display: block; border: 1px solid #ccc; }
#icicle g.node rect { stroke: #fff; stroke-width: .5; cursor: pointer; }
#icicle g.node.match rect { fill: #e040fb; }
#icicle text { font: 11px ui-monospace, monospace; pointer-events: none; }
.bar { display: inline-block; height: .7em; background: #e8743b; vertical-align: middle; margin-left: 4px; }
</style>
</head>
<body>
<h1>__TITLE__</h1>
<noscript>This report draws its tables and icicle view with JavaScript; enable it to see them.</noscript>
<h2>Top functions</h2>
<table id="top">
<thead><tr><th>function</th><th>module</th><th>self</th><th>self %</th><th>total</th><th>total %</th></tr></thead>
<tbody id="top-body"></tbody>
</table>
<h2>Call tree (icicle: callers above callees; click to zoom)</h2>
<div id="controls">
<button id="reset" type="button">Reset zoom</button>
<input id="search" type="search" placeholder="search function" size="30">
<span id="matched"></span>
</div>
<svg id="icicle" xmlns="http://www.w3.org/2000/svg" height="40"></svg>
<script type="application/json" id="hwprof-data">__DATA__</script>
<script>
"use strict";
(function () {
  var data = JSON.parse(document.getElementById("hwprof-data").textContent);
  var names = data.names, modules = data.modules, total = data.total || 0;
  var SVGNS = "http://www.w3.org/2000/svg";
  var ROW = 18;

  function fmt(v) {
    if (data.metric === "bytes") {
      var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
      while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
      return (i ? v.toFixed(1) : String(v)) + " " + u[i];
    }
    if (data.metric === "ns") {
      if (v >= 1e9) return (v / 1e9).toFixed(3) + " s";
      if (v >= 1e6) return (v / 1e6).toFixed(3) + " ms";
      if (v >= 1e3) return (v / 1e3).toFixed(1) + " \u00b5s";
      return v + " ns";
    }
    return String(v);
  }
  function pct(v, of) { return of > 0 ? (100 * v / of).toFixed(2) : "0.00"; }
  function nameOf(f) { return f < 0 ? "all" : names[f]; }

  // Table of top functions.
  var body = document.getElementById("top-body");
  data.top.forEach(function (row) {
    var f = row[0], self = row[1], tot = row[2];
    var tr = document.createElement("tr");
    tr.className = "fn-row";
    tr.setAttribute("data-function", names[f]);
    var cells = [names[f], modules[f], fmt(self), pct(self, total), fmt(tot), pct(tot, total)];
    cells.forEach(function (text, i) {
      var td = document.createElement("td");
      td.textContent = text;
      if (i === 0) { td.className = "name"; td.title = text; }
      if (i === 3) {
        var bar = document.createElement("span");
        bar.className = "bar";
        bar.style.width = Math.round(parseFloat(text)) + "px";
        td.appendChild(bar);
      }
      tr.appendChild(td);
    });
    tr.addEventListener("click", function () {
      var s = document.getElementById("search");
      s.value = names[f];
      highlight(s.value);
    });
    body.appendChild(tr);
  });

  // Icicle view.
  var svg = document.getElementById("icicle");
  var zoomPath = [];
  function color(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return "hsl(" + (10 + h % 40) + "," + (60 + h % 30) + "%," + (55 + (h >> 8) % 15) + "%)";
  }
  function findZoomRoot() {
    var node = data.tree;
    zoomPath.forEach(function (i) { if (node[3][i]) node = node[3][i]; });
    return node;
  }
  function render() {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var width = svg.clientWidth || 1200;
    var root = findZoomRoot();
    var scale = root[1] > 0 ? width / root[1] : 0;
    var maxDepth = 0;
    function draw(node, depth, x, path) {
      var w = node[1] * scale;
      if (w < 0.5) return;
      maxDepth = Math.max(maxDepth, depth);
      var g = document.createElementNS(SVGNS, "g");
      g.setAttribute("class", "node");
      var name = nameOf(node[0]);
      g.setAttribute("data-name", name);
      var title = document.createElementNS(SVGNS, "title");
      title.textContent = name + " \u2014 total " + fmt(node[1]) + " (" + pct(node[1], total) +
        "%), self " + fmt(node[2]);
      g.appendChild(title);
      var r = document.createElementNS(SVGNS, "rect");
      r.setAttribute("x", x.toFixed(2));
      r.setAttribute("y", depth * ROW);
      r.setAttribute("width", Math.max(w - 0.5, 0.5).toFixed(2));
      r.setAttribute("height", ROW - 1);
      r.setAttribute("fill", node[0] < 0 ? "#bbb" : color(name));
      g.appendChild(r);
      if (w > 30) {
        var t = document.createElementNS(SVGNS, "text");
        t.setAttribute("x", (x + 3).toFixed(2));
        t.setAttribute("y", depth * ROW + ROW - 5);
        var chars = Math.floor((w - 6) / 6.6);
        t.textContent = name.length > chars ? name.slice(0, Math.max(chars - 2, 0)) + ".." : name;
        g.appendChild(t);
      }
      g.addEventListener("click", function () { zoomPath = path; render(); });
      svg.appendChild(g);
      var cx = x;
      node[3].forEach(function (child, i) {
        draw(child, depth + 1, cx, path.concat([i]));
        cx += child[1] * scale;
      });
    }
    draw(root, 0, 0, zoomPath.slice());
    svg.setAttribute("height", (maxDepth + 1) * ROW + 2);
    highlight(document.getElementById("search").value);
  }
  function highlight(q) {
    var matched = 0;
    var nodes = svg.querySelectorAll("g.node");
    for (var i = 0; i < nodes.length; i++) {
      var on = q !== "" && nodes[i].getAttribute("data-name").indexOf(q) >= 0;
      nodes[i].setAttribute("class", on ? "node match" : "node");
    }
    if (q !== "") {
      // Share of the metric under matching functions, each stack counted once.
      (function walk(node, inside) {
        var on = node[0] >= 0 && names[node[0]].indexOf(q) >= 0;
        if (on && !inside) { matched += node[1]; }
        node[3].forEach(function (c) { walk(c, inside || on); });
      })(data.tree, false);
      document.getElementById("matched").textContent =
        "matched: " + fmt(matched) + " (" + pct(matched, total) + "%)";
    } else {
      document.getElementById("matched").textContent = "";
    }
  }
  document.getElementById("reset").addEventListener("click", function () { zoomPath = []; render(); });
  document.getElementById("search").addEventListener("input", function (e) { highlight(e.target.value); });
  window.addEventListener("resize", render);
  render();
})();
</script>
</body>
</html>
"##;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testutil::sample_profile;
    use crate::profile::stacks::StackFilter;

    #[test]
    fn data_has_tree_and_top() {
        let p = sample_profile();
        let m = Model::new(&p, StackFilter::default());
        let d = data(&m);
        assert_eq!(d["total"], 8);
        assert_eq!(d["tree"][1], 8);
        // Top by self: a (5), then PyEval (2), then b (1).
        let top0 = d["top"][0][0].as_u64().unwrap() as usize;
        assert_eq!(m.functions[top0].label, "a");
        assert_eq!(d["top"][0][1], 5);
    }

    #[test]
    fn script_cannot_be_closed_by_a_name() {
        let v = json!({"n": "</script><b>&"});
        let s = script_safe_json(&v).unwrap();
        assert!(!s.contains("</script>"));
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back["n"], "</script><b>&");
    }
}
