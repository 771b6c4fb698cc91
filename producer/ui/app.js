// visionbatch console: talks to the producer's REST API on the same origin.
// Everything shown goes through textContent (never parsed as markup), the token
// lives in sessionStorage, and nothing is loaded from anywhere else.
"use strict";

const POLL_MS = 2000;
// Jobs per page: 50, or ?jobs_page=N (1..1000) in the console's address.
const JOBS_PAGE = (() => {
  const n = Number(new URLSearchParams(location.search).get("jobs_page"));
  return Number.isInteger(n) && n >= 1 && n <= 1000 ? n : 50;
})();
const BROWSER_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

const state = {
  tab: "jobs",
  jobs: [],              // the page shown, in job-id order
  jobsCursor: "",        // cursor of the page shown ("" = the first)
  jobsBack: [],          // cursors of the pages before it, for "Previous"
  jobsNext: null,        // next_cursor of the page shown
  editing: null,         // job being edited, null = new job
  execJob: null,         // job whose executions are shown
  runsCursor: null,
  runsRows: [],
  runsExtra: false,      // "load more" was used: stop replacing the page
  lag: [],
  needToken: false,
  polling: false,
};

// ---- small DOM helpers ------------------------------------------------

const $ = (id) => document.getElementById(id);

function el(tag, opts, ...children) {
  const e = document.createElement(tag);
  if (opts) {
    for (const [k, v] of Object.entries(opts)) {
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

function toast(msg, bad) {
  const t = $("toast");
  t.textContent = msg;
  t.className = bad ? "toast bad" : "toast";
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 5000);
}

function badge(s) { return el("span", { class: "state state-" + s, text: s }); }

// Each cell gets its column's heading as data-label: narrow screens show the
// rows as cards, each value under its label (app.css).
function labelCells(table) {
  const heads = [...table.tHead.rows[0].cells].map((th) => th.textContent);
  for (const tr of table.tBodies[0].rows) {
    [...tr.cells].forEach((td, i) => td.setAttribute("data-label", heads[i] || ""));
  }
}

// ---- API ------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail, field) { super(detail); this.status = status; this.field = field; }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  const token = sessionStorage.getItem("vb-token");
  if (token) headers["Authorization"] = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit", cache: "no-store",
  });
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (r.status === 401) {
    askToken(token ? "The token was refused." : "");
    throw new ApiError(401, "API token needed");
  }
  if (!r.ok) throw new ApiError(r.status, (data && data.detail) || ("HTTP " + r.status), data && data.field);
  return data;
}

function askToken(msg) {
  state.needToken = true;
  $("token-panel").hidden = false;
  $("main").hidden = true;
  $("token-error").textContent = msg || "";
  $("token-input").focus();
}

// ---- time and schedules -----------------------------------------------

function fmt(iso, zone) {
  if (!iso) return "–";
  const d = new Date(iso);
  try {
    return new Intl.DateTimeFormat("en-GB", {
      timeZone: zone, weekday: "short", year: "numeric", month: "short", day: "2-digit",
      hour: "2-digit", minute: "2-digit", timeZoneName: "short",
    }).format(d);
  } catch (e) { return d.toISOString(); }
}

function shortTime(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleString("en-GB", { timeZone: BROWSER_ZONE });
}

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const MONTHS = ["", "January", "February", "March", "April", "May", "June", "July", "August",
  "September", "October", "November", "December"];
const pad = (n) => String(n).padStart(2, "0");
const isNum = (s) => /^\d+$/.test(s);

function listWords(field, names) {
  return field.split(",").map((part) => {
    const m = part.match(/^(\d+)-(\d+)$/);
    if (m) return (names ? names[+m[1]] : m[1]) + " to " + (names ? names[+m[2]] : m[2]);
    return names && isNum(part) ? names[+part] : part;
  }).join(", ");
}

