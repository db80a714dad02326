// A small SVG line chart of jobs/s (completed, failed), drawn from rates.series().
import { h, svg } from "./dom.js";
import { BUCKET_S } from "./rates.js";

const H = 180;
const PAD = { l: 40, r: 10, t: 10, b: 22 };

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= v);
}

/** `width`: the container's pixels, so labels keep their size on a phone. */
export function rateChart(series, width) {
  const W = Math.max(280, Math.round(width || 640));
  const max = niceMax(Math.max(...series.map((p) => Math.max(p.completed, p.failed))));
  const x = (i) => PAD.l + (i * (W - PAD.l - PAD.r)) / Math.max(1, series.length - 1);
  const y = (v) => PAD.t + (H - PAD.t - PAD.b) * (1 - v / max);
  const line = (k) => series.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(p[k]).toFixed(1)}`).join(" ");
  const area = `${line("completed")} L${x(series.length - 1).toFixed(1)},${y(0)} L${x(0)},${y(0)} Z`;
  const ticks = [0, max / 2, max];
  const minutes = (series.length * BUCKET_S) / 60;
  const last = series[series.length - 2] || series[series.length - 1]; // last full bucket
  const fmt = (v) => (v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2));
  const label = `Jobs per second over the last ${minutes} minutes: now ${fmt(last.completed)} completed, ${fmt(last.failed)} failed per second`;
  return h(
    "figure", { class: "chart", "aria-label": label },
    h("div", { class: "legend" },
      h("span", {}, h("span", { class: "sw completed" }), `completed ${fmt(last.completed)}/s`),
      h("span", {}, h("span", { class: "sw failed" }), `failed ${fmt(last.failed)}/s`),
      h("span", { class: "muted" }, `${BUCKET_S} s buckets, last ${minutes} min`)),
    svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label },
      ticks.map((t) => [
        svg("line", { class: "grid", x1: PAD.l, x2: W - PAD.r, y1: y(t), y2: y(t) }),
        svg("text", { x: PAD.l - 6, y: y(t) + 4, "text-anchor": "end" }, fmt(t)),
      ]),
      svg("line", { class: "axis", x1: PAD.l, x2: W - PAD.r, y1: y(0), y2: y(0) }),
      svg("text", { x: PAD.l, y: H - 4 }, `−${minutes} min`),
      svg("text", { x: W - PAD.r, y: H - 4, "text-anchor": "end" }, "now"),
      svg("path", { class: "area-completed", d: area }),
      svg("path", { class: "completed", d: line("completed") }),
      svg("path", { class: "failed", d: line("failed") })),
  );
}
