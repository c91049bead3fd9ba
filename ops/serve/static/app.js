// The Esper dashboard's pages. The server sends one HTML shell naming the page and its parameters
// (body data-page, data-run, data-seed); this script fetches the JSON API and renders, then follows
// /api/live (server-sent events, read with fetch) and re-renders in place on every append: each page replaces its sections
// in one synchronous step after its reads, so the scroll position stays, and charts keep their zoom.
(() => {
"use strict";

const { LineChart, renderTimeline, stageLegend, PALETTE } = window.EsperCharts;
const COLOURS = PALETTE.series;
const body = document.body;
const page = body.dataset.page;
const runId = body.dataset.run || "";
const seedName = body.dataset.seed || "";
const enc = encodeURIComponent;

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value; else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fmt(value, digits = 4) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(digits);
  return String(value);
}

function when(ns) {
  return ns ? new Date(ns / 1e6).toISOString().replace("T", " ").slice(0, 19) : "–";
}

function table(columns, rows, rowAttrs) {
  const head = h("tr", {}, columns.map(([label]) => h("th", {}, label)));
  const lines = rows.map((row) => h("tr", rowAttrs ? rowAttrs(row) : {}, columns.map(([, cell]) => h("td", {}, cell(row)))));
  return h("table", {}, h("thead", {}, head), h("tbody", {}, lines));
}

function badge(status) {
  return h("span", { class: `badge badge-${status}`, "data-status": status }, status);
}

const seedHref = (seed) => `/seeds/${enc(seed)}`;
const runHref = (run) => `/runs/${enc(run)}`;

// ---------------------------------------------------------------- the bearer token
// Behind a token (esper serve off loopback) the page takes it once, from a #token=... fragment (never sent
// to the server) or the sign-in form, keeps it in sessionStorage (this tab) and sends it as a header.

const TOKEN_KEY = "esper-serve-token";

function tokenFromFragment() {
  const found = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!found) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(found[1]));
  history.replaceState(null, "", location.pathname + location.search);  // out of the address bar and history
}

function authorization() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

class Unauthorized extends Error {}

let signedIn = null;  // resolves when the form is submitted; one promise for every waiting reader

function signIn() {
  if (signedIn) return signedIn;
  const form = section("login");
  const wrong = sessionStorage.getItem(TOKEN_KEY) !== null;
  sessionStorage.removeItem(TOKEN_KEY);
  section("error").textContent = wrong ? "the server refused this token" : "this server needs its bearer token";
  section("error").hidden = false;
  section("live").dataset.state = "locked";
  form.hidden = false;
  section("token").focus();
  signedIn = new Promise((resolve) => {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, section("token").value.trim());
      section("token").value = "";
      form.hidden = true;
      section("error").hidden = true;
      signedIn = null;
      resolve();
    }, { once: true });
  });
  return signedIn;
}

async function request(path) {
  const response = await fetch(path, { cache: "no-store", headers: authorization() });
  if (response.status === 401) throw new Unauthorized(`${path}: 401`);
  return response;
}

async function api(path) {
  const response = await request(path);
  if (!response.ok) throw new Error(`${path}: ${response.status} ${(await response.json()).error || ""}`);
  return response.json();
}

function section(id) {
  return document.getElementById(id);
}

// ---------------------------------------------------------------- pages

const pages = {};

pages.runs = async () => {
  const { runs } = await api("/api/runs");
  const columns = [
    ["run", (r) => h("a", { href: runHref(r.run_id), class: "run-link" }, r.run_id)],
    ["status", (r) => badge(r.status)],
    ["host / data", (r) => `${r.host_model || "?"} on ${r.dataset || "?"}`],
    ["epoch", (r) => `${fmt(r.last_epoch)} / ${fmt(r.epochs)}`],
    ["best val acc", (r) => fmt(r.best_validation_accuracy)],
    ["best val loss", (r) => fmt(r.best_validation_loss)],
    ["test acc", (r) => fmt(r.test_accuracy)],
    ["params", (r) => fmt(r.parameters)],
    ["rollbacks", (r) => fmt(r.rollbacks)],
    ["started", (r) => when(r.started_at_ns)],
  ];
  section("header").replaceChildren(h("h1", {}, "runs"));
  section("content").replaceChildren(
    runs.length ? table(columns, runs, (r) => ({ "data-run": r.run_id, "data-status": r.status }))
      : h("p", { class: "empty" }, "No run in the log yet: start one with `esper run`."));
};

const charts = {};
const MARKER_VERBS = { graft: "graft", cull: "cull", fossilize: "fossilize", rollback: "rollback to" };

