// An app's Monitoring tab: CPU, memory and network charts (SVG drawn here, no library) from
// GET /apps/NAME/metrics?window=…, one line per replica and one for the app in total, with a
// window selector (5 min, 15 min, 1 h). Each chart says its latest figures in words too, for
// those who cannot see it. Read again every 5 s (the nodes sample every few seconds).

import { api } from "./api.js";
import { h, enc, bytes } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 640;
const H = 180;
const PAD = { left: 64, right: 12, top: 10, bottom: 24 };
// Line colours for the replicas, each at least 3:1 against the white chart (WCAG's figure for
// graphics); the total is drawn thicker in the text colour.
const COLOURS = ["#0b5cad", "#a4161a", "#0f6a2e", "#7a4b00", "#6b2fa3", "#00616e", "#8a3b12", "#3f4a55"];
const WINDOWS = [
  ["5m", "5 minutes"],
  ["15m", "15 minutes"],
  ["1h", "1 hour"],
];

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// A round upper bound for an axis: 1, 2 or 5 times a power of ten, at least `max`.
export function niceMax(max) {
  if (!(max > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(max)));
  for (const m of [1, 2, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

// Per-second rates from cumulative counters: [[ts, value]] → [[ts, rate]] (a counter that went
// down — a restarted container — gives no point).
export function rates(points) {
  const out = [];
  for (let i = 1; i < points.length; i++) {
    const [t0, v0] = points[i - 1];
    const [t1, v1] = points[i];
    if (t1 > t0 && v1 >= v0) out.push([t1, ((v1 - v0) * 1000) / (t1 - t0)]);
  }
  return out;
}

// One chart: `series` [{label, points: [[ts, value]], total?}] over [from, to] (ms); its axis
// goes up to at least `floor` (an idle app's figures stay readable: 1 %, 1 MiB, 1 KiB/s).
function chart(id, titleText, series, from, to, fmt, floor) {
  const max = niceMax(Math.max(floor, ...series.flatMap((x) => x.points.map((p) => p[1]))));
  const x = (t) => PAD.left + ((t - from) / Math.max(1, to - from)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
  const grid = [0, 0.5, 1].map((f) =>
    s(
      "g",
      {},
      s("line", { x1: PAD.left, x2: W - PAD.right, y1: y(max * f), y2: y(max * f), stroke: "#c9d1d9", "stroke-width": 1 }),
      s("text", { x: PAD.left - 6, y: y(max * f) + 4, "text-anchor": "end", "font-size": 11, fill: "#4a5560" }, fmt(max * f)),
    ),
  );
  const time = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const axis = [
    s("text", { x: PAD.left, y: H - 6, "font-size": 11, fill: "#4a5560" }, time(from)),
    s("text", { x: W - PAD.right, y: H - 6, "text-anchor": "end", "font-size": 11, fill: "#4a5560" }, time(to)),
  ];
  let colour = 0;
  const lines = series.map((ser) => {
    const c = ser.total ? "#1a1f24" : COLOURS[colour++ % COLOURS.length];
    ser.colour = c;
    if (!ser.points.length) return null;
    if (ser.points.length === 1) {
      const [t, v] = ser.points[0];
      return s("circle", { cx: x(t), cy: y(v), r: 3, fill: c });
    }
    const pts = ser.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    return s("polyline", {
      points: pts,
      fill: "none",
      stroke: c,
      "stroke-width": ser.total ? 2.5 : 1.5,
      "stroke-dasharray": ser.total ? "6 3" : null,
      "data-series": ser.label,
    });
  });
  const latest = series
    .filter((ser) => ser.points.length)
    .map((ser) => `${ser.label}: ${fmt(ser.points[ser.points.length - 1][1])}`)
    .join("; ");
  const summary = latest ? `Latest — ${latest}.` : "No samples in this window.";
  const svg = s(
    "svg",
    { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": `${id}-title ${id}-desc`, class: "chart", id },
    s("title", { id: `${id}-svg-title` }, titleText),
    grid,
    axis,
    lines,
  );
  const legend = h(
    "ul",
    { class: "legend", "aria-hidden": "true" },
    series.map((ser) => h("li", {}, h("span", { class: `swatch${ser.total ? " total" : ""}`, "data-colour": ser.colour }), ser.label)),
  );
  // The swatch colours (CSP: no inline style attribute; the CSSOM is allowed).
  for (const sw of legend.querySelectorAll(".swatch")) sw.style.borderColor = sw.dataset.colour;
  return h(
    "figure",
    { class: "card chart-card", "data-chart": id },
    h("figcaption", { id: `${id}-title` }, titleText),
    svg,
    legend,
    h("p", { class: "muted", id: `${id}-desc` }, summary),
  );
}

export function monitoringTab(panel, ctx) {
  const { name } = ctx;
  const select = h("select", { id: "metrics-window" }, WINDOWS.map(([v, label]) => h("option", { value: v, selected: v === "15m" }, label)));
  const status = h("p", { id: "metrics-status", role: "status" }, "Loading figures…");
  const charts = h("div", { id: "charts", class: "charts" });
  panel.replaceChildren(
    h("div", { class: "page-head" }, h("h2", { id: "monitoring-title" }, "Monitoring"), h("div", { class: "actions toolbar" }, h("label", { for: "metrics-window" }, "Window"), select)),
    status,
    charts,
  );

  let stopped = false;

  function render(m) {
    const to = Date.now();
    const from = to - m.window_s * 1000;
    const tag = (r) => `${r.container} @ ${r.node}`;
    const total = (k) => ({ label: "total", total: true, points: m.total.map((p) => [p.ts, p[k]]) });
    const per = (k) => m.replicas.map((r) => ({ label: tag(r), points: r.samples.map((p) => [p.ts, p[k]]) }));
    const rate = (k) => [
      { label: "total", total: true, points: rates(m.total.map((p) => [p.ts, p[k]])) },
      ...m.replicas.map((r) => ({ label: tag(r), points: rates(r.samples.map((p) => [p.ts, p[k]])) })),
    ];
    const pct = (v) => `${v.toFixed(v < 10 ? 2 : 0)}%`;
    const perSec = (v) => `${bytes(v)}/s`;
    charts.replaceChildren(
      chart("chart-cpu", "CPU (percent of one core)", [total("cpu_pct"), ...per("cpu_pct")], from, to, pct, 1),
      chart("chart-mem", "Memory in use", [total("mem_bytes"), ...per("mem_bytes")], from, to, bytes, 1 << 20),
      chart("chart-rx", "Network received", rate("net_rx_bytes"), from, to, perSec, 1024),
      chart("chart-tx", "Network sent", rate("net_tx_bytes"), from, to, perSec, 1024),
    );
    const n = m.replicas.length;
    status.textContent = n
      ? `${n} replica${n === 1 ? "" : "s"} sampled in the last ${WINDOWS.find(([v]) => v === select.value)[1]}.`
      : `No samples of ${name} in this window: the nodes sample running replicas only.`;
    status.className = "";
  }

  async function load() {
    try {
      const m = await api("GET", `/apps/${enc(name)}/metrics?window=${enc(select.value)}`);
      if (!stopped) render(m);
    } catch (e) {
      if (stopped || ctx.failed(e)) return;
      status.textContent = `Cannot read the figures: ${e.message}`;
      status.className = "error";
    }
  }

  select.addEventListener("change", load);
  load();
  const timer = setInterval(load, 5000);
  return {
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
