import assert from "node:assert/strict";
import { test } from "node:test";

import {
  backoffDelay,
  followRun,
  followRunWithEventSource,
  SubscribeError,
} from "../../subscribe/static/client.js";

const encoder = new TextEncoder();
const frame = (seq, event_type, data = {}) =>
  `id: ${seq}\ndata: ${JSON.stringify({ seq, event_type, data, ts: "t" })}\n\n`;

/** A Response whose body yields `chunks`, then fails if `thenFail`. */
function streamResponse(chunks, { thenFail = false } = {}) {
  const queue = [...chunks];
  const body = new ReadableStream({
    pull(controller) {
      if (queue.length > 0) controller.enqueue(encoder.encode(queue.shift()));
      else if (thenFail) controller.error(new TypeError("network error"));
      else controller.close();
    },
  });
  return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream" } });
}

test("reconnects after a drop and resumes from the last seq, with no duplicate", async () => {
  const cursors = [];
  const answers = [
    () => streamResponse(["retry: 1000\nid: 0\n\n", frame(1, "run_started"), frame(2, "text", { text: "a" }), "id: 3\nda"], { thenFail: true }),
    () => Promise.reject(new TypeError("connection refused")),
    () => streamResponse([frame(2, "text", { text: "a" }), frame(3, "text", { text: "b" }), frame(4, "complete", { new_messages: [] })]),
  ];
  const connection = [];
  const seen = [];
  const run = followRun("r1", {
    fetch: async (url, init) => {
      assert.equal(url, "/api/runs/r1/subscribe");
      cursors.push(JSON.parse(init.body).cursor);
      return answers[cursors.length - 1]();
    },
    sleep: async () => {},
    onConnection: (status) => connection.push(status),
    onEvent: (event) => seen.push(event.seq),
  });
  assert.deepEqual(await run.done, { lastSeq: 4 });
  assert.deepEqual(seen, [1, 2, 3, 4]);
  assert.deepEqual(cursors, [null, "2", "2"]);
  assert.ok(connection.includes("reconnecting"));
  assert.equal(connection.at(-1), "closed");
});

test("a cursor of now resumes from the resolved cursor of the opening block", async () => {
  const cursors = [];
  const answers = [
    () => streamResponse(["retry: 1000\nid: 41\n\n"]),
    () => streamResponse([frame(42, "cancelled", { by: "x" })]),
  ];
  const run = followRun("r1", {
    cursor: "now",
    fetch: async (url, init) => {
      cursors.push(JSON.parse(init.body).cursor);
      return answers[cursors.length - 1]();
    },
    sleep: async () => {},
  });
  await run.done;
  assert.deepEqual(cursors, ["now", "41"]);
});

test("a 4xx answer is not retried: done rejects with the contract's error", async () => {
  let calls = 0;
  const run = followRun("nope", {
    fetch: async () => {
      calls += 1;
      return Response.json({ error: { code: "not_found", message: "run nope not found" } }, { status: 404 });
    },
    sleep: async () => {},
  });
  await assert.rejects(run.done, (error) => error instanceof SubscribeError && error.code === "not_found");
  assert.equal(calls, 1);
});

test("a 503 is retried with backoff", async () => {
  const delays = [];
  let calls = 0;
  const run = followRun("r1", {
    fetch: async () => {
      calls += 1;
      if (calls < 3) return Response.json({ error: { code: "not_ready", message: "" } }, { status: 503 });
      return streamResponse([frame(1, "complete", { new_messages: [] })]);
    },
    random: () => 1,
    backoff: { base: 100, cap: 1000 },
    sleep: async (ms) => delays.push(ms),
  });
  await run.done;
  assert.deepEqual(delays, [100, 200]);
});

test("backoff is jittered below an exponential cap", () => {
  assert.equal(backoffDelay(0, { base: 100, cap: 1000 }, () => 0.5), 50);
  assert.equal(backoffDelay(10, { base: 100, cap: 1000 }, () => 0.999), 999);
});

test("an exception in onEvent is the caller's: done rejects, no silent reconnect", async () => {
  let calls = 0;
  const run = followRun("r1", {
    fetch: async () => {
      calls += 1;
      return streamResponse([frame(1, "run_started")]);
    },
    sleep: async () => {},
    onEvent: () => {
      throw new RangeError("bug in the page");
    },
  });
  await assert.rejects(run.done, RangeError);
  assert.equal(calls, 1);
});