function markerPoints(markers) {
  return markers.filter((mk) => !mk.superseded && mk.epoch !== null).map((mk) => ({
    x: mk.epoch,
    kind: mk.kind,
    href: mk.seed ? seedHref(mk.seed) : "#rollbacks",
    label: `${MARKER_VERBS[mk.kind]} ${mk.seed ? `slot ${mk.slot}` : `epoch ${mk.epoch}`}`
      + `${mk.blueprint_id ? ` (${mk.blueprint_id})` : ""}${mk.reason ? `: ${mk.reason}` : ""}`,
  }));
}

function curve(epochs, key) {
  return epochs.map((e) => [e.epoch, e[key]]);
}

function runHeader(run, epochs) {
  const standing = epochs.filter((e) => !e.superseded);
  const best = (key, pick) => standing.length ? pick(...standing.map((e) => e[key]).filter((v) => v !== null)) : null;
  return h("div", { class: "run-header" },
    h("h1", {}, `run ${run.run_id} `, badge(run.status)),
    h("dl", {},
      h("dt", {}, "epoch"), h("dd", { id: "run-epoch" }, `${fmt(run.last_epoch)} / ${fmt(run.epochs ?? (run.config || {}).epochs)}`),
      h("dt", {}, "best val acc"), h("dd", {}, fmt(best("validation_accuracy", Math.max))),
      h("dt", {}, "best val loss"), h("dd", {}, fmt(best("validation_loss", Math.min))),
      h("dt", {}, "test acc"), h("dd", {}, fmt(run.test_accuracy)),
      h("dt", {}, "parameters"), h("dd", {}, fmt(run.parameters)),
      h("dt", {}, "rollbacks"), h("dd", { id: "run-rollbacks" }, fmt(run.rollbacks)),
      h("dt", {}, "host / data"), h("dd", {}, `${run.host_model} on ${run.dataset}`)),
    run.error ? h("p", { class: "error" }, run.error) : null);
}

function runTabs(active) {
  const tab = (href, label, key) => h("a", { href, class: key === active ? "tab active" : "tab" }, label);
  return h("nav", { class: "tabs" },
    tab(runHref(runId), "curves & seeds", "run"),
    tab(`${runHref(runId)}/decisions`, "decisions", "decisions"),
    tab(`${runHref(runId)}/field-reports`, "field reports", "field-reports"));
}

pages.run = async () => {
  const [detail, { seeds }, baseline] = await Promise.all([
    api(`/api/runs/${enc(runId)}`), api(`/api/runs/${enc(runId)}/seeds`), api(`/api/runs/${enc(runId)}/baseline`),
  ]);
  const { run, epochs, markers, checkpoints } = detail;
  const standing = epochs.filter((e) => !e.superseded);
  const voided = epochs.filter((e) => e.superseded);
  section("header").replaceChildren(runHeader(run, epochs), runTabs("run"));
  const base = baseline.epochs || [];
  const baseName = baseline.run_id ? `no-growth ${baseline.run_id}` : null;
  const marks = markerPoints(markers);
  if (!charts.loss) {
    charts.loss = new LineChart(section("loss-chart"), { id: "loss", title: "loss" });
    charts.accuracy = new LineChart(section("accuracy-chart"), { id: "accuracy", title: "accuracy" });
  }
  const withBaseline = (series, key, colour) => baseName ? [...series, { name: `${baseName} val`, colour, dashed: true, points: curve(base, key) }] : series;
  const voidedSeries = (key, name) => voided.length ? [{ name, colour: COLOURS.voided, faint: true, points: curve(voided, key) }] : [];
  charts.loss.render({
    series: withBaseline([
      { name: "train loss", colour: COLOURS.training, points: curve(standing, "training_loss") },
      { name: "val loss", colour: COLOURS.validation, points: curve(standing, "validation_loss") },
      ...voidedSeries("validation_loss", "rolled back"),
    ], "validation_loss", COLOURS.baseline),
    markers: marks,
  });
  charts.accuracy.render({
    series: withBaseline([
      { name: "train acc", colour: COLOURS.training, points: curve(standing, "training_accuracy") },
      { name: "val acc", colour: COLOURS.validation, points: curve(standing, "validation_accuracy") },
      ...voidedSeries("validation_accuracy", "rolled back"),
    ], "validation_accuracy", COLOURS.baseline),
    markers: marks,
  });
  renderTimeline(section("timeline"), seeds, run.last_epoch || 1, (seed) => seedHref(seed.seed));
  stageLegend(section("stage-legend"));
  const rollbacks = markers.filter((mk) => mk.kind === "rollback");
  section("rollbacks").replaceChildren(h("h2", {}, "rollbacks"), rollbacks.length
    ? table([["position", (r) => r.position], ["to epoch", (r) => r.epoch], ["mode", (r) => fmt(r.mode)], ["reason", (r) => fmt(r.reason)]],
      rollbacks, (r) => ({ class: "rollback-row", "data-epoch": r.epoch }))
    : h("p", { class: "empty" }, "none"),
  h("p", { class: "note" }, `${checkpoints.filter((c) => !c.superseded).length} standing checkpoints; `
    + `${voided.length} epochs voided by rollbacks (grey).`));
};

