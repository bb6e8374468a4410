// valet dashboard. Plain script, no framework, no network beyond this admin listener: it polls
// the admin API with the token kept in sessionStorage, draws its own charts on canvases, and
// follows instance logs over Server-Sent Events read with fetch (EventSource cannot send the
// Authorization header). Everything from the server goes into textContent, never innerHTML.
"use strict";

const TOKEN_KEY = "valet-admin-token";
const HISTORY_MS = 5 * 60 * 1000;
const COLORS = ["#2f6fde", "#1f8a4c", "#c05621", "#805ad5", "#c53030", "#2c7a7b", "#b7791f", "#d53f8c"];
const $ = (id) => document.getElementById(id);

let token = sessionStorage.getItem(TOKEN_KEY);
let timers = [];
let pending = new Set(); // instances with an action in flight: their buttons stay disabled
const openProjects = new Set(); // projects whose versions are shown
const rollingBack = new Set(); // projects with a rollback in flight
let lastStats = null;
const series = { rate: {}, latency: {}, cold: {} };
let logsAbort = null;

// ---- API -------------------------------------------------------------------------------------

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}), Authorization: `Bearer ${token}` };
  const res = await fetch(path, { ...options, headers });
  if (res.status === 401) throw new Unauthorized("the token was refused");
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.message || `HTTP ${res.status}`);
  return body;
}

const instancePath = (cls, key) => `/v1/instances/${encodeURIComponent(cls)}/${encodeURIComponent(key)}`;

// ---- Sign in and out ------------------------------------------------------------------------

async function signIn(candidate) {
  token = candidate;
  try {
    await api("/v1/status");
  } catch (e) {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(e instanceof Unauthorized ? "That token was refused." : `Cannot reach valet: ${e.message}`);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login-panel").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  start();
}

function showLogin(message) {
  timers.forEach(clearInterval);
  timers = [];
  closeLogs();
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login-panel").hidden = false;
  $("login-error").hidden = !message;
  $("login-error").textContent = message || "";
  $("token").focus();
}

function signOut(message) {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin(message);
}

// Any poll that meets a 401 (token changed, valet restarted with another) signs out.
function guard(fn) {
  return async () => {
    try {
      await fn();
      $("live").textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      if (e instanceof Unauthorized) signOut("The token is no longer accepted.");
      else $("live").textContent = `connection lost (${e.message})`;
    }
  };
}

function start() {
  const polls = [[refreshInstances, 1000], [refreshStats, 2000], [refreshStatus, 2000],
    [refreshProjects, 2000]];
  for (const [fn, every] of polls) {
    const run = guard(fn);
    run();
    timers.push(setInterval(run, every));
  }
}

// ---- Projects (deploy API) -------------------------------------------------------------------

const projectPath = (id) => `/v1/projects/${encodeURIComponent(id)}`;

async function refreshProjects() {
  let list;
  try {
    list = await api("/v1/projects");
  } catch (e) {
    if (e instanceof Unauthorized) throw e;
    // 404 "the deploy API is not enabled": nothing to show.
    $("projects-panel").hidden = true;
    return;
  }
  $("projects-panel").hidden = false;
  $("project-count").textContent = `(${list.length})`;
  $("no-projects").hidden = list.length > 0;
  const versions = await Promise.all(list.map((p) =>
    openProjects.has(p.id) ? api(`${projectPath(p.id)}/versions`).catch(() => []) : null));
  const rows = [];
  list.forEach((p, n) => {
    const open = openProjects.has(p.id);
    rows.push(el("tr", { data: { project: p.id, version: p.version } },
      el("td", {}, p.name),
      el("td", { class: "key" }, p.id),
      el("td", {}, p.owner || "–"),
      el("td", {}, p.runtime),
      el("td", { class: "num" }, p.version),
      el("td", {}, el("span", { class: `state state-${p.state}` }, p.state || "–")),
      el("td", { class: "key" }, el("a", { href: p.endpoint, target: "_blank", rel: "noopener" }, p.endpoint)),
      el("td", { class: "actions" },
        el("button", {
          class: "link", data: { action: "versions" },
          on: { click: () => { open ? openProjects.delete(p.id) : openProjects.add(p.id); guard(refreshProjects)(); } },
        }, open ? "Hide versions" : "Versions"))));
    if (open && versions[n]) {
      const items = versions[n].map((v) => el("li", { data: { version: v.version } },
        `v${v.version} · ${v.runtime} · ${new Date(v.created_at * 1000).toLocaleString()} `,
        v.current ? el("span", { class: "state state-ready" }, "current")
          : el("button", {
            class: "secondary", disabled: rollingBack.has(p.id), data: { rollback: v.version },
            title: `Move ${p.name}'s traffic back to version ${v.version}`,
            on: { click: () => rollback(p, v.version) },
          }, "Roll back")));
      rows.push(el("tr", { class: "versions-row", data: { versionsOf: p.id } },
        el("td", { colSpan: 8 }, el("ul", { class: "versions" }, ...items))));
    }
  });
  document.querySelector("#projects tbody").replaceChildren(...rows);
}

async function rollback(project, version) {
  rollingBack.add(project.id);
  $("project-error").hidden = true;
  guard(refreshProjects)();
  try {
    // Answers once the version is ready and has the traffic.
    await api(`${projectPath(project.id)}/rollback`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ version }),
    });
  } catch (e) {
    if (e instanceof Unauthorized) return signOut("The token is no longer accepted.");
    $("project-error").textContent = `rollback of ${project.name} to v${version}: ${e.message}`;
    $("project-error").hidden = false;
  } finally {
    rollingBack.delete(project.id);
  }
  guard(refreshProjects)();
}

