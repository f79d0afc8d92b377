// switchyard dashboard: plain JavaScript, no build step. Pages are views over the /v1 API;
// live updates come from one WebSocket on /v1/watch (every topic), resumed by revision.
"use strict";

const params = new URLSearchParams(location.search);
if (params.get("token")) sessionStorage.setItem("switchyard-token", params.get("token"));
const token = sessionStorage.getItem("switchyard-token");

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers["Authorization"] = "Bearer " + token;
  const resp = await fetch(path, Object.assign({}, options, { headers }));
  const text = await resp.text();
  const body = text ? JSON.parse(text) : null;
  if (!resp.ok) {
    const msg = body && body.error ? body.error.message : resp.status + " " + resp.statusText;
    throw new Error(msg);
  }
  return body;
}

// h("div", {class: "x"}, "text", child, ...): elements without innerHTML, so nothing from the
// server is ever parsed as markup.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// A button that POSTs to `path`; the page redraws from the event the change makes. A refusal
// (e.g. 409 while an action runs, 401/403 without a write token) is shown, nothing else.
const act = (label, path) => h("button", { class: "act", "data-path": path, onclick: async (e) => {
  e.target.disabled = true;
  try { await api(path, { method: "POST" }); } catch (err) { alert(label + ": " + err.message); }
  finally { e.target.disabled = false; }
} }, label);
const FINAL = ["succeeded", "failed", "timed_out", "dead", "cancelled"];
const jobActions = (j) => (FINAL.includes(j.status)
  ? act("Retry", "/v1/jobs/" + j.id + "/retry")
  : act("Cancel", "/v1/jobs/" + j.id + "/cancel"));

const badge = (s) => h("span", { class: "badge s-" + s }, s);
const fmtSecs = (s) => (s === null || s === undefined ? "–" : s < 60 ? s.toFixed(1) + " s" : Math.floor(s / 60) + " m " + Math.round(s % 60) + " s");
const when = (t) => (t ? new Date(t).toLocaleString() : "–");
const main = () => document.getElementById("main");

function show(...nodes) {
  main().replaceChildren(...nodes);
}

function failure(e) {
  show(h("p", { class: "error" }, String(e.message || e)));
}

// ---- live updates -------------------------------------------------------------------------

const live = { revision: null, socket: null, listeners: new Set(), retry: 500 };

function onEvent(fn) {
  live.listeners.add(fn);
  return () => live.listeners.delete(fn);
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  let url = proto + "//" + location.host + "/v1/watch?prefix=";
  if (live.revision !== null) url += "&from_revision=" + live.revision;
  if (token) url += "&token=" + encodeURIComponent(token);
  const ws = new WebSocket(url);
  live.socket = ws;
  const badgeEl = document.getElementById("live");
  ws.onopen = () => {
    live.retry = 500;
    badgeEl.textContent = "live";
    badgeEl.className = "live on";
  };
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.type === "event") {
      live.revision = msg.revision;
      for (const fn of live.listeners) fn(msg);
    } else if (msg.type === "bookmark") {
      live.revision = msg.revision;
    } else if (msg.type === "error") {
      // Too far behind or compacted: start from now and let the page re-read its state.
      live.revision = null;
      route();
    }
  };
  ws.onclose = () => {
    badgeEl.textContent = "offline";
    badgeEl.className = "live off";
    setTimeout(connect, live.retry);
    live.retry = Math.min(live.retry * 2, 10000);
  };
}

// Call `fn` at most every `ms`, and once more after the last call.
function throttle(fn, ms) {
  let timer = null, pending = false;
  return () => {
    if (timer) { pending = true; return; }
    fn();
    timer = setTimeout(function again() {
      timer = null;
      if (pending) { pending = false; fn(); timer = setTimeout(again, ms); }
    }, ms);
  };
}

// ---- pages --------------------------------------------------------------------------------

let leave = () => {};

// Bumped on every route change. A page's draws and subscriptions can finish after the user
// has moved on (a fetch still in flight, a throttled redraw); `current()` taken when a page
// starts tells them whether their page is still the one shown, so a stale page never paints
// over the new one or keeps listening.
let generation = 0;
function current() {
  const mine = generation;
  return () => mine === generation;
}