pages.decisions = async () => {
  const [detail, { decisions }] = await Promise.all([api(`/api/runs/${enc(runId)}`), api(`/api/runs/${enc(runId)}/decisions`)]);
  section("header").replaceChildren(runHeader(detail.run, detail.epochs), runTabs("decisions"));
  const columns = [
    ["epoch", (d) => d.epoch], ["policy", (d) => `${d.policy_name} ${d.policy_version}`], ["action", (d) => d.action],
    ["risk", (d) => h("span", { class: `risk risk-${(d.risk_level || "").toLowerCase()}` }, fmt(d.risk_level))],
    ["latency ms", (d) => fmt(d.latency_ms, 2)], ["conservative", (d) => (d.conservative ? "yes" : "no")],
    ["target", (d) => (d.target_slot !== null && d.target_slot !== undefined
      ? h("a", { href: seedHref(`${runId}.${d.target_slot}`) }, `slot ${d.target_slot} ${d.blueprint_id || ""}`) : "–")],
    ["reason", (d) => fmt(d.reason)],
  ];
  section("content").replaceChildren(decisions.length
    ? table(columns, [...decisions].reverse(), (d) => ({ class: d.superseded ? "superseded" : "", "data-epoch": d.epoch }))
    : h("p", { class: "empty" }, "no decision yet"));
};

pages["field-reports"] = async () => {
  const [detail, reports] = await Promise.all([api(`/api/runs/${enc(runId)}`), api(`/api/runs/${enc(runId)}/field-reports`)]);
  section("header").replaceChildren(runHeader(detail.run, detail.epochs), runTabs("field-reports"));
  const columns = [
    ["seed", (f) => h("a", { href: seedHref(`${runId}.${f.slot}`) }, `slot ${f.slot}`)], ["blueprint", (f) => fmt(f.blueprint_id)],
    ["outcome", (f) => h("span", { class: `outcome outcome-${(f.outcome || "").toLowerCase()}` }, fmt(f.outcome))],
    ["epochs", (f) => `${fmt(f.start_epoch)}–${fmt(f.end_epoch)}`], ["Δ accuracy", (f) => fmt(f.delta_accuracy)],
    ["Δ loss", (f) => fmt(f.delta_loss)], ["Δ params", (f) => fmt(f.delta_parameters)],
    ["policy", (f) => fmt(f.policy_version)], ["risk", (f) => fmt(f.risk_at_decision)],
  ];
  section("content").replaceChildren(reports.field_reports.length
    ? table(columns, reports.field_reports, (f) => ({ class: f.superseded ? "superseded" : "" }))
    : h("p", { class: "empty" }, "no field report yet (one closes 3 epochs after each command)"));
};

pages.alerts = async () => {
  const data = await api("/api/alerts");
  const current = [
    ["alert", (a) => a.name], ["state", (a) => badge(a.state)], ["severity", (a) => fmt(a.severity)],
    ["summary", (a) => fmt(a.summary)], ["value", (a) => fmt(a.value)],
  ];
  const history = [
    ["position", (e) => e.position], ["event", (e) => e.event_type], ["alert", (e) => e.name],
    ["severity", (e) => fmt(e.severity)], ["summary", (e) => fmt(e.summary)],
  ];
  section("header").replaceChildren(h("h1", {}, "alerts ", h("span", { class: data.firing ? "count" : "count none", id: "firing" }, `${data.firing} firing`)));
  section("content").replaceChildren(
    h("h2", {}, "current"), data.alerts.length ? table(current, data.alerts, (a) => ({ "data-state": a.state })) : h("p", { class: "empty" }, "no alert has fired"),
    h("h2", {}, "history"), data.events.length ? table(history, data.events) : h("p", { class: "empty" }, "none"));
};

function chainStep(kind, title, ...lines) {
  return h("li", { class: `step step-${kind}` }, h("h3", {}, title), ...lines.filter(Boolean).map((l) => h("p", {}, l)));
}

function transitionStep(t) {
  const gates = (t.gates || []).map((g) => `${g.gate} ${g.passed ? "✓" : "✗"} ${g.reason}`).join("; ");
  const title = t.to_stage ? `${t.from_stage || ""} → ${t.to_stage} · epoch ${t.epoch}` : `${t.event_type} · epoch ${t.epoch}`;
  const step = chainStep(t.superseded ? "superseded" : "transition", title, t.reason, gates);
  if (t.to_stage) step.dataset.stage = t.to_stage;
  step.style.setProperty("--dot", PALETTE.stages[t.to_stage] || "#7986cb");
  return step;
}