// "every Monday at 09:00, Europe/Berlin"; the expression itself when it is
// not one of the common shapes.
function scheduleWords(expr, zone) {
  const f = (expr || "").trim().split(/\s+/);
  let w = null;
  if (f.length === 5) {
    const [mi, h, dom, mon, dow] = f;
    const at = isNum(mi) && isNum(h) ? "at " + pad(h) + ":" + pad(mi) : null;
    const restAny = dom === "*" && mon === "*" && dow === "*";
    if (f.every((x) => x === "*")) w = "every minute";
    else if (/^\*\/\d+$/.test(mi) && h === "*" && restAny) w = "every " + mi.slice(2) + " minutes";
    else if (isNum(mi) && h === "*" && restAny) w = "every hour at minute " + mi;
    else if (isNum(mi) && /^\*\/\d+$/.test(h) && restAny) w = "every " + h.slice(2) + " hours at minute " + mi;
    else if (at && restAny) w = "every day " + at;
    else if (at && dom === "*" && mon === "*" && /^[\d,-]+$/.test(dow)) {
      w = dow === "1-5" ? "every weekday " + at : "every " + listWords(dow, DAYS) + " " + at;
    } else if (at && /^[\d,]+$/.test(dom) && mon === "*" && dow === "*") w = "on day " + dom + " of every month " + at;
    else if (at && isNum(dom) && /^[\d,]+$/.test(mon) && dow === "*") w = "every " + listWords(mon, MONTHS) + " " + dom + " " + at;
  }
  if (!w) w = "cron “" + expr + "”";
  return w + ", " + (zone || "UTC");
}

// ---- tabs -----------------------------------------------------------------

function showTab(tab) {
  state.tab = tab;
  for (const b of document.querySelectorAll(".tab")) b.setAttribute("aria-selected", String(b.dataset.tab === tab));
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== tab;
  if (location.hash !== "#" + tab) history.replaceState(null, "", "#" + tab);
  refresh();
}

// ---- jobs -------------------------------------------------------------------

// One page of jobs (keyset paging by job id) with each job's newest
// execution, re-read on every poll (one request, one Redis round trip).
let jobsSeq = 0;
async function loadJobs() {
  const seq = ++jobsSeq;  // a later read (another page) wins over this one
  let data = null;
  for (;;) {
    const c = state.jobsCursor;
    data = await api("GET", "/cron-jobs?include=last_execution&limit=" + JOBS_PAGE +
      (c ? "&cursor=" + encodeURIComponent(c) : ""));
    if (seq !== jobsSeq) return;
    // A page emptied by deletions: step back to the one before it.
    if ((data.cron_jobs || []).length || !state.jobsBack.length) break;
    state.jobsCursor = state.jobsBack.pop();
  }
  state.jobs = data.cron_jobs || [];
  state.jobsNext = data.next_cursor || null;
  renderJobs();
  if (state.execJob) await loadExecutions();
}

function jobAction(label, fn, cls) {
  return el("button", { type: "button", class: cls || "", text: label, onclick: fn });
}

function jobsPage(dir) {
  if (dir > 0 && state.jobsNext) {
    state.jobsBack.push(state.jobsCursor);
    state.jobsCursor = state.jobsNext;
  } else if (dir < 0 && state.jobsBack.length) {
    state.jobsCursor = state.jobsBack.pop();
  } else return;
  loadJobs().catch((e) => { if (e.status !== 401) toast(e.message, true); });
}

function renderJobs() {
  const tb = $("jobs-table").tBodies[0];
  clear(tb);
  $("jobs-empty").hidden = state.jobs.length > 0;
  $("jobs-prev").disabled = !state.jobsBack.length;
  $("jobs-next").disabled = !state.jobsNext;
  $("jobs-page").textContent = "Page " + (state.jobsBack.length + 1) + " · " + JOBS_PAGE + " jobs a page, by job id";
  for (const j of state.jobs) {
    const last = j.last_execution;
    const id = j.job_id;
    const tr = el("tr", { "data-job": id },
      el("td", null, el("strong", { text: j.name }), el("span", { class: "sub", text: id })),
      el("td", null, document.createTextNode(scheduleWords(j.schedule, j.timezone)),
        el("span", { class: "sub", text: j.schedule })),
      el("td", { class: "next" }, document.createTextNode(j.next_run ? fmt(j.next_run, j.timezone) : "–"),
        el("span", { class: "sub", text: j.next_run ? fmt(j.next_run, BROWSER_ZONE) + " (yours)" : "" })),
      el("td", null, badge(j.enabled ? "enabled" : "disabled")),
      el("td", { class: "last" }, last ? badge(last.status) : document.createTextNode("–"),
        el("span", { class: "sub", text: last ? shortTime(last.started_at) : "" })),
      el("td", null, el("div", { class: "actions" },
        jobAction("Executions", () => openExecutions(j)),
        jobAction("Edit", () => openForm(j)),
        jobAction(j.enabled ? "Deactivate" : "Activate", () => act(j, j.enabled ? "deactivate" : "activate")),
        jobAction("Run now", () => runNow(j)),
        jobAction("Delete", () => del(j), "danger"))));
    tb.append(tr);
  }
  labelCells($("jobs-table"));
}

