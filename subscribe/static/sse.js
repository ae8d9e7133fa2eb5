// An incremental parser of text/event-stream, by the WHATWG rules (the same
// rules as broker/sse.py): lines end in CR, LF or CRLF, also when the CR and
// the LF arrive in different chunks; UTF-8 split across chunks is decoded in
// stream mode; a leading BOM is dropped; lines starting with ":" are comments;
// `data` lines join with "\n"; `id` containing NUL is ignored; `retry` must be
// ASCII digits. An event is dispatched on a blank line, and only if it has data.
//
//   const parser = new SSEParser();
//   for (const event of parser.feed(bytes)) { ... event.data, event.id ... }
//   parser.close();  // end of stream: an unterminated event is dropped

const LINE_END = /\r\n|\r|\n/;

export class SSEParser {
  constructor() {
    this.lastEventId = null; // the id committed by the last blank line
    this.retry = null; // the latest valid reconnection time, in ms
    this.#resetStream();
  }

  #resetStream() {
    this.decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
    this.started = false;
    this.skipLf = false;
    this.partial = "";
    this.data = [];
    this.eventType = "";
    this.eventRetry = null;
    this.idBuffer = this.lastEventId;
  }

  /** Feed a chunk (Uint8Array or string); returns the events it completed. */
  feed(chunk) {
    const text = typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    return this.#feedText(text);
  }

  /** End of stream: dispatch nothing incomplete, reset for a reconnection. */
  close() {
    const events = this.#feedText(this.decoder.decode());
    this.#resetStream();
    return events;
  }

  #feedText(text) {
    if (!text) return [];
    if (!this.started) {
      this.started = true;
      if (text[0] === "\uFEFF") text = text.slice(1);
    }
    if (this.skipLf) {
      this.skipLf = false;
      if (text[0] === "\n") text = text.slice(1);
    }
    if (!text) return [];
    const lines = text.split(LINE_END);
    if (lines.length === 1) {
      this.partial += text;
      return [];
    }
    lines[0] = this.partial + lines[0];
    this.partial = lines.pop();
    const events = [];
    for (const line of lines) this.#processLine(line, events);
    this.skipLf = text[text.length - 1] === "\r";
    return events;
  }

  #processLine(line, events) {
    if (line === "") {
      this.#dispatch(events);
      return;
    }
    if (line[0] === ":") return;
    const colon = line.indexOf(":");
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (name === "data") this.data.push(value);
    else if (name === "event") this.eventType = value;
    else if (name === "id") {
      if (!value.includes("\0")) this.idBuffer = value;
    } else if (name === "retry" && /^[0-9]+$/.test(value)) {
      this.retry = this.eventRetry = Number.parseInt(value, 10);
    }
  }

  #dispatch(events) {
    this.lastEventId = this.idBuffer;
    if (this.data.length > 0) {
      events.push({
        event: this.eventType || "message",
        data: this.data.join("\n"),
        id: this.idBuffer,
        retry: this.eventRetry,
      });
      this.data = [];
    }
    this.eventType = "";
    this.eventRetry = null;
  }
}
