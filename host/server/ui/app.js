// The Switchyard dashboard: reads /v1/events (server-sent events, read with
// fetch so the token goes in a header, never in a URL) and acts through the
// operator endpoints. No framework, no build step, nothing from elsewhere.
"use strict";

const KEY = "switchyard-token";
const $ = (s) => document.querySelector(s);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const ago = (ms) => {
  if (!ms) return "never";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  return s < 1 ? "just now" : s < 90 ? `${s.toFixed(0)} s ago` : `${(s / 60).toFixed(0)} min ago`;
};

let token = sessionStorage.getItem(KEY);
let scope = null;      // "product/env"
let latest = null;     // the last state event
const window_ = [];    // recent state events, for the live traffic split
let streamAbort = null;
let me = null;         // the token's name, role and scope (/v1/whoami)
let range = "hour";    // the history charts' range: "hour" or "day"
const charts = {};     // "product/env/kind/tag" -> the charts' SVG
let chartsTimer = null;
// Operator buttons only for roles that may use them (the server checks
// again; a hidden button is a courtesy, not the guard).
const mayOperate = () => me && (me.role === "operate" || me.role === "admin");

function api(path, opts = {}) {
  const headers = { authorization: `Bearer ${token}`, "x-switchyard-actor": "dashboard", ...(opts.body ? { "content-type": "application/json" } : {}) };
  return fetch(path, { ...opts, headers }).then(async (r) => {
    if (r.status === 401) { logout("the token was refused"); throw new Error("unauthorized"); }
    if (r.status === 429) { logout("too many failed tokens from this address; wait a minute"); throw new Error("throttled"); }
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.message || `HTTP ${r.status}`);
    return body;
  });
}

function toast(text) {
  const t = $("#toast");
  t.textContent = text;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 3000);
}

function logout(why) {
  sessionStorage.removeItem(KEY);
  token = null;
  me = null;
  $("#whoami").textContent = "";
  if (streamAbort) streamAbort.abort();
  $("#main").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = why || "";
  setStatus(false, "not connected");
}

function setStatus(live, text) {
  const s = $("#status");
  s.className = `status ${live ? "live" : "off"}`;
  s.textContent = text;
}

// ---- the event stream ----

async function stream() {
  streamAbort = new AbortController();
  try {
    const r = await fetch("/v1/events", { headers: { authorization: `Bearer ${token}` }, signal: streamAbort.signal });
    if (r.status === 401) return logout("the token was refused");
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    setStatus(true, "live");
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const chunk = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let name = "message";
        const data = [];
        for (const line of chunk.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) onEvent(name, JSON.parse(data.join("\n")));
      }
    }
  } catch (e) {
    if (!token) return;
  }
  if (!token) return;
  setStatus(false, "reconnecting");
  setTimeout(stream, 1000);
}

// A `state-diff` carries only the definitions whose state changed since
// the last tick (and those that went): laid over the last whole state.
function applyDiff(d) {
  if (!latest) return null;
  const same = (a, b) => a.product === b.product && a.env === b.env;
  const products = latest.products.map((p) => ({ ...p, definitions: p.definitions.slice() }));
  for (const r of d.removed || []) {
    const p = products.find((x) => same(x, r));
    if (p) p.definitions = p.definitions.filter((x) => !(x.kind === r.kind && x.tag === r.tag));
  }
  for (const c of d.changed || []) {
    let p = products.find((x) => same(x, c));
    if (!p) {
      p = { product: c.product, env: c.env, definitions: [] };
      products.push(p);
    }
    const i = p.definitions.findIndex((x) => x.kind === c.definition.kind && x.tag === c.definition.tag);
    if (i >= 0) p.definitions[i] = c.definition;
    else p.definitions.push(c.definition);
  }
  return { at_unix_ms: d.at_unix_ms, cluster: d.cluster, products };
}