async function act(j, verb) {
  try {
    await api("POST", "/cron-jobs/" + encodeURIComponent(j.job_id) + "/" + verb);
    toast(j.name + ": " + verb + "d");
    await loadJobs();
  } catch (e) { if (e.status !== 401) toast(e.message, true); }
}

async function runNow(j) {
  try {
    const r = await api("POST", "/cron-jobs/" + encodeURIComponent(j.job_id) + "/run");
    toast(j.name + ": execution " + r.execution_id + " started");
    await openExecutions(j);
  } catch (e) { if (e.status !== 401) toast(e.message, true); }
}

async function del(j) {
  if (!window.confirm("Delete the job “" + j.name + "” and its executions?")) return;
  try {
    await api("DELETE", "/cron-jobs/" + encodeURIComponent(j.job_id));
    toast(j.name + " deleted");
    if (state.execJob && state.execJob.job_id === j.job_id) closeExecutions();
    await loadJobs();
  } catch (e) { if (e.status !== 401) toast(e.message, true); }
}

// ---- the job form -----------------------------------------------------

const FIELDS = ["name", "schedule", "timezone", "overlap", "external_api_get_url",
  "external_api_post_url", "external_api_key", "backend_api_url", "organization_id"];

function formInput(name) { return $("job-form").elements.namedItem(name); }

function openForm(job) {
  state.editing = job || null;
  $("job-form-title").textContent = job ? "Edit " + job.name : "New job";
  const f = $("job-form");
  f.reset();
  if (job) {
    formInput("name").value = job.name;
    formInput("schedule").value = job.schedule;
    formInput("timezone").value = job.timezone;
    formInput("overlap").value = job.overlap;
    formInput("external_api_get_url").value = job.config.external_api_get_url;
    formInput("external_api_post_url").value = job.config.external_api_post_url;
    formInput("backend_api_url").value = job.config.backend_api_url;
    formInput("organization_id").value = job.config.organization_id;
    formInput("enabled").checked = job.enabled;
  } else {
    formInput("timezone").value = BROWSER_ZONE;
  }
  formInput("external_api_key").placeholder = job ? "unchanged when empty" : "";
  for (const id of ["f-schedule-error", "f-timezone-error", "form-error"]) $(id).textContent = "";
  $("job-form-panel").hidden = false;
  formInput("name").focus();
  preview();
}

function closeForm() { $("job-form-panel").hidden = true; state.editing = null; }

function fieldError(field, msg) {
  const map = { schedule: "f-schedule", timezone: "f-timezone" };
  for (const [name, id] of Object.entries(map)) {
    const on = name === field;
    $(id + "-error").textContent = on ? msg : "";
    $(id).setAttribute("aria-invalid", String(on));
  }
}

let previewSeq = 0;
async function preview() {
  const expr = formInput("schedule").value.trim();
  const zone = formInput("timezone").value.trim() || "UTC";
  const list = $("preview");
  const seq = ++previewSeq;
  $("f-schedule-words").textContent = expr ? scheduleWords(expr, zone) : "";
  if (!expr) { clear(list); fieldError(null, ""); return; }
  try {
    const q = "/cron/preview?count=8&schedule=" + encodeURIComponent(expr) + "&timezone=" + encodeURIComponent(zone);
    const data = await api("GET", q);
    if (seq !== previewSeq) return;
    fieldError(null, "");
    clear(list);
    let prevOffset = null;
    for (const r of data.next_runs) {
      const offset = r.local.slice(19);
      const li = el("li", null, document.createTextNode(fmt(r.utc, zone)),
        el("span", { class: "sub", text: fmt(r.utc, BROWSER_ZONE) + " (yours)" }));
      if (prevOffset !== null && offset !== prevOffset) {
        li.append(el("span", { class: "dst", text: "daylight saving change: UTC offset " + prevOffset + " → " + offset }));
      }
      prevOffset = offset;
      list.append(li);
    }
  } catch (e) {
    if (seq !== previewSeq || e.status === 401) return;
    clear(list);
    fieldError(e.field === "timezone" ? "timezone" : "schedule", e.message);
  }
}

