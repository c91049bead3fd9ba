// Hand-written SVG charts for the Esper dashboard: line charts with event markers and zoom, and the seed
// timeline. No library; every element carries data-* attributes the browser tests read.
(() => {
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
// one palette for the dashboard and `--plot` (static/palette.json, inlined into every page by the server)
const PALETTE = window.ESPER_PALETTE;
const MARKER_COLOURS = PALETTE.markers;
const STAGE_COLOURS = PALETTE.stages;

function svgEl(tag, attrs, parent) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (parent) parent.appendChild(node);
  return node;
}

function niceTicks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toFixed(10));
  return ticks;
}

function formatTick(value) {
  if (Math.abs(value) >= 100 || Number.isInteger(value)) return String(Math.round(value));
  return value.toPrecision(2);
}

// A line chart. `state` outlives re-renders (live updates): it keeps the zoomed x-range, which a drag
// across the plot sets and a double-click clears.
class LineChart {
  constructor(container, options) {
    this.container = container;
    this.options = options; // {title, yLabel, id}
    this.state = { zoom: null };
    this.data = null;
    this.tooltip = document.getElementById("tooltip");
  }

  render(data) {
    // data: {series: [{name, colour, points: [[x, y]], dashed, faint}], markers: [{x, kind, label, href}]}
    this.data = data;
    const width = Math.max(320, this.container.clientWidth || 640);
    const height = 260;
    const m = { left: 52, right: 16, top: 26, bottom: 30 };
    const all = data.series.flatMap((s) => s.points).filter((p) => Number.isFinite(p[1]));
    const xs = all.map((p) => p[0]).concat(data.markers.map((mk) => mk.x));
    let [x0, x1] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [0, 1];
    if (x1 === x0) x1 = x0 + 1;
    if (this.state.zoom) [x0, x1] = this.state.zoom;
    const inView = all.filter((p) => p[0] >= x0 && p[0] <= x1).map((p) => p[1]);
    let [y0, y1] = inView.length ? [Math.min(...inView), Math.max(...inView)] : [0, 1];
    if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
    const pad = (y1 - y0) * 0.06;
    y0 -= pad; y1 += pad;
    const sx = (x) => m.left + ((x - x0) / (x1 - x0)) * (width - m.left - m.right);
    const sy = (y) => height - m.bottom - ((y - y0) / (y1 - y0)) * (height - m.top - m.bottom);

    const svg = svgEl("svg", { width, height, class: "chart", "data-chart": this.options.id });
    const clipId = `clip-${this.options.id}`;
    const defs = svgEl("defs", {}, svg);
    svgEl("rect", { x: m.left, y: m.top, width: width - m.left - m.right, height: height - m.top - m.bottom },
      svgEl("clipPath", { id: clipId }, defs));
    svgEl("text", { x: m.left, y: 16, class: "chart-title" }, svg).textContent = this.options.title;
    for (const t of niceTicks(y0, y1, 5)) {
      svgEl("line", { x1: m.left, x2: width - m.right, y1: sy(t), y2: sy(t), class: "grid" }, svg);
      svgEl("text", { x: m.left - 6, y: sy(t) + 4, class: "tick", "text-anchor": "end" }, svg).textContent = formatTick(t);
    }
    for (const t of niceTicks(x0, x1, 8).filter((t) => Number.isInteger(t))) {
      svgEl("text", { x: sx(t), y: height - m.bottom + 16, class: "tick", "text-anchor": "middle" }, svg).textContent = String(t);
    }
    svgEl("text", { x: width - m.right, y: height - 2, class: "axis-label", "text-anchor": "end" }, svg).textContent = "epoch";
    if (this.state.zoom) {
      svgEl("text", { x: m.left, y: height - 2, class: "axis-label" }, svg).textContent =
        `epochs ${Math.ceil(x0)}–${Math.floor(x1)} · double-click to reset`;
    }
    const plot = svgEl("g", { "clip-path": `url(#${clipId})` }, svg);
    for (const series of data.series) {
      const pts = series.points.filter((p) => Number.isFinite(p[1]));
      if (!pts.length) continue;
      const d = pts.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
      svgEl("path", {
        d, class: "series" + (series.faint ? " faint" : ""), stroke: series.colour,
        "stroke-dasharray": series.dashed ? "5 4" : "none", "data-series": series.name, "data-points": pts.length,
      }, plot);
    }
    const atEpoch = {};
    for (const marker of data.markers) {
      if (marker.x < x0 || marker.x > x1) continue;
      const x = sx(marker.x);
      const shift = 11 * (atEpoch[marker.x] = (atEpoch[marker.x] ?? -1) + 1);
      const link = svgEl("a", { href: marker.href || "#", class: "marker", "data-kind": marker.kind, "data-epoch": marker.x }, svg);
      svgEl("line", { x1: x, x2: x, y1: m.top, y2: height - m.bottom, stroke: MARKER_COLOURS[marker.kind], class: "marker-line" }, link);
      svgEl("line", { x1: x, x2: x, y1: m.top - 8, y2: height - m.bottom, class: "marker-hit" }, link);
      svgEl("path", { d: `M${x + shift - 5},${m.top - 8}L${x + shift + 5},${m.top - 8}L${x + shift},${m.top}Z`, fill: MARKER_COLOURS[marker.kind] }, link);
      svgEl("title", {}, link).textContent = marker.label;
    }
    this.legend(svg, data.series, width - m.right, m.top);
    this.interact(svg, { sx, x0, x1, m, width, height });
    const old = this.container.querySelector("svg.chart");
    if (old) this.container.replaceChild(svg, old); else this.container.appendChild(svg);
  }

