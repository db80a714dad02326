// One job: facts, payload, result, error, attempts timeline, deliveries; cancel,
// retry as a new job, delete, each showing the API's answer. Follows the stream.
import { get, request, answerView, failureView, ApiError } from "../api.js";
import { h, append, clear, time, badge, json, duration, table, coalesce } from "../dom.js";

const FINISHED = new Set(["completed", "failed", "cancelled"]);

export default function job(root, { id }, { flash }) {
  const path = `/v1/jobs/${encodeURIComponent(id)}`;
  const statusSlot = h("span", { id: "job-status", "aria-live": "polite" });
  const progress = h("div", { id: "job-progress" });
  const facts = h("div");
  const body = h("div");
  const attempts = h("div");
  const deliveries = h("div");
  const answer = h("div", { id: "action-answer", "aria-live": "polite" });
  const error = h("div");
  const cancelBtn = h("button", { type: "button", class: "danger", disabled: true }, "Cancel job");
  const retryBtn = h("button", { type: "button", disabled: true }, "Retry as new job");
  const deleteBtn = h("button", { type: "button", class: "danger", disabled: true }, "Delete");
  const confirmDelete = h("span", { class: "actions", hidden: true },
    h("span", {}, "Delete this job for good?"),
    h("button", { type: "button", class: "danger", onclick: () => act("DELETE", path) }, "Yes, delete"),
    h("button", { type: "button", onclick: () => { confirmDelete.hidden = true; deleteBtn.focus(); } }, "Keep it"));
  let deleted = false;

  cancelBtn.addEventListener("click", () => act("POST", `${path}/cancel`));
  retryBtn.addEventListener("click", () => act("POST", `${path}/retry`));
  deleteBtn.addEventListener("click", () => { confirmDelete.hidden = false; confirmDelete.querySelector("button").focus(); });

  append(root, [
    h("p", {}, h("a", { href: "#/jobs" }, "← Jobs")),
    h("h1", {}, "Job ", h("span", { class: "mono" }, id), " ", statusSlot),
    flash ? h("p", { class: "answer", role: "status" }, flash) : null,
    error,
    h("section", { class: "panel", "aria-label": "Actions" },
      h("div", { class: "actions" }, cancelBtn, retryBtn, deleteBtn, confirmDelete), answer),
    progress,
    h("div", { class: "grid2" },
      h("section", { class: "panel", "aria-labelledby": "facts-title" }, h("h2", { id: "facts-title" }, "Details"), facts),
      h("section", { class: "panel stack", "aria-label": "Payload, result and error" }, body)),
    h("section", { class: "panel spaced", "aria-labelledby": "attempts-title" }, h("h2", { id: "attempts-title" }, "Attempts"), attempts),
    h("section", { class: "panel", "aria-labelledby": "deliveries-title" }, h("h2", { id: "deliveries-title" }, "Notification deliveries"), deliveries)]);

  async function act(method, url) {
    for (const b of [cancelBtn, retryBtn, deleteBtn]) b.disabled = true;
    confirmDelete.hidden = true;
    const a = await request(method, url);
    const extra = [];
    if (a.ok && url.endsWith("/retry") && a.body?.id) {
      extra.push(h("p", {}, "New job: ", h("a", { href: `#/jobs/${a.body.id}`, class: "mono" }, a.body.id)));
    }
    if (a.ok && method === "DELETE") {
      deleted = true;
      extra.push(h("p", {}, "The job is deleted. ", h("a", { href: "#/jobs" }, "Back to the jobs")));
    }
    clear(answer, answerView(a), extra);
    if (a.ok && a.body?.status && a.body.id === id) show(a.body);
    if (!deleted) await load();
  }

  async function load() {
    let j;
    let d;
    try {
      [j, d] = await Promise.all([get(path), get(`${path}/deliveries`).catch((e) => e)]);
    } catch (e) {
      if (deleted && e instanceof ApiError && e.answer.status === 404) return;
      clear(error, failureView(e, "Could not load the job"));
      return;
    }
    clear(error);
    show(j);
    renderDeliveries(d);
  }

  function show(j) {
    clear(statusSlot, badge(j.status));
    cancelBtn.disabled = FINISHED.has(j.status) || !!j.cancel_requested_at;
    retryBtn.disabled = !FINISHED.has(j.status);
    deleteBtn.disabled = !FINISHED.has(j.status);
    if (FINISHED.has(j.status)) clear(progress);
    clear(facts, h("dl", { class: "facts" },
      fact("Type", j.type), fact("Status", badge(j.status)),
      fact("Priority", j.priority), fact("Max retries", j.max_retries),
      fact("Timeout", `${j.timeout_s} s`),
      fact("Backoff", `${j.backoff.base_s} s × ${j.backoff.factor}ⁿ, ≤ ${j.backoff.max_s} s${j.backoff.jitter ? ", jitter" : ""}`),
      fact("Created", time(j.created_at)), fact("Started", time(j.started_at)),
      fact("Finished", time(j.finished_at)),
      j.next_attempt_at ? fact("Next attempt", time(j.next_attempt_at)) : null,
      j.cancel_requested_at ? fact("Cancel requested", time(j.cancel_requested_at)) : null,
      j.retry_of ? fact("Retry of", h("a", { href: `#/jobs/${j.retry_of}`, class: "mono" }, j.retry_of)) : null,
      j.schedule_id ? fact("Schedule", h("a", { href: `#/jobs?schedule_id=${j.schedule_id}`, class: "mono" }, j.schedule_id)) : null,
      j.trace_id ? fact("Trace", h("code", { id: "job-trace" }, j.trace_id)) : null,
      j.notify ? fact("Notify", h("code", {}, JSON.stringify(j.notify))) : null));
    clear(body,
      h("h2", {}, "Payload"), json(j.payload),
      h("h2", {}, "Result"), j.result === null || j.result === undefined ? h("p", { class: "muted" }, "none") : h("div", { id: "job-result" }, json(j.result)),
      h("h2", {}, "Error"), j.error ? h("pre", { id: "job-error" }, j.error) : h("p", { class: "muted" }, "none"));
    clear(attempts, j.attempts.length
      ? h("ol", { class: "timeline" }, j.attempts.map(attempt))
      : h("p", { class: "muted" }, j.status === "scheduled" ? "Scheduled: no attempt yet." : "No attempt yet."));
  }

  function attempt(a) {
    const outcome = a.outcome || "running";
    return h("li", { class: `o-${outcome}` },
      h("div", {}, h("strong", {}, `Attempt ${a.number} `), badge(outcome), " on ", h("span", { class: "mono" }, a.worker)),
      h("div", { class: "meta" }, "started ", time(a.started_at), a.finished_at ? [" · finished ", time(a.finished_at)] : null,
        a.duration_s != null ? ` · ${duration(a.duration_s)}` : null),
      a.error ? h("div", { class: "attempt-error" }, errorLine(a)) : null,
      a.traceback ? h("details", {}, h("summary", {}, "Traceback"), h("pre", {}, a.traceback)) : null);
  }

  function errorLine(a) {
    // The error usually starts with its type already ("RetryableError: …").
    const typed = a.error_type && !a.error.startsWith(`${a.error_type}:`);
    return [typed ? [h("code", {}, a.error_type), ": "] : null, a.error];
  }

  function renderDeliveries(d) {
    if (d instanceof Error) return clear(deliveries, failureView(d, "Could not load deliveries"));
    clear(deliveries, table(
      [
        { label: "Event", cell: (x) => x.event_type },
        { label: "Channel", cell: (x) => x.channel },
        { label: "Destination", cell: (x) => h("span", { class: "mono" }, x.destination) },
        { label: "Status", cell: (x) => badge(x.status) },
        { label: "Attempts", cell: (x) => x.attempts.length ? h("details", {}, h("summary", {}, `${x.attempts.length}`),
          h("ul", {}, x.attempts.map((t) => h("li", {}, time(t.at), ` · ${t.outcome}`, t.status_code ? ` · HTTP ${t.status_code}` : "",
            t.latency_ms != null ? ` · ${t.latency_ms} ms` : "", t.error ? ` · ${t.error}` : "")))) : "0" },
        { label: "Next try", cell: (x) => time(x.next_attempt_at) },
      ],
      d.map((x) => ({ data: x })),
      { empty: "No webhook or email deliveries for this job." },
    ));
  }

  const fact = (label, value) => [h("dt", {}, label), h("dd", {}, value)];
  const soon = coalesce(() => (deleted ? null : load()), 300);
  load();
  return {
    onEvent(ev) {
      if (ev.job_id !== id || deleted) return;
      if (ev.status) clear(statusSlot, badge(ev.status));
      if (ev.kind === "job.progress" && ev.progress) {
        const p = ev.progress;
        clear(progress, h("section", { class: "panel", "aria-label": "Progress" },
          h("label", { for: "progress-bar" }, `Progress ${Math.round(p.fraction * 100)} %${p.message ? ` — ${p.message}` : ""}`),
          h("progress", { id: "progress-bar", max: "1", value: String(p.fraction) })));
      }
      soon();
    },
    onRefresh: () => { if (!deleted) soon.now(); },
    unmount: () => soon.cancel(),
  };
}
