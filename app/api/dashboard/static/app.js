// The TaskForge dashboard: queues, jobs, workers and throughput, kept live by the
// monitor's event stream or, without it, by polling. Every server string reaches the
// page as text (textContent, DOM nodes), never as markup.

import {
  ApiError, get, login, logout, onSessionEnd, openEvents, post, query, session,
} from "./api.js";

const POLL_MS = 3000;
const FULL_RELOAD_EVERY_WHEN_LIVE = 5; // ticks: the stream keeps rows fresh in between
const MONITOR_PROBE_EVERY = 10; // ticks, while the monitor API answers 404
const EVENTS_RETRY_MS = 15000;
const QUEUE_PAGE_SIZE = 20;
const JOB_PAGE_SIZE = 20;
const QUEUE_LIST_MAX_PAGES = 10; // 100 queues a page
const RECENT_TASKS = 12;
const CHART_WINDOW_MS = 3 * 60 * 1000;

const JOB_STATUSES = ["pending", "scheduled", "processing", "succeeded", "failed", "cancelled"];
const ATTEMPT_STATUSES = ["running", "succeeded", "failed", "lost"];
const CANCELLABLE = new Set(["pending", "scheduled", "processing"]);
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
const WORKER_STATUSES = ["online", "draining", "unhealthy", "offline"];
const SAMPLE_PAYLOADS = {
  echo: { hello: "world" },
  sleep: { seconds: 2 },
  fail: { message: "boom" },
  flaky: { failures: 2 },
};

const state = {
  running: false,
  epoch: 0, // bumped when a session stops: answers from before are stale
  timer: null,
  ticks: 0,
  busy: false,
  live: "",
  queues: new Map(), // id -> queue, every queue of the organization
  stats: new Map(), // id -> /queues/{id}/stats
  monitorQueues: new Map(), // id -> /monitor/queues item
  queuePage: 1,
  jobs: [],
  jobPagination: { page: 1, pages: 0, total: 0 },
  jobPage: 1,
  filters: { status: "", queue_id: "" },
  monitor: "unknown", // "on", "off" (404) or "forbidden"
  workers: [],
  tasks: [],
  samples: [], // {t, value}: throughput of all queues, jobs a minute
  events: null, // EventSource, "opening" or null
  eventsRetryAt: 0,
  openJob: null,
  lastOpened: null, // the job whose row opened the dialog: focus returns there
  detailKey: "",
  pending: new Map(), // debounce timers
};

// --- reading for the current session -------------------------------------------------

/** An answer that arrived after its session ended (logout): it is dropped, unseen. */
class Stale extends Error {}

/** GET for the current session only, so a late answer never shows the last user's data. */
async function read(path) {
  const epoch = state.epoch;
  const body = await get(path);
  if (epoch !== state.epoch) throw new Stale("session ended");
  return body;
}

// --- DOM helpers -------------------------------------------------------------------

const $ = (selector) => document.querySelector(selector);