/** A Response that yields `chunks`, then stays open and silent until cancelled. */
function hangingResponse(chunks) {
  const queue = [...chunks];
  const body = new ReadableStream({
    pull(controller) {
      if (queue.length > 0) controller.enqueue(encoder.encode(queue.shift()));
      else return new Promise(() => {});
    },
  });
  return new Response(body, { status: 200 });
}

test("going offline drops an open stream; coming back online reconnects at once", async () => {
  const network = new EventTarget();
  const cursors = [];
  const seen = [];
  let connected;
  const firstConnected = new Promise((resolve) => (connected = resolve));
  const run = followRun("r1", {
    network,
    fetch: async (url, init) => {
      cursors.push(JSON.parse(init.body).cursor);
      if (cursors.length === 1) {
        connected();
        return hangingResponse([frame(1, "run_started"), frame(2, "text", { text: "a" })]);
      }
      return streamResponse([frame(2, "text", { text: "a" }), frame(3, "complete", { new_messages: [] })]);
    },
    sleep: () => new Promise(() => {}), // only the online event may end the wait
    onEvent: (event) => seen.push(event.seq),
    onConnection: (status) => {
      if (status === "reconnecting") setTimeout(() => network.dispatchEvent(new Event("online")), 5);
    },
  });
  await firstConnected;
  while (seen.length < 2) await new Promise((resolve) => setTimeout(resolve, 1));
  network.dispatchEvent(new Event("offline"));
  await run.done;
  assert.deepEqual(seen, [1, 2, 3]);
  assert.deepEqual(cursors, [null, "2"]);
});

test("a stream silent for longer than stallMs is dropped and resumed", async () => {
  const cursors = [];
  const run = followRun("r1", {
    stallMs: 20,
    network: null,
    fetch: async (url, init) => {
      cursors.push(JSON.parse(init.body).cursor);
      if (cursors.length === 1) return hangingResponse([frame(1, "run_started")]);
      return streamResponse([frame(2, "error", { error: "x", error_type: "y" })]);
    },
    sleep: async () => {},
  });
  assert.deepEqual(await run.done, { lastSeq: 2 });
  assert.deepEqual(cursors, [null, "1"]);
});

test("stop() ends a follower that is waiting on an open stream", async () => {
  const run = followRun("r1", {
    network: null,
    fetch: async () => hangingResponse([frame(1, "run_started")]),
    sleep: async () => {},
  });
  await new Promise((resolve) => setTimeout(resolve, 10));
  run.stop();
  assert.deepEqual(await run.done, { lastSeq: 1 });
});

class FakeEventSource {
  static instances = [];
  constructor(url, options) {
    this.url = url;
    this.options = options;
    this.readyState = 0;
    FakeEventSource.instances.push(this);
  }
  close() {
    this.readyState = 2;
  }
  message(seq, event_type, data = {}) {
    this.onmessage({ data: JSON.stringify({ seq, event_type, data }), lastEventId: String(seq) });
  }
}

test("over EventSource: cursor in the URL, duplicates after a browser reconnect dropped, closed at the terminal event", async () => {
  const seen = [];
  const connection = [];
  const run = followRunWithEventSource("r 1", {
    cursor: 3,
    EventSource: FakeEventSource,
    onEvent: (event) => seen.push(event.seq),
    onConnection: (status) => connection.push(status),
  });
  const source = FakeEventSource.instances.at(-1);
  assert.equal(source.url, "/api/runs/r%201/events?cursor=3");
  assert.deepEqual(source.options, { withCredentials: true });
  source.onopen();
  source.message(4, "text", { text: "a" });
  source.readyState = 0; // the browser reconnects by itself, with Last-Event-ID
  source.onerror();
  source.onopen();
  source.message(4, "text", { text: "a" });
  source.message(5, "complete", { new_messages: [] });
  assert.deepEqual(await run.done, { lastSeq: 5 });
  assert.deepEqual(seen, [4, 5]);
  assert.equal(source.readyState, 2);
  assert.deepEqual(connection, ["connecting", "live", "reconnecting", "live", "closed"]);
});

test("over EventSource: a stream the broker closed for good (204, an error answer) ends the follower", async () => {
  const run = followRunWithEventSource("r1", { EventSource: FakeEventSource });
  const source = FakeEventSource.instances.at(-1);
  assert.equal(source.url, "/api/runs/r1/events");
  source.readyState = 2;
  source.onerror();
  assert.deepEqual(await run.done, { lastSeq: 0 });
});
