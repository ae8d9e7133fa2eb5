// Follow a run of the broker live: POST /api/runs/{id}/subscribe over fetch(),
// reconnecting with jittered exponential backoff and resuming from the last
// seq, so every event is delivered once, in order, until the terminal event.
// `followRunWithEventSource` does the same over GET + EventSource, whose
// browser-driven reconnection sends `Last-Event-ID`.
//
//   const run = followRun(runId, {
//     onEvent: (event) => { state = reduce(state, event); },
//     onConnection: (status) => { /* "connecting" | "live" | "reconnecting" | "closed" */ },
//     headers: { Authorization: `Bearer ${token}` },  // or rely on the session cookie
//   });
//   await run.done;   // resolves after the terminal event; rejects on a 4xx answer
//   run.stop();       // stop following (resolves `done`)
//
// A connection silent for `stallMs` (the broker's keepalives stopped) is dropped
// and reconnected, and so is one open when the browser's `offline` event fires;
// `online` cuts the backoff short.

import { SSEParser } from "./sse.js";

const TERMINAL = new Set(["complete", "error", "cancelled"]);

/** An error answer of the broker that reconnecting cannot fix (4xx). */
export class SubscribeError extends Error {
  constructor(status, code, message) {
    super(message || `subscribe failed with HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

/** An exception thrown by the caller's `onEvent`: never retried, handed back. */
class CallbackError extends Error {
  constructor(cause) {
    super("onEvent threw", { cause });
  }
}

/** Full jitter: a random delay in [0, min(cap, base * 2^attempt)) milliseconds. */
export function backoffDelay(attempt, { base = 250, cap = 8000 } = {}, random = Math.random) {
  return random() * Math.min(cap, base * 2 ** attempt);
}

function defaultSleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return new SubscribeError(response.status, body?.error?.code, body?.error?.message);
  } catch {
    return new SubscribeError(response.status, "http_error", "");
  }
}

function retriable(status) {
  return status >= 500 || status === 408 || status === 429;
}

export function followRun(runId, options = {}) {
  const {
    baseUrl = "",
    cursor = null,
    onEvent = () => {},
    onConnection = () => {},
    headers = {},
    backoff = {},
    random = Math.random,
    fetch: fetchImpl = globalThis.fetch.bind(globalThis),
    sleep = defaultSleep,
    network = globalThis.window ?? null,
    stallMs = 45_000,
  } = options;
  const controller = new AbortController();
  let next = cursor; // what to send as the cursor on the next (re)connection
  let lastSeq = 0;
  let attemptController = null; // aborts the current connection only
  let progressed = false; // whether the current connection delivered an event
  let wake = () => {};

  // An emulated or real loss of network does not always fail an open stream at once:
  // drop it when the browser says it went offline, retry at once when it is back.
  const onOffline = () => attemptController?.abort();
  const onOnline = () => wake();
  network?.addEventListener?.("offline", onOffline);
  network?.addEventListener?.("online", onOnline);

  async function connectOnce() {
    attemptController = new AbortController();
    const attempt = attemptController;
    const signal = AbortSignal.any([controller.signal, attempt.signal]);
    const response = await fetchImpl(`${baseUrl}/api/runs/${encodeURIComponent(runId)}/subscribe`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...headers },
      body: JSON.stringify({ cursor: next === null ? null : String(next) }),
      credentials: "same-origin",
      signal,
    });
    if (!response.ok) {
      const error = await errorOf(response);
      if (retriable(response.status)) return false;
      throw error;
    }
    onConnection("live");
    const parser = new SSEParser();
    const reader = response.body.getReader();
    const deliver = (frames) => {
      for (const frame of frames) {
        const event = JSON.parse(frame.data);
        if (!Number.isInteger(event.seq) || event.seq <= lastSeq) continue;
        lastSeq = event.seq;
        next = event.seq;
        progressed = true;
        try {
          onEvent(event);
        } catch (error) {
          throw new CallbackError(error);
        }
        if (TERMINAL.has(event.event_type)) return true;
      }
      // The opening block's `id:` is the resolved cursor (e.g. of "now"): resume there.
      if (lastSeq === 0 && parser.lastEventId !== null) next = parser.lastEventId;
      return false;
    };
    // The broker sends a keepalive at least every 15 s: silence longer than
    // `stallMs` means a dead connection that nobody told us about.
    let stall;
    const arm = () => {
      clearTimeout(stall);
      stall = setTimeout(() => attempt.abort(), stallMs);
    };
    signal.addEventListener("abort", () => reader.cancel().catch(() => {}));
    try {
      arm();
      for (;;) {
        const { value, done } = await reader.read();
        if (signal.aborted) return false;
        if (done) break;
        arm();
        if (deliver(parser.feed(value))) return true;
      }
      return deliver(parser.close());
    } finally {
      clearTimeout(stall);
      reader.cancel().catch(() => {});
    }
  }

  const done = (async () => {
    let attempt = 0;
    onConnection("connecting");
    try {
      while (!controller.signal.aborted) {
        progressed = false;
        try {
          if (await connectOnce()) return { lastSeq };
        } catch (error) {
          if (controller.signal.aborted) break;
          if (error instanceof CallbackError) throw error.cause;
          if (error instanceof SubscribeError || error instanceof SyntaxError) throw error;
        }
        if (controller.signal.aborted) break;
        if (progressed) attempt = 0;
        onConnection("reconnecting");
        await new Promise((resolve) => {
          wake = resolve;
          sleep(backoffDelay(attempt, backoff, random), controller.signal).then(resolve);
        });
        attempt += 1;
      }
      return { lastSeq };
    } finally {
      network?.removeEventListener?.("offline", onOffline);
      network?.removeEventListener?.("online", onOnline);
      onConnection("closed");
    }
  })();

  return {
    done,
    stop() {
      controller.abort();
    },
    get lastSeq() {
      return lastSeq;
    },
  };
}

/** The same over GET /api/runs/{id}/events and the browser's EventSource (cookie auth). */
export function followRunWithEventSource(runId, options = {}) {
  const {
    baseUrl = "",
    cursor = null,
    onEvent = () => {},
    onConnection = () => {},
    EventSource: EventSourceImpl = globalThis.EventSource,
  } = options;
  const query = cursor === null ? "" : `?cursor=${encodeURIComponent(String(cursor))}`;
  const source = new EventSourceImpl(
    `${baseUrl}/api/runs/${encodeURIComponent(runId)}/events${query}`,
    { withCredentials: true },
  );
  let lastSeq = 0;
  let finish;
  const done = new Promise((resolve) => {
    finish = () => {
      source.close();
      onConnection("closed");
      resolve({ lastSeq });
    };
  });
  onConnection("connecting");
  source.onopen = () => onConnection("live");
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (!Number.isInteger(event.seq) || event.seq <= lastSeq) return;
    lastSeq = event.seq;
    onEvent(event);
    if (TERMINAL.has(event.event_type)) finish();
  };
  source.onerror = () => {
    // CLOSED: the broker said stop (204, or an error answer); else the browser retries
    // by itself, sending Last-Event-ID, and the broker resumes after it.
    if (source.readyState === 2) finish();
    else onConnection("reconnecting");
  };
  return {
    done,
    stop: () => finish(),
    get lastSeq() {
      return lastSeq;
    },
  };
}
