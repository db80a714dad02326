// Small DOM helpers: element builders, times in the viewer's zone, status badges.

const PROPS = new Set(["value", "checked", "indeterminate"]);

/** h("a", {href: "#/jobs", class: "x", onclick: fn}, "text", child, [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** SVG element (attributes only, no inline styles). */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (PROPS.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

const FMT = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric",
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});

/** <time> in the viewer's time zone; the UTC ISO time is in its title (hover). */
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h("span", {}, String(iso));
  const utc = d.toISOString();
  return h("time", { datetime: utc, title: `${utc} (UTC)` }, FMT.format(d));
}

export function badge(status, extra) {
  return h("span", { class: `badge st-${status}`, "data-status": status }, extra ?? status);
}

export function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

export function duration(s) {
  if (s == null) return "—";
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(s < 10 ? 2 : 1)} s`;
}

/** A table whose rows collapse into labelled cards on narrow screens. */
export function table(columns, rows, { empty = "Nothing here.", caption } = {}) {
  if (!rows.length) return h("div", { class: "table-wrap" }, h("p", { class: "empty" }, empty));
  const head = h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)));
  const body = rows.map((row) => {
    const tr = h("tr", row.attrs || {});
    for (const c of columns) {
      tr.append(h("td", { "data-label": c.label, class: c.num ? "num" : null }, c.cell(row.data)));
    }
    return tr;
  });
  return h(
    "div", { class: "table-wrap" },
    h("table", { class: "stacked" }, caption ? h("caption", { class: "muted" }, caption) : null,
      h("thead", {}, head), h("tbody", {}, body)),
  );
}

/** Re-render inside `container` keeping keyboard focus on the "same" element (data-key). */
export function keepFocus(container, render) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.key : null;
  render();
  if (key) container.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
}

/** Run `fn` at most once per `ms` (trailing call kept); calls never overlap. */
export function coalesce(fn, ms) {
  let timer = null;
  let running = null;
  let again = false;
  const run = async () => {
    timer = null;
    if (running) { again = true; return; }
    running = Promise.resolve().then(fn).catch((e) => console.error(e));
    await running;
    running = null;
    if (again) { again = false; schedule(); }
  };
  const schedule = () => { if (!timer) timer = setTimeout(run, ms); };
  schedule.now = () => { clearTimeout(timer); timer = null; return run(); };
  schedule.cancel = () => { clearTimeout(timer); timer = null; again = false; };
  return schedule;
}

export function shortId(id) {
  return id && id.length > 12 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id;
}
