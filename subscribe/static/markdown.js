// Markdown to safe HTML: `marked` renders, DOMPurify sanitizes, always in this order.
// The page's Content-Security-Policy forbids inline script and inline style as a second
// line of defence, so neither step may produce what it would refuse:
// - raw HTML in an answer is dropped by marked (its text between tags stays), so the
//   sanitizer never parses an `onerror=` attribute: Chromium reports one CSP violation
//   per inline handler even in the sanitizer's inert document;
// - an image is never loaded from an answer: it is shown as its alt text;
// - a table column's alignment (marked's `align` attribute) becomes a class;
// - `style` attributes are dropped.

import DOMPurify from "./vendor/purify.es.mjs";
import { Marked } from "./vendor/marked.esm.js";

function escapeHtml(text) {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");
}

const marked = new Marked({
  gfm: true,
  breaks: false,
  async: false,
  renderer: {
    html() {
      return "";
    },
    image({ text }) {
      return `<span class="img-alt">${escapeHtml(text ? `[image: ${text}]` : "[image]")}</span>`;
    },
  },
});

const ALIGNMENTS = new Set(["left", "right", "center"]);

const purifier = DOMPurify();

purifier.addHook("uponSanitizeElement", (node, data) => {
  if (data.tagName !== "img" || !node.parentNode) return;
  const alt = node.getAttribute("alt");
  const replacement = node.ownerDocument.createElement("span");
  replacement.className = "img-alt";
  replacement.textContent = alt ? `[image: ${alt}]` : "[image]";
  node.parentNode.replaceChild(replacement, node);
});

purifier.addHook("afterSanitizeAttributes", (node) => {
  const align = node.getAttribute?.("align");
  if (align !== null && align !== undefined) {
    node.removeAttribute("align");
    if (ALIGNMENTS.has(align.toLowerCase())) node.classList.add(`align-${align.toLowerCase()}`);
  }
});

const CONFIG = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["style", "form", "img", "picture", "source", "video", "audio", "image"],
  FORBID_ATTR: ["style", "srcset", "background", "poster"],
};

/** Sanitized HTML of a Markdown text (also of an unfinished one, mid-stream). */
export function renderMarkdown(text) {
  const html = marked.parse(text ?? "");
  return purifier.sanitize(html, CONFIG);
}