let previewTimer = null;
function previewSoon() { clearTimeout(previewTimer); previewTimer = setTimeout(preview, 250); }

async function saveJob(ev) {
  ev.preventDefault();
  const body = {};
  for (const n of FIELDS) {
    const v = formInput(n).value.trim();
    if (n === "external_api_key" && !v && state.editing) continue;
    if (!v && (n === "backend_api_url")) continue;
    body[n] = v;
  }
  body.enabled = formInput("enabled").checked;
  $("form-error").textContent = "";
  try {
    if (state.editing) await api("PUT", "/cron-jobs/" + encodeURIComponent(state.editing.job_id), body);
    else await api("POST", "/cron-jobs", body);
    toast((state.editing ? "Saved " : "Created ") + body.name);
    closeForm();
    await loadJobs();
  } catch (e) {
    if (e.status === 401) return;
    const m = /^(schedule|timezone):/.exec(e.message);
    if (m) fieldError(m[1], e.message);
    else $("form-error").textContent = e.message;
  }
}

// ---- executions ---------------------------------------------------------

async function openExecutions(j) {
  state.execJob = j;
  $("exec-title").textContent = "Executions of " + j.name;
  $("exec-panel").hidden = false;
  await loadExecutions();
}

function closeExecutions() { state.execJob = null; $("exec-panel").hidden = true; }

function outcomeClass(s) {
  return { success: "ok", partial: "partial", skipped: "skip", running: "run" }[s] || "bad";
}

async function loadExecutions() {
  const j = state.execJob;
  const data = await api("GET", "/cron-jobs/" + encodeURIComponent(j.job_id) + "/executions?limit=100");
  if (state.execJob !== j) return;
  const execs = data.executions || [];
  const tb = $("exec-table").tBodies[0];
  clear(tb);
  for (const e of execs) {
    const dur = e.started_at && e.completed_at ? ((new Date(e.completed_at) - new Date(e.started_at)) / 1000).toFixed(1) + " s" : "–";
    tb.append(el("tr", { "data-exec": e.execution_id },
      el("td", null, document.createTextNode(shortTime(e.started_at || e.scheduled_for)), el("span", { class: "sub", text: e.execution_id })),
      el("td", { class: "status" }, badge(e.status)),
      el("td", { text: String(e.runs_found) }),
      el("td", { text: String(e.runs_published) }),
      el("td", { text: String(e.runs_skipped_in_progress + e.runs_skipped_other_org) }),
      el("td", { text: String(e.runs_succeeded || 0) }),
      el("td", { text: String(e.runs_failed || 0) }),
      el("td", { text: dur }),
      el("td", { text: e.batch_id || "–" }),
      el("td", { text: e.skip_reason || "" }),
      el("td", null, e.runs_published ? jobAction("Runs", () => showRunsOf(e.execution_id)) : null)));
  }
  labelCells($("exec-table"));
  drawChart(execs);
}

function drawChart(execs) {
  const per = $("exec-bucket").value === "day" ? 86400000 : 3600000;
  const buckets = new Map();
  for (const e of execs) {
    const t = new Date(e.started_at || e.scheduled_for).getTime();
    if (!t) continue;
    const k = Math.floor(t / per) * per;
    if (!buckets.has(k)) buckets.set(k, { ok: 0, partial: 0, bad: 0, skip: 0, run: 0 });
    buckets.get(k)[outcomeClass(e.status)]++;
  }
  const keys = [...buckets.keys()].sort((a, b) => a - b);
  const max = Math.max(1, ...keys.map((k) => Object.values(buckets.get(k)).reduce((a, b) => a + b, 0)));
  const chart = $("exec-chart");
  clear(chart);
  for (const k of keys) {
    const b = buckets.get(k);
    const col = el("div", { class: "col", title: new Date(k).toLocaleString("en-GB") + ": " +
      Object.entries(b).filter(([, n]) => n).map(([c, n]) => n + " " + c).join(", ") });
    for (const c of ["ok", "partial", "bad", "skip", "run"]) {
      if (!b[c]) continue;
      const seg = el("div", { class: "seg " + c });
      seg.style.height = (100 * b[c] / max) + "%";  // CSSOM, allowed by the CSP
      col.append(seg);
    }
    chart.append(col);
  }
}

