// Overview: counts by status (live), jobs/s chart, queues, dead letters, recent jobs.
import { get, failureView, ApiError } from "../api.js";
import { h, append, clear, time, badge, table, coalesce, shortId } from "../dom.js";
import { rateChart } from "../chart.js";
import * as rates from "../rates.js";
import * as live from "../live.js";

const STATUSES = ["scheduled", "queued", "running", "retrying", "completed", "failed", "cancelled"];
const DL_LIMIT = 100;

export default function overview(root) {
  const cards = h("div", { class: "cards", "aria-live": "polite" });
  const meta = h("p", { class: "muted" });
  const chart = h("div");
  const queues = h("div");
  const byType = h("div");
  const recent = h("div");
  const error = h("div");
  append(root, [
    h("h1", {}, "Overview"),
    error, cards, meta,
    h("div", { class: "grid2" },
      h("section", { class: "panel", "aria-labelledby": "rate-title" }, h("h2", { id: "rate-title" }, "Throughput"), chart),
      h("section", { class: "panel", "aria-labelledby": "queue-title" }, h("h2", { id: "queue-title" }, "Queues"), queues)),
    h("div", { class: "grid2 spaced" },
      h("section", { class: "panel", "aria-labelledby": "recent-title" },
        h("h2", { id: "recent-title" }, "Recent jobs ", h("a", { href: "#/jobs", class: "small" }, "all jobs")), recent),
      h("section", { class: "panel", "aria-labelledby": "types-title" }, h("h2", { id: "types-title" }, "By type"), byType))]);
  let deadLetters = { text: "…" };
  let adminDenied = false;

  const drawChart = () => clear(chart, rateChart(rates.series(), chart.clientWidth));

  async function loadDeadLetters() {
    if (adminDenied) return;
    try {
      const page = await get(`/v1/dead-letters?limit=${DL_LIMIT}`);
      deadLetters = { text: page.next_cursor ? `${DL_LIMIT}+` : String(page.items.length) };
    } catch (e) {
      if (e instanceof ApiError && e.answer.status === 403) {
        adminDenied = true;
        deadLetters = { text: "—", hint: "needs an admin key" };
      }
    }
  }

  async function refresh() {
    let stats;
    let jobs;
    try {
      [stats, jobs] = await Promise.all([get("/v1/stats"), get("/v1/jobs?limit=8"), loadDeadLetters()]);
    } catch (e) {
      clear(error, failureView(e, "Could not load the stats"));
      return;
    }
    clear(error);
    rates.fromStats(stats, live.mode() === "live");
    renderCards(stats);
    renderQueues(stats);
    renderTypes(stats);
    clear(recent, table(
      [
        { label: "Job", cell: (j) => h("a", { href: `#/jobs/${j.id}`, class: "mono", title: j.id }, shortId(j.id)) },
        { label: "Type", cell: (j) => j.type },
        { label: "Status", cell: (j) => badge(j.status) },
        { label: "Created", cell: (j) => time(j.created_at) },
      ],
      jobs.items.map((j) => ({ data: j, attrs: { "data-job-id": j.id } })),
      { empty: "No jobs yet: submit one." },
    ));
    drawChart();
  }

  function renderCards(stats) {
    const card = (label, n, cls, href) => h(
      "a", { class: `card st-${cls}`, href, "data-card": cls },
      h("span", { class: "n", "data-count": cls }, n.toLocaleString()),
      h("span", { class: "l" }, label),
    );
    clear(cards,
      card("total", stats.total, "total", "#/jobs"),
      STATUSES.map((s) => card(s, stats.by_status[s] || 0, s, `#/jobs?status=${s}`)));
    const age = stats.counts_age_s;
    clear(meta,
      "Counted ", time(stats.counted_at), age >= 1 ? ` (${age.toFixed(0)} s ago)` : "",
      stats.counts_stale ? h("strong", {}, " · stale: the store did not answer in time") : null,
      stats.counts_error ? ` · ${stats.counts_error}` : null);
  }

  function renderQueues(stats) {
    const q = stats.queues;
    const rows = q ? [
      { label: "Work", ...q.work },
      { label: "Parking lot (dead letters)", ...q.parking_lot },
    ] : [];
    clear(queues,
      q ? table([
        { label: "Queue", cell: (r) => h("span", { title: r.name }, r.label) },
        { label: "Messages", num: true, cell: (r) => h("span", { "data-queue-messages": r.label }, r.messages) },
        { label: "Consumers", num: true, cell: (r) => r.consumers },
      ], rows.map((r) => ({ data: r }))) : h("p", { class: "answer is-error" }, `Broker: ${stats.broker_error}`),
      h("p", {},
        h("a", { href: "#/dead-letters" }, "Dead letters"), ": ",
        h("strong", { "data-count": "dead-letters" }, deadLetters.text),
        deadLetters.hint ? h("span", { class: "muted" }, ` (${deadLetters.hint})`) : null));
  }

  function renderTypes(stats) {
    const rows = Object.entries(stats.by_type).sort((a, b) => b[1] - a[1]);
    clear(byType, table(
      [
        { label: "Type", cell: ([t]) => h("a", { href: `#/jobs?type=${encodeURIComponent(t)}` }, t) },
        { label: "Jobs", num: true, cell: ([, n]) => n.toLocaleString() },
      ],
      rows.map((r) => ({ data: r })),
      { empty: "No jobs yet." },
    ));
  }

  const soon = coalesce(refresh, 600);
  const ticker = setInterval(drawChart, 5000);
  refresh();
  return {
    onEvent: () => soon(),
    onRefresh: () => soon.now(),
    unmount: () => { soon.cancel(); clearInterval(ticker); },
  };
}
