// Jobs: filter by status and type, find by id, cursor pages; rows follow the event stream.
import { get, request, failureView, errorText } from "../api.js";
import { h, append, clear, time, badge, table, coalesce, keepFocus } from "../dom.js";

const STATUSES = ["scheduled", "queued", "running", "retrying", "completed", "failed", "cancelled"];
const LIMIT = 25;

export default function jobs(root, { query }, { navigate }) {
  const status = query.get("status") || "";
  const type = query.get("type") || "";
  const scheduleId = query.get("schedule_id") || "";
  const cursors = [null]; // cursor of each page seen; the last is the current page
  let items = [];
  let next = null;

  const statusSel = h("select", { id: "f-status", name: "status" },
    h("option", { value: "" }, "any"), STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)));
  const typeSel = h("select", { id: "f-type", name: "type" }, h("option", { value: "" }, "any"),
    type ? h("option", { value: type, selected: true }, type) : null);
  const filters = h("form", { class: "row", "aria-label": "Filter jobs" },
    h("div", { class: "field" }, h("label", { for: "f-status" }, "Status"), statusSel),
    h("div", { class: "field" }, h("label", { for: "f-type" }, "Type"), typeSel),
    scheduleId ? h("div", { class: "field", id: "f-schedule" }, h("span", {}, "Schedule"),
      h("span", { class: "mono" }, scheduleId, " ", h("a", { href: "#/jobs", "aria-label": "Any schedule" }, "×"))) : null);
  const apply = () => {
    const q = new URLSearchParams();
    if (statusSel.value) q.set("status", statusSel.value);
    if (typeSel.value) q.set("type", typeSel.value);
    if (scheduleId) q.set("schedule_id", scheduleId);
    navigate(`#/jobs${q.size ? `?${q}` : ""}`);
  };
  statusSel.addEventListener("change", apply);
  typeSel.addEventListener("change", apply);
  filters.addEventListener("submit", (e) => { e.preventDefault(); apply(); });

  const idInput = h("input", { id: "find-id", name: "id", placeholder: "job id", autocomplete: "off", spellcheck: "false", class: "mono" });
  const findError = h("p", { class: "field-error", role: "alert" });
  const find = h("form", { class: "row", role: "search", "aria-label": "Find a job by id" },
    h("div", { class: "field" }, h("label", { for: "find-id" }, "Find by id"), idInput, findError),
    h("div", { class: "field" }, h("button", { type: "submit" }, "Open")));
  find.addEventListener("submit", async (e) => {
    e.preventDefault();
    const id = idInput.value.trim();
    if (!id) return;
    const answer = await request("GET", `/v1/jobs/${encodeURIComponent(id)}`);
    if (answer.ok) navigate(`#/jobs/${encodeURIComponent(id)}`);
    else findError.textContent = answer.status === 404 ? `No job with id ${id}.` : errorText(answer);
  });

  const list = h("div", { "aria-live": "polite" });
  const error = h("div");
  const prev = h("button", { type: "button", disabled: true }, "← Newer");
  const more = h("button", { type: "button", disabled: true }, "Older →");
  const where = h("span", { class: "muted" });
  prev.addEventListener("click", () => { cursors.pop(); load(); });
  more.addEventListener("click", () => { cursors.push(next); load(); });

  append(root, [
    h("h1", {}, "Jobs"),
    h("div", { class: "panel row" }, filters, find),
    error, list,
    h("div", { class: "pager" }, prev, more, where)]);

  get("/v1/job-types").then((types) => {
    for (const t of types) if (t.name !== type) typeSel.append(h("option", { value: t.name }, t.name));
  }).catch(() => {});

  async function load() {
    const q = new URLSearchParams({ limit: String(LIMIT) });
    if (status) q.set("status", status);
    if (type) q.set("type", type);
    if (scheduleId) q.set("schedule_id", scheduleId);
    const cursor = cursors[cursors.length - 1];
    if (cursor) q.set("cursor", cursor);
    try {
      const page = await get(`/v1/jobs?${q}`);
      items = page.items;
      next = page.next_cursor;
      clear(error);
    } catch (e) {
      clear(error, failureView(e, "Could not list jobs"));
      return;
    }
    render();
  }

  function render() {
    keepFocus(list, () => clear(list, table(
      [
        { label: "Job", cell: (j) => h("a", { href: `#/jobs/${j.id}`, class: "mono", "data-key": j.id }, j.id) },
        { label: "Type", cell: (j) => j.type },
        { label: "Status", cell: (j) => badge(j.status) },
        { label: "Priority", num: true, cell: (j) => j.priority },
        { label: "Attempts", num: true, cell: (j) => h("span", { "data-attempts": "" }, j.attempts.length) },
        { label: "Created", cell: (j) => time(j.created_at) },
        { label: "Finished", cell: (j) => time(j.finished_at) },
      ],
      items.map((j) => ({ data: j, attrs: { "data-job-id": j.id } })),
      { empty: status || type || scheduleId ? "No jobs match these filters." : "No jobs yet." },
    )));
    prev.disabled = cursors.length === 1;
    more.disabled = !next;
    where.textContent = `Page ${cursors.length}${items.length ? ` · ${items.length} jobs` : ""}`;
  }

  const soon = coalesce(load, 700);
  load();
  return {
    onEvent(ev) {
      const row = list.querySelector(`tr[data-job-id="${CSS.escape(ev.job_id)}"]`);
      if (row && ev.status) {
        // At once from the event; the coalesced reload brings the rest (attempts, times).
        const cell = row.querySelector(".badge");
        cell.replaceWith(badge(ev.status));
        row.classList.remove("flash");
        void row.offsetWidth;
        row.classList.add("flash");
      }
      const firstPage = cursors.length === 1;
      const mayAppear = firstPage && !scheduleId && (!type || ev.job_type === type);
      if (row || (mayAppear && (!status || ev.status === status))) soon();
    },
    onRefresh: () => soon.now(),
    unmount: () => soon.cancel(),
  };
}