async function runsPage() {
  const live = current();
  const draw = async () => {
    const { runs } = await api("/v1/runs");
    if (!live()) return;
    show(
      h("h1", {}, "Runs"),
      runs.length === 0
        ? h("p", { class: "muted" }, "No runs yet. Start one with: switchyard run --matrix FILE --workers N")
        : h("table", { id: "runs" },
            h("tr", {}, ["Run", "Name", "Status", "Cells", "Passed", "Failed", "Running", "Queued", "Started", "Duration"].map((t) => h("th", {}, t))),
            runs.map((r) => h("tr", {},
              h("td", {}, h("a", { href: "#/runs/" + r.id }, "#" + r.id)),
              h("td", {}, r.name || "–"),
              h("td", {}, badge(r.status)),
              h("td", {}, r.total), h("td", {}, r.passed), h("td", {}, r.failed),
              h("td", {}, r.running), h("td", {}, r.queued),
              h("td", {}, when(r.started_at)), h("td", {}, fmtSecs(r.duration_seconds))))));
  };
  await draw();
  if (!live()) return;
  const again = throttle(() => draw().catch(failure), 500);
  leave = onEvent((m) => { if (m.topic.startsWith("runs/")) again(); });
}

const ORDER = ["succeeded", "failed", "timed_out", "dead", "cancelled", "running", "queued"];

async function runPage(id) {
  const live = current();
  const [run, { cells }] = await Promise.all([api("/v1/runs/" + id), api("/v1/runs/" + id + "/cells")]);
  const grid = h("div", { class: "grid", id: "grid", "data-run": id });
  const cellEls = cells.map((c) => {
    const title = c.key + " " + Object.entries(c.values).map(([k, v]) => k + "=" + v).join(" ") + (c.error ? ": " + c.error : "");
    const el = h("a", { class: "cell s-" + c.status, href: "#/runs/" + id + "/cells/" + c.index, title, "data-index": c.index, "data-status": c.status });
    grid.append(el);
    return el;
  });
  const statsBox = h("div", { class: "stats", id: "stats" });
  const bar = h("div", { class: "bar" });
  const breakdown = h("div", { id: "breakdown" });
  const heading = h("h1", {});
  const cancel = h("button", { onclick: async () => { try { await api("/v1/runs/" + id + "/cancel", { method: "POST" }); } catch (e) { alert(e.message); } } }, "Cancel run");
  const legend = h("div", { class: "legend" }, ORDER.map((s) => h("span", {}, h("i", { style: "background: var(--" + (s === "succeeded" ? "passed" : s) + ")" }), s)));
  const drawStats = (r) => {
    heading.replaceChildren("Run #" + r.id + (r.name ? " " + r.name : "") + " ", badge(r.status));
    cancel.hidden = r.status !== "running";
    const items = [["total", r.total], ["passed", r.passed], ["failed", r.failed], ["running", r.running], ["queued", r.queued],
      ["cancelled", r.cancelled], ["dead", r.dead], ["excluded", r.excluded], ["duration", fmtSecs(r.duration_seconds)],
      ["cells/s", r.throughput.toFixed(2)], ["ETA", fmtSecs(r.eta_seconds)]];
    statsBox.replaceChildren(...items.map(([k, v]) => h("div", { class: "stat", "data-stat": k }, h("b", {}, v), h("span", {}, k))));
    const parts = [["passed", r.passed], ["failed", r.failed], ["timed_out", 0], ["dead", r.dead], ["cancelled", r.cancelled], ["running", r.running]];
    bar.replaceChildren(...parts.filter(([, n]) => n > 0).map(([k, n]) => h("div", { style: "width:" + (100 * n / r.total) + "%; background: var(--" + k + ")" })));
    if (r.breakdown) {
      const failedOf = (c) => (c.failed || 0) + (c.timed_out || 0) + (c.dead || 0);
      const otherOf = (c) => Object.entries(c)
        .filter(([k]) => !["passed", "failed", "timed_out", "dead"].includes(k))
        .reduce((a, [, n]) => a + n, 0);
      const tables = Object.entries(r.breakdown).map(([dim, values]) => {
        const head = h("tr", {}, h("th", {}, dim), h("th", {}, "passed"), h("th", {}, "failed"), h("th", {}, "other"));
        const rows = Object.entries(values).map(([v, c]) =>
          h("tr", {}, h("td", {}, v), h("td", {}, c.passed || 0), h("td", {}, failedOf(c)), h("td", {}, otherOf(c))));
        return h("div", {}, h("table", {}, head, rows));
      });
      breakdown.replaceChildren(h("h2", {}, "By dimension"), h("div", { class: "row" }, tables));
    }
  };
  let last = run;
  drawStats(run);
  if (!live()) return;
  show(heading, statsBox, bar, cancel, legend, grid, breakdown);
  let running = run.status === "running";
  const refresh = throttle(async () => {
    try {
      const r = await api("/v1/runs/" + id);
      running = r.status === "running";
      last = r;
      drawStats(r);
    } catch (e) { /* the run is gone */ }
  }, 1000);
  // Events drive the grid; a slow re-read also catches what happened before the page listened.
  const resync = async () => {
    if (!running) return;
    try {
      const { cells } = await api("/v1/runs/" + id + "/cells");
      for (const c of cells) {
        const el = cellEls[c.index];
        if (el && el.dataset.status !== c.status) { el.className = "cell s-" + c.status; el.dataset.status = c.status; }
      }
    } catch (e) { /* the run is gone */ }
  };
  const ticker = setInterval(() => { refresh(); resync(); }, 3000);
  const off = onEvent((m) => {
    if (m.topic !== "runs/" + id) return;
    const c = m.event.cell;
    if (c && cellEls[c.index]) {
      cellEls[c.index].className = "cell s-" + c.status;
      cellEls[c.index].dataset.status = c.status;
    }
    // Every run event carries the counts: show them at once, the rest on the next read.
    const n = m.event.counts || {};
    if (m.event.revision >= last.revision) {
      last = Object.assign({}, last, {
        revision: m.event.revision, status: m.event.status,
        passed: n.succeeded || 0, failed: (n.failed || 0) + (n.timed_out || 0), running: n.running || 0,
        queued: n.queued || 0, cancelled: n.cancelled || 0, dead: n.dead || 0,
      });
      drawStats(last);
    }
    refresh();
  });
  leave = () => { off(); clearInterval(ticker); };
}

