// Dead letters: parked jobs; redrive the selected ones or all; purge behind a typed confirmation.
import { get, request, answerView, failureView } from "../api.js";
import { h, append, clear, time, table, coalesce, keepFocus } from "../dom.js";

const LIMIT = 50;
const WORD = "purge";

export default function deadLetters(root) {
  const cursors = [null];
  let items = [];
  let next = null;
  const selected = new Set();

  const list = h("div", { "aria-live": "polite" });
  const error = h("div");
  const answer = h("div", { id: "dl-answer", "aria-live": "polite" });
  const redriveSel = h("button", { type: "button", class: "primary", disabled: true }, "Redrive selected");
  const redriveAll = h("button", { type: "button" }, "Redrive all");
  const prev = h("button", { type: "button", disabled: true }, "← Newer");
  const more = h("button", { type: "button", disabled: true }, "Older →");
  const confirm = h("input", { id: "purge-confirm", autocomplete: "off", spellcheck: "false", "aria-describedby": "purge-help" });
  const purge = h("button", { type: "submit", class: "danger", disabled: true }, "Purge all dead letters");
  const purgeForm = h("form", { class: "panel", "aria-labelledby": "purge-title" },
    h("h2", { id: "purge-title" }, "Purge"),
    h("p", { id: "purge-help", class: "muted" },
      "Forgets every dead letter (the jobs stay failed) and empties the parking-lot queue. ",
      `Type "${WORD}" to confirm.`),
    h("div", { class: "row" },
      h("div", { class: "field" }, h("label", { for: "purge-confirm" }, `Type ${WORD}`), confirm),
      h("div", { class: "field" }, purge)));

  append(root, [
    h("h1", {}, "Dead letters"),
    h("p", { class: "muted" }, "Jobs parked after their last failure. Redriving sends them back to the queue with a fresh retry budget."),
    error,
    h("section", { class: "panel", "aria-label": "Redrive" }, h("div", { class: "actions" }, redriveSel, redriveAll), answer),
    list,
    h("div", { class: "pager" }, prev, more),
    purgeForm]);

  redriveSel.addEventListener("click", () => redrive({ ids: [...selected] }));
  redriveAll.addEventListener("click", () => redrive({ all: true }));
  prev.addEventListener("click", () => { cursors.pop(); load(); });
  more.addEventListener("click", () => { cursors.push(next); load(); });
  confirm.addEventListener("input", () => { purge.disabled = confirm.value.trim() !== WORD; });
  purgeForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (confirm.value.trim() !== WORD) return;
    purge.disabled = true;
    const a = await request("DELETE", "/v1/dead-letters?confirm=true");
    confirm.value = "";
    clear(answer, answerView(a));
    selected.clear();
    await load();
  });

  async function redrive(body) {
    redriveSel.disabled = true;
    redriveAll.disabled = true;
    const a = await request("POST", "/v1/dead-letters/redrive", body);
    const out = [answerView(a)];
    if (a.ok) {
      out.unshift(h("p", {}, `Redriven: ${a.body.redriven.length}`, a.body.skipped.length ? `, skipped: ${a.body.skipped.length}` : "", "."));
      for (const id of a.body.redriven) selected.delete(id);
    }
    clear(answer, out);
    await load();
  }

  async function load() {
    const q = new URLSearchParams({ limit: String(LIMIT) });
    const cursor = cursors[cursors.length - 1];
    if (cursor) q.set("cursor", cursor);
    try {
      const page = await get(`/v1/dead-letters?${q}`);
      items = page.items;
      next = page.next_cursor;
      clear(error);
    } catch (e) {
      clear(error, failureView(e, "Could not list the dead letters"));
      redriveAll.disabled = true;
      return;
    }
    const ids = new Set(items.map((d) => d.job_id));
    for (const id of [...selected]) if (!ids.has(id)) selected.delete(id);
    render();
  }

  function render() {
    const all = h("input", { type: "checkbox", id: "dl-all", "aria-label": "Select all on this page",
      checked: items.length > 0 && items.every((d) => selected.has(d.job_id)) });
    all.addEventListener("change", () => {
      for (const d of items) all.checked ? selected.add(d.job_id) : selected.delete(d.job_id);
      render();
    });
    keepFocus(list, () => clear(list, table(
      [
        { label: "Select", cell: (d) => {
          const box = h("input", { type: "checkbox", "data-key": `sel-${d.job_id}`, "aria-label": `Select ${d.job_id}`, checked: selected.has(d.job_id) });
          box.addEventListener("change", () => { box.checked ? selected.add(d.job_id) : selected.delete(d.job_id); update(); all.checked = items.every((x) => selected.has(x.job_id)); });
          return box;
        } },
        { label: "Job", cell: (d) => h("a", { href: `#/jobs/${d.job_id}`, class: "mono" }, d.job_id) },
        { label: "Type", cell: (d) => d.type },
        { label: "Reason", cell: (d) => d.reason },
        { label: "Error", cell: (d) => d.error || "—" },
        { label: "Attempts", num: true, cell: (d) => d.attempts },
        { label: "Parked", cell: (d) => time(d.dead_lettered_at) },
      ],
      items.map((d) => ({ data: d, attrs: { "data-job-id": d.job_id } })),
      { empty: "No dead letters." },
    )));
    const th = list.querySelector("thead th");
    if (th) th.replaceChildren(all);
    update();
  }

  function update() {
    redriveSel.disabled = selected.size === 0;
    redriveSel.textContent = selected.size ? `Redrive selected (${selected.size})` : "Redrive selected";
    redriveAll.disabled = items.length === 0;
    prev.disabled = cursors.length === 1;
    more.disabled = !next;
  }

  const soon = coalesce(load, 700);
  load();
  return {
    onEvent: (ev) => { if (ev.kind === "job.failed" || items.some((d) => d.job_id === ev.job_id)) soon(); },
    onRefresh: () => soon.now(),
    unmount: () => soon.cancel(),
  };
}
