// The DT-RAG dashboard: polls the admin JSON views with the key kept in sessionStorage and redraws
// in place. No libraries: the charts are SVG drawn here, so the page works with no network.
"use strict";

const KEY = "dtrag-admin-key";
const POLL_MS = Number(document.body.dataset.pollMs) || 5000;
// Chart windows (minutes) and their bucket sizes (s): about 60 points each.
const WINDOWS = {5: 5, 15: 15, 60: 60, 360: 360, 1440: 1440};
const COLORS = {new: "#d9480f", legacy: "#1c7ed6"};
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

class Refused extends Error {}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  // Styles through the CSSOM: the page's Content-Security-Policy refuses style attributes.
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k === "style") Object.assign(el.style, v);
    else el.setAttribute(k, v);
  }
  for (const c of children) el.append(c instanceof Node ? c : String(c ?? ""));
  return el;
}

function s(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

// SQLite hands back naive UTC timestamps; without a zone JavaScript would read them as local time.
const when = (iso) => new Date(/[zZ]|[+-]\d\d:\d\d$/.test(iso) ? iso : iso + "Z");
const clock = (iso) => when(iso).toLocaleString();
const pct = (x) => `${(100 * x).toFixed(2)} %`;

async function api(path, options = {}) {
  const key = sessionStorage.getItem(KEY);
  const response = await fetch(path, {...options, headers: {"Content-Type": "application/json", "X-API-Key": key}});
  const body = await response.json().catch(() => ({}));
  if (response.status === 401 || response.status === 403) throw new Refused(body.detail || response.statusText);
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows.map((cells) => h("tr", {}, ...cells.map((c) => c instanceof Node && c.tagName === "TD" ? c : h("td", {}, c)))));
}

function facts(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([k, v, cls]) => [h("dt", {}, k), h("dd", cls ? {class: cls} : {}, v)]));
}

// --- health -----------------------------------------------------------------------------------------

// A model server or reranker as the dashboard lists it (null: none configured).
function server(s) {
  if (!s) return "not configured";
  const where = s.urls ? s.urls.join(", ") : s.url ?? "";
  return [`${s.provider}${s.model ? " " + s.model : ""} · ${s.state}`, where,
          s.calls != null ? `${s.calls} calls, ${s.errors} errors` : null,
          s.latency_ms != null ? `last ${s.latency_ms} ms` : null,
          s.last_error ? `last error: ${s.last_error}` : null].filter(Boolean).join(" · ");
}

function serverState(s) {
  return s.state === "ok" ? "good" : s.state === "degraded" ? "bad" : "";
}

function renderHealth(health, llm) {
  const state = (v) => (v === "connected" || v === "healthy" ? "good" : v === "not_configured" ? "muted" : "bad");
  const usage = llm.usage.reduce((a, u) => ({n: a.n + u.requests, ms: a.ms + u.mean_latency_ms * u.requests}), {n: 0, ms: 0});
  // Another part of the service adds worker_system to /health; until it exists the panel says so.
  const jobs = "worker_system" in health
    ? Object.entries(health.worker_system).map(([k, v]) => `${k.replaceAll("_", " ")}: ${v ?? "–"}`).join(" · ")
    : "not configured";
  facts($("health-list"), [
    ["service", `${health.status} · ${health.version} · ${health.environment}`, state(health.status)],
    ["database", `${health.database} (${health.backend}, ${health.latency_ms.database} ms)`, state(health.database)],
    ["redis", health.redis + (health.latency_ms.redis != null ? ` (${health.latency_ms.redis} ms)` : ""), state(health.redis)],
    ["LLM provider", `${llm.provider} · ${usage.n} calls in ${llm.window_minutes} min` +
      (usage.n ? ` · mean ${(usage.ms / usage.n).toFixed(0)} ms` : "")],
    ["model server", server(llm.server), llm.server ? serverState(llm.server) : "muted"],
    ["reranker", server(llm.reranker), llm.reranker ? serverState(llm.reranker) : "muted"],
    ["job queue", jobs, jobs === "not configured" ? "muted" : ""],
  ]);
}

// --- rollout ----------------------------------------------------------------------------------------

let selectedFlag = null;