// ---- runs -------------------------------------------------------------------

function showRunsOf(execId) {
  $("runs-exec").value = execId;
  state.runsExtra = false;
  showTab("runs");
}

async function loadRuns(more) {
  const st = $("runs-state").value;
  const exec = $("runs-exec").value.trim();
  let q = "/runs?limit=100" + (st ? "&state=" + encodeURIComponent(st) : "") +
    (exec ? "&execution_id=" + encodeURIComponent(exec) : "");
  if (more && state.runsCursor) q += "&cursor=" + encodeURIComponent(state.runsCursor);
  const data = await api("GET", q);
  state.runsRows = more ? state.runsRows.concat(data.runs) : data.runs;
  state.runsCursor = data.next_cursor;
  $("runs-more").hidden = !data.next_cursor;
  const counts = data.state_counts || {};
  $("runs-total").textContent = data.total_runs + " runs recorded (" +
    Object.entries(counts).map(([k, n]) => k + " " + n).join(" · ") +
    "); showing the most recently updated first.";
  renderRuns();
}

function renderRuns() {
  const tb = $("runs-table").tBodies[0];
  clear(tb);
  for (const r of state.runsRows) {
    const retry = r.state === "dead" || r.state === "failed";
    tb.append(el("tr", { "data-run": r.vision_analysis_id },
      el("td", { text: r.vision_analysis_id }),
      el("td", { class: "state-cell" }, badge(r.state)),
      el("td", { text: String(r.attempts) }),
      el("td", { text: r.worker || "–" }),
      el("td", { text: shortTime(r.updated_at) }),
      el("td", { text: r.last_error || "" }),
      el("td", { text: r.execution_id || "–" }),
      el("td", null, retry ? jobAction("Retry", () => retryRun(r)) : null)));
  }
  labelCells($("runs-table"));
}

async function retryRun(r) {
  try {
    const res = await api("POST", "/runs/" + encodeURIComponent(r.vision_analysis_id) + "/retry");
    toast(r.vision_analysis_id + ": " + res.message);
    state.runsExtra = false;
    await loadRuns(false);
  } catch (e) { if (e.status !== 401) toast(e.message, true); }
}

// ---- dead-letter topic ------------------------------------------------------

async function loadDlq() {
  const d = await api("GET", "/dlq?limit=100");
  $("dlq-total").textContent = d.total + " message(s) in " + d.topic + "; the newest " + d.messages.length + " shown.";
  const tb = $("dlq-table").tBodies[0];
  clear(tb);
  for (const m of d.messages) {
    tb.append(el("tr", { "data-dlq": m.run_id || "" },
      el("td", { text: m.timestamp ? shortTime(m.timestamp) : "–" }),
      el("td", { text: m.run_id || "(cannot be decoded)" }),
      el("td", { text: m.kind }),
      el("td", { text: m.reason || "" }),
      el("td", { text: m.partition + ":" + m.offset }),
      el("td", null, m.replayable ? jobAction("Replay", () => replayDlq(m.run_id)) : null)));
  }
  labelCells($("dlq-table"));
}

async function replayDlq(runId) {
  try {
    const r = await api("POST", "/dlq/" + encodeURIComponent(runId) + "/replay");
    toast(runId + ": replayed (was " + r.previous_state + ")");
    state.runsExtra = false;
    await loadRuns(false);
  } catch (e) { if (e.status !== 401) toast(e.message, true); }
}

// ---- workers ------------------------------------------------------------

