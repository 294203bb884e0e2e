// The live page: polls the processor's own JSON API and draws, per deployment,
// accuracy over time per predictor (one SVG chart), the current
// precision/recall/F1 table, the label coverage and the paired comparison of
// its predictors (default vs shadow). Plain JS, no dependencies:
// the processor serves it as it is, with no build step and no CDN.
"use strict";

const COLORS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bc4c00", "#0550ae", "#116329"];
const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
let chosenWindow = null;

function modelName(m) {
  return m.model && m.model !== m.predictor ? `${m.predictor} / ${m.model}` : m.predictor;
}

function fmt(x, digits = 3) {
  return x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toFixed(digits);
}

function el(tag, attrs = {}, text = null) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

function windowTitle(name) {
  // What the chart plots, in words: the windows are "total", a count or a width.
  if (name === "total") return "cumulative accuracy (window total: every outcome so far)";
  if (/^[0-9]+$/.test(name)) return `accuracy of the last ${name} outcomes (window ${name})`;
  return `accuracy in the sliding ${name} window`;
}

function drawChart(series, now, intervalS) {
  const W = 960, H = 280, L = 62, R = 12, T = 10, B = 26;
  const svg = el("svg:svg", { class: "chart", viewBox: `0 0 ${W} ${H}`,
                              preserveAspectRatio: "none", "data-chart": "accuracy" });
  // The time axis runs from the oldest sample to now (the processor's clock), so a
  // model whose window emptied shows a gap up to the right edge, not a line.
  const tMax = now;
  let tMin = Infinity;
  for (const s of series) for (const [t] of s.points) tMin = Math.min(tMin, t);
  if (!Number.isFinite(tMin) || tMax - tMin < 10) tMin = tMax - Math.max(10, tMax - tMin || 60);
  const x = (t) => L + ((t - tMin) / (tMax - tMin)) * (W - L - R);
  const y = (a) => T + (1 - a) * (H - T - B);
  for (const g of [0, 0.25, 0.5, 0.75, 1]) {
    svg.append(el("svg:line", { x1: L, x2: W - R, y1: y(g), y2: y(g), stroke: "#d0d7de" }));
    svg.append(el("svg:text", { x: L - 6, y: y(g) + 4, "text-anchor": "end" }, g.toFixed(2)));
  }
  const mid = (T + H - B) / 2;
  svg.append(el("svg:text", { x: 14, y: mid, "text-anchor": "middle", "data-axis": "y",
                              transform: `rotate(-90 14 ${mid})` }, "accuracy"));
  [["start", tMin], ["middle", (tMin + tMax) / 2], ["end", tMax]].forEach(([anchor, t]) => {
    let label = new Date(t * 1000).toLocaleTimeString();
    if (anchor === "end") label = `now ${label}`;
    svg.append(el("svg:text", { x: x(t), y: H - 6, "text-anchor": anchor, "data-axis": "x" },
                  label));
  });
  // A sample missing for longer than a few ticks (a restart) is a gap too.
  const maxStep = 3 * Math.max(intervalS || 1, 0.001);
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const runs = [];
    let run = [], last = null;
    for (const [t, a] of s.points) {
      if (a === null || (last !== null && t - last > maxStep)) {
        if (run.length) runs.push(run);
        run = [];
      }
      if (a !== null) run.push([t, a]);
      last = t;
    }
    if (run.length) runs.push(run);
    const name = modelName(s);
    for (const r of runs) {
      if (r.length === 1) {  // an isolated sample: a dot, not an invisible path
        svg.append(el("svg:circle", { cx: x(r[0][0]).toFixed(1), cy: y(r[0][1]).toFixed(1),
                                      r: 3, fill: color, "data-series": name }));
        continue;
      }
      const d = r.map(([t, a], k) => `${k ? "L" : "M"}${x(t).toFixed(1)},${y(a).toFixed(1)}`);
      svg.append(el("svg:path", { d: d.join(" "), fill: "none", stroke: color,
                                  "stroke-width": 3, "data-series": name }));
    }
  });
  return svg;
}

function legend(series, windowName) {
  const div = el("div", { class: "legend" });
  series.forEach((s, i) => {
    const span = el("span");
    const swatch = el("i");
    swatch.style.background = COLORS[i % COLORS.length];
    span.append(swatch, document.createTextNode(modelName(s)));
    const lastPoint = s.points.length ? s.points[s.points.length - 1] : null;
    if (lastPoint && lastPoint[1] === null) {
      span.append(el("em", { class: "muted", "data-empty": windowName },
                     ` (no outcome in the ${windowName} window now)`));
    }
    div.append(span);
  });
  return div;
}

