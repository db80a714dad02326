// The JSON API with the viewer's key (kept in sessionStorage: this tab only).
import { h } from "./dom.js";

const STORAGE = "conveyor.apiKey";
const listeners = { unauthorized: () => {} };

export const key = {
  get: () => sessionStorage.getItem(STORAGE),
  set: (value) => sessionStorage.setItem(STORAGE, value),
  forget: () => sessionStorage.removeItem(STORAGE),
  /** Shown in the header: never the whole key. */
  hint: (value = key.get()) => (value ? `…${value.slice(-4)}` : ""),
};

export function onUnauthorized(fn) {
  listeners.unauthorized = fn;
}

/**
 * One request; never throws for an HTTP status. Returns
 * {ok, status, statusText, body, method, path}; status 0 is a network failure.
 */
export async function request(method, path, body, { headers = {}, signal, keyOverride } = {}) {
  const k = keyOverride ?? key.get();
  const init = { method, signal, cache: "no-store", headers: { Accept: "application/json", ...headers } };
  if (k) init.headers.Authorization = `Bearer ${k}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    return { ok: false, status: 0, statusText: "network error", method, path,
      body: { error: { code: "network_error", message: `the API did not answer (${e.message})` } } };
  }
  const text = await resp.text();
  let parsed = null;
  if (text) {
    try { parsed = JSON.parse(text); } catch { parsed = text; }
  }
  const answer = { ok: resp.ok, status: resp.status, statusText: resp.statusText || STATUS[resp.status] || "",
    body: parsed, method, path, headers: resp.headers };
  if (resp.status === 401 && !keyOverride) listeners.unauthorized(answer);
  return answer;
}

const STATUS = { 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request",
  401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 413: "Payload Too Large",
  422: "Unprocessable Content", 429: "Too Many Requests", 503: "Service Unavailable" };

export class ApiError extends Error {
  constructor(answer) {
    super(errorText(answer));
    this.answer = answer;
  }
}

/** GET that throws ApiError unless 2xx (for page loaders). */
export async function get(path, opts) {
  const answer = await request("GET", path, undefined, opts);
  if (!answer.ok) throw new ApiError(answer);
  return answer.body;
}

export function errorText(answer) {
  const e = answer.body && answer.body.error;
  const head = `${answer.status} ${answer.statusText || STATUS[answer.status] || ""}`.trim();
  if (e && typeof e === "object") return `${head}: ${e.code}: ${e.message}`;
  return head;
}

/** "POST /v1/jobs/x/cancel → 202 Accepted" and the JSON body: the API's answer, as is. */
export function answerView(answer) {
  const text = `${answer.method} ${answer.path} → ${answer.status} ${answer.statusText || STATUS[answer.status] || ""}`;
  return h(
    "div", { class: `answer${answer.ok ? "" : " is-error"}`, "data-status-code": answer.status },
    h("div", { class: "head" }, text),
    answer.body == null ? null : h("pre", {}, typeof answer.body === "string" ? answer.body : JSON.stringify(answer.body, null, 2)),
  );
}

/** A page-level failure (403 without the scope, 404, network): readable, with the body. */
export function failureView(err, what) {
  if (!(err instanceof ApiError)) {
    return h("div", { class: "answer is-error", role: "alert" }, h("div", { class: "head" }, `${what}: ${err.message}`));
  }
  const a = err.answer;
  const hint = a.status === 403 ? " Use a key with that scope (Change key, top right)." : "";
  return h(
    "div", { class: "answer is-error", role: "alert", "data-status-code": a.status },
    h("div", { class: "head" }, `${what}: ${errorText(a)}.${hint}`),
    a.body == null ? null : h("pre", {}, JSON.stringify(a.body, null, 2)),
  );
}
