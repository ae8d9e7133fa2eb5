// Rendering of one run's state into the DOM. Blocks are keyed by position, so an
// update touches only what changed and a reader's open/closed reasoning stays as is.

import { renderMarkdown } from "./markdown.js";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function formatValue(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** A query's rows as a table, or null when the output is not `{columns, rows}`. */
function rowsTable(output) {
  if (!output || !Array.isArray(output.columns) || !Array.isArray(output.rows)) return null;
  const wrap = el("div", "table-wrap");
  const table = el("table", "rows");
  const head = table.createTHead().insertRow();
  for (const column of output.columns) head.appendChild(el("th", "", String(column)));
  const body = table.createTBody();
  for (const row of output.rows) {
    const tr = body.insertRow();
    for (const cell of row) {
      const td = el("td", typeof cell === "number" ? "num" : "", formatValue(cell));
      tr.appendChild(td);
    }
  }
  wrap.appendChild(table);
  const count = output.rows.length;
  const caption = `${count} row${count === 1 ? "" : "s"}${output.truncated ? " (truncated)" : ""}`;
  wrap.appendChild(el("p", "table-caption", caption));
  return wrap;
}

function toolInput(input) {
  const box = el("div", "tool-input");
  if (input && typeof input.sql === "string") {
    box.appendChild(el("pre", "code", input.sql));
    const rest = { ...input };
    delete rest.sql;
    const meta = Object.entries(rest).map(([key, value]) => `${key.replaceAll("_", " ")}: ${formatValue(value)}`);
    if (meta.length > 0) box.appendChild(el("p", "tool-meta", meta.join(" · ")));
  } else {
    box.appendChild(el("pre", "code", JSON.stringify(input ?? {}, null, 2)));
  }
  return box;
}

function toolOutput(block) {
  if (!block.done) return null;
  if (block.isError) {
    const message = block.output?.error?.message ?? formatValue(block.output);
    return el("p", "tool-error", message);
  }
  return rowsTable(block.output) ?? el("pre", "code", JSON.stringify(block.output, null, 2));
}

function renderBlock(node, block, running) {
  if (block.kind === "reasoning") {
    if (!node) {
      node = el("details", "block reasoning");
      node.open = running;
      node.appendChild(el("summary", "", "Reasoning"));
      node.appendChild(el("div", "reasoning-text"));
    }
    node.querySelector(".reasoning-text").textContent = block.text;
    return node;
  }
  if (block.kind === "text") {
    if (!node) node = el("div", "block answer markdown");
    if (node.dataset.source !== block.text) {
      node.dataset.source = block.text;
      node.innerHTML = renderMarkdown(block.text);
    }
    return node;
  }
  // A tool call: summary with its name and state, then input, progress, result.
  const key = `${block.done}:${block.isError}:${block.progress.length}`;
  if (!node) {
    node = el("details", "block tool");
    node.open = true;
    const summary = el("summary");
    summary.append(el("span", "tool-name", block.name || "tool"), el("span", "tool-state"));
    node.append(summary, toolInput(block.input), el("pre", "tool-progress"), el("div", "tool-output"));
  }
  if (node.dataset.key !== key) {
    node.dataset.key = key;
    const state = block.done ? (block.isError ? "failed" : "done") : "running";
    const badge = node.querySelector(".tool-state");
    badge.textContent = state;
    badge.dataset.state = state;
    const progress = node.querySelector(".tool-progress");
    progress.textContent = block.progress;
    progress.hidden = !block.progress;
    const output = node.querySelector(".tool-output");
    output.replaceChildren(...[toolOutput(block)].filter(Boolean));
  }
  return node;
}

/** Render `state` into `container`, reusing the nodes of a previous render. */
export function renderRun(container, state, userMessage) {
  let user = container.querySelector(":scope > .message.user");
  if (userMessage && !user) {
    user = el("div", "message user", userMessage);
    container.prepend(user);
  }
  let assistant = container.querySelector(":scope > .message.assistant");
  if (!assistant) {
    assistant = el("div", "message assistant");
    container.appendChild(assistant);
  }
  const running = state.status === "streaming" || state.status === "idle";
  const hasText = state.blocks.some((block) => block.kind === "text");
  // After retention only the terminal event is left: show the transcript's answer.
  const blocks = !hasText && state.answer ? [...state.blocks, { kind: "text", text: state.answer }] : state.blocks;
  const nodes = [...assistant.querySelectorAll(":scope > .block")];
  blocks.forEach((block, index) => {
    const node = nodes[index]?.dataset.kind === block.kind ? nodes[index] : null;
    const rendered = renderBlock(node, block, running);
    rendered.dataset.kind = block.kind;
    if (!node) {
      if (nodes[index]) nodes[index].replaceWith(rendered);
      else assistant.appendChild(rendered);
    }
  });
  for (const extra of nodes.slice(blocks.length)) extra.remove();
  let pending = assistant.querySelector(":scope > .typing");
  if (running && !pending) {
    pending = el("div", "typing");
    pending.setAttribute("aria-hidden", "true");
    pending.append(el("span"), el("span"), el("span"));
    assistant.appendChild(pending);
  } else if (running && pending) {
    assistant.appendChild(pending); // keep it last
  } else if (!running && pending) {
    pending.remove();
  }
  let footer = assistant.querySelector(":scope > .run-footer");
  const footerText =
    state.status === "failed" ? `The run failed: ${state.error?.error ?? "unknown error"}`
    : state.status === "cancelled" ? "Stopped." : "";
  if (footerText && !footer) {
    footer = el("p", `run-footer ${state.status}`);
    assistant.appendChild(footer);
  }
  if (footer) footer.textContent = footerText;
}

/** A finished message of an earlier run. */
export function renderMessage(message) {
  const node = el("div", `message ${message.role === "user" ? "user" : "assistant"}`);
  if (message.role === "user") node.textContent = message.content;
  else {
    const answer = el("div", "block answer markdown");
    answer.innerHTML = renderMarkdown(message.content);
    node.appendChild(answer);
  }
  return node;
}
