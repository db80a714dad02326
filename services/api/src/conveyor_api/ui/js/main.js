// The shell: API key prompt, hash router, live-status indicator.
import { key, request, errorText, onUnauthorized } from "./api.js";
import { h, clear } from "./dom.js";
import * as live from "./live.js";
import overview from "./pages/overview.js";
import jobs from "./pages/jobs.js";
import job from "./pages/job.js";
import submit from "./pages/submit.js";
import deadLetters from "./pages/dead-letters.js";
import webhooks from "./pages/webhooks.js";
import schedules from "./pages/schedules.js";

const ROUTES = [
  [/^\/overview$/, "overview", overview],
  [/^\/jobs$/, "jobs", jobs],
  [/^\/jobs\/([^/]+)$/, "jobs", job],
  [/^\/submit$/, "submit", submit],
  [/^\/dead-letters$/, "dead-letters", deadLetters],
  [/^\/webhooks$/, "webhooks", webhooks],
  [/^\/schedules$/, "schedules", schedules],
];
const main = document.getElementById("main");
const banner = document.getElementById("banner");
let current = null; // {page controller, unsubscribe}
let flashMessage = null;

export function navigate(hash, flash) {
  flashMessage = flash || null;
  if (location.hash === hash) route();
  else location.hash = hash;
}

function showBanner(text, error = false) {
  banner.hidden = !text;
  banner.textContent = text || "";
  banner.classList.toggle("is-error", error);
}

function unmount() {
  if (!current) return;
  current.unsubscribe();
  current.page?.unmount?.();
  current = null;
}

function route() {
  const raw = location.hash.slice(1) || "/overview";
  if (!raw.startsWith("/")) return; // in-page anchors (skip link)
  const [path, query = ""] = raw.split("?");
  if (!key.get()) return showLogin();
  const match = ROUTES.map(([re, name, mount]) => [re.exec(path), name, mount]).find(([m]) => m);
  unmount();
  for (const a of document.querySelectorAll("#nav a")) {
    a.toggleAttribute("aria-current", false);
    if (match && a.dataset.route === match[1]) a.setAttribute("aria-current", "page");
  }
  main.replaceChildren();
  if (!match) {
    main.append(h("h1", { tabindex: "-1" }, "Not found"), h("p", {}, h("a", { href: "#/overview" }, "Go to the overview")));
  } else {
    const [m, , mount] = match;
    const params = { id: m[1] && decodeURIComponent(m[1]), query: new URLSearchParams(query) };
    const flash = flashMessage;
    flashMessage = null;
    const page = mount(main, params, { navigate, flash }) || {};
    current = { page, unsubscribe: live.subscribe(page) };
  }
  const title = main.querySelector("h1");
  document.title = title ? `${title.textContent} · Conveyor` : "Conveyor";
  title?.setAttribute("tabindex", "-1");
  if (document.activeElement === document.body || !main.contains(document.activeElement)) {
    if (routeChangedByUser) title?.focus({ preventScroll: true });
  }
}

let routeChangedByUser = false;

function renderKeyInfo() {
  const info = document.getElementById("keyinfo");
  if (!key.get()) return clear(info);
  clear(
    info,
    h("span", { title: "Kept in this tab's sessionStorage only" }, `Key ${key.hint()}`),
    h("button", { type: "button", onclick: () => showLogin() }, "Change key"),
    h("button", { type: "button", onclick: forget }, "Forget key"),
  );
}

function forget() {
  key.forget();
  live.stop();
  showBanner("");
  renderKeyInfo();
  showLogin("The key is forgotten (it was kept in this tab only).");
}

function showLogin(message, isError = false) {
  unmount();
  for (const a of document.querySelectorAll("#nav a")) a.removeAttribute("aria-current");
  const input = h("input", {
    id: "api-key", name: "api-key", type: "password", autocomplete: "off", spellcheck: "false",
    required: true, placeholder: "cvk_…", "aria-describedby": "key-help key-error",
  });
  const error = h("p", { id: "key-error", class: "field-error", role: "alert" }, isError ? message : "");
  const button = h("button", { class: "primary", type: "submit" }, "Use this key");
  const form = h(
    "form", { class: "panel login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title", tabindex: "-1" }, "API key"),
    !isError && message ? h("p", { class: "muted" }, message) : null,
    h("div", { class: "field" },
      h("label", { for: "api-key" }, "Bearer key"),
      input,
      h("p", { id: "key-help", class: "hint" },
        "Every request of this page carries it as Authorization: Bearer …. It stays in this tab's "
        + "sessionStorage (gone when the tab closes). The dashboard needs the jobs:read scope; "
        + "actions need jobs:write, dead letters and webhooks need admin."),
      error),
    h("div", { class: "actions" }, button, key.get() ? h("button", { type: "button", onclick: () => route() }, "Cancel") : null),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const candidate = input.value.trim();
    if (!candidate) return;
    button.disabled = true;
    error.textContent = "Checking…";
    const answer = await request("GET", "/v1/stats", undefined, { keyOverride: candidate });
    button.disabled = false;
    if (answer.status === 401) error.textContent = `The API refused this key: ${errorText(answer)}`;
    else if (answer.status === 403) error.textContent = `This key cannot read jobs: ${errorText(answer)}`;
    else if (answer.status === 0) error.textContent = errorText(answer);
    else {
      key.set(candidate);
      showBanner("");
      renderKeyInfo();
      live.start();
      if (!location.hash.startsWith("#/")) location.hash = "#/overview";
      else route();
      return;
    }
    input.setAttribute("aria-invalid", "true");
    input.focus();
  });
  clear(main, form);
  document.title = "API key · Conveyor";
  input.focus();
}

onUnauthorized((answer) => {
  // The key was revoked or expired meanwhile: ask again, saying why.
  key.forget();
  live.stop();
  renderKeyInfo();
  showLogin(`The API answered ${errorText(answer)} — enter a valid key.`, true);
});

live.onStatus(({ mode, detail }) => {
  const el = document.getElementById("live");
  el.className = `live is-${mode === "live" ? "live" : mode === "polling" ? "polling" : "off"}`;
  el.textContent = mode === "live" ? "Live" : mode === "polling" ? "Polling every 2 s" : "Offline";
  el.title = detail || (mode === "live" ? "Receiving /v1/events/stream" : "");
});

window.addEventListener("hashchange", () => { routeChangedByUser = true; route(); });
renderKeyInfo();
if (key.get()) live.start();
route();