function metricsTable(models) {
  const table = el("table", { class: "prf" });
  const head = el("tr");
  for (const h of ["predictor", "class", "precision", "recall", "F1", "support"])
    head.append(el("th", {}, h));
  table.append(head);
  for (const m of models) {
    const w = m.current || {};
    const rows = [];
    for (const c of w.classes || []) rows.push([c.class, c.precision, c.recall, c.f1, c.support]);
    for (const a of w.averages || [])
      rows.push([`${a.average} avg`, a.precision, a.recall, a.f1, a.support]);
    if (!rows.length) rows.push(["–", null, null, null, null]);
    rows.forEach((r, i) => {
      const tr = el("tr");
      tr.append(el("td", {}, i === 0 ? modelName(m) : ""), el("td", {}, String(r[0])));
      for (const v of r.slice(1, 4)) tr.append(el("td", {}, fmt(v)));
      tr.append(el("td", {}, r[4] === null || r[4] === undefined ? "–" : String(r[4])));
      table.append(tr);
    });
  }
  return table;
}

// The panels of each model kind: [section of the window object, [field, heading] ...].
const SCORE_PANELS = {
  binary: ["binary", [["roc_auc", "ROC AUC"], ["log_loss", "log loss"], ["brier", "Brier"],
                      ["scored", "scored"], ["positives", "positives"]]],
  classification: ["probability", [["log_loss", "log loss"], ["brier", "Brier"],
                                   ["ece", "ECE (10 bins)"], ["scored", "scored"]]],
  regression: ["regression", [["mae", "MAE"], ["rmse", "RMSE"], ["r2", "R²"],
                              ["mean_error", "mean error (bias)"], ["mape", "MAPE"],
                              ["scored", "scored"], ["zero_truths", "truths = 0"]]],
};

function scoresTable(models, kind) {
  // One table per kind of model in the deployment: binary, probability rows, regression.
  const [section, fields] = SCORE_PANELS[kind];
  const shown = models.filter((m) => m.kind === kind && (kind !== "classification"
                                                         || (m.current || {})[section]));
  if (!shown.length) return null;
  const table = el("table", { class: "scores", "data-kind": kind });
  const head = el("tr");
  head.append(el("th", {}, "predictor"), el("th", {}, "kind"));
  for (const [, h] of fields) head.append(el("th", {}, h));
  table.append(head);
  for (const m of shown) {
    const s = (m.current || {})[section] || {};
    const tr = el("tr");
    tr.append(el("td", {}, modelName(m)), el("td", {}, m.kind_declared ? kind : `${kind} (detected)`));
    for (const [f] of fields) {
      const v = s[f];
      const integral = f === "scored" || f === "positives" || f === "zero_truths";
      tr.append(el("td", { "data-field": f },
                   integral ? String(v ?? 0) : fmt(v)));
    }
    table.append(tr);
  }
  return table;
}

function seconds(x) {
  if (x === null || x === undefined) return "–";
  if (x < 60) return `${x.toFixed(1)} s`;
  if (x < 3600) return `${(x / 60).toFixed(1)} min`;
  if (x < 86400) return `${(x / 3600).toFixed(1)} h`;
  return `${(x / 86400).toFixed(1)} d`;
}

// What the labels do not say yet: the accuracy estimated from the scores of
// the responses still waiting for feedback (CBPE), whether the scores of the
// labelled ones were calibrated (so whether to trust it), and label delays.
function unlabelledTable(models) {
  const table = el("table", { class: "unlabelled" });
  const head = el("tr");
  for (const h of ["predictor", "awaiting feedback", "estimated accuracy (95%)",
                   "labelled: accuracy vs mean confidence", "label delay p50 / p90 / p99"])
    head.append(el("th", {}, h));
  table.append(head);
  for (const m of models) {
    const w = m.current || {};
    const e = w.estimated_accuracy, c = w.calibration, d = w.label_delay_s || {};
    const tr = el("tr", { "data-model": modelName(m) });
    tr.append(el("td", {}, modelName(m)),
              el("td", {}, e ? String(e.rows) : "0"),
              el("td", { "data-estimated": e ? e.accuracy.toFixed(3) : "" },
                 e ? `${fmt(e.accuracy)} (${fmt(e.accuracy_ci95[0])} – ${fmt(e.accuracy_ci95[1])})`
                   : "–"),
              el("td", { "data-calibrated": c ? String(c.calibrated) : "" },
                 c ? `${fmt(c.observed_accuracy)} vs ${fmt(c.mean_confidence)}`
                     + (c.calibrated ? " (calibrated)" : " (not calibrated: do not trust the estimate)")
                   : "–"),
              el("td", {}, `${seconds(d.p50)} / ${seconds(d.p90)} / ${seconds(d.p99)}`));
    table.append(tr);
  }
  return table;
}

