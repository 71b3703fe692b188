// The broker's dashboard: logs in with HTTP Basic against the management API (/api/),
// polls the overview and the queues, draws message rates, and publishes and watches
// topics over the native WebSocket protocol (/ws, subprotocol broker.v1.json).
// Plain browser JavaScript, no build step, nothing loaded from elsewhere.
"use strict";

const POLL_MS = 2000;
const CHART_POINTS = 60; // two minutes at one sample per poll
const LIVE_LIMIT = 200; // messages kept in the live view
const RECONNECT_MS = [1000, 2000, 5000, 10000];

const $ = (id) => document.getElementById(id);

const state = {
  user: null,
  password: null,
  apiMissing: false,
  pollTimer: null,
  samples: [], // {in, out} per poll
  socket: null,
  socketReady: false,
  nextId: 1,
  pending: new Map(), // request id -> callback(reply)
  watching: null, // the filter subscribed to
  reconnects: 0,
};

// ---- HTTP -------------------------------------------------------------------------------

function basicAuth(user, password) {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return `Basic ${btoa(binary)}`;
}

// GET a management API path; resolves to {status, body}. The credentials travel in our
// own Authorization header; with the browser's credentials mode "omit", a 401 comes back
// to the page instead of opening the browser's own login prompt (which, headless, never
// answers).
async function api(path) {
  const response = await fetch(`/api/${path}`, {
    headers: { Authorization: basicAuth(state.user, state.password) },
    credentials: "omit",
    cache: "no-store",
  });
  const type = response.headers.get("content-type") || "";
  const body = type.startsWith("application/json") ? await response.json() : null;
  return { status: response.status, body };
}

function notice(text) {
  const element = $("notice");
  element.textContent = text || "";
  element.hidden = !text;
}

// ---- login ------------------------------------------------------------------------------

async function logIn(event) {
  event.preventDefault();
  state.user = $("username").value;
  state.password = $("password").value;
  $("login-error").textContent = "";
  let reply;
  try {
    reply = await api("overview");
  } catch (error) {
    $("login-error").textContent = `The broker does not answer: ${error.message}`;
    return;
  }
  if (reply.status === 401) {
    $("login-error").textContent = "Wrong user name or password.";
    return;
  }
  if (reply.status === 404) {
    // A broker without the management API still has the live view over /ws.
    state.apiMissing = true;
    notice("The management API is not available: listeners, connections, rates and queues stay empty.");
  }
  start(reply.status === 200 ? reply.body : null);
}

function logOut() {
  clearTimeout(state.pollTimer);
  if (state.socket) state.socket.close(1000);
  location.reload();
}

function start(overview) {
  $("login-panel").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = state.user;
  if (overview) renderOverview(overview);
  drawChart();
  schedulePoll();
  connect();
}

// ---- overview and queues ----------------------------------------------------------------

function schedulePoll() {
  state.pollTimer = setTimeout(poll, POLL_MS);
}

async function poll() {
  if (!state.apiMissing) {
    try {
      const [overview, queues] = await Promise.all([api("overview"), api("queues")]);
      if (overview.status === 200) renderOverview(overview.body);
      if (queues.status === 200) renderQueues(queues.body);
      const failed = [overview, queues].find((reply) => reply.status !== 200);
      notice(failed ? `The management API answered ${failed.status}.` : "");
    } catch (error) {
      notice(`The broker does not answer: ${error.message}`);
    }
  }
  schedulePoll();
}

function renderOverview(overview) {
  fillTable("listeners", overview.listeners || [], (listener) => [
    listener.protocol,
    formatAddress(listener.ip_address, listener.port),
  ]);
  const connections = Object.entries(overview.connections_by_protocol || {});
  fillTable("connections", connections, ([protocol, count]) => [protocol, count]);
  const stats = overview.message_stats || {};
  addSample(rateOf(stats.publish_details), rateOf(stats.deliver_get_details));
}

function renderQueues(queues) {
  fillTable("queues", queues, (queue) => [
    queue.vhost,
    queue.name,
    queue.messages_ready ?? queue.messages ?? 0,
    queue.messages_unacknowledged ?? 0,
    queue.consumers ?? 0,
  ]);
}

function rateOf(details) {
  return details && typeof details.rate === "number" ? details.rate : 0;
}