async function cellPage(id, index) {
  const live = current();
  const { cells } = await api("/v1/runs/" + id + "/cells");
  const c = cells[index];
  if (!c) throw new Error("run " + id + " has no cell " + index);
  const job = await api("/v1/jobs/" + c.job_id);
  const pre = h("pre", { class: "log", id: "log" });
  const status = h("span", {}, badge(c.status));
  if (!live()) return;
  show(
    h("p", {}, h("a", { href: "#/runs/" + id }, "← run #" + id)),
    h("h1", {}, c.key + " ", status),
    h("table", {},
      Object.entries(c.values).map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))),
      h("tr", {}, h("th", {}, "command"), h("td", {}, job.spec.command.join(" "))),
      h("tr", {}, h("th", {}, "job"), h("td", {}, h("a", { href: "/v1/jobs/" + c.job_id }, "#" + c.job_id))),
      h("tr", {}, h("th", {}, "exit code"), h("td", {}, c.exit_code ?? "–")),
      job.error ? h("tr", {}, h("th", {}, "reason"), h("td", { class: "reason" }, job.error)) : null,
      h("tr", {}, h("th", {}, "attempts"), h("td", {}, c.attempts)),
      h("tr", {}, h("th", {}, "duration"), h("td", {}, fmtSecs(c.duration_seconds)))),
    h("h2", {}, "Log (tail)"), pre);
  // The tail: the last 500 lines, then every new one as the job writes it.
  const first = await api("/v1/jobs/" + c.job_id + "/logs?limit=10000");
  const lines = first.lines.slice(-500);
  const add = (l) => {
    pre.append(h("span", { class: l.stream }, l.text + "\n"));
    while (pre.childNodes.length > 500) pre.firstChild.remove();
    pre.scrollTop = pre.scrollHeight;
  };
  lines.forEach(add);
  if (!live()) return;
  let source = null;
  if (!first.complete) {
    let url = "/v1/jobs/" + c.job_id + "/logs?follow=true&from=" + first.next;
    if (token) url += "&token=" + encodeURIComponent(token);
    source = new EventSource(url);
    source.addEventListener("line", (e) => add(JSON.parse(e.data)));
    source.addEventListener("end", (e) => { status.replaceChildren(badge(JSON.parse(e.data).status || "ended")); source.close(); });
  }
  leave = () => { if (source) source.close(); };
}