function summaryTable(models) {
  const table = el("table", { class: "summary" });
  const head = el("tr");
  for (const h of ["predictor", "window", "accuracy", "95% CI", "outcomes", "reward mean",
                   "label coverage (all time)"])
    head.append(el("th", {}, h));
  table.append(head);
  for (const m of models) {
    const w = m.current || {};
    const tr = el("tr");
    tr.append(el("td", {}, modelName(m)), el("td", {}, w.window || "–"),
              el("td", {}, fmt(w.accuracy)),
              el("td", {}, w.accuracy_ci ? `${fmt(w.accuracy_ci[0])} – ${fmt(w.accuracy_ci[1])}` : "–"),
              el("td", {}, String(w.known ?? 0)),
              el("td", {}, fmt(w.reward_mean)),
              el("td", {}, m.label_coverage === null ? "–" : `${fmt(100 * m.label_coverage, 1)} %`));
    table.append(tr);
  }
  return table;
}

function notes(models) {
  // What the numbers cannot say by themselves.
  const div = el("div", { class: "notes muted" });
  div.append(el("p", {}, "Label coverage counts every response since the processor started, "
                + "whatever the window."));
  for (const m of models) {
    if (m.needs_kind) {
      div.append(el("p", { "data-note": "needs-kind", style: "color:#cf222e" },
        `${modelName(m)}: ${m.needs_kind} response(s) refused (needs_kind): each row is a single `
        + "non-integral number, a probability or a regression output, not a class. Declare the "
        + "model's kind (binary or regression) with --models-config."));
    }
  }
  const predictors = new Set(models.map((m) => m.predictor));
  if (predictors.size > 1) {
    div.append(el("p", { "data-note": "shadow-reward" },
      "Reward is the client's, as posted to the deployment's feedback endpoint: Seldon passes "
      + "the same reward to every predictor, shadows included, so a shadow's reward mean judges "
      + "the default's answers. Accuracy compares each predictor's own answer with the truth."));
  }
  return div;
}

function points(x) {
  return x === null || x === undefined ? "–" : `${x >= 0 ? "+" : ""}${(100 * x).toFixed(1)}`;
}

// One paragraph per comparison: the always-valid decision in words, then the
// difference with its interval, the disagreements and the pairs still needed.
function comparisonBlock(c, window, alpha, effect) {
  const w = c.windows[window];
  const cand = modelName(c.candidate), base = modelName(c.baseline);
  const div = el("div", { class: "comparison", "data-comparison": `${base}->${cand}`,
                          "data-decision": w.decision });
  let verdict;
  if (w.decision === "better") verdict = `${cand} is better than ${base}`;
  else if (w.decision === "worse") verdict = `${cand} is worse than ${base}`;
  else verdict = `${cand} vs ${base}: no difference yet`;
  div.append(el("p", { class: `verdict ${w.decision === "no difference yet" ? "muted" : ""}` },
                verdict));
  const ci = w.difference_ci95;
  const detail = [
    `accuracy difference ${points(w.difference)} points`
      + (ci ? ` (95% interval ${points(ci[0])} to ${points(ci[1])})` : ""),
    `${w.discordant} of ${w.pairs} paired answers disagree`
      + ` (${cand} right in ${w.table.candidate_only}, ${base} in ${w.table.baseline_only})`,
    `always-valid p = ${fmt(w.always_valid_p)} (decides at ${alpha}), McNemar p = ${fmt(w.mcnemar_p)}`,
  ];
  if (w.decision === "no difference yet" && w.pairs_needed !== null)
    detail.push(`about ${w.pairs_needed} more labelled pairs would detect a`
                + ` ${(100 * effect).toFixed(1)}-point difference`);
  div.append(el("p", { class: "muted" }, detail.join(" · ")));
  return div;
}

function group(models, key) {
  const out = new Map();
  for (const m of models) {
    const k = key(m);
    if (!out.has(k)) out.set(k, []);
    out.get(k).push(m);
  }
  return out;
}

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