function renderFlags(listing) {
  const names = Object.keys(listing.flags);
  selectedFlag ??= listing.canary.flag;
  const select = $("ff-name");
  if (select.options.length !== names.length) {
    select.replaceChildren(...names.map((n) => h("option", {value: n}, n)));
  }
  if (document.activeElement !== select) select.value = selectedFlag;
  fill($("flags").tBodies[0], names.map((name) => {
    const f = listing.flags[name];
    const state = f.kill ? h("td", {class: "bad"}, "killed") : h("td", {class: f.enabled ? "good" : "muted"}, f.enabled ? "on" : "off");
    const kill = h("button", {class: "danger", type: "button", "data-flag": name}, "kill switch");
    kill.addEventListener("click", () => { selectFlag(name); $("ff-kill").value = "true"; $("ff-reason").focus(); });
    const change = f.last_change ? `${clock(f.last_change.at)} by ${f.last_change.actor}` : "";
    const row = [h("td", {class: "name", title: f.description}, name), state, pct(f.rollout_fraction),
                 f.allowlist_size, f.source, change, h("td", {}, kill)];
    return row;
  }));
  for (const tr of $("flags").tBodies[0].rows) {
    const name = tr.cells[0].textContent;
    tr.classList.toggle("selected", name === selectedFlag);
    tr.cells[0].onclick = () => selectFlag(name);
  }
}

function selectFlag(name) {
  selectedFlag = name;
  $("ff-name").value = name;
  refreshHistory().catch(report);
}

function describeChange(entry) {
  if (!entry.new) return "environment reloaded";
  const parts = [];
  for (const k of Object.keys(entry.new)) {
    const before = entry.old ? JSON.stringify(entry.old[k]) : "–";
    const after = JSON.stringify(entry.new[k]);
    if (before !== after) parts.push(`${k}: ${before} → ${after}`);
  }
  return parts.join(", ") || "no change";
}

async function refreshHistory() {
  const history = await api(`/api/v1/admin/feature-flags/${encodeURIComponent(selectedFlag)}/history?limit=20`);
  $("history-name").textContent = selectedFlag;
  fill($("history").tBodies[0], history.map((e) => [clock(e.at), e.actor, describeChange(e), e.reason ?? ""]));
}

async function submitFlag(event) {
  event.preventDefault();
  const body = {reason: $("ff-reason").value.trim()};
  if ($("ff-enabled").value) body.enabled = $("ff-enabled").value === "true";
  if ($("ff-rollout").value !== "") body.rollout_fraction = Number($("ff-rollout").value) / 100;
  if ($("ff-kill").value) body.kill = $("ff-kill").value === "true";
  const name = $("ff-name").value;
  const result = $("ff-result");
  try {
    await api(`/api/v1/admin/feature-flags/${encodeURIComponent(name)}`, {method: "PUT", body: JSON.stringify(body)});
    result.textContent = `${name} updated`;
    result.className = "good";
    $("flag-form").reset();
    selectedFlag = name;
    await refresh();
  } catch (error) {
    if (error instanceof Refused) return refuse(error.message);
    result.textContent = error.message;
    result.className = "bad";
  }
}

// --- charts -----------------------------------------------------------------------------------------

const W = 420, H = 170, PAD = {l: 48, r: 10, t: 10, b: 22};

function niceMax(v) {
  if (!(v > 0)) return 1;
  const step = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * step).find((c) => c >= v);
}

// series: [{name, points: [[t, y], ...]}]; x0/x1 in epoch seconds; sla: a y line; marks: [{t, label}]
function drawChart(svg, series, {x0, x1, sla, marks, format}) {
  const ys = series.flatMap((ser) => ser.points.map((p) => p[1]));
  const top = niceMax(Math.max(sla ?? 0, ...ys) * 1.1);
  const x = (t) => PAD.l + ((t - x0) / (x1 - x0)) * (W - PAD.l - PAD.r);
  const y = (v) => H - PAD.b - (v / top) * (H - PAD.t - PAD.b);
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const nodes = [];
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4;
    nodes.push(s("line", {x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v), class: "grid"}));
    const label = s("text", {x: PAD.l - 4, y: y(v) + 4, class: "tick", "text-anchor": "end"});
    label.textContent = format(v);
    nodes.push(label);
  }
  for (const [t, anchor] of [[x0, "start"], [(x0 + x1) / 2, "middle"], [x1, "end"]]) {
    const label = s("text", {x: x(t), y: H - 6, class: "tick", "text-anchor": anchor});
    label.textContent = new Date(t * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
    nodes.push(label);
  }
  if (sla != null) nodes.push(s("line", {x1: PAD.l, x2: W - PAD.r, y1: y(sla), y2: y(sla), class: "sla"}));
  for (const m of marks.filter((m) => m.t >= x0 && m.t <= x1)) {
    const line = s("line", {x1: x(m.t), x2: x(m.t), y1: PAD.t, y2: H - PAD.b, class: "mark"});
    const title = s("title");
    title.textContent = m.label;
    line.append(title);
    nodes.push(line);
  }
  let count = 0;
  for (const ser of series) {
    const color = COLORS[ser.name] || "#868e96";
    const d = ser.points.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    if (d) nodes.push(s("path", {d, stroke: color, class: "series", "data-variant": ser.name}));
    for (const p of ser.points) {
      const dot = s("circle", {cx: x(p[0]), cy: y(p[1]), r: 2.5, fill: color, class: "point"});
      const title = s("title");
      title.textContent = `${ser.name}: ${format(p[1])} at ${new Date(p[0] * 1000).toLocaleTimeString()}`;
      dot.append(title);
      nodes.push(dot);
      count++;
    }
  }
  svg.replaceChildren(...nodes);
  svg.dataset.points = String(count);  // what the browser tests read, with the window drawn
  svg.dataset.window = String((x1 - x0) / 60);
}