  legend(svg, series, right, top) {
    let x = right;
    for (const s of [...series].reverse()) {
      const label = svgEl("text", { y: top - 12, class: "legend", "text-anchor": "end" }, svg);
      label.textContent = s.name;
      label.setAttribute("x", x);
      const w = s.name.length * 6.4 + 22;
      svgEl("line", { x1: x - w + 2, x2: x - w + 16, y1: top - 16, y2: top - 16, stroke: s.colour,
        "stroke-width": 2, "stroke-dasharray": s.dashed ? "4 3" : "none" }, svg);
      x -= w + 8;
    }
  }

  // Listeners live on the container, which outlives every render, and the drag lives in this.state, so
  // a live update in the middle of a drag neither drops it nor the zoom it sets.
  interact(svg, g) {
    this.geometry = g;
    this.band = svgEl("rect", { y: g.m.top, height: g.height - g.m.top - g.m.bottom, class: "zoom-band", width: 0 }, svg);
    this.drawBand();
    if (this.listening) return;
    this.listening = true;
    const box = this.container;
    const local = (event) => event.clientX - box.querySelector("svg.chart").getBoundingClientRect().left;
    const toX = (px) => {
      const { x0, x1, m, width } = this.geometry;
      return x0 + ((px - m.left) / (width - m.left - m.right)) * (x1 - x0);
    };
    box.addEventListener("mousedown", (event) => {
      this.state.drag = [local(event), local(event)];
      event.preventDefault();
    });
    box.addEventListener("mousemove", (event) => {
      const px = local(event);
      if (this.state.drag) { this.state.drag[1] = px; this.drawBand(); }
      this.hover(event, toX(px));
    });
    box.addEventListener("mouseleave", () => { this.tooltip.hidden = true; });
    window.addEventListener("mouseup", () => {
      if (!this.state.drag) return;
      const [a, b] = this.state.drag.map(toX);
      this.state.drag = null;
      if (Math.abs(b - a) < 1) { this.drawBand(); return; } // a click (on a marker, say), not a drag
      this.state.zoom = [Math.min(a, b), Math.max(a, b)];
      box.dataset.zoomed = "true";
      this.render(this.data);
    });
    box.addEventListener("dblclick", () => {
      this.state.zoom = null;
      delete box.dataset.zoomed;
      this.render(this.data);
    });
  }

  drawBand() {
    const drag = this.state.drag;
    this.band.setAttribute("x", drag ? Math.min(...drag) : 0);
    this.band.setAttribute("width", drag ? Math.abs(drag[1] - drag[0]) : 0);
  }

  hover(event, x) {
    const epoch = Math.round(x);
    const lines = [];
    for (const s of this.data.series) {
      const p = s.points.find((q) => q[0] === epoch);
      if (p && Number.isFinite(p[1])) lines.push(`${s.name}: ${p[1].toFixed(4)}`);
    }
    for (const mk of this.data.markers) if (mk.x === epoch) lines.push(mk.label);
    if (!lines.length) { this.tooltip.hidden = true; return; }
    showTooltip(this.tooltip, event, `epoch ${epoch}\n` + lines.join("\n"));
  }
}