function listPage(title, path, key, columns, prefix) {
  return async () => {
    const live = current();
    const draw = async () => {
      const body = await api(path);
      if (!live()) return;
      const items = body[key];
      show(h("h1", {}, title),
        items.length === 0 ? h("p", { class: "muted" }, "None.") :
          h("table", { id: key }, h("tr", {}, columns.map(([name]) => h("th", {}, name))),
            items.map((it) => h("tr", {}, columns.map(([, f]) => h("td", {}, f(it)))))));
    };
    await draw();
    if (!live()) return;
    const again = throttle(() => draw().catch(failure), 700);
    leave = onEvent((m) => { if (m.topic.startsWith(prefix)) again(); });
  };
}

const jobsPage = listPage("Jobs", "/v1/jobs?limit=200", "jobs", [
  ["Job", (j) => h("a", { href: "/v1/jobs/" + j.id + "/logs" }, "#" + j.id)],
  ["Status", (j) => badge(j.status)], ["Queue", (j) => j.queue],
  ["Command", (j) => j.spec.command.join(" ")], ["Attempts", (j) => j.attempts],
  ["Exit", (j) => j.exit_code ?? (j.error ? h("span", { title: j.error }, "– " + j.error) : "–")], ["Worker", (j) => j.worker || "–"], ["Created", (j) => when(j.created_at)],
  ["", jobActions],
], "jobs/");

const agentsPage = listPage("Agents", "/v1/agents", "agents", [
  ["Agent", (a) => a.id], ["Status", (a) => badge(a.status)], ["Host", (a) => a.hostname],
  ["CPUs", (a) => a.cpus], ["Labels", (a) => Object.entries(a.labels).map(([k, v]) => k + "=" + v).join(" ") || "–"],
  ["Running", (a) => (a.running || []).length], ["Last seen", (a) => when(a.last_seen)],
], "agents/");

const deploymentsPage = listPage("Deployments", "/v1/deployments", "deployments", [
  ["Name", (d) => d.name], ["State", (d) => badge(d.state)],
  ["Action", (d) => (d.action ? d.action.action + " (" + d.action.action_id + ")" : "–")],
  ["Failed action", (d) => d.failed_action || "–"], ["Folder", (d) => d.dir || "–"],
  ["Run", (d) => Object.keys(d.actions).map((a) =>
    act(a, "/v1/deployments/" + encodeURIComponent(d.name) + "/actions/" + encodeURIComponent(a)))],
], "deployments/");

const devicesPage = listPage("Devices", "/v1/devices", "devices", [
  ["Device", (d) => d.name], ["Type", (d) => d.type], ["State", (d) => d.state ?? "–"],
  ["Attributes", (d) => Object.entries(d.attributes).map(([k, v]) => k + "=" + v).join(" ")],
  ["Transition", (d) => (d.transition ? d.transition.command + " → " + when(d.transition.due_at) : "–")],
], "devices/");

// ---- routing ------------------------------------------------------------------------------

async function route() {
  generation += 1;
  const live = current();
  leave();
  leave = () => {};
  const parts = (location.hash.replace(/^#\/?/, "") || "runs").split("/");
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === parts[0]));
  try {
    if (parts[0] === "runs" && parts.length === 1) await runsPage();
    else if (parts[0] === "runs" && parts.length === 2) await runPage(parts[1]);
    else if (parts[0] === "runs" && parts[2] === "cells") await cellPage(parts[1], Number(parts[3]));
    else if (parts[0] === "jobs") await jobsPage();
    else if (parts[0] === "agents") await agentsPage();
    else if (parts[0] === "deployments") await deploymentsPage();
    else if (parts[0] === "devices") await devicesPage();
    else show(h("p", { class: "error" }, "No such page."));
  } catch (e) {
    if (live()) failure(e);
  }
}

window.addEventListener("hashchange", route);
connect();
route();