// ---- Formatting ------------------------------------------------------------------------------

function duration(ms) {
  if (ms == null) return "–";
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

function exitText(exit) {
  if (!exit) return "–";
  if (exit.signal != null) return `signal ${exit.signal}`;
  return exit.code == null ? "–" : `code ${exit.code}`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "data") Object.assign(node.dataset, v);
    else if (k === "on") Object.entries(v).forEach(([ev, f]) => node.addEventListener(ev, f));
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

// ---- Status and class cards ------------------------------------------------------------------

async function refreshStatus() {
  const s = await api("/v1/status");
  const node = s.node ? ` · cluster node ${s.node}` : "";
  $("summary").textContent =
    `v${s.version} · ${s.driver} driver · gateway ${s.listen} · up ${duration(s.uptime_ms)}${node}`;
  const cards = s.classes.map((c) => {
    const states = Object.entries(c.states).map(([k, v]) => `${v} ${k}`).join(", ") || "none";
    const row = (label, value) => [el("dt", {}, label), el("dd", {}, value)];
    return el("article", { class: "panel card", data: { class: c.name } },
      el("h3", {}, c.name),
      el("dl", {},
        ...row("running", `${c.live} / ${c.max_instances}`),
        ...row("instances", states),
        ...row("requests", c.requests),
        ...row("5xx", c.errors),
        ...row("cold starts", c.cold_starts),
        ...row("crashes", c.crashes)));
  });
  $("classes").replaceChildren(...cards);
}

// ---- Instances -------------------------------------------------------------------------------

async function refreshInstances() {
  const list = await api("/v1/instances");
  $("instance-count").textContent = `(${list.length})`;
  $("no-instances").hidden = list.length > 0;
  // How many instances each key runs (a scaled key runs up to max_replicas), said on the
  // key's first row; the list comes sorted by class, key and replica (issue 21).
  const live = (i) => !i.forwarded && ["starting", "ready", "backoff", "stopping"].includes(i.state);
  const replicasOf = new Map();
  for (const i of list) {
    const ofKey = `${i.class}\u0000${i.key}`;
    if (live(i)) replicasOf.set(ofKey, (replicasOf.get(ofKey) || 0) + 1);
  }
  const counted = new Set();
  const rows = [];
  for (const i of list) {
    // A deployed project goes by its name (its version's class name means nothing to anyone)
    // and is acted on as `project:<id>`, which stays right across its versions.
    const shown = i.project ? `${i.label} (${i.project.id})` : i.class;
    const target = i.project ? `project:${i.project.id}` : i.class;
    // A scaled key has a row per replica (issue 21); its actions and logs are the key's.
    const replica = i.replica ? ` #${i.replica}` : "";
    const id = `${i.project ? i.label : i.class}/${i.key}${replica}`;
    const busy = pending.has(id);
    const running = ["ready", "starting", "backoff"].includes(i.state);
    const ofKey = `${i.class}\u0000${i.key}`;
    const replicas = counted.has(ofKey) ? 0 : replicasOf.get(ofKey) || 0;
    counted.add(ofKey);
    const action = (name, label, cls, enabled) =>
      el("button", {
        class: cls, disabled: busy || !enabled, title: `${label} ${id}`,
        data: { action: name }, on: { click: () => act(i, target, id, name) },
      }, label);
    rows.push(el("tr", { data: { instance: id, state: i.state, ...(replicas > 1 ? { replicas } : {}) } },
      el("td", { title: i.class }, shown),
      el("td", { class: "key", title: i.key }, i.key,
        replica ? el("span", { class: "replica", title: "replica of this key" }, replica) : "",
        replicas > 1 ? el("span", { class: "replicas", title: "instances of this key running" }, ` · ${replicas} replicas`) : ""),
      el("td", { class: "state-cell" }, i.forwarded
        ? el("span", { class: "state state-forwarded", title: "another replica runs this key" }, "forwarded")
        : el("span", { class: `state state-${i.state}` }, i.state),
        // Cluster mode: the replica that owns the key (for a key another replica owns, this
        // one forwards its requests there).
        i.owner ? el("span", { class: "owner", title: "owner replica" }, ` on ${i.owner}`) : ""),
      el("td", {}, duration(i.uptime_ms)),
      el("td", {}, i.active > 0 ? "now" : `${duration(i.idle_ms)} ago`),
      el("td", { class: "num" }, i.requests),
      el("td", { class: "num" }, i.active + (i.waiting ? ` (+${i.waiting} waiting)` : "")),
      el("td", { class: "num" }, i.restarts),
      el("td", {}, exitText(i.last_exit)),
      el("td", { class: "num" }, i.last_start_ms == null ? "–" : `${i.last_start_ms} ms`),
      el("td", { class: "actions" },
        action("start", "Start", "secondary", !running),
        action("stop", "Stop", "secondary", running),
        el("button", { class: "link", data: { action: "logs" }, on: { click: () => openLogs(target, i.key, id) } }, "Logs"),
        action("destroy", "Destroy", "danger", true))));
    if (i.message && i.state !== "ready") {
      const detail = [i.message, ...(i.last_log || [])].join("\n");
      rows.push(el("tr", { class: "detail" }, el("td", { colSpan: 11 }, detail)));
    }
  }
  document.querySelector("#instances tbody").replaceChildren(...rows);
}

async function act(instance, target, id, action) {
  if (action === "destroy" && !confirm(`Destroy ${id}? Its data and log file are deleted.`)) return;
  pending.add(id);
  $("action-error").hidden = true;
  guard(refreshInstances)();
  try {
    await api(`${instancePath(target, instance.key)}/${action}`, { method: "POST" });
  } catch (e) {
    if (e instanceof Unauthorized) return signOut("The token is no longer accepted.");
    $("action-error").textContent = `${action} ${id}: ${e.message}`;
    $("action-error").hidden = false;
  } finally {
    pending.delete(id);
  }
  guard(refreshInstances)();
  guard(refreshStatus)();
}

// ---- Logs (SSE over fetch) -------------------------------------------------------------------

function closeLogs() {
  if (logsAbort) logsAbort.abort();
  logsAbort = null;
  $("logs-panel").hidden = true;
}

async function openLogs(cls, key, title) {
  closeLogs();
  const abort = new AbortController();
  logsAbort = abort;
  $("logs-title").textContent = title || `${cls}/${key}`;
  $("logs").replaceChildren();
  $("logs-panel").hidden = false;
  $("logs-panel").scrollIntoView({ behavior: "smooth", block: "nearest" });
  try {
    const res = await fetch(`${instancePath(cls, key)}/logs?tail=200&follow=1`, {
      headers: { Authorization: `Bearer ${token}` }, signal: abort.signal,
    });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        sseEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
    appendLog("(log stream ended)", true);
  } catch (e) {
    if (!abort.signal.aborted) appendLog(`(log stream failed: ${e.message})`, true);
  }
}

function sseEvent(block) {
  let type = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) type = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (data.length) appendLog(data.join("\n"), type === "notice");
}

