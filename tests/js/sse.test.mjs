import assert from "node:assert/strict";
import { test } from "node:test";

import { SSEParser } from "../../subscribe/static/sse.js";

const encoder = new TextEncoder();

function parseChunks(chunks) {
  const parser = new SSEParser();
  const events = [];
  for (const chunk of chunks) events.push(...parser.feed(encoder.encode(chunk)));
  events.push(...parser.close());
  return events;
}

function parseBytes(byteChunks) {
  const parser = new SSEParser();
  const events = [];
  for (const chunk of byteChunks) events.push(...parser.feed(chunk));
  events.push(...parser.close());
  return events;
}

const frame = (id, data) => ({ event: "message", data, id, retry: null });

for (const [name, eol] of [["LF", "\n"], ["CR", "\r"], ["CRLF", "\r\n"]]) {
  test(`${name} line ends frame events`, () => {
    const text = `id: 1${eol}data: one${eol}${eol}id: 2${eol}data: two${eol}${eol}`;
    assert.deepEqual(parseChunks([text]), [frame("1", "one"), frame("2", "two")]);
  });
}

test("mixed line ends in one stream", () => {
  const text = "id: 1\rdata: a\r\n\nid: 2\ndata: b\r\r";
  assert.deepEqual(parseChunks([text]), [frame("1", "a"), frame("2", "b")]);
});

test("a CRLF split between chunks is one line end, not two", () => {
  const events = parseChunks(["id: 1\r", "\ndata: x\r", "\n\r", "\n"]);
  assert.deepEqual(events, [frame("1", "x")]);
});

test("every split of a stream gives the same events", () => {
  const text = "retry: 500\r\n: keepalive\r\nid: 7\r\ndata: {\"a\":\"é😀\"}\r\n\r\nid: 8\rdata: b\r\r";
  const bytes = encoder.encode(text);
  const whole = parseBytes([bytes]);
  assert.equal(whole.length, 2);
  for (let i = 0; i <= bytes.length; i++) {
    for (let j = i; j <= bytes.length; j += 3) {
      const split = parseBytes([bytes.slice(0, i), bytes.slice(i, j), bytes.slice(j)]);
      assert.deepEqual(split, whole, `split at ${i},${j}`);
    }
  }
});

test("UTF-8 split inside a character is decoded whole", () => {
  const bytes = encoder.encode("data: 😀é\n\n");
  const events = parseBytes([...bytes].map((b) => Uint8Array.of(b)));
  assert.deepEqual(events.map((e) => e.data), ["😀é"]);
});

test("a leading BOM is dropped, only at the start", () => {
  const events = parseChunks(["\uFEFFdata: a\n\n", "data: \uFEFFb\n\n"]);
  assert.deepEqual(events.map((e) => e.data), ["a", "\uFEFFb"]);
});

test("comments, multi-line data, event names and ids", () => {
  const events = parseChunks([": hello\nevent: note\ndata: line 1\ndata:line 2\ndata\nid: 9\n\n"]);
  assert.deepEqual(events, [{ event: "note", data: "line 1\nline 2\n", id: "9", retry: null }]);
});

test("an id with NUL is ignored and the id persists to later events", () => {
  const parser = new SSEParser();
  const events = parser.feed(encoder.encode("id: 3\ndata: a\n\nid: 4\u0000\ndata: b\n\n"));
  assert.deepEqual(events.map((e) => e.id), ["3", "3"]);
  assert.equal(parser.lastEventId, "3");
});

test("retry must be ASCII digits", () => {
  const parser = new SSEParser();
  parser.feed(encoder.encode("retry: 1500\n\nretry: 12a\n\nretry: ²\n\n"));
  assert.equal(parser.retry, 1500);
});

test("an event without data only commits its id; an unterminated one is dropped", () => {
  const parser = new SSEParser();
  assert.deepEqual(parser.feed(encoder.encode("retry: 1000\nid: 12\n\ndata: half")), []);
  assert.equal(parser.lastEventId, "12");
  assert.deepEqual(parser.close(), []);
});