async function loadWorkers() {
  const w = await api("GET", "/workers");
  $("workers-summary").textContent = "Group " + w.group + " (" + w.state + ") on " + w.topic + ": " +
    w.members.length + " member(s), total lag " + w.total_lag + ".";
  state.lag.push(w.total_lag);
  if (state.lag.length > 150) state.lag.shift();
  const max = Math.max(1, ...state.lag);
  const pts = state.lag.map((v, i) => (i * 2) + "," + (38 - 36 * v / max).toFixed(1)).join(" ");
  $("lag-spark").querySelector("polyline").setAttribute("points", pts);
  const tb = $("workers-table").tBodies[0];
  clear(tb);
  // The group's members, then workers that beat but are not (or no longer)
  // members: a worker that stopped beating shows as stale until its
  // heartbeat expires.
  const beats = w.heartbeats || [];
  const rows = w.members.map((m) => ({ ...m, beat: beats.find((b) => b.worker === m.worker) }))
    .concat(beats.filter((b) => !b.member).map((b) => ({
      worker: b.worker, host: b.host, partitions: [], lag: null, in_flight: b.in_flight,
      slots: b.slots, last_heartbeat: b.last_heartbeat, heartbeat: b.heartbeat, beat: b })));
  for (const m of rows) {
    tb.append(el("tr", { "data-worker": m.worker, class: "beat-" + m.heartbeat },
      el("td", { text: m.worker }), el("td", { text: m.host }),
      el("td", { text: m.partitions.join(", ") || (m.beat && !m.beat.member ? "not in the group" : "–") }),
      el("td", { text: m.lag === null ? "–" : String(m.lag) }),
      el("td", { text: String(m.in_flight) + (m.slots ? " of " + m.slots : "") }),
      el("td", { class: "heartbeat" }, badge(m.heartbeat === "none" ? "no heartbeat" : m.heartbeat),
        el("span", { class: "sub", text: m.last_heartbeat ? shortTime(m.last_heartbeat) : "" }))));
  }
  labelCells($("workers-table"));
  const pb = $("parts-table").tBodies[0];
  clear(pb);
  for (const p of w.partitions) {
    pb.append(el("tr", null, el("td", { text: String(p.partition) }),
      el("td", { text: p.committed === null ? "–" : String(p.committed) }),
      el("td", { text: String(p.high) }), el("td", { text: String(p.lag) })));
  }
}

// ---- live updates ---------------------------------------------------------

async function refresh() {
  if (state.needToken || state.polling) return;
  state.polling = true;
  try {
    if (state.tab === "jobs") await loadJobs();
    else if (state.tab === "runs") { if (!state.runsExtra) await loadRuns(false); }
    else await loadWorkers();
    $("live").textContent = "live · updated " + new Date().toLocaleTimeString("en-GB");
  } catch (e) {
    if (e.status !== 401) $("live").textContent = "not updated: " + e.message;
  } finally {
    state.polling = false;
  }
}

function start() {
  $("browser-zone").textContent = BROWSER_ZONE;
  for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => showTab(b.dataset.tab));
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("vb-token", $("token-input").value.trim());
    $("token-input").value = "";
    state.needToken = false;
    $("token-panel").hidden = true;
    $("main").hidden = false;
    refresh();
  });
  $("new-job").addEventListener("click", () => openForm(null));
  $("jobs-prev").addEventListener("click", () => jobsPage(-1));
  $("jobs-next").addEventListener("click", () => jobsPage(1));
  $("job-cancel").addEventListener("click", closeForm);
  $("job-form").addEventListener("submit", saveJob);
  formInput("schedule").addEventListener("input", previewSoon);
  formInput("timezone").addEventListener("input", previewSoon);
  $("exec-close").addEventListener("click", closeExecutions);
  $("exec-bucket").addEventListener("change", () => state.execJob && loadExecutions().catch(() => {}));
  $("runs-state").addEventListener("change", () => { state.runsExtra = false; loadRuns(false).catch(() => {}); });
  let execTimer = null;
  $("runs-exec").addEventListener("input", () => {
    clearTimeout(execTimer);
    execTimer = setTimeout(() => { state.runsExtra = false; loadRuns(false).catch(() => {}); }, 300);
  });
  $("dlq-load").addEventListener("click", () => loadDlq().catch((e) => { if (e.status !== 401) toast(e.message, true); }));
  $("runs-more").addEventListener("click", () => { state.runsExtra = true; loadRuns(true).catch((e) => toast(e.message, true)); });
  const tab = location.hash.slice(1);
  showTab(["jobs", "runs", "workers"].includes(tab) ? tab : "jobs");
  setInterval(() => { if (!document.hidden) refresh(); }, POLL_MS);
}

document.addEventListener("DOMContentLoaded", start);