pages.seed = async () => {
  const chain = await api(`/api/seeds/${enc(seedName)}/chain`);
  section("header").replaceChildren(
    h("h1", {}, `seed ${chain.seed} `, h("span", { class: "badge", "data-stage": chain.state.stage }, chain.state.stage)),
    h("p", {}, h("a", { href: runHref(chain.run_id) }, `← run ${chain.run_id}`)));
  const links = chain.links.map((link) => {
    const steps = [];
    const p = link.state_packet;
    if (p) steps.push(chainStep("packet", `state packet · epoch ${p.epoch}`, `val loss ${fmt(p.validation_loss)}, val acc ${fmt(p.validation_accuracy)}, ${fmt(p.parameters)} parameters`));
    const d = link.decision;
    if (d) steps.push(chainStep("decision", `decision · ${d.policy_name} ${d.policy_version}`, `${d.action}, risk ${d.risk_level}, ${fmt(d.latency_ms, 2)} ms${d.conservative ? ", conservative" : ""}`, d.reason));
    const c = link.command;
    if (c) steps.push(chainStep("command", `command · ${c.operation} ${c.blueprint_id || ""}`, `slot ${c.target_slot}, issued by ${c.issued_by}, id ${c.command_id}`));
    steps.push(...link.effects.map(transitionStep));
    for (const f of link.field_reports) steps.push(chainStep("report", `field report · ${f.outcome}`, `Δ accuracy ${fmt(f.delta_accuracy)}, Δ loss ${fmt(f.delta_loss)} over epochs ${f.start_epoch}–${f.end_epoch}`));
    return h("ol", { class: "chain", "data-command": link.command_id }, steps);
  });
  const others = chain.other_transitions.map(transitionStep);
  const rest = others.length ? [h("h2", {}, "without a command"), h("ol", { class: "chain" }, others)] : [];
  section("content").replaceChildren(...links, ...rest);
};

// ---------------------------------------------------------------- live updates

let rendering = null;
let again = false;
let renderedPosition = 0;

async function refresh(position) {
  if (rendering) { again = true; return; }
  rendering = pages[page]();
  let locked = false;
  try {
    await rendering;
    renderedPosition = Math.max(renderedPosition, position || 0);
    body.dataset.position = String(renderedPosition);
    body.dataset.renderedAt = String(performance.timeOrigin + performance.now());
    section("error").hidden = true;
  } catch (error) {
    locked = error instanceof Unauthorized;
    if (!locked) {
      section("error").textContent = String(error);
      section("error").hidden = false;
    }
  } finally {
    rendering = null;
  }
  if (locked) { await signIn(); again = false; refresh(Math.max(position || 0, renderedPosition)); return; }
  if (again) { again = false; refresh(renderedPosition); }
}

function relevant(events) {
  if (page === "runs" || page === "alerts" || events === null) return true;
  const wanted = page === "seed" ? seedName.split(".").slice(0, -1).join(".") : runId;
  return events.some((e) => e.run_id === wanted || e.run_id === "");
}

// One server-sent event block ("event: x" and "data: y" lines) of /api/live.
function dispatch(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;  // a keep-alive comment
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (name === "event") event = value; else if (name === "data") data.push(value);
  }
  if (!data.length) return;
  const news = JSON.parse(data.join("\n"));
  // hello comes first on every (re)connection: render then, so nothing appended before the feed opened,
  // or while it was down, is missed
  if (event === "hello") refresh(news.position);
  else if (event === "append") {
    if (relevant(news.events)) refresh(news.position); else {
      renderedPosition = news.position;
      body.dataset.position = String(news.position);
    }
  }
}

// /api/live read with fetch, not EventSource, which cannot send the Authorization header; reconnects with
// backoff like EventSource does.
async function follow() {
  const dot = section("live");
  let delay = 250;
  for (;;) {
    try {
      const response = await request("/api/live");
      if (!response.ok || !response.body) throw new Error(`/api/live: ${response.status}`);
      dot.dataset.state = "live"; dot.title = "following the log";
      delay = 250;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        for (let cut = buffer.indexOf("\n\n"); cut >= 0; cut = buffer.indexOf("\n\n")) {
          dispatch(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
        }
      }
    } catch (error) {
      if (error instanceof Unauthorized) { await signIn(); continue; }
    }
    dot.dataset.state = "down"; dot.title = "reconnecting";
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 5000);
  }
}

tokenFromFragment();
follow();
})();