function onEvent(name, data) {
  if (name === "state-diff") {
    data = applyDiff(data);
    if (!data) return;
    name = "state";
  }
  if (name === "state") {
    const first = !latest;
    latest = data;
    window_.push(data);
    while (window_.length > 10) window_.shift();
    render();
    if (first) loadCharts();
  } else if (name === "run") {
    addRun(data, true);
  } else if (name === "audit") {
    addAudit(data, true);
  }
}

// ---- providers ----

function scopes(state) {
  return state.products.map((p) => `${p.product}/${p.env}`);
}

function render() {
  const all = scopes(latest);
  const sel = $("#scope");
  if (sel.options.length !== all.length) {
    sel.innerHTML = all.map((s) => `<option>${esc(s)}</option>`).join("");
  }
  if (!scope || !all.includes(scope)) scope = all[0];
  sel.value = scope;
  $("#cluster").textContent = latest.cluster || "";
  const p = latest.products.find((x) => `${x.product}/${x.env}` === scope);
  if (!p) return;
  $("#definitions").innerHTML = p.definitions.map((d) => definition(p, d)).join("") || "<p class='muted'>no quotas, fallbacks or features</p>";
}

// Served attempts per provider over the window of recent states.
function liveSplit(p, d) {
  const first = window_[0];
  const then = first?.products.find((x) => x.product === p.product && x.env === p.env)?.definitions.find((x) => x.kind === d.kind && x.tag === d.tag);
  const served = d.providers.map((o, i) => Math.max(0, o.counts.successes - (then?.providers[i]?.counts.successes ?? o.counts.successes)));
  const total = served.reduce((a, b) => a + b, 0);
  return served.map((n) => (total ? n / total : null));
}

function spark(history) {
  if (!history || !history.length) return "";
  const w = 90, h = 18, max = Math.max(...history.map((o) => o.ms), 1);
  const x = (i) => (history.length === 1 ? w / 2 : (i * w) / (history.length - 1));
  const y = (o) => h - 2 - ((h - 4) * o.ms) / max;
  const line = history.map((o, i) => `${x(i).toFixed(1)},${y(o).toFixed(1)}`).join(" ");
  const dots = history.map((o, i) => o.ok ? "" : `<circle cx="${x(i).toFixed(1)}" cy="${y(o).toFixed(1)}" r="2" fill="#cf222e"/>`).join("");
  return `<svg class="spark" width="${w}" height="${h}" aria-label="health latency"><polyline fill="none" stroke="#0969da" stroke-width="1.2" points="${line}"/>${dots}</svg>`;
}

