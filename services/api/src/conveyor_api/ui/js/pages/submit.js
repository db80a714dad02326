// Submit a job: type, JSON payload (checked as you type), priority, schedule,
// retries. The API's 422 details are shown next to the field they name.
import { get, request, answerView, failureView } from "../api.js";
import { h, append, clear } from "../dom.js";

const FIELDS = ["type", "payload", "priority", "max_retries", "timeout_s", "delay_s", "run_at"];

export default function submit(root, _params, { navigate }) {
  const errors = Object.fromEntries(FIELDS.map((f) => [f, h("p", { id: `err-${f}`, class: "field-error" })]));
  const input = (name, attrs) => h("input", { id: `f-${name}`, name, "aria-describedby": `err-${name} hint-${name}`, ...attrs });
  const hint = (name, text) => h("span", { id: `hint-${name}`, class: "hint" }, text);
  const field = (name, label, control, help) => h("div", { class: "field" },
    h("label", { for: `f-${name}` }, label, help ? [" ", hint(name, help)] : null), control, errors[name]);

  const typeSel = h("select", { id: "f-type", name: "type", "aria-describedby": "err-type type-help" }, h("option", { value: "" }, "Loading…"));
  const typeHelp = h("p", { id: "type-help", class: "hint" });
  const payload = h("textarea", { id: "f-payload", name: "payload", spellcheck: "false", rows: "8", "aria-describedby": "err-payload hint-payload", value: "{}" });
  const priority = input("priority", { type: "number", min: "1", max: "10", step: "1", value: "5", inputmode: "numeric" });
  const retries = input("max_retries", { type: "number", min: "0", max: "25", step: "1", value: "3", inputmode: "numeric" });
  const timeout = input("timeout_s", { type: "number", min: "0", step: "any", placeholder: "server default" });
  const delay = input("delay_s", { type: "number", min: "0", step: "any", placeholder: "seconds", disabled: true });
  const runAt = input("run_at", { type: "datetime-local", step: "1", disabled: true });
  const when = (value, label, checked) => h("label", { class: "inline" },
    h("input", { type: "radio", name: "when", value, checked, onchange: schedule }), label);
  const general = h("div", { role: "alert" });
  const answer = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "submit", class: "primary" }, "Submit job");

  const form = h("form", { class: "panel", novalidate: true, "aria-labelledby": "submit-title" },
    h("div", { class: "grid2 plain" },
      h("div", {},
        field("type", "Type", [typeSel, typeHelp]),
        field("payload", "Payload", payload, "a JSON object, passed to the handler"),
      ),
      h("div", {},
        field("priority", "Priority", priority, "1–10, higher runs first"),
        field("max_retries", "Max retries", retries, "0–25"),
        field("timeout_s", "Timeout (s)", timeout, "per attempt"),
        h("fieldset", { class: "field" },
          h("legend", {}, "When"),
          h("div", {}, when("now", "Now", true), when("delay", "After a delay", false), when("at", "At a time", false)),
          field("delay_s", "Delay (s)", delay),
          field("run_at", "Run at (your time zone)", runAt)),
      )),
    general,
    h("div", { class: "actions" }, button),
    answer);

  append(root, [h("h1", { id: "submit-title" }, "Submit a job"), form]);

  function schedule() {
    const v = form.querySelector("input[name=when]:checked").value;
    delay.disabled = v !== "delay";
    runAt.disabled = v !== "at";
  }

  get("/v1/job-types").then((types) => {
    clear(typeSel, types.map((t) => h("option", { value: t.name, "data-description": t.description }, t.name)));
    const describe = () => { typeHelp.textContent = typeSel.selectedOptions[0]?.dataset.description || ""; };
    typeSel.addEventListener("change", describe);
    describe();
  }).catch((e) => clear(general, failureView(e, "Could not load the job types")));

  function setError(name, text) {
    const el = errors[name];
    el.textContent = text || "";
    const control = form.querySelector(`#f-${name}`);
    if (control) control.toggleAttribute("aria-invalid", false);
    if (text && control) control.setAttribute("aria-invalid", "true");
  }

  function parsePayload() {
    const text = payload.value.trim() || "{}";
    let value;
    try {
      value = JSON.parse(text);
    } catch (e) {
      setError("payload", `Not valid JSON: ${e.message}`);
      return undefined;
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      setError("payload", "The payload must be a JSON object, like {\"seconds\": 2}.");
      return undefined;
    }
    setError("payload", "");
    return value;
  }
  payload.addEventListener("input", parsePayload);

  const num = (el) => (el.value === "" ? undefined : Number(el.value));

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    for (const f of FIELDS) setError(f, "");
    clear(general);
    clear(answer);
    const value = parsePayload();
    if (value === undefined) { payload.focus(); return; }
    const body = { type: typeSel.value, payload: value, priority: num(priority), max_retries: num(retries), timeout_s: num(timeout) };
    if (!delay.disabled) body.delay_s = num(delay);
    if (!runAt.disabled) {
      if (!runAt.value) { setError("run_at", "Pick a date and time."); runAt.focus(); return; }
      body.run_at = new Date(runAt.value).toISOString();
    }
    button.disabled = true;
    const a = await request("POST", "/v1/jobs", body);
    button.disabled = false;
    if (a.ok) {
      navigate(`#/jobs/${a.body.id}`, `Accepted: POST /v1/jobs → ${a.status} ${a.statusText}. This page follows the job live.`);
      return;
    }
    clear(answer, answerView(a));
    showApiErrors(a);
  });

  function showApiErrors(a) {
    const err = a.body?.error || {};
    const loose = [];
    if (err.code === "unknown_job_type") setError("type", `${err.message}; known: ${(err.known_types || []).join(", ")}`);
    for (const d of err.details || []) {
      const loc = (d.loc || []).filter((p) => p !== "body");
      const name = FIELDS.includes(loc[0]) ? loc[0] : null;
      const text = `${d.msg}${loc.length > 1 ? ` (at ${loc.join(".")})` : ""}`;
      if (name) setError(name, [errors[name].textContent, text].filter(Boolean).join("\n"));
      else loose.push(`${loc.join(".") || "body"}: ${d.msg}`);
    }
    if (loose.length || (!err.details && err.code !== "unknown_job_type")) {
      clear(general, h("p", { class: "field-error" }, loose.length ? loose.join("\n") : `${err.code || a.status}: ${err.message || ""}`));
    }
    form.querySelector("[aria-invalid=true]")?.focus();
  }

  return {};
}
