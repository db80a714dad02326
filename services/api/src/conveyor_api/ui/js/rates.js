// Jobs finished per second (completed, failed) over the last minutes, computed in
// the browser: from job events when the stream is live, else from the growth of
// the /v1/stats counts between two polls.

export const BUCKET_S = 5;
export const BUCKETS = 60; // 5 minutes
const buckets = new Map(); // bucket start (epoch s) -> {completed, failed}
let last = null; // {completed, failed} of the previous stats sample
let eventsSeen = false;

const bucketOf = (ms) => Math.floor(ms / 1000 / BUCKET_S) * BUCKET_S;

function add(kind, n, ms) {
  if (n <= 0) return;
  const b = bucketOf(ms);
  const entry = buckets.get(b) || { completed: 0, failed: 0 };
  entry[kind] += n;
  buckets.set(b, entry);
  const oldest = bucketOf(Date.now()) - BUCKET_S * (BUCKETS + 2);
  for (const k of buckets.keys()) if (k < oldest) buckets.delete(k);
}

export function fromEvent(ev) {
  eventsSeen = true;
  if (ev.kind === "job.completed") add("completed", 1, Date.now());
  else if (ev.kind === "job.failed") add("failed", 1, Date.now());
}

/** A stats sample; counts growth only while no events arrive (`live` false). */
export function fromStats(stats, live) {
  const now = { completed: stats.by_status.completed || 0, failed: stats.by_status.failed || 0 };
  if (last && !(live && eventsSeen)) {
    // Deleted jobs shrink the counts: never a negative rate.
    add("completed", now.completed - last.completed, Date.now());
    add("failed", now.failed - last.failed, Date.now());
  }
  last = now;
}

/** [{t (epoch s), completed (jobs/s), failed (jobs/s)}], oldest first, the current bucket last. */
export function series() {
  const end = bucketOf(Date.now());
  const out = [];
  for (let i = BUCKETS - 1; i >= 0; i--) {
    const t = end - i * BUCKET_S;
    const e = buckets.get(t) || { completed: 0, failed: 0 };
    out.push({ t, completed: e.completed / BUCKET_S, failed: e.failed / BUCKET_S });
  }
  return out;
}

export function resetBaseline() {
  last = null;
}