function definition(p, d) {
  if (d.kind === "feature") {
    const steps = d.steps.map((s) => `${esc(s.name)} <span class="muted">(${esc(s.type)} ${esc(s.tag || `${s.app}/${s.action}`)})</span>`).join(" → ");
    return `<div class="definition" data-kind="feature" data-tag="${esc(d.tag)}"><h3>feature ${esc(d.tag)} <small>${esc(d.name)}</small></h3><p class="steps">${steps}</p></div>`;
  }
  const split = liveSplit(p, d);
  const weights = d.providers.map((o) => o.weight || 0);
  const wsum = weights.reduce((a, b) => a + b, 0);
  const rows = d.providers.map((o, i) => {
    const b = o.breaker;
    const adm = o.admission || {};
    const share = split[i];
    const want = wsum ? weights[i] / wsum : null;
    // An SVG bar (attributes, not inline styles: the page's CSP allows
    // none): the live share filled, the configured weight as a mark.
    const W = 128;
    const bar = share === null && want === null ? "" :
      `<svg class="bar" width="${W}" height="10" aria-label="live share beside the configured weight"><rect width="${W}" height="10" rx="4" fill="#d0d7de"/><rect width="${((share || 0) * W).toFixed(1)}" height="10" rx="4" fill="#0969da"/>${want === null ? "" : `<rect x="${Math.min(W - 2, want * W).toFixed(1)}" y="0" width="2" height="10" fill="#1f2328"/>`}</svg>`;
    const breakerKey = b.key;
    const hc = o.healthcheck;
    const actions = !mayOperate() ? "" : [
      hc ? `<button data-action="check" data-hc="${esc(hc)}">Check now</button>` : "",
      `<button data-action="force-open" data-breaker="${esc(breakerKey)}">Force open</button>`,
      `<button data-action="force-closed" data-breaker="${esc(breakerKey)}">Force closed</button>`,
      b.forced ? `<button data-action="release" data-breaker="${esc(breakerKey)}">Release</button>` : "",
      o.drained ? `<button data-action="restore" data-provider="${esc(o.provider)}">Restore</button>` : `<button data-action="drain" data-provider="${esc(o.provider)}">Drain</button>`,
    ].join("");
    return `<tr class="provider" data-provider="${esc(o.provider)}">
      <td><b>${esc(o.provider)}</b>${o.drained ? ' <span class="badge drained">drained</span>' : ""}<div class="muted">${esc(o.feature ? "feature " + o.feature : `${o.app}/${o.action}`)}</div></td>
      <td class="health"><span class="badge ${esc(o.status)}">${esc(o.status)}</span>${hc ? `<div class="muted">${esc(hc)}: checked ${ago(o.last_checked_unix_ms)}, available ${ago(o.last_available_unix_ms)}</div>${spark(o.history)}` : '<div class="muted">no healthcheck</div>'}</td>
      <td class="breaker"><span class="badge ${esc(b.state)}">${esc(b.state)}</span>${b.forced ? ` <span class="badge drained">forced ${esc(b.forced)}</span>` : ""}<div class="muted">${b.failures}/${b.requests} failed in window${b.last_error ? `<br>last: ${esc(b.last_error)}` : ""}</div></td>
      <td class="traffic">${bar}<div class="muted split">live ${share === null ? "–" : (share * 100).toFixed(0) + " %"}${want === null ? "" : ` · weight ${weights[i]} (${(want * 100).toFixed(0)} %)`}</div><div class="muted">served ${o.counts.successes} · failed ${Object.values(o.counts.failures || {}).reduce((a, c) => a + c, 0)} · blocked ${o.counts.blocked}</div></td>
      <td class="admission muted">in flight ${adm.in_flight ?? "–"} · queued ${adm.queued ?? "–"}${adm.cooldown_remaining_ms ? ` · cooldown ${adm.cooldown_remaining_ms} ms` : ""}</td>
      <td>${actions}</td></tr>`;
  }).join("");
  const chart = charts[`${p.product}/${p.env}/${d.kind}/${d.tag}`] || "";
  return `<div class="definition" data-kind="${esc(d.kind)}" data-tag="${esc(d.tag)}"><h3>${esc(d.kind)} ${esc(d.tag)} <small>${esc(d.name)}</small></h3>
    <table><thead><tr><th>provider</th><th>health</th><th>breaker</th><th>traffic</th><th>admission</th><th>actions</th></tr></thead><tbody>${rows}</tbody></table>${chart}</div>`;
}

// ---- history charts ----

const COLORS = ["#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989"];