function formatAddress(host, port) {
  return host && host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

// Replace a table's rows with one per item; numbers are right-aligned.
function fillTable(id, items, cells) {
  const body = $(id).tBodies[0];
  const rows = items.map((item) => {
    const row = document.createElement("tr");
    for (const value of cells(item)) {
      const cell = document.createElement("td");
      cell.textContent = String(value);
      if (typeof value === "number") cell.className = "number";
      row.append(cell);
    }
    return row;
  });
  if (rows.length === 0) {
    const row = document.createElement("tr");
    const cell = document.createElement("td");
    cell.colSpan = $(id).tHead.rows[0].cells.length;
    cell.className = "empty";
    cell.textContent = "none";
    row.append(cell);
    rows.push(row);
  }
  body.replaceChildren(...rows);
}

// ---- the rate chart ---------------------------------------------------------------------

function addSample(rateIn, rateOut) {
  state.samples.push({ in: rateIn, out: rateOut });
  if (state.samples.length > CHART_POINTS) state.samples.shift();
  $("rates-now").textContent = `now: ${rateIn.toFixed(1)} in/s, ${rateOut.toFixed(1)} out/s`;
  drawChart();
}

// A line chart of the last CHART_POINTS samples, scaled to the largest rate shown.
function drawChart() {
  const canvas = $("rates");
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(canvas.clientWidth, 100);
  const height = canvas.clientHeight;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const context = canvas.getContext("2d");
  context.scale(ratio, ratio);
  context.clearRect(0, 0, width, height);

  const style = getComputedStyle(document.documentElement);
  const pad = { left: 48, right: 8, top: 8, bottom: 8 };
  const plotWidth = width - pad.left - pad.right;
  const plotHeight = height - pad.top - pad.bottom;
  const top = niceCeiling(Math.max(1, ...state.samples.map((s) => Math.max(s.in, s.out))));

  context.strokeStyle = style.getPropertyValue("--line");
  context.fillStyle = style.getPropertyValue("--muted");
  context.font = "11px system-ui, sans-serif";
  context.textAlign = "right";
  context.textBaseline = "middle";
  for (const fraction of [0, 0.5, 1]) {
    const y = pad.top + plotHeight * (1 - fraction);
    context.beginPath();
    context.moveTo(pad.left, y);
    context.lineTo(width - pad.right, y);
    context.stroke();
    context.fillText(formatRate(top * fraction), pad.left - 6, y);
  }

  const step = plotWidth / (CHART_POINTS - 1);
  const offset = CHART_POINTS - state.samples.length;
  // "out" dashed, so equal rates still show both lines
  for (const [key, color, dash] of [["in", "--in", []], ["out", "--out", [6, 4]]]) {
    context.strokeStyle = style.getPropertyValue(color);
    context.lineWidth = 2;
    context.setLineDash(dash);
    context.beginPath();
    state.samples.forEach((sample, index) => {
      const x = pad.left + (offset + index) * step;
      const y = pad.top + plotHeight * (1 - sample[key] / top);
      if (index === 0) context.moveTo(x, y);
      else context.lineTo(x, y);
    });
    context.stroke();
  }
}

// The smallest of 1, 2 or 5 times a power of ten at or above value.
function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((candidate) => candidate >= value);
}

function formatRate(value) {
  return value >= 1000 ? `${(value / 1000).toFixed(value >= 10000 ? 0 : 1)}k` : `${+value.toFixed(1)}`;
}

// ---- the native WebSocket protocol ------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws`, "broker.v1.json");
  state.socket = socket;
  liveStatus("connecting…", "connecting");
  socket.addEventListener("open", () => {
    request({ op: "auth", username: state.user, password: state.password }, (reply) => {
      if (reply.op !== "ok") {
        liveStatus(`login refused: ${reply.message}`, "refused");
        return;
      }
      state.socketReady = true;
      state.reconnects = 0;
      liveStatus("connected", "connected");
      watch(state.watching || $("watch-filter").value);
    });
  });
  socket.addEventListener("message", (event) => received(JSON.parse(event.data)));
  socket.addEventListener("close", () => {
    state.socketReady = false;
    state.pending.clear();
    const delay = RECONNECT_MS[Math.min(state.reconnects, RECONNECT_MS.length - 1)];
    state.reconnects += 1;
    liveStatus(`disconnected, retrying in ${delay / 1000} s`, "disconnected");
    setTimeout(connect, delay);
  });
}

// Send a request with a fresh id; ``then`` gets the ok or error reply.
function request(frame, then) {
  const id = state.nextId++;
  state.pending.set(id, then);
  state.socket.send(JSON.stringify({ ...frame, id }));
}

function received(frame) {
  if (frame.op === "message") {
    showMessage(frame);
  } else if ((frame.op === "ok" || frame.op === "error") && state.pending.has(frame.id)) {
    const then = state.pending.get(frame.id);
    state.pending.delete(frame.id);
    then(frame);
  }
}

// Subscribe to a filter (dropping the one watched before).
function watch(filter) {
  if (!state.socketReady) return;
  const previous = state.watching;
  if (previous && previous !== filter) {
    request({ op: "unsubscribe", topic: previous }, () => {});
    state.watching = null;
  }
  request({ op: "subscribe", topic: filter }, (reply) => {
    if (reply.op === "ok") {
      state.watching = filter;
      liveStatus(`watching ${filter}`, "watching");
    } else {
      liveStatus(`cannot watch ${filter}: ${reply.message}`, "refused");
    }
  });
}

function liveStatus(text, name) {
  $("live-status").textContent = text;
  document.body.dataset.live = name;
}

function showMessage(frame) {
  const item = document.createElement("li");
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = new Date().toLocaleTimeString();
  const topic = document.createElement("span");
  topic.className = "topic";
  topic.textContent = frame.topic;
  const payload = document.createElement("span");
  payload.className = "payload";
  payload.textContent = frame.encoding === "base64" ? `(base64) ${frame.payload}` : frame.payload;
  item.append(time, topic, payload);
  const list = $("live");
  list.prepend(item);
  while (list.children.length > LIVE_LIMIT) list.lastElementChild.remove();
}

function publish(event) {
  event.preventDefault();
  const status = $("publish-status");
  if (!state.socketReady) {
    status.textContent = "not connected";
    return;
  }
  const topic = $("publish-topic").value;
  const frame = {
    op: "publish",
    topic,
    payload: $("publish-payload").value,
    qos: 1,
    retain: $("publish-retain").checked,
  };
  status.textContent = "publishing…";
  request(frame, (reply) => {
    status.textContent = reply.op === "ok" ? `published to ${topic}` : `refused: ${reply.message}`;
  });
}

// ---- wiring -----------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", logIn);
  $("logout").addEventListener("click", logOut);
  $("publish").addEventListener("submit", publish);
  $("watch").addEventListener("submit", (event) => {
    event.preventDefault();
    watch($("watch-filter").value);
  });
  window.addEventListener("resize", drawChart);
});