function appendLog(text, notice) {
  const pre = $("logs");
  const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.append(el("span", notice ? { class: "notice" } : {}, `${text}\n`));
  while (pre.childNodes.length > 2000) pre.firstChild.remove();
  if (stick) pre.scrollTop = pre.scrollHeight;
}

// ---- Charts ----------------------------------------------------------------------------------

async function refreshStats() {
  const stats = await api("/v1/stats");
  const now = stats.at;
  if (lastStats) {
    const dt = (now - lastStats.at) / 1000;
    for (const c of stats.classes) {
      const before = lastStats.classes.find((b) => b.class === c.class);
      if (!before || dt <= 0) continue;
      push(series.rate, c.class, now, (c.requests - before.requests) / dt);
      push(series.latency, c.class, now, percentile(before.duration, c.duration, 0.95));
      push(series.cold, c.class, now, c.cold_start.count - before.cold_start.count);
    }
  }
  lastStats = stats;
  drawAll(now);
}

function push(set, name, t, v) {
  const points = (set[name] ||= []);
  points.push([t, v]);
  while (points.length && points[0][0] < t - HISTORY_MS) points.shift();
}

// The q-quantile of what was observed between two cumulative histograms, in ms, interpolated
// within its bucket; null when nothing was observed.
function percentile(before, after, q) {
  const total = after.count - before.count;
  if (total <= 0) return null;
  const target = q * total;
  let prevLe = 0, prevN = 0;
  for (let i = 0; i < after.buckets.length; i++) {
    const [le, n] = after.buckets[i];
    const delta = n - before.buckets[i][1];
    if (delta >= target) {
      if (le == null) return prevLe * 1000;
      return (prevLe + (le - prevLe) * ((target - prevN) / Math.max(delta - prevN, 1))) * 1000;
    }
    prevLe = le ?? prevLe;
    prevN = delta;
  }
  return prevLe * 1000;
}