function renderCharts(ts, canary) {
  const x0 = ts.start, x1 = ts.start + ts.window_minutes * 60;
  const marks = canary.actions.map((a) => ({t: when(a.at).getTime() / 1000, label: `${clock(a.at)}: ${a.reason}`}));
  const rows = Object.entries(ts.series);
  const series = (f) => rows.map(([name, points]) => ({name, points: points.map((p) => [p.t + ts.bucket_s / 2, f(p)])}));
  drawChart($("chart-rate"), series((p) => p.requests / ts.bucket_s), {x0, x1, marks, format: (v) => v.toFixed(2)});
  drawChart($("chart-errors"), series((p) => p.error_rate), {x0, x1, marks, sla: ts.sla.error_rate, format: (v) => pct(v)});
  drawChart($("chart-p95"), series((p) => p.latency_ms.p95), {x0, x1, marks, sla: ts.sla.p95_ms, format: (v) => v.toFixed(0)});
}

function renderCanary(canary) {
  const st = canary.status, last = st.last_evaluation;
  facts($("canary-state"), [
    ["flag", st.flag], ["active", st.active ? "yes" : "no", st.active ? "good" : "muted"],
    ["rollout", pct(st.rollout_fraction)], ["leader", st.leader ?? "none"],
    ["last verdict", last ? `${last.verdict} (${last.action}) at ${clock(last.at)}` : "none yet",
      last && ["fail", "breach"].includes(last.verdict) ? "bad" : ""],
    ["SLA", `error rate ≤ ${pct(canary.sla.error_rate)}, p95 ≤ ${canary.sla.p95_ms} ms`],
  ]);
  fill($("verdicts").tBodies[0], canary.evaluations.map((e) => [
    clock(e.at), h("td", {class: ["fail", "breach"].includes(e.verdict) ? "bad" : e.verdict === "pass" ? "good" : ""}, e.verdict),
    e.action, e.consecutive_failures, (e.detail.reasons || []).join("; "),
  ]));
}

// --- learning ---------------------------------------------------------------------------------------

function heat(q, lo, hi) {
  const f = hi > lo ? (q - lo) / (hi - lo) : 0.5;  // red (worst learned) → green (best)
  return `hsl(${Math.round(f * 120)}, 65%, 82%)`;
}

