// gomailpy operator page: polls GET /admin/overview and draws what it says; the provider controls
// post to /admin/providers/{name}/{action}. No build step, no imports, nothing downloaded.
"use strict";

const EVERY_MS = Math.max(250, Number(new URLSearchParams(location.search).get("every")) || 2000);
const HISTORY = 150; // points kept: 5 minutes at the default 2 s
const KEY_STORE = "gomailpy-operator-key";
const COLOURS = ["#1f5fbf", "#b3261e", "#1d6b3a", "#8a4fbf", "#b36b00", "#00707a"];

const history = []; // {at, depth: {queue: n}, accepted: total, sent: {provider: total}}
const cards = new Map(); // provider name -> its card's elements, built once
let polling = null;

const $ = (id) => document.getElementById(id);

function key() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

function headers(extra) {
  const h = Object.assign({ Accept: "application/json" }, extra || {});
  if (key()) h["X-Api-Key"] = key();
  return h;
}

function messageOf(data, fallback) {
  if (data && typeof data === "object") {
    for (const field of ["message", "error", "detail", "reason"]) {
      if (typeof data[field] === "string" && data[field]) return data[field];
    }
  }
  return fallback;
}

async function readJson(response) {
  try {
    return await response.json();
  } catch (_) {
    return null;
  }
}

// -- polling -------------------------------------------------------------------------------------

async function poll() {
  let response;
  try {
    response = await fetch("/admin/overview", { headers: headers(), cache: "no-store" });
  } catch (_) {
    showProblem("The API does not answer; retrying.");
    return;
  }
  if (response.status === 401) {
    askForKey(key() ? "That key is not valid." : "");
    return;
  }
  const data = await readJson(response);
  if (!response.ok || !data) {
    showProblem(messageOf(data, `The API answered ${response.status}; retrying.`));
    return;
  }
  $("key-form").hidden = true;
  record(data);
  render(data);
  const when = new Date(data.at * 1000).toLocaleTimeString();
  $("updated").textContent = `Updated ${when}; every ${EVERY_MS / 1000} s.`;
  $("updated").classList.remove("problem");
}

function showProblem(text) {
  $("updated").textContent = text;
  $("updated").classList.add("problem");
}

function askForKey(problem) {
  const form = $("key-form");
  const wasHidden = form.hidden;
  form.hidden = false;
  $("key-error").textContent = problem;
  showProblem("An API key is needed.");
  if (wasHidden) $("api-key").focus();
}

function start() {
  if (polling !== null) clearInterval(polling);
  poll();
  polling = setInterval(poll, EVERY_MS);
}

// -- history and rates ---------------------------------------------------------------------------

function record(data) {
  const depth = {};
  for (const q of data.queues) depth[q.name] = q.depth == null ? 0 : q.depth;
  const sent = {};
  for (const [name, p] of Object.entries(data.providers)) sent[name] = p.sent;
  const accepted = Object.values(data.accepted).reduce((a, b) => a + b, 0);
  history.push({ at: data.at, depth, accepted, sent });
  while (history.length > HISTORY) history.shift();
}

// Per second between two polls; a counter that went down (a process restarted) counts from 0.
function rates(pick) {
  const out = [];
  for (let i = 1; i < history.length; i++) {
    const dt = history[i].at - history[i - 1].at;
    const now = pick(history[i]);
    const before = pick(history[i - 1]);
    const delta = now >= before ? now - before : now;
    out.push(dt > 0 ? delta / dt : 0);
  }
  return out;
}

// -- drawing ---------------------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

// One polyline per series on a 300 x 80 viewBox, scaled to the largest value; the largest value
// and point count are on the element (data-max, data-points) and in its label.
function drawChart(svg, series, unit) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const values = series.flatMap((s) => s.values);
  const max = Math.max(0, ...values);
  const top = max > 0 ? max : 1;
  const points = Math.max(0, ...series.map((s) => s.values.length));
  series.forEach((s, n) => {
    if (s.values.length === 0) return;
    const step = s.values.length > 1 ? 300 / (HISTORY - 1) : 0;
    const offset = 300 - step * (s.values.length - 1);
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute(
      "points",
      s.values.map((v, i) => `${(offset + i * step).toFixed(1)},${(78 - (v / top) * 74).toFixed(1)}`).join(" "),
    );
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", COLOURS[n % COLOURS.length]);
    line.setAttribute("stroke-width", "2");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    const title = document.createElementNS(SVG, "title");
    title.textContent = s.name;
    line.appendChild(title);
    svg.appendChild(line);
  });
  // The scale in words, beside the chart: text inside a stretched SVG would be stretched too.
  const scale = svg.parentElement && svg.parentElement.querySelector(".scale");
  if (scale) scale.textContent = ` (top: ${formatNumber(max)} ${unit})`;
  svg.dataset.max = String(max);
  svg.dataset.points = String(points);
}