function drawAll(now) {
  const names = Object.keys(series.rate).sort();
  const color = (name) => COLORS[names.indexOf(name) % COLORS.length];
  drawChart($("chart-rate"), series.rate, color, now, { digits: 1 });
  drawChart($("chart-latency"), series.latency, color, now, { digits: 1 });
  drawChart($("chart-cold"), series.cold, color, now, { digits: 0, bars: true });
  for (const id of ["legend-rate", "legend-latency", "legend-cold"]) {
    $(id).replaceChildren(...names.map((n) => {
      const swatch = el("i");
      swatch.style.background = color(n);
      return el("span", {}, swatch, n);
    }));
  }
}

// A tick label: integers stay integers, other values get at most `digits` decimals.
function tick(v, digits) {
  return Number.isInteger(v) ? String(v) : v.toFixed(Math.max(digits, 1)).replace(/\.?0+$/, "");
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= v);
}

function drawChart(canvas, set, color, now, opts) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = 180;
  canvas.width = w * dpr;
  canvas.height = h * dpr;
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  const style = getComputedStyle(document.body);
  const pad = { l: 44, r: 8, t: 8, b: 18 };
  const plotW = w - pad.l - pad.r, plotH = h - pad.t - pad.b;
  const all = Object.values(set).flat().map((p) => p[1]).filter((v) => v != null);
  const peak = Math.max(0, ...all);
  // Counts get whole-number ticks (a multiple of the 4 grid steps); rates and times nice ones.
  const max = opts.digits === 0 ? Math.max(4, Math.ceil(peak / 4) * 4) : niceMax(peak);
  const x = (t) => pad.l + ((t - (now - HISTORY_MS)) / HISTORY_MS) * plotW;
  const y = (v) => pad.t + plotH - (v / max) * plotH;
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = style.getPropertyValue("--muted") || "#888";
  ctx.strokeStyle = style.getPropertyValue("--line") || "#ddd";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4, yy = Math.round(y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(pad.l, yy); ctx.lineTo(w - pad.r, yy); ctx.stroke();
    ctx.fillText(tick(v, opts.digits), 4, yy + 4);
  }
  for (let m = 5; m >= 0; m--) {
    ctx.fillText(m === 0 ? "now" : `-${m}m`, x(now - m * 60000) - (m === 0 ? 20 : 8), h - 4);
  }
  Object.entries(set).forEach(([name, points], index) => {
    ctx.strokeStyle = ctx.fillStyle = color(name);
    if (opts.bars) {
      for (const [t, v] of points) if (v > 0) ctx.fillRect(x(t) - 2 + index * 3, y(v), 3, y(0) - y(v));
      return;
    }
    ctx.lineWidth = 1.8;
    ctx.beginPath();
    let drawing = false;
    for (const [t, v] of points) {
      if (v == null) { drawing = false; continue; }
      if (drawing) ctx.lineTo(x(t), y(v)); else ctx.moveTo(x(t), y(v));
      drawing = true;
    }
    ctx.stroke();
    // A dot per sample, so that a single sample (or one between gaps) is visible too.
    for (const [t, v] of points) {
      if (v == null) continue;
      ctx.beginPath();
      ctx.arc(x(t), y(v), 2, 0, 2 * Math.PI);
      ctx.fill();
    }
  });
}

// ---- Wiring ----------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($("token").value.trim());
  });
  $("logout").addEventListener("click", () => signOut());
  $("logs-close").addEventListener("click", closeLogs);
  if (token) signIn(token);
  else showLogin();
});
