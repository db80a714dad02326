// Live updates: GET /v1/events/stream read with fetch() (so it can carry the key),
// resumed with Last-Event-ID after a drop. While the stream is unavailable (not
// deployed, network, proxy) the current page is polled every 2 s instead.
import { key } from "./api.js";
import { SseParser } from "./sse.js";
import * as rates from "./rates.js";

const STREAM = "/v1/events/stream";
const POLL_MS = 2000;
const SILENCE_MS = 45000; // heartbeats come every 15 s: this long without a byte is a dead link
const subscribers = new Set();
const status = { mode: "off", detail: "" };
let statusListener = () => {};
let controller = null;
let pollTimer = null;
let lastEventId = "";

/** sub = {onEvent(ev), onRefresh(reason)}; returns an unsubscribe function. */
export function subscribe(sub) {
  subscribers.add(sub);
  return () => subscribers.delete(sub);
}

export function onStatus(fn) {
  statusListener = fn;
  fn(status);
}

export function mode() {
  return status.mode;
}

function setStatus(mode, detail = "") {
  status.mode = mode;
  status.detail = detail;
  statusListener(status);
}

function refreshAll(reason) {
  for (const s of subscribers) s.onRefresh?.(reason);
}

function startPolling(detail) {
  setStatus("polling", detail);
  if (!pollTimer) pollTimer = setInterval(() => refreshAll("poll"), POLL_MS);
}

function stopPolling() {
  clearInterval(pollTimer);
  pollTimer = null;
}

export function start() {
  stop();
  controller = new AbortController();
  run(controller.signal);
}

export function stop() {
  controller?.abort();
  controller = null;
  stopPolling();
  lastEventId = "";
  setStatus("off");
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
});

async function run(signal) {
  let backoff = 1000;
  while (!signal.aborted) {
    const link = new AbortController();
    const abortLink = () => link.abort();
    signal.addEventListener("abort", abortLink, { once: true });
    let connected = false;
    let retryMs = 1000;
    try {
      const headers = { Accept: "text/event-stream", Authorization: `Bearer ${key.get()}` };
      if (lastEventId) headers["Last-Event-ID"] = lastEventId;
      const resp = await fetch(STREAM, { headers, signal: link.signal, cache: "no-store" });
      const type = resp.headers.get("content-type") || "";
      if (resp.status === 401) { startPolling("stream refused the key"); return; }
      if (!resp.ok || !type.startsWith("text/event-stream")) {
        await resp.body?.cancel();
        throw new Error(`stream answered ${resp.status}`);
      }
      connected = true;
      backoff = 1000;
      stopPolling();
      setStatus("live");
      if (!lastEventId) refreshAll("connected"); // nothing to resume from: catch up once
      retryMs = (await pump(resp.body, link)) ?? retryMs;
    } catch (e) {
      if (signal.aborted) return;
      if (!connected) startPolling(e.message);
    } finally {
      signal.removeEventListener("abort", abortLink);
    }
    if (signal.aborted) return;
    if (connected) startPolling("reconnecting"); // keep the page fresh until the stream is back
    await sleep(connected ? retryMs : backoff, signal);
    if (!connected) backoff = Math.min(backoff * 2, 30000);
  }
}

async function pump(body, link) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser();
  let silence = setTimeout(() => link.abort(), SILENCE_MS);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return parser.retry;
      clearTimeout(silence);
      silence = setTimeout(() => link.abort(), SILENCE_MS);
      for (const ev of parser.feed(value)) {
        if (ev.id) lastEventId = ev.id;
        if (ev.event === "dropped") return 0; // too slow for the server: reconnect and resume
        if (ev.event === "resync") { refreshAll("resync"); continue; }
        dispatch(ev);
      }
    }
  } finally {
    clearTimeout(silence);
    reader.cancel().catch(() => {});
  }
}

function dispatch(ev) {
  let data;
  try { data = JSON.parse(ev.data); } catch { return; }
  if (!data || typeof data !== "object") return;
  data.kind ??= ev.event;
  rates.fromEvent(data);
  for (const s of subscribers) s.onEvent?.(data);
}