// One line chart: a line per provider over the range (a gap where a step
// had no traffic), with its axis labels.
function lineChart(series, value, { label, max, unit, from, to }) {
  const W = 360, H = 110, L = 40, B = 16;
  const top = max || Math.max(1, ...series.flatMap((s) => s.points.map(value).filter((v) => v != null)));
  const x = (t) => L + ((W - L - 4) * (t - from)) / (to - from);
  const y = (v) => 4 + (H - B - 8) * (1 - Math.min(v, top) / top);
  const lines = series.map((s, i) => {
    const color = COLORS[i % COLORS.length];
    const segs = [];
    let cur = [];
    for (const p of s.points) {
      const v = value(p);
      if (v == null) { if (cur.length) segs.push(cur); cur = []; continue; }
      cur.push(`${x(p.at_unix_ms).toFixed(1)},${y(v).toFixed(1)}`);
    }
    if (cur.length) segs.push(cur);
    return segs.map((g) => g.length === 1
      ? `<circle cx="${g[0].split(",")[0]}" cy="${g[0].split(",")[1]}" r="2.5" fill="${color}"/>`
      : `<polyline fill="none" stroke="${color}" stroke-width="1.6" points="${g.join(" ")}"/>`).join("");
  }).join("");
  const fmt = (v) => (unit === "%" ? `${(v * 100).toFixed(0)} %` : `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ms`);
  const when = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const axis = `<line x1="${L}" y1="${H - B}" x2="${W - 4}" y2="${H - B}" stroke="#d0d7de"/><line x1="${L}" y1="4" x2="${L}" y2="${H - B}" stroke="#d0d7de"/>`
    + `<text x="${L - 4}" y="10" font-size="9" text-anchor="end" fill="#57606a">${fmt(top)}</text>`
    + `<text x="${L - 4}" y="${H - B}" font-size="9" text-anchor="end" fill="#57606a">${fmt(0)}</text>`
    + `<text x="${L}" y="${H - 3}" font-size="9" fill="#57606a">${when(from)}</text>`
    + `<text x="${W - 4}" y="${H - 3}" font-size="9" text-anchor="end" fill="#57606a">${when(to)}</text>`;
  return `<figure><svg class="chart" data-chart="${esc(label)}" width="${W}" height="${H}" role="img" aria-label="${esc(label)}">${axis}${lines}</svg><figcaption>${esc(label)}</figcaption></figure>`;
}

async function loadCharts() {
  clearTimeout(chartsTimer);
  chartsTimer = setTimeout(loadCharts, 30000);
  if (!latest || !scope || !token) return;
  const p = latest.products.find((x) => `${x.product}/${x.env}` === scope);
  if (!p) return;
  const to = Date.now();
  const from = to - (range === "day" ? 86400000 : 3600000);
  const step = range === "day" ? 900000 : 60000;
  for (const d of p.definitions.filter((d) => d.kind !== "feature")) {
    try {
      const series = await Promise.all(d.providers.map(async (o) => {
        const h = await api(`/v1/${p.product}/${p.env}/${d.kind}s/${encodeURIComponent(d.tag)}/providers/${encodeURIComponent(o.provider)}/history?from=${from}&to=${to}&step=${step}`);
        return { provider: o.provider, points: h.points };
      }));
      const legend = series.map((s, i) => `<span><svg width="10" height="10"><rect width="10" height="10" fill="${COLORS[i % COLORS.length]}"/></svg> ${esc(s.provider)}</span>`).join(" ");
      charts[`${p.product}/${p.env}/${d.kind}/${d.tag}`] = `<div class="history" data-range="${range}">`
        + lineChart(series, (q) => (q.samples ? q.success_rate : null), { label: `success rate, last ${range}`, max: 1, unit: "%", from, to })
        + lineChart(series, (q) => (q.samples ? q.p95_ms ?? null : null), { label: `p95 latency, last ${range}`, unit: "ms", from, to })
        + `<div class="legend">${legend}</div></div>`;
    } catch (e) {
      if (!token) return;
    }
  }
  render();
}

async function act(button) {
  const [product, env] = scope.split("/");
  const a = button.dataset.action;
  let call;
  if (a === "check") call = api(`/v1/${product}/${env}/healthchecks/${encodeURIComponent(button.dataset.hc)}/check`, { method: "POST" });
  else if (a === "force-open" || a === "force-closed" || a === "release") {
    call = api("/v1/admin/breakers/force", { method: "POST", body: JSON.stringify({ breaker: button.dataset.breaker, state: a === "release" ? "release" : a.slice(6) }) });
  } else call = api(`/v1/${product}/providers/${encodeURIComponent(button.dataset.provider)}/${a}`, { method: "POST" });
  button.disabled = true;
  try { await call; toast(`${a}: done`); } catch (e) { toast(`${a}: ${e.message}`); } finally { button.disabled = false; }
}