function showTooltip(tooltip, event, text) {
  tooltip.textContent = text;
  tooltip.hidden = false;
  const room = document.documentElement.clientWidth + window.scrollX - tooltip.offsetWidth - 8;
  tooltip.style.left = `${Math.min(event.pageX + 14, room)}px`;
  tooltip.style.top = `${event.pageY + 10}px`;
}

// One row per slot, coloured by stage from each transition's epoch to the next; hover names the gates.
function renderTimeline(container, seeds, lastEpoch, hrefFor) {
  const width = Math.max(320, container.clientWidth || 640);
  const rowHeight = 26;
  const m = { left: 70, right: 16, top: 8, bottom: 24 };
  const end = Math.max(1, lastEpoch);
  const sx = (e) => m.left + ((e - 1) / Math.max(1, end)) * (width - m.left - m.right);
  const height = m.top + m.bottom + rowHeight * Math.max(1, seeds.length);
  const svg = svgEl("svg", { width, height, class: "timeline" });
  if (!seeds.length) {
    svgEl("text", { x: m.left, y: m.top + 17, class: "tick" }, svg).textContent = "no seed germinated yet (or since the rollback)";
  }
  const tooltip = document.getElementById("tooltip");
  tooltip.hidden = true; // its segment is about to be replaced, and would never see the mouse leave
  seeds.forEach((seed, index) => {
    const y = m.top + index * rowHeight;
    const row = svgEl("a", { href: hrefFor(seed), class: "timeline-row", "data-slot": seed.slot, "data-stage": seed.stage }, svg);
    svgEl("text", { x: 4, y: y + 17, class: "tick" }, row).textContent = `slot ${seed.slot}`;
    svgEl("rect", { x: sx(1), y: y + 3, width: sx(end + 1) - sx(1), height: rowHeight - 6, fill: STAGE_COLOURS.DORMANT }, row);
    const steps = seed.transitions.filter((t) => t.to_stage && !t.superseded);
    const spans = steps.map((step, i) => [step, step.epoch ?? 1, i + 1 < steps.length ? steps[i + 1].epoch ?? end : end + 1]);
    // a stage entered and left at one boundary (culled → embargoed) is drawn last, as a sliver on top
    spans.sort((a, b) => (a[2] === a[1]) - (b[2] === b[1]));
    spans.forEach(([step, from, to]) => {
      const segment = svgEl("rect", {
        x: sx(from), y: y + 3, width: Math.max(4, sx(to) - sx(from)), height: rowHeight - 6,
        fill: STAGE_COLOURS[step.to_stage] || "#999", class: "segment", "data-stage": step.to_stage,
      }, row);
      const gates = (step.gates || []).map((g) => `${g.gate} ${g.passed ? "passed" : "failed"}: ${g.reason}`);
      const text = [`slot ${seed.slot} ${step.from_stage || ""} → ${step.to_stage} at epoch ${from}`,
        step.blueprint_id ? `blueprint ${step.blueprint_id}` : "", step.reason ? `reason: ${step.reason}` : "", ...gates]
        .filter(Boolean).join("\n");
      segment.addEventListener("mousemove", (event) => showTooltip(tooltip, event, text));
      segment.addEventListener("mouseleave", () => { tooltip.hidden = true; });
    });
  });
  for (const t of niceTicks(1, end, 8).filter((t) => Number.isInteger(t))) {
    svgEl("text", { x: sx(t), y: height - 6, class: "tick", "text-anchor": "middle" }, svg).textContent = String(t);
  }
  const old = container.querySelector("svg.timeline");
  if (old) container.replaceChild(svg, old); else container.appendChild(svg);
}

function stageLegend(container) {
  container.replaceChildren(...Object.entries(STAGE_COLOURS).map(([stage, colour]) => {
    const item = document.createElement("span");
    item.className = "legend-item";
    item.innerHTML = `<i style="background:${colour}"></i>${stage.toLowerCase()}`;
    return item;
  }));
}

window.EsperCharts = { LineChart, renderTimeline, stageLegend, PALETTE };
})();