// One line on the history and the outcome sink, from /readyz (503 while not ready).
function searchLine(ready) {
  const parts = [];
  const h = ready.history;
  if (h && h.state !== "disabled") {
    parts.push(`history ${h.state}${h.reason ? `: ${h.reason}` : ""}`);
  }
  const s = ready.es_sink;
  if (s) {
    const last = s.last_success ? `${Math.round(Date.now() / 1000 - s.last_success)}s ago` : "never";
    parts.push(`outcome sink ${s.available ? "up" : "DOWN"}: ${s.written ?? 0} written, ` +
      `${s.rejected ?? 0} failed, ${s.pending ?? 0} buffered, ${s.dropped ?? 0} dropped, ` +
      `last write ${last}${s.last_error && !s.available ? ` (${s.last_error})` : ""}`);
  }
  return { text: parts.join(" · "), bad: (h && h.state === "failed") || (s && !s.available) };
}

async function refreshSearchLine() {
  const line = document.getElementById("search-state");
  try {
    const r = await fetch("/readyz", { cache: "no-store" });
    const { text, bad } = searchLine(await r.json());
    line.textContent = text;
    line.className = bad ? "error" : "muted";
  } catch (err) {
    line.textContent = "";
  }
}

function healthLine(s) {
  const parts = [];
  if (s.broker) {
    parts.push(s.broker.connected ? "broker connected" : "broker DISCONNECTED");
    parts.push(`lag ${s.broker.lag} records`);
  } else {
    parts.push("no Kafka source");
  }
  const evicted = s.evicted.request + s.evicted.response + s.evicted.feedback;
  parts.push(`pending ${s.pending} of ${s.max_pending} puids`);
  parts.push(`evicted ${evicted} events`);
  const refused = Object.values(s.refused).reduce((a, b) => a + b, 0);
  parts.push(`refused ${refused} requests`);
  return parts.join(" · ");
}

async function refresh() {
  refreshSearchLine();
  const status = document.getElementById("status");
  try {
    const q = chosenWindow ? `?window=${encodeURIComponent(chosenWindow)}` : "";
    const [models, history, health, comparisons] = await Promise.all([
      getJSON(`/api/v1/models${q}`), getJSON(`/api/v1/history${q}`),
      getJSON("/api/v1/status"), getJSON(`/api/v1/comparisons${q}`)]);
    const line = document.getElementById("health");
    line.textContent = healthLine(health);
    line.className = health.broker && !health.broker.connected ? "error" : "muted";
    const comparisonsBy = group(comparisons.comparisons, (c) => `${c.namespace}/${c.deployment}`);
    const select = document.getElementById("window");
    if (!select.options.length) {
      for (const w of history.windows) select.append(el("option", { value: w }, w));
      select.value = history.window;
      select.onchange = () => { chosenWindow = select.value; refresh(); };
    }
    const root = document.getElementById("deployments");
    root.replaceChildren();
    const byDeployment = group(models.models, (m) => `${m.namespace}/${m.deployment}`);
    const seriesBy = group(history.models, (m) => `${m.namespace}/${m.deployment}`);
    for (const [dep, ms] of byDeployment) {
      const section = el("section", { "data-deployment": dep });
      const series = seriesBy.get(dep) || [];
      section.append(el("h2", { "data-window": history.window },
                        `${dep} — ${windowTitle(history.window)}`),
                     drawChart(series, history.now ?? Date.now() / 1000, history.interval_s),
                     legend(series, history.window), summaryTable(ms), unlabelledTable(ms),
                     notes(ms));
      const paired = comparisonsBy.get(dep) || [];
      if (paired.length) {
        section.append(el("h3", {}, `paired comparison (${comparisons.window} window)`));
        for (const c of paired)
          section.append(comparisonBlock(c, comparisons.window, comparisons.alpha,
                                         comparisons.effect));
      }
      for (const kind of ["binary", "classification", "regression"]) {
        const panel = scoresTable(ms, kind);
        if (panel) section.append(panel);
      }
      // Precision / recall / F1 for models with classes (not regression).
      const classified = ms.filter((m) => m.kind !== "regression");
      if (classified.length) section.append(metricsTable(classified));
      root.append(section);
    }
    if (!byDeployment.size) root.append(el("p", { class: "muted" }, "no outcomes yet"));
    status.className = "muted";
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    status.className = "error";
    status.textContent = String(err);
  }
}

refresh();
setInterval(refresh, POLL_MS);
