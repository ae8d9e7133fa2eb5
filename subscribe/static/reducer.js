// A pure reducer from stream events to the state of one run.
//
// Events are `{seq, event_type, data, ts}` (design 4.2). The reducer applies
// the delivery rule itself: an event whose seq is not above `lastSeq` is a
// duplicate and leaves the state as it was, so the same events give the same
// state live, on replay, and across reconnections that overlap.
//
// After retention a subscriber may get only the terminal event, with the
// terminal seq (design 4.3). `complete` therefore replaces the transcript with
// its `new_messages`, and `answer` is the assistant's text of that transcript:
// the same answer whether the text deltas were seen or not.
//
// State:
//   { lastSeq, runId, threadId,
//     status: "idle" | "streaming" | "completed" | "failed" | "cancelled",
//     blocks: [{kind: "reasoning", text} | {kind: "text", text}
//              | {kind: "tool", id, name, input, progress, output, isError, done}],
//     answer, messages: [{role, content}], error: {error, error_type} | null,
//     cancelledBy }

export const TERMINAL_TYPES = Object.freeze(["complete", "error", "cancelled"]);

export function initialState() {
  return Object.freeze({
    lastSeq: 0,
    runId: null,
    threadId: null,
    status: "idle",
    blocks: Object.freeze([]),
    answer: "",
    messages: Object.freeze([]),
    error: null,
    cancelledBy: null,
  });
}

function appendText(blocks, kind, text) {
  const last = blocks[blocks.length - 1];
  if (last && last.kind === kind) {
    return [...blocks.slice(0, -1), { ...last, text: last.text + text }];
  }
  return [...blocks, { kind, text }];
}

function updateTool(blocks, id, change) {
  let found = false;
  const next = blocks.map((block) => {
    if (block.kind !== "tool" || block.id !== id) return block;
    found = true;
    return { ...block, ...change(block) };
  });
  if (found) return next;
  // A result for a call we never saw (e.g. a viewer that joined late): show it anyway.
  const orphan = { kind: "tool", id, name: "", input: {}, progress: "", output: null, isError: false, done: false };
  return [...blocks, { ...orphan, ...change(orphan) }];
}

function assistantText(messages) {
  return messages
    .filter((message) => message.role === "assistant")
    .map((message) => message.content)
    .join("");
}

const HANDLERS = {
  run_started: (state, data) => ({
    ...state,
    runId: data.run_id,
    threadId: data.thread_id,
    status: "streaming",
  }),
  reasoning_text: (state, data) => ({
    ...state,
    status: "streaming",
    blocks: appendText(state.blocks, "reasoning", data.text),
  }),
  text: (state, data) => ({
    ...state,
    status: "streaming",
    blocks: appendText(state.blocks, "text", data.text),
    answer: state.answer + data.text,
  }),
  tool_use: (state, data) => ({
    ...state,
    blocks: [
      ...state.blocks,
      {
        kind: "tool",
        id: data.tool_use_id,
        name: data.name,
        input: data.input,
        progress: "",
        output: null,
        isError: false,
        done: false,
      },
    ],
  }),
  tool_stream: (state, data) => ({
    ...state,
    blocks: updateTool(state.blocks, data.tool_use_id, (tool) => ({
      progress: tool.progress + data.text,
    })),
  }),
  tool_result: (state, data) => ({
    ...state,
    blocks: updateTool(state.blocks, data.tool_use_id, () => ({
      output: data.output,
      isError: Boolean(data.is_error),
      done: true,
    })),
  }),
  message: (state, data) => ({
    ...state,
    messages: [...state.messages, { role: data.message.role, content: data.message.content }],
  }),
  complete: (state, data) => {
    const messages = data.new_messages.map((m) => ({ role: m.role, content: m.content }));
    return { ...state, status: "completed", messages, answer: assistantText(messages) };
  },
  error: (state, data) => ({
    ...state,
    status: "failed",
    error: { error: data.error, error_type: data.error_type },
  }),
  cancelled: (state, data) => ({
    ...state,
    status: "cancelled",
    cancelledBy: data.by ?? null,
  }),
};

/** The event types this reducer understands (checked against the schema by a test). */
export const HANDLED_TYPES = Object.freeze(Object.keys(HANDLERS));

export function isTerminal(event) {
  return TERMINAL_TYPES.includes(event.event_type);
}

const FINISHED = Object.freeze(["completed", "failed", "cancelled"]);

/** The state after `event`: the same object for a duplicate or after the terminal event. */
export function reduce(state, event) {
  if (!Number.isInteger(event.seq) || event.seq <= state.lastSeq) return state;
  if (FINISHED.includes(state.status)) return state;
  const handler = HANDLERS[event.event_type];
  // An unknown type (a newer broker) still moves the cursor: it was delivered.
  const next = handler ? handler(state, event.data ?? {}) : state;
  return Object.freeze({ ...next, lastSeq: event.seq });
}

/** Fold a list of events. */
export function reduceAll(events, state = initialState()) {
  return events.reduce(reduce, state);
}
