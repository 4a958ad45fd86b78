// gomailpy web client: posts the form as {"email": {...}} to <API base>/email/send and shows the
// answer. index.html says how the API base URL is chosen (?api=, <meta name="gomailpy-api">, same
// origin). Plain ES2022 with no imports, so it runs as a module or, as index.html loads it, as a
// classic deferred script (Chromium refuses module scripts on file:// pages).
//
// On purpose: the form is never cleared after a send (send several quickly, as gomail's form did);
// one send at a time (the button is disabled while a request is in flight); every text from the API
// goes in through textContent, never innerHTML.
"use strict";

// The request fields this form edits, by element id (= request field = key of a 422 `errors` map).
const FIELD_LABELS = {
  fromEmail: "From email",
  fromName: "From name",
  toEmail: "To email",
  toName: "To name",
  subject: "Subject",
  body: "Body",
};
const SEND_TIMEOUT_MS = 15_000;
const SEND_TIMEOUT_TEXT = "15 s";
// When to ask GET /email/{id} for the delivery status after a send (about 20 s in all; the
// pipeline usually finishes well within that). Absent endpoint: one request, then silence.
const STATUS_POLL_DELAYS_MS = [500, 1000, 1500, 2000, 3000, 5000, 7000];
const STATUS_TIMEOUT_MS = 5_000;
const FINAL_STATES = new Set(["sent", "failed"]);
// Per-recipient outcomes (GET /email/{id} `recipients`, from the providers' events) that will
// not change again; while one is missing or still "sent"/"deferred", the form keeps following.
const FINAL_OUTCOMES = new Set([
  "delivered",
  "bounced",
  "blocked", // refused for the sender's or the message's sake: that email is refused for good
  "autoresponded", // an auto-reply: it was delivered
  "complained",
  "dropped",
  "rejected",
  "failed",
]);
const HISTORY_MAX = 20;

/**
 * The API base URL (no trailing slash) from ?api=, the meta tag or the page's origin.
 * @returns {{base: string | null, problem: string | null}}
 */
function resolveApiBase(loc, doc) {
  const fromQuery = new URLSearchParams(loc.search).get("api");
  const meta = doc.querySelector('meta[name="gomailpy-api"]');
  const raw = (fromQuery ?? "").trim() || (meta?.getAttribute("content") ?? "").trim();
  if (!raw) {
    if (loc.protocol === "http:" || loc.protocol === "https:") {
      return { base: loc.origin, problem: null };
    }
    return {
      base: null,
      problem:
        "This page was opened from a file, so it does not know where the API is: add " +
        "?api=http://host:port to its address.",
    };
  }
  let url;
  try {
    url = new URL(raw, loc.href);
  } catch {
    url = null;
  }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
    return { base: null, problem: `The API address "${raw}" is not an http:// or https:// URL.` };
  }
  return { base: url.origin + url.pathname.replace(/\/+$/, ""), problem: null };
}

/** One message from an API error body: errors.base, any errors.*, or message/error/detail. */
function apiMessage(data) {
  if (!data || typeof data !== "object") return null;
  const errors = data.errors;
  if (errors && typeof errors === "object") {
    if (errors.base != null) return asText(errors.base);
    const all = Object.values(errors).map(asText).filter(Boolean);
    if (all.length) return all.join("; ");
  }
  for (const key of ["message", "error", "detail", "reason"]) {
    if (typeof data[key] === "string" && data[key]) return data[key];
  }
  return null;
}

function asText(value) {
  if (value == null) return "";
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return value.map(asText).join("; ");
  return JSON.stringify(value);
}

function describeHttp(response) {
  return `HTTP ${response.status}${response.statusText ? " " + response.statusText : ""}`;
}

/**
 * POST the email; resolve to one of
 *   {kind: "sent", messageId} | {kind: "invalid", errors} |
 *   {kind: "refused", text} | {kind: "unreachable", text}
 * Never throws.
 */
async function postEmail(apiBase, email) {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, SEND_TIMEOUT_MS);
  let response;
  let bodyText;
  try {
    response = await fetch(`${apiBase}/email/send`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ email }),
      signal: controller.signal,
      // No cookies or auth headers: the API does not use them, and omitting them keeps a
      // cross-origin page (?api=) to a plain CORS request.
      credentials: "omit",
    });
    bodyText = await response.text();
  } catch {
    return { kind: "unreachable", text: unreachableText(apiBase, timedOut) };
  } finally {
    clearTimeout(timer);
  }
  let data = null;
  try {
    data = JSON.parse(bodyText);
  } catch {
    data = null;
  }
  if (response.ok) {
    if (data && typeof data.messageId === "string" && data.messageId) {
      return { kind: "sent", messageId: data.messageId };
    }
    return {
      kind: "refused",
      text: `The API answered ${describeHttp(response)} but without a messageId, so it is not known whether the email was queued.`,
    };
  }
  if (response.status === 422 && data && data.errors && typeof data.errors === "object") {
    return { kind: "invalid", errors: data.errors };
  }
  return { kind: "refused", text: refusedText(apiBase, response, data, bodyText) };
}

