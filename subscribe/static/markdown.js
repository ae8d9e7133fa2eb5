// Markdown to safe HTML: `marked` renders, DOMPurify sanitizes, always in this order.
// The page's Content-Security-Policy forbids inline script as a second line of defence.

import DOMPurify from "./vendor/purify.es.mjs";
import { marked } from "./vendor/marked.esm.js";

/** Sanitized HTML of a Markdown text (also of an unfinished one, mid-stream). */
export function renderMarkdown(text) {
  const html = marked.parse(text ?? "", { gfm: true, breaks: false, async: false });
  return DOMPurify.sanitize(html, { USE_PROFILES: { html: true }, FORBID_TAGS: ["style", "form"] });
}