function formatNumber(n) {
  return n >= 100 || Number.isInteger(n) ? String(Math.round(n)) : n.toFixed(1);
}

function render(data) {
  renderQueues(data);
  renderProviders(data);
  renderEngagement(data);
  renderHistory(data);
  renderNodes(data);
  renderDomains(data);
  const queueNames = data.queues.map((q) => q.name);
  drawChart(
    $("chart-depth"),
    queueNames.map((name) => ({ name, values: history.map((h) => h.depth[name] || 0) })),
    "messages",
  );
  drawChart($("chart-accepted"), [{ name: "accepted", values: rates((h) => h.accepted) }], "/s");
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
}

function renderQueues(data) {
  const body = $("queues");
  body.replaceChildren();
  for (const q of data.queues) {
    const row = document.createElement("tr");
    cell(row, q.name);
    cell(row, q.region || "—");
    cell(row, q.depth == null ? "?" : String(q.depth));
    const state = q.circuit_open ? "circuit open" : q.reachable ? "ok" : q.problem || "unreachable";
    cell(row, state, q.reachable ? "" : "problem-text");
    body.appendChild(row);
  }
  const regions = Object.entries(data.regions || {});
  $("regions").textContent = regions.length
    ? "Regions: " + regions.map(([r, d]) => `${r} ${d}`).join(", ")
    : "";
}

// The recent changes to the controls. Every value goes in as text (cell: textContent): a reason
// is whatever an operator typed.
function renderHistory(data) {
  const body = $("history");
  body.replaceChildren();
  const entries = data.history || [];
  if (entries.length === 0) {
    const row = document.createElement("tr");
    cell(row, data.history ? "No change recorded yet." : `Unknown: ${data.controls_problem}`);
    row.firstChild.colSpan = 5;
    body.appendChild(row);
  }
  for (const entry of entries) {
    const row = document.createElement("tr");
    row.dataset.seq = String(entry.seq);
    cell(row, new Date(entry.at * 1000).toISOString().replace(".000Z", "Z"));
    cell(row, entry.by);
    const what = entry.action === "pin" || entry.action === "unpin"
      ? [entry.action, entry.provider]
      : [entry.provider, entry.action, entry.value];
    cell(row, what.filter((w) => w).join(" "));
    cell(row, `${entry.before} → ${entry.after}`);
    cell(row, entry.reason);
    body.appendChild(row);
  }
}

// Engagement per provider (api.views.overview): each count per accepted send, the count beside it.
const ENGAGEMENT = ["opened", "clicked", "unsubscribed", "complained", "opened_machine", "clicked_machine"];

function percent(rate) {
  return rate == null ? "—" : `${(rate * 100).toFixed(2)}%`;
}

function renderEngagement(data) {
  const body = $("engagement");
  body.replaceChildren();
  for (const [name, p] of Object.entries(data.providers)) {
    const row = document.createElement("tr");
    row.dataset.provider = name;
    cell(row, name);
    cell(row, String(Math.round(p.sent)));
    for (const key of ENGAGEMENT) {
      cell(row, `${percent(p.rates[key])} (${Math.round(p.engagement[key])})`);
      row.lastChild.dataset.field = key;
    }
    body.appendChild(row);
  }
  const other = Object.entries(data.engagement_unattributed || {});
  $("engagement-unattributed").textContent = other.length
    ? "Not joined to a provider (e.g. unsubscribes by mail): " +
      other.map(([key, n]) => `${key.replace("_", " ")} ${Math.round(n)}`).join(", ")
    : "";
}