function unreachableText(apiBase, timedOut) {
  if (timedOut) {
    return (
      `Could not reach the API at ${apiBase}: no answer within ${SEND_TIMEOUT_TEXT}. ` +
      "The email may have been queued all the same; check before sending it again."
    );
  }
  const crossOrigin = !apiBase.startsWith(window.location.origin + "/") &&
    apiBase !== window.location.origin;
  const hint = crossOrigin
    ? ` Check that the API is running and that its api.cors_origins allows this page's origin (${window.location.origin}).`
    : " Check that the API is running.";
  return `Could not reach the API at ${apiBase}: the connection failed.${hint} The email was not sent.`;
}

function refusedText(apiBase, response, data, bodyText) {
  const message = apiMessage(data) ?? (bodyText || "").trim().slice(0, 200);
  const what = describeHttp(response);
  let text = `The email was not sent (${what})`;
  text += message ? `: ${message}` : ".";
  if (message && !/[.!?]$/.test(message)) text += ".";
  if (response.status === 503) text += " Nothing was queued; try again in a moment.";
  if (response.status === 404 || response.status === 405) {
    text += ` Is ${apiBase} the gomailpy API?`;
  }
  return text;
}

/** A delivery record from GET /email/{id}, read defensively; null if it is not one. */
function readDelivery(data) {
  if (!data || typeof data !== "object") return null;
  const state = String(data.status ?? data.state ?? "").toLowerCase();
  if (!state) return null;
  // The record may keep details at the top or in its latest timeline entry.
  const timeline = Array.isArray(data.timeline) ? data.timeline : [];
  const last = timeline.length ? timeline[timeline.length - 1] : {};
  const pick = (...keys) => {
    for (const source of [data, last]) {
      for (const key of keys) {
        if (source && source[key] != null && source[key] !== "") return asText(source[key]);
      }
    }
    return "";
  };
  let label = state;
  if (state === "sent") {
    const provider = pick("provider");
    label = provider ? `sent (${provider})` : "sent";
  } else if (state === "failed") {
    const reason = pick("reason", "lastReason", "last_reason", "error");
    label = reason ? `failed (${reason})` : "failed";
  } else if (state === "retrying") {
    const attempt = pick("attempt", "attempts");
    const reason = pick("reason", "lastReason", "last_reason", "error");
    const detail = [attempt && `attempt ${attempt}`, reason].filter(Boolean).join(": ");
    label = detail ? `retrying (${detail})` : "retrying";
  }
  const outcomes = readOutcomes(data.recipients);
  if (outcomes.text) label += ` — ${outcomes.text}`;
  return { state, label, final: FINAL_STATES.has(state) && outcomes.final };
}

/** "a@x delivered, b@y bounced (hard)" from `recipients`; final once every one is settled
 * (an API without outcomes: at once). */
