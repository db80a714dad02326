// A Server-Sent Events parser (the WHATWG event-stream format) for streams read
// with fetch(): EventSource cannot send an Authorization header.

export class SseParser {
  constructor() {
    this.buffer = "";
    this.lastEventId = "";
    this.retry = null;
    this.reset();
  }

  reset() {
    this.data = [];
    this.event = "";
  }

  /** Feed decoded text; returns the events completed by it: {id, event, data}. */
  feed(text) {
    this.buffer += text;
    const out = [];
    // Lines end with CRLF, LF or CR; a trailing CR may be half of a CRLF: wait for more.
    for (;;) {
      const m = /\r\n|\n|\r/.exec(this.buffer);
      if (!m || (m[0] === "\r" && m.index === this.buffer.length - 1)) break;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      const ev = this.line(line);
      if (ev) out.push(ev);
    }
    return out;
  }

  line(line) {
    if (line === "") {
      // Blank line: dispatch (an event with no data is dropped, per the spec).
      const ev = this.data.length
        ? { id: this.lastEventId, event: this.event || "message", data: this.data.join("\n") }
        : null;
      this.reset();
      return ev;
    }
    if (line.startsWith(":")) return null; // a comment: heartbeats (": ping")
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
    return null;
  }
}
