// Webhook subscriptions: list, create (the secret is shown once), enable/disable,
// rotate the secret, delete.
import { get, request, answerView, failureView } from "../api.js";
import { h, append, clear, time, badge, table, keepFocus } from "../dom.js";

const EVENTS = ["job.completed", "job.failed", "job.retrying", "job.cancelled"];

/** A secret shown once, with a copy button. */
function secretView(title, secret) {
  const status = h("span", { class: "muted", role: "status" });
  const copy = h("button", { type: "button" }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(secret);
      status.textContent = "Copied.";
    } catch {
      const range = document.createRange();
      range.selectNodeContents(code);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      status.textContent = "Selected: press Ctrl+C to copy.";
    }
  });
  const code = h("code", { id: "webhook-secret" }, secret);
  return h("div", { class: "answer", role: "status" },
    h("div", { class: "head" }, title),
    h("p", {}, "Store it now: it is shown only this once."),
    h("div", { class: "secret" }, code, copy, status));
}

export default function webhooks(root) {
  const list = h("div");
  const error = h("div");
  const answer = h("div", { id: "webhook-answer", "aria-live": "polite" });
  const url = h("input", { id: "wh-url", name: "url", type: "url", required: true, placeholder: "https://example.com/hooks/conveyor", "aria-describedby": "wh-err" });
  const description = h("input", { id: "wh-description", name: "description", maxlength: "500" });
  const enabled = h("input", { type: "checkbox", id: "wh-enabled", checked: true });
  const boxes = EVENTS.map((e) => h("input", { type: "checkbox", name: "events", value: e, checked: true }));
  const formError = h("p", { id: "wh-err", class: "field-error", role: "alert" });
  const form = h("form", { class: "panel spaced", novalidate: true, "aria-labelledby": "wh-new" },
    h("h2", { id: "wh-new" }, "New subscription"),
    h("div", { class: "field" }, h("label", { for: "wh-url" }, "URL"), url, formError),
    h("fieldset", { class: "field" }, h("legend", {}, "Events"),
      boxes.map((b) => h("label", { class: "inline" }, b, b.value))),
    h("div", { class: "field" }, h("label", { for: "wh-description" }, "Description ", h("span", { class: "hint" }, "optional")), description),
    h("div", { class: "field" }, h("label", { class: "inline" }, enabled, "Enabled")),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create subscription")));

  append(root, [h("h1", {}, "Webhooks"),
    h("p", { class: "muted" }, "Standing subscriptions: every matching job event is POSTed, signed (Standard Webhooks)."),
    error, answer, list, form]);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    formError.textContent = "";
    url.removeAttribute("aria-invalid");
    const body = { url: url.value.trim(), events: boxes.filter((b) => b.checked).map((b) => b.value), enabled: enabled.checked };
    if (description.value.trim()) body.description = description.value.trim();
    const a = await request("POST", "/v1/webhooks", body);
    if (a.ok) {
      clear(answer, secretView(`Created ${a.body.id} → ${a.body.url}`, a.body.secret));
      form.reset();
      await load();
      answer.querySelector("button")?.focus();
      return;
    }
    const details = a.body?.error?.details || [];
    formError.textContent = details.length
      ? details.map((d) => `${d.loc.filter((p) => p !== "body").join(".")}: ${d.msg}`).join("\n")
      : `${a.status}: ${a.body?.error?.message || ""}`;
    if (details.some((d) => d.loc.includes("url"))) url.setAttribute("aria-invalid", "true");
    clear(answer, answerView(a));
  });

  async function act(method, path, body, after) {
    const a = await request(method, path, body);
    clear(answer, a.ok && after ? after(a) : answerView(a));
    await load();
  }

  async function load() {
    let subs;
    try {
      subs = await get("/v1/webhooks");
      clear(error);
    } catch (e) {
      clear(error, failureView(e, "Could not list the webhooks"));
      return;
    }
    keepFocus(list, () => clear(list, table(
      [
        { label: "URL", cell: (s) => h("span", { class: "mono" }, s.url) },
        { label: "Events", cell: (s) => s.events.join(", ") },
        { label: "State", cell: (s) => [s.enabled ? badge("delivered", "enabled") : badge("off", "disabled"),
          s.disabled_reason ? h("div", { class: "muted" }, s.disabled_reason) : null,
          s.failed_deliveries ? h("div", { class: "muted" }, `${s.failed_deliveries} failed in a row`) : null] },
        { label: "Description", cell: (s) => s.description || "—" },
        { label: "Created", cell: (s) => time(s.created_at) },
        { label: "Actions", cell: (s) => actions(s) },
      ],
      subs.map((s) => ({ data: s, attrs: { "data-webhook-id": s.id } })),
      { empty: "No subscriptions." },
    )));
  }

  function actions(s) {
    const base = `/v1/webhooks/${encodeURIComponent(s.id)}`;
    const confirm = h("span", { class: "actions", hidden: true },
      h("button", { type: "button", class: "danger", "data-key": `del-yes-${s.id}`, onclick: () => act("DELETE", base) }, "Yes, delete"),
      h("button", { type: "button", onclick: () => { confirm.hidden = true; } }, "Keep"));
    return h("div", { class: "actions" },
      h("button", { type: "button", "data-key": `toggle-${s.id}`, onclick: () => act("PATCH", base, { enabled: !s.enabled }) }, s.enabled ? "Disable" : "Enable"),
      h("button", { type: "button", "data-key": `rotate-${s.id}`, onclick: () => act("POST", `${base}/rotate-secret`, undefined,
        (a) => secretView(`New secret for ${s.id} (the old one signs too until ${new Date(a.body.previous_valid_until).toLocaleString()})`, a.body.secret)) }, "Rotate secret"),
      h("button", { type: "button", class: "danger", "data-key": `del-${s.id}`, onclick: () => { confirm.hidden = false; confirm.querySelector("button").focus(); } }, "Delete"),
      confirm);
  }

  load();
  return { onRefresh: () => {} }; // subscriptions do not change with job events
}