// A provider blocked or deferred at a recipient domain group: that group's mail goes through the
// others until a probe succeeds (pipeline.mailbox_health). One row per node and pair.
function renderDomains(data) {
  const body = $("domains");
  body.replaceChildren();
  const rows = data.nodes.flatMap((node) => (node.domains_excluded || []).map((pair) => [node, pair]));
  if (rows.length === 0) {
    const row = document.createElement("tr");
    cell(row, "None: every provider takes every domain's mail.");
    row.firstChild.colSpan = 5;
    body.appendChild(row);
  }
  for (const [node, pair] of rows) {
    const row = document.createElement("tr");
    row.className = "problem-text";
    cell(row, pair.provider);
    cell(row, pair.domain);
    const probe = pair.probing ? "a probe is out" : `probe in ${Math.round(pair.probe_in_s)} s`;
    cell(row, `${Math.round(pair.excluded_s)} s (${probe})`);
    cell(row, pair.why);
    cell(row, node.url.replace(/^https?:\/\//, ""));
    body.appendChild(row);
  }
}

function renderNodes(data) {
  const list = $("nodes");
  list.replaceChildren();
  if (data.nodes.length === 0) {
    const item = document.createElement("li");
    item.textContent = "None listed (operator.node_admin_urls): provider health and sends are not shown.";
    list.appendChild(item);
  }
  for (const node of data.nodes) {
    const item = document.createElement("li");
    item.textContent = node.ok
      ? node.paused
        ? `${node.url}: sending paused (${node.paused}: every provider held)`
        : `${node.url}: answering`
      : `${node.url}: ${node.problem}`;
    if (!node.ok || node.paused) item.className = "problem-text";
    list.appendChild(item);
  }
}

// -- providers and their controls ----------------------------------------------------------------

function element(tag, attributes, text) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) el.setAttribute(name, value);
  if (text !== undefined) el.textContent = text;
  return el;
}

function buildCard(name) {
  const card = element("article", { class: "card provider", id: `provider-${name}`, "data-provider": name });
  const title = element("h3", {}, name + " ");
  const badge = element("span", { class: "badge", "data-field": "state" }, "…");
  title.appendChild(badge);
  card.appendChild(title);
  const facts = element("dl");
  const fields = {};
  for (const [field, label] of [
    ["health", "Health"],
    ["controls", "Controls"],
    ["rate", "Rate use"],
    ["sent", "Sent"],
  ]) {
    facts.appendChild(element("dt", {}, label));
    fields[field] = element("dd", { "data-field": field }, "—");
    facts.appendChild(fields[field]);
  }
  card.appendChild(facts);
  const chart = document.createElementNS(SVG, "svg");
  chart.setAttribute("class", "chart");
  chart.setAttribute("viewBox", "0 0 300 80");
  chart.setAttribute("preserveAspectRatio", "none");
  chart.setAttribute("data-chart", `sent-${name}`);
  chart.setAttribute("role", "img");
  chart.setAttribute("aria-label", `${name}: emails sent per second`);
  const figure = element("figure");
  figure.appendChild(chart);
  const caption = element("figcaption", {}, "Sent, emails/s");
  caption.appendChild(element("span", { class: "scale" }));
  figure.appendChild(caption);
  card.appendChild(figure);

  const controls = element("div", { class: "controls" });
  const reasonId = `reason-${name}`;
  controls.appendChild(element("label", { for: reasonId }, "Reason (required)"));
  const reason = element("input", { id: reasonId, type: "text", autocomplete: "off", maxlength: "300" });
  controls.appendChild(reason);
  const buttons = element("div", { class: "row" });
  const weightId = `weight-${name}`;
  const weight = element("input", { id: weightId, type: "number", min: "0", step: "any", "aria-label": `${name} weight` });
  for (const [action, label] of [
    ["disable", "Disable"],
    ["enable", "Enable"],
    ["release", "Release hold"],
    ["pin", "Pin"],
    ["unpin", "Unpin"],
    ["weight", "Set weight"],
  ]) {
    const button = element("button", { type: "button", "data-action": action }, label);
    button.addEventListener("click", () => change(name, action));
    if (action === "weight") buttons.appendChild(weight);
    buttons.appendChild(button);
  }
  controls.appendChild(buttons);
  const message = element("p", { class: "message", role: "status", "data-field": "message" });
  controls.appendChild(message);
  card.appendChild(controls);
  $("providers").appendChild(card);
  const parts = { card, badge, fields, chart, reason, weight, message, buttons };
  cards.set(name, parts);
  return parts;
}

