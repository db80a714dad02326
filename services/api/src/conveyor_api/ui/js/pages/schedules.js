// Cron schedules: list (next and last run, the jobs each made), create, enable or
// disable, delete. The API's 422 details are shown under the field they name.
import { get, request, answerView, failureView } from "../api.js";
import { h, append, clear, time, badge, table, keepFocus, coalesce } from "../dom.js";

const FIELDS = ["name", "cron", "timezone", "type", "payload", "catch_up"];

function browserZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

export default function schedules(root) {
  const errors = Object.fromEntries(FIELDS.map((f) => [f, h("p", { id: `se-${f}`, class: "field-error" })]));
  const input = (name, attrs) => h("input", { id: `s-${name}`, name, "aria-describedby": `se-${name}`, ...attrs });
  const field = (name, label, control, hint) => h("div", { class: "field" },
    h("label", { for: `s-${name}` }, label, hint ? [" ", h("span", { class: "hint" }, hint)] : null), control, errors[name]);

  const name = input("name", { required: true, maxlength: "100", placeholder: "nightly report" });
  const cron = input("cron", { required: true, class: "mono", placeholder: "*/5 * * * *", spellcheck: "false" });
  const zone = input("timezone", { value: browserZone(), spellcheck: "false" });
  const typeSel = h("select", { id: "s-type", name: "type", "aria-describedby": "se-type" });
  const payload = h("textarea", { id: "s-payload", name: "payload", rows: "4", spellcheck: "false", "aria-describedby": "se-payload", value: "{}" });
  const catchUp = h("select", { id: "s-catch_up", name: "catch_up", "aria-describedby": "se-catch_up" },
    h("option", { value: "none" }, "none: skip fire times missed while no API ran"),
    h("option", { value: "latest" }, "latest: run the latest missed one"));
  const enabled = h("input", { type: "checkbox", id: "s-enabled", checked: true });
  const general = h("div", { role: "alert" });
  const form = h("form", { class: "panel spaced", novalidate: true, "aria-labelledby": "s-new" },
    h("h2", { id: "s-new" }, "New schedule"),
    h("div", { class: "grid2 plain" },
      h("div", {},
        field("name", "Name", name),
        field("cron", "Cron", cron, "5 fields, or @hourly, @daily, @weekly, @monthly"),
        field("timezone", "Time zone", zone, "IANA name; fire times follow its DST")),
      h("div", {},
        field("type", "Job type", typeSel),
        field("payload", "Payload", payload, "a JSON object"),
        field("catch_up", "Catch up", catchUp),
        h("div", { class: "field" }, h("label", { class: "inline" }, enabled, "Enabled")))),
    general,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create schedule")));
  const list = h("div");
  const error = h("div");
  const answer = h("div", { id: "schedule-answer", "aria-live": "polite" });

  append(root, [h("h1", {}, "Schedules"),
    h("p", { class: "muted" }, "Each fire time makes exactly one job, however many API replicas run."),
    error, answer, list, form]);

  get("/v1/job-types").then((types) => {
    clear(typeSel, types.map((t) => h("option", { value: t.name }, t.name)));
  }).catch((e) => clear(errors.type, `Could not load the job types: ${e.message}`));

  function showErrors(a) {
    const details = a.body?.error?.details || [];
    for (const d of details) {
      const loc = d.loc.filter((p) => p !== "body");
      const target = loc[0] === "job" ? (loc[1] === "payload" ? "payload" : "type") : loc[0];
      const where = errors[target] ? target : null;
      if (where) errors[where].textContent = `${errors[where].textContent}${d.msg}\n`;
      else general.textContent = `${general.textContent}${loc.join(".")}: ${d.msg}\n`;
    }
    if (!details.length) clear(general, answerView(a));
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    for (const el of Object.values(errors)) el.textContent = "";
    clear(general);
    let body;
    try {
      body = JSON.parse(payload.value || "{}");
    } catch (err) {
      errors.payload.textContent = `Not JSON: ${err.message}`;
      payload.focus();
      return;
    }
    const a = await request("POST", "/v1/schedules", {
      name: name.value.trim(), cron: cron.value.trim(), timezone: zone.value.trim() || "UTC",
      job: { type: typeSel.value, payload: body }, catch_up: catchUp.value, enabled: enabled.checked,
    });
    if (!a.ok) return showErrors(a);
    clear(answer, answerView(a));
    form.reset();
    zone.value = browserZone();
    await load();
  });

  async function act(method, path, body) {
    clear(answer, answerView(await request(method, path, body)));
    await load();
  }

  async function load() {
    let items;
    try {
      items = await get("/v1/schedules");
      clear(error);
    } catch (e) {
      clear(error, failureView(e, "Could not list the schedules"));
      return;
    }
    keepFocus(list, () => clear(list, table(
      [
        { label: "Name", cell: (s) => s.name },
        { label: "When", cell: (s) => [h("span", { class: "mono" }, s.cron), h("div", { class: "muted" }, s.timezone)] },
        { label: "Job", cell: (s) => s.job.type },
        { label: "State", cell: (s) => (s.enabled ? badge("delivered", "enabled") : badge("off", "disabled")) },
        { label: "Next run", cell: (s) => (s.enabled ? time(s.next_run_at) : "—") },
        { label: "Last run", cell: (s) => lastRun(s.last_run) },
        { label: "Actions", cell: (s) => actions(s) },
      ],
      items.map((s) => ({ data: s, attrs: { "data-schedule-id": s.id } })),
      { empty: "No schedules." },
    )));
  }

  function lastRun(run) {
    if (!run) return "never";
    return [time(run.fire_time),
      run.job_id ? h("div", {}, h("a", { href: `#/jobs/${run.job_id}`, class: "mono" }, run.job_id)) : null,
      run.error ? h("div", { class: "field-error" }, run.error) : null];
  }

  function actions(s) {
    const base = `/v1/schedules/${encodeURIComponent(s.id)}`;
    const confirm = h("span", { class: "actions", hidden: true },
      h("button", { type: "button", class: "danger", "data-key": `sdel-yes-${s.id}`, onclick: () => act("DELETE", base) }, "Yes, delete"),
      h("button", { type: "button", onclick: () => { confirm.hidden = true; } }, "Keep"));
    return h("div", { class: "actions" },
      h("a", { href: `#/jobs?schedule_id=${encodeURIComponent(s.id)}` }, "Jobs"),
      h("button", { type: "button", "data-key": `stoggle-${s.id}`, onclick: () => act("PATCH", base, { enabled: !s.enabled }) }, s.enabled ? "Disable" : "Enable"),
      h("button", { type: "button", class: "danger", "data-key": `sdel-${s.id}`, onclick: () => { confirm.hidden = false; confirm.querySelector("button").focus(); } }, "Delete"),
      confirm);
  }

  const soon = coalesce(load, 2000);
  load();
  return {
    onEvent: (ev) => { if (ev.kind === "job.queued") soon(); }, // a fire's job, maybe
    onRefresh: () => soon.now(),
    unmount: () => soon.cancel(),
  };
}