function renderLearning(data) {
  const r = data.replay, o = data.ope;
  const estimate = o.n ? `DR ${o.dr.value} [${o.dr.ci95.join(", ")}] · SNIPS ${o.snips.value} · IPS ${o.ips.value}` +
    ` · n ${o.n}, ESS ${o.ess} · logged mean ${o.logged_mean_reward}` : "no rewarded decisions yet";
  facts($("learning-facts"), [
    ["policy version", data.policy_version], ["states", data.states.length],
    ["replay buffer", `${r.size} / ${r.capacity} (${pct(r.capacity ? r.size / r.capacity : 0)})`],
    ["off-policy value of greedy", estimate],
    ["feedback (24 h)", `${data.feedback.rows} given · ${data.feedback.rated} rated · ` +
      `${data.feedback.passages_marked} with passages marked · ${data.feedback.comments} with comments`],
    ["answers rated (24 h)", data.feedback.share_rated == null ? "no answers yet"
      : `${pct(data.feedback.share_rated)} (${data.feedback.answers_rated} of ${data.feedback.answers})`],
    ["case bank", `${data.cases.cases} cases · selector version ${data.cases.selector_version}`],
    ["case hit rate (24 h)", data.cases.hit_rate == null ? "no requests with case memory yet"
      : `${pct(data.cases.hit_rate)} (${data.cases.changed} of ${data.cases.requests} rankings changed by cases)`],
  ]);
  const qs = data.states.flatMap((st) => st.cells.filter(Boolean).map((c) => c.q));
  const lo = Math.min(...qs), hi = Math.max(...qs);
  const head = h("tr", {}, h("th", {}, "state"), h("th", {}, "visits"), ...data.arms.map((a) => h("th", {}, a)), h("th", {}, "greedy"));
  const body = data.states.map((st) => h("tr", {},
    h("td", {class: "name"}, st.state), h("td", {}, st.visits),
    // The greedy choice can be an arm never tried in the state: the default, kept until another beats it.
    ...st.cells.map((c, i) => {
      const greedy = data.arms[i] === st.greedy ? " greedy" : "";
      return c
        ? h("td", {class: "cell" + greedy, style: {background: heat(c.q, lo, hi)},
                   title: `Q ${c.q} after ${c.updates} updates`}, `${c.q.toFixed(3)} (${c.updates})`)
        : h("td", {class: "cell empty" + greedy, title: "no update yet"}, "–");
    }),
    h("td", {class: "name"}, st.greedy)));
  $("qtable").replaceChildren(h("thead", {}, head), h("tbody", {}, ...body));
  $("qtable").dataset.cells = String(qs.length);
  fill($("decisions").tBodies[0], data.decisions.map((d) => [
    clock(d.created_at), d.state, d.action,
    Object.entries(d.probabilities).map(([a, p]) => `${a} ${p.toFixed(2)}`).join(" · "),
    d.reward == null ? "pending" : `${d.reward.toFixed(3)} (${d.reward_source})`,
  ]));
}

// --- collections ------------------------------------------------------------------------------------

function renderCollections(data) {
  fill($("collection-table").tBodies[0], data.collections.map((c) => [
    c.name, c.documents, c.chunks,
    c.keys.map((k) => `${k.name || k.id} (${k.scope}${k.all ? ", every collection" : ""})`).join(" · ") || "none",
    c.description,
  ]));
}

// --- the loop ---------------------------------------------------------------------------------------

function showApp(on) {
  $("app").hidden = !on;
  $("login").hidden = on;
  $("logout").hidden = !on;
}

function refuse(message) {
  sessionStorage.removeItem(KEY);
  showApp(false);
  $("refusal").textContent = message ? `Refused: ${message}` : "";
}

function report(error) {
  if (error instanceof Refused) return refuse(error.message);
  $("refreshed").textContent = `refresh failed: ${error.message}`;
  $("refreshed").className = "bad";
}

let busy = false;

async function refresh() {
  if (!sessionStorage.getItem(KEY) || busy) return;
  busy = true;
  try {
    const [flags, canary, ts, learning, llm, health, collections] = await Promise.all([
      api("/feature-flags"), api("/api/v1/admin/dashboard/canary?limit=8"),
      api(`/api/v1/admin/dashboard/timeseries?minutes=${$("window").value}&bucket_s=${WINDOWS[$("window").value]}`),
      api("/api/v1/admin/dashboard/learning"), api("/api/v1/admin/dashboard/llm"),
      // Open, and a 503 still says which dependency is down: read its body whatever the status.
      fetch("/health?detailed=true").then((r) => r.json()),
      api("/api/v1/admin/dashboard/collections"),
    ]);
    showApp(true);
    renderHealth(health, llm);
    renderFlags(flags);
    renderCanary(canary);
    renderCharts(ts, canary);
    renderLearning(learning);
    renderCollections(collections);
    await refreshHistory();
    $("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
    $("refreshed").className = "muted";
  } catch (error) {
    report(error);
  } finally {
    busy = false;
  }
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("login-key").value.trim());
  $("login-key").value = "";
  $("refusal").textContent = "";
  refresh();
});
$("logout").addEventListener("click", () => refuse(""));
$("flag-form").addEventListener("submit", submitFlag);
$("ff-name").addEventListener("change", () => selectFlag($("ff-name").value));
$("window").addEventListener("change", refresh);

showApp(false);
refresh();
setInterval(refresh, POLL_MS);