function readOutcomes(recipients) {
  if (!recipients || typeof recipients !== "object") return { text: "", final: true };
  const entries = Object.entries(recipients).filter(([, o]) => o && typeof o === "object");
  const text = entries
    .map(([address, o]) => {
      const state = asText(o.state);
      return o.subtype ? `${address} ${state} (${asText(o.subtype)})` : `${address} ${state}`;
    })
    .join(", ");
  const final = entries.length > 0 && entries.every(([, o]) => FINAL_OUTCOMES.has(o.state));
  return { text, final };
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

class SendForm {
  constructor(doc) {
    this.doc = doc;
    this.form = doc.getElementById("send-form");
    this.button = doc.getElementById("send");
    this.alert = doc.getElementById("form-alert");
    this.status = doc.getElementById("send-status");
    this.delivery = doc.getElementById("delivery-status");
    this.history = doc.getElementById("history");
    this.historySection = doc.getElementById("history-section");
    this.inFlight = false;
    this.sendCount = 0; // which send owns the status line; older trackers stop writing to it
    const { base, problem } = resolveApiBase(window.location, doc);
    this.apiBase = base;
    this.configProblem = problem;
  }

  start() {
    const target = this.doc.getElementById("api-url");
    target.textContent = this.apiBase ? `${this.apiBase}/email/send` : "(no API address set)";
    if (this.configProblem) this.showAlert([this.configProblem]);
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.send();
    });
  }

  readEmail() {
    const email = {};
    for (const id of Object.keys(FIELD_LABELS)) email[id] = this.doc.getElementById(id).value;
    return email;
  }

  async send() {
    // The disabled button stops clicks and Enter in a field; the flag covers anything else.
    if (this.inFlight) return;
    this.clearMessages();
    if (!this.apiBase) {
      this.showAlert([this.configProblem]);
      return;
    }
    const email = this.readEmail();
    this.setBusy(true);
    let outcome;
    try {
      outcome = await postEmail(this.apiBase, email);
    } finally {
      this.setBusy(false);
    }
    if (outcome.kind === "sent") this.showSent(outcome.messageId, email);
    else if (outcome.kind === "invalid") this.showInvalid(outcome.errors);
    else this.showAlert([outcome.text]);
  }

  setBusy(busy) {
    this.inFlight = busy;
    this.button.disabled = busy;
    this.button.textContent = busy ? "Sending…" : "Send";
    this.form.setAttribute("aria-busy", String(busy));
    // Disabling the focused button drops focus to <body>; give it back so keyboard users can
    // send again from where they were.
    if (!busy && this.doc.activeElement === this.doc.body) this.button.focus();
  }

  clearMessages() {
    this.alert.replaceChildren();
    this.status.replaceChildren();
    this.delivery.replaceChildren();
    for (const id of Object.keys(FIELD_LABELS)) {
      const input = this.doc.getElementById(id);
      input.removeAttribute("aria-invalid");
      input.removeAttribute("aria-describedby");
      this.doc.getElementById(`${id}-error`).textContent = "";
    }
  }

  showAlert(messages, invalidFields = []) {
    const parts = [];
    if (invalidFields.length) {
      const summary = this.doc.createElement("p");
      summary.append("The email was not sent. Please correct: ");
      invalidFields.forEach((id, index) => {
        if (index) summary.append(", ");
        const link = this.doc.createElement("a");
        link.href = `#${id}`;
        link.textContent = FIELD_LABELS[id];
        link.addEventListener("click", (event) => {
          event.preventDefault();
          this.doc.getElementById(id).focus();
        });
        summary.append(link);
      });
      summary.append(".");
      parts.push(summary);
    }
    if (messages.length === 1 && !invalidFields.length) {
      const p = this.doc.createElement("p");
      p.textContent = messages[0];
      parts.push(p);
    } else if (messages.length) {
      const list = this.doc.createElement("ul");
      for (const message of messages) {
        const item = this.doc.createElement("li");
        item.textContent = message;
        list.append(item);
      }
      parts.push(list);
    }
    this.alert.replaceChildren(...parts);
  }

  showInvalid(errors) {
    const invalid = [];
    const formLevel = [];
    for (const [field, message] of Object.entries(errors)) {
      if (Object.hasOwn(FIELD_LABELS, field)) {
        const input = this.doc.getElementById(field);
        this.doc.getElementById(`${field}-error`).textContent = asText(message);
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-describedby", `${field}-error`);
        invalid.push(field);
      } else {
        // `base`, fields this form does not have (cc, attachments…) and unknown fields: the
        // API's message names the field itself.
        formLevel.push(asText(message));
      }
    }
    // Summary in form order, whatever order the API listed the fields in.
    invalid.sort(
      (a, b) => Object.keys(FIELD_LABELS).indexOf(a) - Object.keys(FIELD_LABELS).indexOf(b),
    );
    if (!invalid.length && !formLevel.length) formLevel.push("The API refused the email (HTTP 422).");
    else if (!invalid.length) formLevel.unshift("The email was not sent.");
    this.showAlert(formLevel, invalid);
    if (invalid.length) this.doc.getElementById(invalid[0]).focus();
  }

  showSent(messageId, email) {
    const sendNumber = ++this.sendCount;
    const strong = this.doc.createElement("strong");
    strong.textContent = "Queued for delivery.";
    const code = this.doc.createElement("code");
    code.id = "message-id";
    code.textContent = messageId;
    this.status.replaceChildren(strong, " Message id: ", code);

    const entry = this.addHistory(messageId, email);
    void this.trackDelivery(messageId, entry, sendNumber);
  }

  addHistory(messageId, email) {
    const item = this.doc.createElement("li");
    const to = this.doc.createElement("span");
    to.className = "history-to";
    to.textContent = email.toName ? `${email.toName} <${email.toEmail}>` : email.toEmail;
    const subject = this.doc.createElement("span");
    subject.className = "history-subject";
    subject.textContent = email.subject || "(no subject)";
    const id = this.doc.createElement("code");
    id.textContent = messageId;
    const delivery = this.doc.createElement("span");
    delivery.className = "history-delivery";
    item.append(to, subject, id, delivery);
    this.history.prepend(item);
    while (this.history.children.length > HISTORY_MAX) this.history.lastElementChild.remove();
    this.historySection.hidden = false;
    return delivery;
  }

  /** Follow GET /email/{id} a few times; silent if the endpoint is absent or answers oddly. */
  async trackDelivery(messageId, entry, sendNumber) {
    const url = `${this.apiBase}/email/${encodeURIComponent(messageId)}`;
    const seen = [];
    for (const delay of STATUS_POLL_DELAYS_MS) {
      await sleep(delay);
      let data;
      try {
        const response = await fetch(url, {
          headers: { Accept: "application/json" },
          credentials: "omit",
          signal: AbortSignal.timeout(STATUS_TIMEOUT_MS),
        });
        // 404/405 before the delivery-status feature; anything else unexpected: stay quiet.
        if (!response.ok) return;
        data = await response.json();
      } catch {
        return;
      }
      const delivery = readDelivery(data);
      if (!delivery) return;
      if (seen[seen.length - 1] !== delivery.label) seen.push(delivery.label);
      const text = `Delivery: ${seen.join(" → ")}`;
      entry.textContent = text;
      if (sendNumber === this.sendCount) this.delivery.textContent = text;
      if (delivery.final) return;
    }
  }
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", () => new SendForm(document).start());
} else {
  new SendForm(document).start();
}