// ---- runs and audit ----

function runRow(r) {
  const tr = document.createElement("tr");
  tr.className = "run";
  tr.dataset.key = r.idempotency_key;
  tr.innerHTML = `<td class="muted">${new Date(r.at_unix_ms).toLocaleTimeString()}</td><td>${esc(r.kind)} ${esc(r.tag)} <span class="muted">${esc(r.env)}</span></td><td class="muted">${esc(r.idempotency_key)}</td><td><span class="badge ${r.outcome === "ok" ? "closed" : "open"}">${esc(r.outcome)}</span></td><td>${esc(r.provider || "–")}</td><td class="muted">${r.duration_ms.toFixed(1)}</td>`;
  tr.addEventListener("click", () => {
    $("#trace-title").hidden = false;
    $("#trace-title").textContent = `Trace of ${r.kind} ${r.tag}, key ${r.idempotency_key}`;
    const pre = $("#trace");
    pre.hidden = false;
    pre.textContent = JSON.stringify(r.trace, null, 2);
  });
  return tr;
}

let searching = false;
function addRun(r, live) {
  if (live && searching) return; // a search result is on screen
  const body = $("#runs tbody");
  body.prepend(runRow(r));
  while (body.children.length > 50) body.lastChild.remove();
}

async function findRuns(e) {
  e?.preventDefault();
  const q = $("#run-search").value.trim();
  searching = q !== "";
  const params = new URLSearchParams({ limit: "50" });
  if (q) params.set($("#run-field").value, q);
  const { runs } = await api(`/v1/runs?${params}`);
  const body = $("#runs tbody");
  body.innerHTML = "";
  runs.forEach((r) => body.append(runRow(r)));
  if (runs.length === 1) body.firstChild.click();
}

function addAudit(a) {
  const li = document.createElement("li");
  li.className = "audit";
  li.innerHTML = `<b>${esc(a.action)}</b> ${esc(a.target)} <span class="muted">by ${esc(a.actor)} (${esc(a.channel)}), ${new Date(a.at_unix_ms).toLocaleTimeString()}: ${esc(a.detail)}</span>`;
  $("#audit").prepend(li);
  while ($("#audit").children.length > 50) $("#audit").lastChild.remove();
}

// ---- start ----

async function start() {
  $("#login").hidden = true;
  $("#main").hidden = false;
  $("#logout").hidden = false;
  try {
    me = await api("/v1/whoami");
    $("#whoami").textContent = `${me.name} · ${me.role}`;
    $("#whoami").title = `products: ${me.products.join(", ")}; envs: ${me.envs.join(", ")}`;
    document.body.dataset.role = me.role;
    const { audit } = await api("/v1/admin/audit?limit=20");
    $("#audit").innerHTML = "";
    audit.reverse().forEach(addAudit);
    await findRuns();
  } catch (e) {
    if (!token) return;
  }
  stream();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login").addEventListener("submit", async (e) => {
    e.preventDefault();
    token = $("#token").value.trim();
    $("#token").value = "";
    const r = await fetch("/v1/whoami", { headers: { authorization: `Bearer ${token}` } });
    if (r.status === 401) return logout("the token was refused");
    if (r.status === 429) return logout("too many failed tokens from this address; wait a minute");
    sessionStorage.setItem(KEY, token);
    start();
  });
  $("#logout").addEventListener("click", () => logout());
  $("#scope").addEventListener("change", (e) => { scope = e.target.value; window_.length = 0; render(); loadCharts(); });
  for (const b of document.querySelectorAll(".range button")) {
    b.addEventListener("click", () => {
      range = b.dataset.range;
      document.querySelectorAll(".range button").forEach((x) => x.classList.toggle("on", x === b));
      loadCharts();
    });
  }
  $("#definitions").addEventListener("click", (e) => { const b = e.target.closest("button[data-action]"); if (b) act(b); });
  $("#run-form").addEventListener("submit", findRuns);
  if (token) start(); else logout();
});
