// The page: threads on the left, one thread's transcript and live run on the right.
// It uses only the public JSON API with the session cookie, and the same client
// (client.js + reducer.js) any other front end can copy.

import { followRun } from "./client.js";
import { initialState, reduce } from "./reducer.js";
import { renderMessage, renderRun } from "./view.js";

const $ = (id) => document.getElementById(id);
const page = {
  threadId: null,
  runId: null,
  follower: null,
  state: initialState(),
  connection: "closed",
  frame: 0,
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    window.location.reload(); // the server answers the sign-in page
    throw new ApiError(401, "unauthorized", "signed out");
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, data?.error?.code ?? "error", data?.error?.message ?? response.statusText);
  }
  return data;
}

function notify(text) {
  const notice = $("notice");
  notice.textContent = text;
  notice.hidden = !text;
}

// --- the status pill: connection while the run streams, else the run's status ---------

function statusText() {
  const status = page.state.status;
  if (status === "completed" || status === "failed" || status === "cancelled") return status;
  if (!page.runId) return "";
  return page.connection === "reconnecting" ? "reconnecting" : page.connection === "live" ? "live" : "";
}

function renderStatus() {
  const pill = $("run-status");
  const text = statusText();
  pill.hidden = !text;
  pill.textContent = text;
  pill.dataset.state = text;
  const running = Boolean(page.runId) && page.state.status !== "completed"
    && page.state.status !== "failed" && page.state.status !== "cancelled";
  $("stop").hidden = !running;
  $("send").disabled = running;
}

function scheduleRender() {
  if (page.frame) return;
  page.frame = requestAnimationFrame(() => {
    page.frame = 0;
    const transcript = $("transcript");
    const atBottom = transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 80;
    renderRun($("run"), page.state, page.userMessage);
    renderStatus();
    if (atBottom) transcript.scrollTop = transcript.scrollHeight;
  });
}

// --- threads -------------------------------------------------------------------------

async function loadThreads() {
  const { threads } = await api("GET", "/api/threads");
  const list = $("threads");
  list.replaceChildren(
    ...threads.map((thread) => {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = `/threads/${thread.thread_id}`;
      link.textContent = thread.title || "Untitled";
      if (thread.thread_id === page.threadId) link.setAttribute("aria-current", "page");
      item.appendChild(link);
      return item;
    }),
  );
  $("threads-empty").hidden = threads.length > 0;
}

function stopFollowing() {
  page.follower?.stop();
  page.follower = null;
}

function follow(runId, userMessage) {
  stopFollowing();
  page.runId = runId;
  page.state = initialState();
  page.userMessage = userMessage;
  $("run").replaceChildren();
  $("welcome").hidden = true;
  const follower = followRun(runId, {
    cursor: null, // from the first event: a reload replays the whole run
    onEvent: (event) => {
      page.state = reduce(page.state, event);
      scheduleRender();
    },
    onConnection: (connection) => {
      page.connection = connection;
      scheduleRender();
    },
  });
  page.follower = follower;
  scheduleRender();
  follower.done
    .then(() => {
      if (page.follower === follower) loadThreads().catch(() => {});
    })
    .catch((error) => notify(`Could not follow the run: ${error.message}`));
}

async function openThread(threadId) {
  stopFollowing();
  page.threadId = threadId;
  page.runId = null;
  page.state = initialState();
  $("history").replaceChildren();
  $("run").replaceChildren();
  notify("");
  if (!threadId) {
    $("thread-title").textContent = "New conversation";
    $("welcome").hidden = false;
    renderStatus();
    return;
  }
  $("welcome").hidden = true;
  let thread;
  let messages;
  try {
    // In this order: a run and its user message are committed together, so the
    // messages read after the thread include those of the run it names.
    thread = await api("GET", `/api/threads/${threadId}`);
    ({ messages } = await api("GET", `/api/threads/${threadId}/messages`));
  } catch (error) {
    $("thread-title").textContent = "Conversation not found";
    notify(error.status === 404 ? "This conversation does not exist in your workspace." : error.message);
    return;
  }
  $("thread-title").textContent = thread.title || "Untitled";
  document.title = `${thread.title || "Untitled"} · Broker`;
  const latest = thread.latest_run;
  const earlier = messages.filter((message) => !latest || message.run_id !== latest.run_id);
  $("history").replaceChildren(...earlier.map(renderMessage));
  if (latest) {
    const asked = messages.find((m) => m.run_id === latest.run_id && m.role === "user");
    follow(latest.run_id, asked?.content);
  }
  renderStatus();
}

// --- sending and stopping -----------------------------------------------------------

async function send(text) {
  const message = text.trim();
  if (!message) return;
  notify("");
  $("send").disabled = true;
  try {
    const created = !page.threadId;
    if (created) {
      const thread = await api("POST", "/api/threads", { title: message.slice(0, 80) });
      page.threadId = thread.thread_id;
      $("thread-title").textContent = thread.title;
      $("history").replaceChildren();
    } else if (page.runId) {
      // The previous run is finished: it becomes history.
      for (const node of $("run").children) $("history").appendChild(node.cloneNode(true));
    }
    const run = await api("POST", `/api/threads/${page.threadId}/runs`, { message });
    // Only now: the thread's URL opened in another tab shows this run at once.
    if (created) history.pushState({}, "", `/threads/${page.threadId}`);
    $("message").value = "";
    autosize();
    follow(run.run_id, message);
    loadThreads().catch(() => {});
  } catch (error) {
    notify(error.code === "conflict" ? "A run is still going on this thread." : error.message);
  } finally {
    renderStatus();
  }
}

async function stop() {
  if (!page.runId) return;
  $("stop").disabled = true;
  try {
    await api("POST", `/api/runs/${page.runId}/cancel`);
  } catch (error) {
    notify(`Could not stop the run: ${error.message}`);
  } finally {
    $("stop").disabled = false;
  }
}

function autosize() {
  const box = $("message");
  box.style.height = "auto";
  box.style.height = `${Math.min(box.scrollHeight, 240)}px`;
}

function route() {
  const match = window.location.pathname.match(/^\/threads\/([^/]+)$/);
  return match ? decodeURIComponent(match[1]) : null;
}

function start() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    send($("message").value);
  });
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (!$("send").disabled) send($("message").value);
    }
  });
  $("message").addEventListener("input", autosize);
  $("stop").addEventListener("click", stop);
  for (const button of document.querySelectorAll(".suggestion")) {
    button.addEventListener("click", () => {
      $("message").value = button.textContent;
      $("message").focus();
      autosize();
    });
  }
  window.addEventListener("popstate", () => openThread(route()));
  openThread(route()).then(() => loadThreads()).catch((error) => notify(error.message));
}

start();
