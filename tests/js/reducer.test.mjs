import assert from "node:assert/strict";
import { test } from "node:test";

import { HANDLED_TYPES, initialState, reduce, reduceAll } from "../../subscribe/static/reducer.js";

let seq = 0;
const ev = (event_type, data) => ({ seq: ++seq, event_type, data, ts: "2026-11-21T10:00:00.000Z" });

seq = 0;
const RUN = [
  ev("run_started", { run_id: "r1", thread_id: "t1" }),
  ev("reasoning_text", { text: "Let me " }),
  ev("reasoning_text", { text: "look." }),
  ev("tool_use", { tool_use_id: "q1", name: "query", input: { sql: "SELECT 1" } }),
  ev("tool_stream", { tool_use_id: "q1", text: "running…" }),
  ev("tool_result", { tool_use_id: "q1", output: { rows: [[1]] }, is_error: false }),
  ev("text", { text: "There are " }),
  ev("text", { text: "**400** orders." }),
  ev("message", { message: { role: "assistant", content: "There are **400** orders." } }),
  ev("complete", {
    new_messages: [
      { role: "user", content: "How many orders?" },
      { role: "assistant", content: "There are **400** orders." },
    ],
  }),
];

test("a run folds into reasoning, a tool call, the answer and the transcript", () => {
  const state = reduceAll(RUN);
  assert.equal(state.status, "completed");
  assert.equal(state.lastSeq, RUN.length);
  assert.deepEqual(state.blocks, [
    { kind: "reasoning", text: "Let me look." },
    {
      kind: "tool",
      id: "q1",
      name: "query",
      input: { sql: "SELECT 1" },
      progress: "running…",
      output: { rows: [[1]] },
      isError: false,
      done: true,
    },
    { kind: "text", text: "There are **400** orders." },
  ]);
  assert.equal(state.answer, "There are **400** orders.");
  assert.equal(state.messages.length, 2);
});

test("replay equals live, whatever the overlaps of reconnections", () => {
  const live = reduceAll(RUN);
  // A viewer that reconnected twice and got some events again.
  const overlapped = [...RUN.slice(0, 5), ...RUN.slice(2, 8), ...RUN.slice(6)];
  assert.deepEqual(reduceAll(overlapped), live);
  // A reload: a fresh state fed the whole run again.
  assert.deepEqual(reduceAll(RUN, initialState()), live);
  // Feeding more after the terminal event changes nothing.
  assert.equal(reduceAll(RUN, live), live);
});

test("the rebuilt terminal event after retention gives the same final answer", () => {
  const live = reduceAll(RUN);
  const rebuilt = reduceAll([RUN[RUN.length - 1]]);
  assert.equal(rebuilt.status, "completed");
  assert.equal(rebuilt.lastSeq, live.lastSeq);
  assert.equal(rebuilt.answer, live.answer);
  assert.deepEqual(rebuilt.messages, live.messages);
  // And after part of the run was seen live, the terminal transcript still wins.
  const partial = reduceAll([...RUN.slice(0, 7), RUN[RUN.length - 1]]);
  assert.equal(partial.answer, live.answer);
});

test("error and cancelled end the run with their status", () => {
  const failed = reduceAll([RUN[0], { ...ev("error", { error: "boom", error_type: "producer_lost" }), seq: 2 }]);
  assert.equal(failed.status, "failed");
  assert.deepEqual(failed.error, { error: "boom", error_type: "producer_lost" });
  const cancelled = reduceAll([RUN[0], { seq: 2, event_type: "cancelled", data: { by: "owner" } }]);
  assert.equal(cancelled.status, "cancelled");
  assert.equal(cancelled.cancelledBy, "owner");
});

test("bad input leaves the state alone: duplicates, missing seq; unknown types only move the cursor", () => {
  const state = reduceAll(RUN.slice(0, 3));
  assert.equal(reduce(state, RUN[1]), state);
  assert.equal(reduce(state, { event_type: "text", data: { text: "x" } }), state);
  const unknown = reduce(state, { seq: 4, event_type: "from_the_future", data: {} });
  assert.equal(unknown.lastSeq, 4);
  assert.deepEqual(unknown.blocks, state.blocks);
});

test("a tool result for a call never seen is still shown", () => {
  const state = reduceAll([{ seq: 1, event_type: "tool_result", data: { tool_use_id: "x", output: "ok" } }]);
  assert.equal(state.blocks[0].output, "ok");
  assert.equal(state.blocks[0].done, true);
});

test("the reducer never mutates the state it was given", () => {
  const before = reduceAll(RUN.slice(0, 4));
  const copy = structuredClone(before);
  reduceAll(RUN.slice(4), before);
  assert.deepEqual(before, copy);
  assert.ok(HANDLED_TYPES.includes("complete"));
});
