// Server-Sent Events over fetch(): EventSource cannot send an Authorization header, so the
// dashboard reads the API's text/event-stream answers with a ReadableStream reader, parses the
// framing itself (SseParser), and after a dropped connection asks again with the last event id
// in `Last-Event-ID`, so no line is shown twice or missed (the API resumes after that id).

// The text/event-stream framing: lines ending in CRLF, LF or CR; `field: value` lines (one
// space after the colon dropped); `:` comments ignored; a blank line dispatches the event
// gathered so far if it has data. An `id` counts once its event is complete (`lastId` then
// takes it, and keeps it across events): the id of an event cut off by a dropped connection is
// never resumed after, or that event would be lost.
export class SseParser {
  constructor(lastId = null) {
    this.buf = "";
    this.data = [];
    this.event = "";
    this.lastId = lastId;
    this.idBuf = lastId;
  }

  // Feeds a decoded chunk; returns the events it completed: {event, data, id}.
  push(chunk) {
    this.buf += chunk;
    const out = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buf);
      // A CR at the very end may be the first half of a CRLF: wait for the next chunk.
      if (!m || (m[0] === "\r" && m.index === this.buf.length - 1)) break;
      const line = this.buf.slice(0, m.index);
      this.buf = this.buf.slice(m.index + m[0].length);
      this.line(line, out);
    }
    return out;
  }

  line(line, out) {
    if (line === "") {
      this.lastId = this.idBuf;
      if (this.data.length) {
        out.push({ event: this.event || "message", data: this.data.join("\n"), id: this.lastId });
      }
      this.data = [];
      this.event = "";
      return;
    }
    if (line.startsWith(":")) return;
    const i = line.indexOf(":");
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? "" : line.slice(i + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.idBuf = value;
  }
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });

// Follows `url` until an `end` event (returned) or `signal` aborts (returns null). Each event
// goes to `onEvent`; `onState("live" | "reconnecting")` tells what the connection does. A
// dropped connection, a network error or a 5xx is retried after 0.25 s, 0.5 s … up to 5 s,
// resuming after the last event id; a 4xx is thrown (an ApiError-like {status, message}).
// `fetchFn` is for tests.
export async function follow(url, { token, onEvent, onState = () => {}, signal, lastId = null, fetchFn = fetch }) {
  const backoff = [250, 500, 1000, 2000, 5000];
  let attempt = 0;
  while (!signal?.aborted) {
    const headers = { Authorization: `Bearer ${token}`, Accept: "text/event-stream" };
    if (lastId) headers["Last-Event-ID"] = lastId;
    let resp = null;
    try {
      resp = await fetchFn(url, { headers, signal, cache: "no-store" });
    } catch {
      resp = null;
    }
    if (signal?.aborted) return null;
    if (resp && !resp.ok && resp.status < 500) {
      let message = `HTTP ${resp.status}`;
      try {
        message = (await resp.json()).error || message;
      } catch {
        // not JSON: keep the status
      }
      throw Object.assign(new Error(message), { status: resp.status });
    }
    if (resp && resp.ok) {
      onState("live");
      const parser = new SseParser(lastId);
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const ev of parser.push(value)) {
            lastId = parser.lastId;
            attempt = 0;
            onEvent(ev);
            if (ev.event === "end") {
              reader.cancel().catch(() => {});
              return ev;
            }
          }
        }
      } catch {
        // the connection dropped (or was aborted): resumed below
      }
      lastId = parser.lastId;
    }
    if (signal?.aborted) return null;
    onState("reconnecting");
    await sleep(backoff[Math.min(attempt, backoff.length - 1)], signal);
    attempt += 1;
  }
  return null;
}