function build(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "onclick") node.addEventListener("click", value);
    else if (name === "class") node.setAttribute("class", value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** An HTML element; strings become text nodes, so data is never parsed as markup. */
const el = (tag, attrs = {}, ...children) => build(document.createElement(tag), attrs, children);
const svg = (tag, attrs = {}, ...children) =>
  build(document.createElementNS("http://www.w3.org/2000/svg", tag), attrs, children);

const shortId = (id) => String(id ?? "").slice(0, 8);

/** A date from an ISO string or epoch seconds (Celery's timestamps), or null. */
function toDate(value) {
  if (value === null || value === undefined || value === "") return null;
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

function formatTime(value) {
  const date = toDate(value);
  if (!date) return value ? String(value) : "–";
  const today = date.toDateString() === new Date().toDateString();
  return today ? date.toLocaleTimeString() : date.toLocaleString();
}

function timeEl(value) {
  const date = toDate(value);
  if (!date) return formatTime(value);
  return el("time", { datetime: date.toISOString(), title: date.toISOString() }, formatTime(value));
}

function ago(value) {
  const date = toDate(value);
  if (!date) return value ? String(value) : "–";
  const seconds = Math.max(0, Math.round((Date.now() - date.getTime()) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return "–";
  const s = Number(seconds);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

const count = (value) => (value === null || value === undefined ? "–" : String(value));
const json = (value) => JSON.stringify(value, null, 2) ?? "null";

function badge(kind, value, known) {
  const text = String(value ?? "unknown");
  const cls = known.includes(text) ? `${kind}-${text}` : `${kind}-unknown`;
  return el("span", { class: `badge ${cls}` }, text);
}

/** Celery and TaskForge spell task states differently: show them in TaskForge's words. */
function taskState(value) {
  const raw = String(value ?? "").toLowerCase().replace(/^task-/, "");
  const words = { success: "succeeded", failure: "failed", started: "processing", received: "pending",
    sent: "pending", revoked: "cancelled", retry: "retrying", retried: "retrying", rejected: "failed" };
  return words[raw] ?? raw;
}

function queueName(id) {
  return state.queues.get(id)?.name ?? shortId(id);
}

/** Queue names as a worker reports them: Celery's `tf.<queue id>` becomes the queue's name. */
function workerQueue(item) {
  const name = typeof item === "string" ? item : item?.name ?? JSON.stringify(item);
  const id = name.startsWith("tf.") ? name.slice(3) : name;
  return state.queues.get(id)?.name ?? name;
}

/** A table row; each cell carries its column's title for the narrow-screen layout. */
function row(table, attrs, cells) {
  const headers = [...table.tHead.rows[0].cells];
  const labels = headers.map((th) => (th.querySelector(".sr-only") ? "" : th.textContent.trim()));
  const classes = headers.map((th) => th.className);
  return el("tr", attrs, cells.map((cell, i) =>
    el("td", { "data-label": labels[i] || null, class: classes[i] || null }, cell)));
}

/** Re-render without losing keyboard focus: restore it by `data-focus` key. */
function keepFocus(render) {
  const key = document.activeElement?.dataset?.focus;
  render();
  if (key) document.querySelector(`[data-focus="${CSS.escape(key)}"]`)?.focus();
}

function button(label, onclick, { focus, kind = "secondary", aria } = {}) {
  return el("button", { type: "button", class: kind, "data-focus": focus, "aria-label": aria, onclick },
    label);
}

function show(node, visible) {
  node.hidden = !visible;
}

function showError(node, error) {
  node.textContent = error ? String(error.message ?? error) : "";
  show(node, Boolean(error));
}

let toastTimer = null;
function toast(message, isError = false) {
  const box = $("#toast");
  box.textContent = message;
  box.classList.toggle("error", isError);
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (box.hidden = true), 4000);
}

/** Run `fn` once, `ms` after the last call with the same key. */
function soon(key, fn, ms = 250) {
  clearTimeout(state.pending.get(key));
  state.pending.set(key, setTimeout(() => {
    state.pending.delete(key);
    if (state.running) fn().catch(report);
  }, ms));
}

function report(error) {
  if (error instanceof Stale) return;
  if (error instanceof ApiError && error.status === 0) setLive("offline");
  else if (!(error instanceof ApiError && error.status === 401)) console.warn(error);
}

/** Run an action from a button: disable it meanwhile, toast the outcome. */
async function act(target, action, done) {
  target.disabled = true;
  try {
    await action();
    if (done) toast(done);
  } catch (error) {
    if (!(error instanceof Stale)) toast(error.message, true);
  } finally {
    target.disabled = false;
  }
}

// --- session -----------------------------------------------------------------------

function showSignedIn(signedIn) {
  for (const node of document.querySelectorAll("[data-signed-in]")) show(node, signedIn);
  for (const node of document.querySelectorAll("[data-signed-out]")) show(node, !signedIn);
}

function setLive(mode) {
  state.live = mode;
  const text = { live: "Live", polling: "Polling every 3 s", offline: "Offline: retrying" };
  const node = $("#live");
  node.textContent = text[mode] ?? "Connecting…";
  node.dataset.mode = mode;
}

async function showWhoami() {
  $("#whoami").textContent = session.email;
  try {
    const me = await read("/auth/validate");
    $("#whoami").textContent = [session.email, me.role].filter(Boolean).join(" · ");
  } catch (error) {
    report(error);
  }
}

async function onLogin(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const submit = form.querySelector("button[type=submit]");
  const email = form.email.value.trim();
  if (!email || !form.password.value) {
    showError($("#login-error"), "Enter your email and password.");
    return;
  }
  submit.disabled = true;
  try {
    await login(email, form.password.value);
    form.reset();
    showError($("#login-error"), null);
    enter();
  } catch (error) {
    showError($("#login-error"), error);
  } finally {
    submit.disabled = false;
  }
}

function enter() {
  showSignedIn(true);
  $("#main").focus();
  start();
  showWhoami();
}

function leave(message) {
  stop();
  forget();
  showSignedIn(false);
  if (message) showError($("#login-error"), message);
  $("#login-email").focus();
}

async function onLogout() {
  stop();
  try {
    await logout();
  } catch (error) {
    report(error);
  }
  leave("You are logged out.");
}

/** Drop everything the last user saw, so the next one never glimpses it. */
function forget() {
  Object.assign(state, {
    queues: new Map(), stats: new Map(), monitorQueues: new Map(), queuePage: 1,
    jobs: [], jobPagination: { page: 1, pages: 0, total: 0 }, jobPage: 1,
    filters: { status: "", queue_id: "" }, workers: [], tasks: [], samples: [],
  });
  for (const table of document.querySelectorAll("table.data")) table.tBodies[0].replaceChildren();
  for (const pager of document.querySelectorAll(".pager")) pager.replaceChildren();
  for (const form of ["#job-filters", "#queue-form"]) $(form).reset();
  $("#whoami").textContent = "";
  renderQueueOptions();
}

// --- queues ------------------------------------------------------------------------

async function loadQueues() {
  const all = [];
  for (let page = 1; page <= QUEUE_LIST_MAX_PAGES; page += 1) {
    const body = await read(`/queues${query({ page, limit: 100 })}`);
    all.push(...body.queues);
    if (page >= body.pagination.pages) break;
  }
  all.sort((a, b) => a.name.localeCompare(b.name));
  state.queues = new Map(all.map((q) => [q.id, q]));
  const pages = Math.max(1, Math.ceil(all.length / QUEUE_PAGE_SIZE));
  state.queuePage = Math.min(state.queuePage, pages);
  renderQueueOptions();
  await Promise.allSettled(visibleQueues().map((q) => loadStats(q.id)));
  renderQueues();
}

function visibleQueues() {
  const start = (state.queuePage - 1) * QUEUE_PAGE_SIZE;
  return [...state.queues.values()].slice(start, start + QUEUE_PAGE_SIZE);
}

async function loadStats(id) {
  state.stats.set(id, await read(`/queues/${encodeURIComponent(id)}/stats`));
}

async function reloadQueue(id) {
  const queue = await read(`/queues/${encodeURIComponent(id)}`);
  state.queues.set(id, queue);
  await loadStats(id);
  renderQueues();
}

function renderQueues() {
  const table = $("#queue-table");
  const queues = visibleQueues();
  keepFocus(() => {
    table.tBodies[0].replaceChildren(...queues.map((q) => queueRow(table, q)));
    renderPager($("#queue-pager"), {
      page: state.queuePage,
      pages: Math.ceil(state.queues.size / QUEUE_PAGE_SIZE),
      total: state.queues.size,
    }, "queue", (page) => {
      state.queuePage = page;
      loadQueues().catch(report);
    });
  });
  show(table, queues.length > 0);
  show($("#queue-empty"), queues.length === 0);
}

function queueRow(table, q) {
  const stats = state.stats.get(q.id) ?? {};
  const live = state.monitorQueues.get(q.id) ?? {};
  const active = stats.is_active ?? q.is_active;
  const name = el("div", { class: "cell-title" }, el("strong", {}, q.name),
    q.description ? el("span", { class: "muted" }, q.description) : null);
  const toggle = active
    ? button("Pause", (e) => pauseQueue(e.currentTarget, q, "pause"),
      { focus: `pause:${q.id}`, aria: `Pause queue ${q.name}` })
    : button("Resume", (e) => pauseQueue(e.currentTarget, q, "resume"),
      { focus: `pause:${q.id}`, aria: `Resume queue ${q.name}`, kind: "primary" });
  const jobs = button("Jobs", () => showQueueJobs(q.id),
    { focus: `jobs:${q.id}`, aria: `Show the jobs of queue ${q.name}` });
  return row(table, { "data-queue-id": q.id, "data-active": String(Boolean(active)) }, [
    name,
    el("span", { class: `badge ${active ? "queue-active" : "queue-paused"}` }, active ? "active" : "paused"),
    count(stats.pending_count),
    count(stats.processing_count),
    count(stats.succeeded_count),
    count(stats.failed_count),
    count(stats.broker_depth),
    count(live.consumers),
    live.throughput_per_minute === undefined ? "–" : String(Math.round(live.throughput_per_minute)),
    el("div", { class: "actions" }, toggle, jobs),
  ]);
}

async function pauseQueue(target, q, action) {
  await act(target, async () => {
    await post(`/queues/${encodeURIComponent(q.id)}/${action}`);
    await reloadQueue(q.id);
  }, `Queue ${q.name} ${action === "pause" ? "paused" : "resumed"}.`);
}

function showQueueJobs(id) {
  $("#filter-queue").value = id;
  applyFilters();
  $("#jobs").scrollIntoView({ behavior: "smooth", block: "start" });
  $("#filter-queue").focus({ preventScroll: true });
}

async function onCreateQueue(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const body = { name: form.name.value.trim() };
  if (form.description.value.trim()) body.description = form.description.value.trim();
  if (!body.name) {
    showError($("#queue-error"), "Give the queue a name.");
    return;
  }
  const submit = form.querySelector("button[type=submit]");
  submit.disabled = true;
  try {
    const queue = await post("/queues", body);
    form.reset();
    showError($("#queue-error"), null);
    toast(`Queue ${queue.name} created.`);
    await loadQueues();
    if (!$("#job-queue").value) $("#job-queue").value = queue.id;
  } catch (error) {
    showError($("#queue-error"), error);
  } finally {
    submit.disabled = false;
  }
}

/** Fill the queue pickers, keeping their choices; rebuilt only when the queues change. */
function renderQueueOptions() {
  const queues = [...state.queues.values()];
  const key = queues.map((q) => `${q.id}:${q.name}`).join("|");
  if (key === renderQueueOptions.key) return;
  renderQueueOptions.key = key;
  const options = () => queues.map((q) => el("option", { value: q.id }, q.name));

  const target = $("#job-queue");
  const chosen = target.value;
  if (queues.length) target.replaceChildren(...options());
  else target.replaceChildren(el("option", { value: "" }, "Create a queue first"));
  target.disabled = queues.length === 0;
  if (state.queues.has(chosen)) target.value = chosen;

  const filter = $("#filter-queue");
  const filtered = filter.value;
  filter.replaceChildren(el("option", { value: "" }, "All queues"), ...options());
  filter.value = state.queues.has(filtered) ? filtered : "";
}

// --- jobs --------------------------------------------------------------------------

async function loadJobs() {
  const params = { ...state.filters, page: state.jobPage, limit: JOB_PAGE_SIZE };
  const body = await read(`/jobs${query(params)}`);
  if (body.pagination.pages > 0 && state.jobPage > body.pagination.pages) {
    state.jobPage = body.pagination.pages;
    return loadJobs();
  }
  state.jobs = body.jobs;
  state.jobPagination = body.pagination;
  renderJobs();
}

function renderJobs() {
  const table = $("#job-table");
  keepFocus(() => {
    table.tBodies[0].replaceChildren(...state.jobs.map((job) => jobRow(table, job)));
    renderPager($("#job-pager"), state.jobPagination, "job", (page) => {
      state.jobPage = page;
      loadJobs().catch(report);
    });
  });
  show(table, state.jobs.length > 0);
  show($("#job-empty"), state.jobs.length === 0);
}

function jobActions(job, where) {
  const actions = [];
  if (CANCELLABLE.has(job.status)) {
    actions.push(button("Cancel", (e) => cancelJob(e.currentTarget, job),
      { focus: `cancel:${where}:${job.id}`, aria: `Cancel job ${shortId(job.id)}`, kind: "danger" }));
  }
  if (job.status === "failed") {
    actions.push(button("Retry", (e) => retryJob(e.currentTarget, job),
      { focus: `retry:${where}:${job.id}`, aria: `Retry job ${shortId(job.id)}`, kind: "primary" }));
  }
  return actions;
}

function jobRow(table, job) {
  const open = el("button", {
    type: "button", class: "link mono", "data-focus": `open:${job.id}`,
    "aria-label": `Open job ${shortId(job.id)}`, onclick: () => openJob(job.id),
  }, shortId(job.id));
  return row(table, { "data-job-id": job.id, "data-status": job.status }, [
    open,
    queueName(job.queue_id),
    el("span", { class: "mono" }, job.job_type),
    badge("status", job.status, JOB_STATUSES),
    `${job.attempt_count}/${job.max_attempts}`,
    timeEl(job.created_at),
    el("div", { class: "actions" }, el("button", {
      type: "button", class: "secondary", "data-focus": `details:${job.id}`,
      "aria-label": `Details of job ${shortId(job.id)}`, onclick: () => openJob(job.id),
    }, "Details"), jobActions(job, "row")),
  ]);
}

/** Refresh one job's row in place (after an event), or the page when it is not shown. */
async function refreshJob(id) {
  const index = state.jobs.findIndex((job) => job.id === id);
  if (index < 0) {
    if (state.jobPage === 1) soon("jobs", loadJobs);
    return;
  }
  const job = await read(`/jobs/${encodeURIComponent(id)}`);
  if (state.filters.status && job.status !== state.filters.status) {
    soon("jobs", loadJobs);
    return;
  }
  state.jobs[index] = job;
  renderJobs();
}

async function cancelJob(target, job) {
  if (!window.confirm(`Cancel job ${shortId(job.id)}?`)) return;
  await act(target, async () => {
    await post(`/jobs/${encodeURIComponent(job.id)}/cancel`);
    await afterJobChange(job);
  }, `Job ${shortId(job.id)} cancelled.`);
}

async function retryJob(target, job) {
  await act(target, async () => {
    await post(`/jobs/${encodeURIComponent(job.id)}/retry`);
    await afterJobChange(job);
  }, `Job ${shortId(job.id)} queued again.`);
}

async function afterJobChange(job) {
  await Promise.allSettled([
    loadJobs(),
    loadStats(job.queue_id).then(renderQueues),
    state.openJob === job.id ? loadDetail() : null,
  ]);
}

function applyFilters() {
  state.filters = { status: $("#filter-status").value, queue_id: $("#filter-queue").value };
  state.jobPage = 1;
  loadJobs().catch(report);
}

function onJobTypeChange(event) {
  const payload = $("#job-payload");
  const previous = Object.values(SAMPLE_PAYLOADS).map((p) => JSON.stringify(p));
  let current = null;
  try {
    current = JSON.stringify(JSON.parse(payload.value));
  } catch {
    // the user's own text: leave it
  }
  if (payload.value.trim() === "" || previous.includes(current)) {
    payload.value = JSON.stringify(SAMPLE_PAYLOADS[event.currentTarget.value] ?? {});
  }
}

async function onSubmitJob(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const errorBox = $("#job-error");
  let payload = null;
  if (form.payload.value.trim()) {
    try {
      payload = JSON.parse(form.payload.value);
    } catch (error) {
      showError(errorBox, `The payload is not valid JSON: ${error.message}`);
      form.payload.focus();
      return;
    }
  }
  const priority = Number(form.priority.value);
  if (!Number.isInteger(priority) || priority < 0 || priority > 9) {
    showError(errorBox, "Priority is a whole number from 0 to 9.");
    form.priority.focus();
    return;
  }
  if (!form.queue_id.value) {
    showError(errorBox, "Create a queue first.");
    return;
  }
  const submit = form.querySelector("button[type=submit]");
  submit.disabled = true;
  try {
    const job = await post("/jobs", {
      queue_id: form.queue_id.value, job_type: form.job_type.value, payload, priority,
    });
    showError(errorBox, null);
    toast(`Job ${shortId(job.id)} submitted to ${queueName(job.queue_id)}.`);
    state.jobPage = 1;
    await Promise.allSettled([loadJobs(), loadStats(job.queue_id).then(renderQueues)]);
  } catch (error) {
    showError(errorBox, error);
  } finally {
    submit.disabled = false;
  }
}

function renderPager(nav, { page, pages, total }, noun, go) {
  nav.replaceChildren();
  if (!total) return;
  const name = nav.id;
  if (pages > 1) {
    nav.append(button("Previous", () => go(page - 1), { focus: `${name}:prev` }));
    nav.lastChild.disabled = page <= 1;
  }
  const counted = `${total} ${total === 1 ? noun : `${noun}s`}`;
  nav.append(el("span", { class: "muted" }, pages > 1 ? `Page ${page} of ${pages} · ${counted}` : counted));
  if (pages > 1) {
    nav.append(button("Next", () => go(page + 1), { focus: `${name}:next` }));
    nav.lastChild.disabled = page >= pages;
  }
}

// --- job detail --------------------------------------------------------------------

function openJob(id) {
  state.openJob = id;
  state.detailKey = "";
  $("#job-dialog-title").textContent = `Job ${shortId(id)}`;
  $("#job-detail").replaceChildren(el("p", { class: "muted" }, "Loading…"));
  const dialog = $("#job-dialog");
  if (!dialog.open) dialog.showModal();
  loadDetail().catch((error) => {
    $("#job-detail").replaceChildren(el("p", { class: "error" }, error.message));
  });
}

async function loadDetail() {
  const id = state.openJob;
  if (!id) return;
  const path = `/jobs/${encodeURIComponent(id)}`;
  // The monitor's latest record of the job (redacted, size-capped); none without the monitor.
  const live = state.monitor === "on"
    ? read(`/monitor/tasks${query({ job_id: id, limit: 1 })}`).catch(() => null)
    : null;
  const [job, stats, why, records] = await Promise.all(
    [read(path), read(`${path}/stats`), read(`${path}/explain`), live]);
  if (state.openJob !== id) return;
  const record = records?.tasks?.[0] ?? null;
  // The blockers' countdowns change every call; the key keeps only what they say.
  const key = JSON.stringify([job, stats, why.state, why.blockers.map((b) => b.code), record]);
  if (key === state.detailKey) return; // unchanged: keep what the reader has open
  state.detailKey = key;
  keepFocus(() => $("#job-detail").replaceChildren(...detail(job, stats, why, record)));
}

function block(title, value, cls = "") {
  return [el("h3", {}, title), el("pre", { class: `code ${cls}`, tabindex: "0" }, value)];
}

function explanation(why) {
  if (why.state !== "waiting") return [el("p", { class: "muted", "data-explain": why.state }, why.summary)];
  return [
    el("h3", {}, "Why it is not running"),
    why.blockers.length
      ? el("ul", { class: "blockers" }, why.blockers.map((b) =>
        el("li", { "data-blocker": b.code }, el("strong", { class: "mono" }, b.code), " ", b.message)))
      : el("p", { class: "muted", "data-explain": "none" }, why.summary),
  ];
}

function detail(job, stats, why, record = null) {
  const facts = [
    ["Job id", el("span", { class: "mono break" }, job.id)],
    ["Status", badge("status", job.status, JOB_STATUSES)],
    ["Queue", queueName(job.queue_id)],
    ["Type", el("span", { class: "mono" }, job.job_type)],
    ["Priority", String(job.priority)],
    ["Attempts", `${job.attempt_count} of ${job.max_attempts}`],
    ["Created", timeEl(job.created_at)],
    ["Scheduled for", timeEl(job.scheduled_for)],
    ["Started", timeEl(job.started_at)],
    ["Completed", timeEl(job.completed_at)],
    ["Waited", duration(stats.wait_seconds)],
    ["Ran", duration(stats.run_seconds)],
  ];
  const nodes = [
    el("dl", { class: "facts" }, facts.map(([term, value], i) =>
      el("div", { class: i === 0 ? "wide" : null }, el("dt", {}, term), el("dd", {}, value)))),
    el("div", { class: "actions" }, jobActions(job, "detail")),
    ...explanation(why),
    ...block("Payload", json(job.payload)),
  ];
  if (job.result !== null && job.result !== undefined) nodes.push(...block("Result", json(job.result)));
  if (job.error) nodes.push(...block("Error", job.error, "error-text"));
  nodes.push(el("h3", {}, `Attempts (${stats.attempts.length})`));
  if (!stats.attempts.length) {
    nodes.push(el("p", { class: "muted" }, FINISHED.has(job.status) ? "No attempt ran." : "Not started yet."));
  }
  nodes.push(el("ol", { class: "attempts" }, stats.attempts.map(attemptItem)));
  if (record) nodes.push(...liveRecord(record));
  return nodes;
}

/** The monitor's latest task record of the job: what Flower shows of a task. */
function liveRecord(record) {
  const facts = [
    ["Last event", taskState(record.state)],
    ["Attempt", record.max_attempts ? `${record.attempt} of ${record.max_attempts}` : String(record.attempt)],
    ["Retries", String(record.retries ?? 0)],
    ["Worker", record.worker ?? "–"],
    ["Runtime", duration(record.runtime)],
    ["When", timeEl(record.timestamp)],
  ];
  const nodes = [
    el("h3", {}, "Live record"),
    el("dl", { class: "facts live-record" }, facts.map(([term, value]) =>
      el("div", {}, el("dt", {}, term), el("dd", {}, value)))),
  ];
  if (record.exception) nodes.push(...block("Exception", record.exception, "error-text"));
  if (record.traceback) {
    nodes.push(el("details", { class: "live-traceback" }, el("summary", {}, "Traceback (monitor)"),
      el("pre", { class: "code", tabindex: "0" }, record.traceback)));
  }
  return nodes;
}

function attemptItem(attempt) {
  return el("li", { "data-attempt": attempt.number },
    el("div", { class: "attempt-head" },
      el("strong", {}, `#${attempt.number}`),
      badge("status", attempt.status, ATTEMPT_STATUSES),
      el("span", { class: "muted" }, attempt.worker ?? "unknown worker"),
      el("span", { class: "muted" }, formatTime(attempt.started_at)),
      el("span", { class: "muted" }, duration(attempt.duration_seconds))),
    attempt.error ? el("pre", { class: "code error-text" }, attempt.error) : null,
    attempt.traceback
      ? el("details", {}, el("summary", {}, "Traceback"), el("pre", { class: "code", tabindex: "0" }, attempt.traceback))
      : null);
}

function closeJob() {
  state.openJob = null;
  const focus = document.querySelector(`[data-job-id="${CSS.escape(state.lastOpened ?? "")}"] button`);
  focus?.focus();
}

// --- workers, tasks, throughput ------------------------------------------------------

function setMonitor(mode) {
  if (state.monitor === mode) return;
  state.monitor = mode;
  const off = $("#monitor-off");
  off.textContent = mode === "forbidden"
    ? "Your role may not see workers (worker:read)."
    : "Live worker monitoring is not available on this server yet.";
  show(off, mode !== "on");
  show($("#monitor-on"), mode === "on");
  $("#workers").classList.toggle("unavailable", mode !== "on");
  $("#queues").classList.toggle("no-monitor", mode !== "on");
  if (mode === "on") connectEvents();
  else closeEvents();
}

async function loadMonitor(full) {
  if (state.monitor !== "on" && state.monitor !== "unknown" && state.ticks % MONITOR_PROBE_EVERY) return;
  if (full || state.monitor !== "on") {
    try {
      state.workers = (await read("/monitor/workers")).workers ?? [];
    } catch (error) {
      if (error.status === 404) return setMonitor("off");
      if (error.status === 403) return setMonitor("forbidden");
      throw error;
    }
    setMonitor("on");
    renderWorkers();
  }
  const [queues, tasks] = await Promise.all([
    read("/monitor/queues"),
    full ? read(`/monitor/tasks${query({ limit: RECENT_TASKS })}`) : null,
  ]);
  state.monitorQueues = new Map((queues.queues ?? []).map((q) => [q.queue_id, q]));
  sample((queues.queues ?? []).reduce((sum, q) => sum + (Number(q.throughput_per_minute) || 0), 0));
  if (tasks) {
    state.tasks = tasks.tasks ?? [];
    renderTasks();
  }
  renderQueues();
}

function renderWorkers() {
  const table = $("#worker-table");
  keepFocus(() => table.tBodies[0].replaceChildren(...state.workers.map((w) => workerRow(table, w))));
  show(table, state.workers.length > 0);
  show($("#worker-empty"), state.workers.length === 0);
}

/** Live workers have an id when registered to the organization; shared ones only a hostname. */
const workerKey = (w) => w.id ?? `host:${w.hostname}`;

function workerRow(table, w) {
  const status = String(w.status ?? "unknown");
  const drainable = Boolean(w.id) && ["online", "unhealthy"].includes(status);
  const name = w.hostname || shortId(w.id);
  return row(table, { "data-worker-id": workerKey(w), "data-status": status }, [
    el("div", { class: "cell-title" }, el("strong", { class: "break" }, name),
      w.hostname && w.id !== w.hostname ? el("span", { class: "muted mono" }, shortId(w.id)) : null),
    badge("worker", status, WORKER_STATUSES),
    count(w.active),
    count(w.processed),
    count(w.failed),
    count(w.pool_size),
    el("span", { class: "nowrap" },
      Array.isArray(w.loadavg) && w.loadavg.length ? w.loadavg.map((n) => Number(n).toFixed(2)).join(" ") : "–"),
    el("span", { class: "break" }, (w.queues ?? []).map(workerQueue).join(", ") || "–"),
    ago(w.last_heartbeat),
    drainable ? button("Drain", (e) => drainWorker(e.currentTarget, w, name),
      { focus: `drain:${w.id}`, aria: `Drain worker ${name}`, kind: "danger" }) : null,
  ]);
}

async function drainWorker(target, w, name) {
  if (!window.confirm(`Drain ${name}? It finishes its running jobs and takes no new ones.`)) return;
  // A Celery worker is drained by nodename (an operator's view includes shared workers);
  // one registered over REST has no nodename, only its id.
  const path = w.hostname
    ? `/monitor/workers/${encodeURIComponent(w.hostname)}/drain`
    : `/workers/${encodeURIComponent(w.id)}/drain`;
  await act(target, async () => {
    await post(path);
    await loadMonitor(true);
  }, `Worker ${name} is draining.`);
}

function renderTasks() {
  const table = $("#task-table");
  keepFocus(() => table.tBodies[0].replaceChildren(...state.tasks.map((t) => taskRow(table, t))));
  show(table, state.tasks.length > 0);
  show($("#task-empty"), state.tasks.length === 0);
}

function taskRow(table, task) {
  const words = taskState(task.state);
  const open = el("button", {
    type: "button", class: "link mono", "data-focus": `task:${task.job_id}:${task.timestamp}`,
    "aria-label": `Open job ${shortId(task.job_id)}`, onclick: () => openJob(task.job_id),
  }, shortId(task.job_id));
  return row(table, { "data-job-id": task.job_id }, [
    open,
    el("span", { class: "mono" }, task.job_type ?? "–"),
    el("div", { class: "cell-title" }, badge("status", words, [...JOB_STATUSES, "retrying"]),
      task.error ? el("span", { class: "error-text small" }, task.error) : null),
    el("span", { class: "break" }, task.worker ?? "–"),
    duration(task.runtime),
    timeEl(task.timestamp),
  ]);
}

function sample(value) {
  const now = Date.now();
  state.samples.push({ t: now, value });
  state.samples = state.samples.filter((s) => s.t >= now - CHART_WINDOW_MS);
  $("#throughput-now").textContent = String(Math.round(value));
  drawChart();
}

/** Throughput over the last minutes as a line over an area, drawn as SVG at its real width. */
function drawChart() {
  const chart = $("#throughput");
  const width = Math.max(280, Math.round(chart.clientWidth || 600));
  const height = 170;
  chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const pad = { left: 40, right: 14, top: 14, bottom: 26 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const now = Date.now();
  // The window grows with the data, from 30 s up to CHART_WINDOW_MS.
  const span = Math.min(CHART_WINDOW_MS, Math.max(30_000, now - (state.samples[0]?.t ?? now)));
  const top = niceCeil(Math.max(1, ...state.samples.map((s) => s.value)));
  const x = (t) => pad.left + ((t - (now - span)) / span) * plotW;
  const y = (v) => pad.top + plotH - (v / top) * plotH;

  const nodes = [];
  for (const value of [0, top / 2, top]) {
    nodes.push(svg("line", { class: "grid", x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value) }));
    nodes.push(svg("text", { class: "axis", x: pad.left - 6, y: y(value) + 4, "text-anchor": "end" },
      formatAxis(value)));
  }
  const since = span >= 60_000 ? `${Math.round(span / 60_000)} min ago` : `${Math.round(span / 1000)} s ago`;
  nodes.push(svg("text", { class: "axis", x: pad.left, y: height - 6 }, since));
  nodes.push(svg("text", { class: "axis", x: width - pad.right, y: height - 6, "text-anchor": "end" }, "now"));
  if (state.samples.length < 2) {
    nodes.push(svg("text", { class: "axis", x: pad.left + plotW / 2, y: pad.top + plotH / 2, "text-anchor": "middle" },
      "Collecting samples…"));
  } else {
    const points = state.samples.map((s) => `${x(s.t).toFixed(1)},${y(s.value).toFixed(1)}`);
    const first = x(state.samples[0].t).toFixed(1);
    const last = state.samples.at(-1);
    const area = `M${first},${y(0)} L${points.join(" L")} L${x(last.t).toFixed(1)},${y(0)} Z`;
    nodes.push(svg("path", { class: "area", d: area }));
    nodes.push(svg("polyline", { class: "line", points: points.join(" ") }));
    nodes.push(svg("circle", { class: "dot", cx: x(last.t), cy: y(last.value), r: 3.5 }));
  }
  chart.replaceChildren(...nodes);
}

function niceCeil(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((step) => step * power).find((n) => n >= value);
}

function formatAxis(value) {
  if (value >= 1000) return `${(value / 1000).toFixed(1)}k`;
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

// --- live updates ------------------------------------------------------------------

function connectEvents() {
  if (!state.running || state.events || state.monitor !== "on" || Date.now() < state.eventsRetryAt) return;
  state.events = "opening";
  openEvents({ task: onTaskEvent, worker: onWorkerEvent }, {
    onOpen: () => setLive("live"),
    onError: onEventsError,
  }).then((source) => {
    if (state.events === "opening" && state.running) state.events = source;
    else source.close();
  }).catch(() => eventsFailed());
}

/**
 * The server ends each stream after a while; the browser would reconnect with the spent
 * ticket, so reconnect now with a fresh one. A refused connection (404, 401, 503) closes
 * the stream: poll, and try again later.
 */
function onEventsError(event) {
  if (event.target !== state.events) return;
  setLive("polling");
  eventsFailed(event.target.readyState === EventSource.CLOSED ? EVENTS_RETRY_MS : 0);
}

function eventsFailed(retryMs = EVENTS_RETRY_MS) {
  closeEvents();
  state.eventsRetryAt = Date.now() + retryMs;
  if (!state.running) return;
  setLive("polling");
  if (retryMs === 0) connectEvents();
}

function closeEvents() {
  if (state.events instanceof EventSource) state.events.close();
  state.events = null;
}

function onTaskEvent(task) {
  if (!task || typeof task !== "object") return;
  state.tasks = [task, ...state.tasks.filter((t) =>
    !(t.job_id === task.job_id && t.state === task.state && t.timestamp === task.timestamp))].slice(0, RECENT_TASKS);
  renderTasks();
  if (task.job_id) soon(`job:${task.job_id}`, () => refreshJob(task.job_id));
  if (task.queue_id && state.queues.has(task.queue_id)) {
    soon(`stats:${task.queue_id}`, () => loadStats(task.queue_id).then(renderQueues), 500);
  }
  if (task.job_id && task.job_id === state.openJob) soon("detail", loadDetail);
}

function onWorkerEvent(worker) {
  if (!worker || typeof worker !== "object" || !(worker.id || worker.hostname)) return;
  const index = state.workers.findIndex((w) => workerKey(w) === workerKey(worker));
  if (index < 0) state.workers.push(worker);
  else state.workers[index] = { ...state.workers[index], ...worker };
  renderWorkers();
}

async function tick() {
  if (!state.running || state.busy || document.hidden) return;
  state.busy = true;
  const live = state.live === "live";
  const full = !live || state.ticks % FULL_RELOAD_EVERY_WHEN_LIVE === 0;
  try {
    const results = await Promise.allSettled([
      full ? loadQueues() : null,
      full ? loadJobs() : null,
      loadMonitor(full),
      full && state.openJob ? loadDetail() : null,
    ]);
    const failure = results.find((r) => r.status === "rejected")?.reason;
    if (failure) report(failure);
    if (!(failure instanceof ApiError && failure.status === 0) && state.live === "offline") {
      setLive(state.events instanceof EventSource ? "live" : "polling");
    }
    if (state.monitor === "on") connectEvents();
  } finally {
    state.ticks += 1;
    state.busy = false;
  }
}

function start() {
  stop();
  state.running = true;
  state.ticks = 0;
  state.samples = [];
  state.monitor = "unknown";
  setLive("polling");
  drawChart();
  tick();
  state.timer = setInterval(tick, POLL_MS);
}

function stop() {
  state.running = false;
  state.epoch += 1;
  clearInterval(state.timer);
  for (const timer of state.pending.values()) clearTimeout(timer);
  state.pending.clear();
  closeEvents();
  const dialog = $("#job-dialog");
  if (dialog.open) dialog.close();
  renderQueueOptions.key = undefined;
}

// --- wiring ------------------------------------------------------------------------

function init() {
  $("#login-form").addEventListener("submit", onLogin);
  $("#logout").addEventListener("click", onLogout);
  $("#queue-form").addEventListener("submit", onCreateQueue);
  $("#job-form").addEventListener("submit", onSubmitJob);
  $("#job-type").addEventListener("change", onJobTypeChange);
  $("#job-payload").value = JSON.stringify(SAMPLE_PAYLOADS.echo);
  $("#job-filters").addEventListener("change", applyFilters);
  $("#job-filters").addEventListener("submit", (event) => event.preventDefault());
  const dialog = $("#job-dialog");
  dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", closeJob);
  document.addEventListener("click", (event) => {
    const opener = event.target.closest?.("[data-job-id]");
    if (opener) state.lastOpened = opener.dataset.jobId;
  }, true);
  // Redraw the chart at its new width before the next paint (its text keeps its size).
  new ResizeObserver(() => drawChart()).observe($("#throughput"));
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) tick();
  });
  onSessionEnd((message) => leave(message));
  if (session.active) enter();
  else leave();
}

init();