function renderProviders(data) {
  const controls = data.controls || { providers: {}, pinned: null };
  $("controls-note").textContent = data.controls
    ? controls.pinned
      ? `Every email goes to ${controls.pinned} (pinned).`
      : ""
    : `Controls unknown: ${data.controls_problem}`;
  for (const [name, p] of Object.entries(data.providers)) {
    const parts = cards.get(name) || buildCard(name);
    const control = controls.providers[name] || { active: [] };
    const states = Object.values(p.health);
    const healthy = states.length > 0 && states.every((s) => s === "healthy");
    // What the nodes say; only with no node reporting it does the configuration decide.
    let state = states.length ? (healthy ? "healthy" : "unhealthy") : p.enabled ? "no node" : "not configured";
    const held = Object.entries(p.held || {});
    if (held.length) state = "held";
    if (control.disabled) state = "disabled";
    parts.badge.textContent = state;
    parts.badge.classList.toggle("bad", state !== "healthy");
    parts.card.dataset.state = state;
    parts.fields.health.textContent = states.length
      ? Object.entries(p.health).map(([node, s]) => `${s} (${node.replace(/^https?:\/\//, "")})`).join(", ")
      : "no node reports it";
    if (held.length) {
      parts.fields.health.textContent +=
        "; held for its reputation: " + held.map(([node, why]) => `${why} (${node.replace(/^https?:\/\//, "")})`).join(", ");
    }
    const active = [...control.active];
    if (controls.pinned === name) active.push("pinned");
    const changed = control.changed && control.changed.reason ? ` — ${control.changed.by}: ${control.changed.reason}` : "";
    parts.fields.controls.textContent = (active.join(", ") || "none") + changed;
    const sentRates = rates((h) => h.sent[name] || 0);
    const now = sentRates.length ? sentRates[sentRates.length - 1] : 0;
    parts.fields.rate.textContent =
      p.rate_limit == null ? `${formatNumber(now)}/s (no limit)` : `${formatNumber(now)} of ${formatNumber(p.rate_limit)}/s`;
    parts.fields.sent.textContent = `${Math.round(p.sent)} sent, ${Math.round(p.failed)} failed`;
    if (document.activeElement !== parts.weight && parts.weight.value === "") {
      parts.weight.placeholder = String(control.weight == null ? p.weight : control.weight);
    }
    drawChart(parts.chart, [{ name, values: sentRates }], "/s");
  }
}

async function change(name, action) {
  const parts = cards.get(name);
  const reason = parts.reason.value.trim();
  parts.message.classList.remove("problem-text");
  if (!reason) {
    parts.message.textContent = "Give a reason: it is recorded with the change.";
    parts.message.classList.add("problem-text");
    parts.reason.focus();
    return;
  }
  const body = { reason };
  if (action === "weight") {
    if (parts.weight.value === "") {
      parts.message.textContent = "Enter a weight.";
      parts.message.classList.add("problem-text");
      parts.weight.focus();
      return;
    }
    body.value = Number(parts.weight.value);
  }
  for (const button of parts.buttons.querySelectorAll("button")) button.disabled = true;
  parts.message.textContent = "Changing…";
  try {
    const response = await fetch(`/admin/providers/${encodeURIComponent(name)}/${action}`, {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
    });
    const data = await readJson(response);
    if (response.status === 401) {
      askForKey("");
      parts.message.textContent = "An API key is needed.";
      parts.message.classList.add("problem-text");
    } else if (!response.ok) {
      parts.message.textContent = messageOf(data, `The API answered ${response.status}.`);
      parts.message.classList.add("problem-text");
    } else {
      parts.message.textContent = `Done: ${action}. Nodes apply it within a few seconds.`;
      parts.reason.value = "";
      parts.weight.value = "";
      poll();
    }
  } catch (_) {
    parts.message.textContent = "The API does not answer.";
    parts.message.classList.add("problem-text");
  } finally {
    for (const button of parts.buttons.querySelectorAll("button")) button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("api-key").value.trim();
    if (!value) {
      $("key-error").textContent = "Enter the key.";
      return;
    }
    sessionStorage.setItem(KEY_STORE, value);
    $("api-key").value = "";
    start();
  });
  start();
});
