"""The page's layout and polish in a real Chromium: nothing runs past the screen's
right edge on a phone or a desktop, a refused message leaves no thread behind,
result tables and Markdown tables show numbers right, a hostile answer sanitizes
without a single Content-Security-Policy report, and the icon is served.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.browser import SCREENSHOTS, browser
from tests.e2e.test_page import TIMEOUT_MS, System, _ask, _finished_answer, system

__all__ = ["browser", "system"]  # the fixtures, re-exported for pytest

# Every card of the run view, and what must hold for each: within the viewport,
# no wider than its parent's box (wide content scrolls inside it).
_OVERFLOW = """() => {
  const width = window.innerWidth;
  const faults = [];
  const root = document.documentElement;
  if (root.scrollWidth > width) faults.push(`document ${root.scrollWidth} > ${width}`);
  const cards = document.querySelectorAll(
    ".topbar, .run-status, .message, .block, .tool-input, .tool-output, .table-wrap, pre, "
    + ".markdown table, .composer, #message, .notice-bar");
  for (const card of cards) {
    if (card.hidden || card.offsetParent === null) continue;
    const box = card.getBoundingClientRect();
    const name = `${card.tagName.toLowerCase()}.${card.className}`;
    if (box.right > width + 0.5) faults.push(`${name} ends at ${box.right} > ${width}`);
    const parent = card.parentElement;
    const scrolls = getComputedStyle(card).overflowX !== "visible"; // wide content scrolls inside
    if (card.offsetWidth > parent.clientWidth + 0.5
        || (!scrolls && card.scrollWidth > parent.clientWidth + 0.5)) {
      faults.push(`${name} scrollWidth ${card.scrollWidth} > parent ${parent.clientWidth}`);
    }
  }
  return faults;
}"""

# A wide catalog-like result, long SQL and a wide Markdown table, rendered by the
# page's own view into the run, next to the real run's cards.
_WIDE = """async () => {
  const { renderRun } = await import("/static/view.js");
  const columns = Array.from({ length: 14 }, (_, i) => `a_rather_long_column_name_${i}`);
  const row = columns.map((_, i) => (i % 2 ? ["id", "integer"] : "x".repeat(30)));
  const sql = "SELECT " + columns.join(", ") + " FROM information_schema.columns WHERE "
    + "table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 3";
  const table = "| " + columns.join(" | ") + " |\\n|" + columns.map(() => "---:").join("|")
    + "|\\n| " + columns.map((_, i) => 1000 + i).join(" | ") + " |";
  const extra = document.createElement("div");
  extra.className = "run";
  document.getElementById("transcript").appendChild(extra);
  renderRun(extra, {
    status: "completed",
    blocks: [
      { kind: "reasoning", text: "word ".repeat(10) + "a".repeat(300) },
      { kind: "tool", name: "query_integration", input: { sql, integration_id: "x".repeat(120) },
        progress: "running query…\\n14 rows\\n", done: true, isError: false,
        output: { columns, rows: [row, row] } },
      { kind: "text", text: table + "\\n\\n```\\n" + sql + "\\n```" },
    ],
  }, "a".repeat(400));
}"""


async def _faults(page: Page) -> list[str]:
    faults: list[str] = await page.evaluate(_OVERFLOW)
    return faults


@pytest.mark.parametrize(("width", "height"), [(390, 844), (1280, 820)])
async def test_no_card_of_the_run_view_is_wider_than_the_screen(
    browser: Browser, system: System, width: int, height: int
) -> None:
    context = await browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    try:
        await page.goto(await system.login_link())
        await _ask(page, "Which customers spent the most?")
        await _finished_answer(page)
        assert await _faults(page) == []
        await page.evaluate(_WIDE)
        await page.locator(".run .tool").last.scroll_into_view_if_needed()
        await page.screenshot(path=SCREENSHOTS / f"layout-{width}.png")
        assert await _faults(page) == []
        # The collapsed sidebar still offers a new conversation on a phone.
        await expect(page.get_by_role("link", name="New conversation")).to_be_visible()
    finally:
        await context.close()


async def _signed_in(browser: Browser, system: System) -> Page:
    context = await browser.new_context(viewport={"width": 1280, "height": 820})
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    await page.goto(await system.login_link())
    return page


async def test_a_message_over_the_limit_is_refused_before_any_thread_exists(
    browser: Browser, system: System
) -> None:
    page = await _signed_in(browser, system)
    try:
        limit = int(await page.locator("body").get_attribute("data-max-message-bytes") or 0)
        assert limit == 32_768
        before = (await system.api.get("/api/threads")).json()["threads"]
        posts: list[str] = []
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
        # Multi-byte characters: the limit is in UTF-8 bytes, not characters.
        await page.get_by_role("textbox", name="Message").fill("é" * (limit // 2 + 1))
        await page.get_by_role("button", name="Send").click()
        await expect(page.get_by_role("alert")).to_contain_text("over the limit of 32,768")
        assert posts == []
        assert (await system.api.get("/api/threads")).json()["threads"] == before
        # Exactly at the limit it is sent.
        await page.get_by_role("textbox", name="Message").fill("é" * (limit // 2))
        await page.get_by_role("button", name="Send").click()
        await expect(page.get_by_role("status")).to_have_text("completed")
    finally:
        await page.context.close()


async def test_a_thread_left_empty_by_a_refused_run_is_reused(
    browser: Browser, system: System
) -> None:
    page = await _signed_in(browser, system)
    try:
        # The server refuses the run (a route answering 503 once, as a broker
        # shutting down does): the thread it created stays empty.
        async def refuse(route):  # type: ignore[no-untyped-def]
            await route.fulfill(
                status=503,
                json={"error": {"code": "shutting_down", "message": "shutting down"}},
            )

        await page.route("**/api/threads/*/runs", refuse)
        await page.get_by_role("textbox", name="Message").fill("How many orders are there?")
        await page.get_by_role("button", name="Send").click()
        await expect(page.get_by_role("alert")).to_have_text("shutting down")
        await page.unroute("**/api/threads/*/runs", refuse)
        threads = (await system.api.get("/api/threads")).json()["threads"]
        await page.get_by_role("button", name="Send").click()
        await expect(page.get_by_role("status")).to_have_text("completed")
        after = (await system.api.get("/api/threads")).json()["threads"]
        assert [t["thread_id"] for t in after] == [t["thread_id"] for t in threads]
        assert page.url.endswith(threads[0]["thread_id"])
    finally:
        await page.context.close()


async def test_result_numbers_keep_their_decimals_and_markdown_columns_their_alignment(
    browser: Browser, system: System
) -> None:
    page = await _signed_in(browser, system)
    try:
        await _ask(page, "Which customers spent the most?")
        await _finished_answer(page)
        cells = await page.locator("#run table.rows tbody td.num").all_inner_texts()
        assert cells and all(len(cell.rsplit(".", 1)[1]) == 2 for cell in cells), cells
        formats = await page.evaluate(
            """async () => {
              const { columnFormats, formatCell } = await import("/static/view.js");
              const rows = [[1103.7, "12345678901234567890.10", null, "a"],
                            [1170.22, "1.5", 3, "2"]];
              const formats = columnFormats(["x", "y", "z", "w"], rows);
              return rows.map((row) => row.map((cell, i) => formatCell(cell, formats[i])))
                .concat([formats.map((f) => String(f.numeric))]);
            }"""
        )
        assert formats == [
            ["1103.70", "12345678901234567890.10", "", "a"],
            ["1170.22", "1.5", "3", "2"],
            ["true", "true", "true", "false"],
        ]
        html = await page.evaluate(
            """async () => (await import("/static/markdown.js"))
              .renderMarkdown("| a | b | c |\\n|:--|--:|:-:|\\n| x | 1.50 | y |")"""
        )
        assert 'class="align-left"' in html and 'class="align-right"' in html
        assert 'class="align-center"' in html and "align=" not in html
    finally:
        await page.context.close()


_HOSTILE = (
    'Total\n\n<img src=x onerror="window.pwned = 1">\n\n![chart](https://example.com/c.png)\n\n'
    '<p style="color:red" onclick="x()">styled</p>\n\n<svg><animate onbegin="window.pwned=1" '
    "attributeName=x dur=1s></svg>\n\n<script>window.pwned = 1</script>"
)


async def test_a_hostile_answer_sanitizes_without_csp_reports_or_remote_images(
    browser: Browser, system: System
) -> None:
    page = await _signed_in(browser, system)
    try:
        console: list[str] = []
        requests: list[str] = []
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: requests.append(r.url))
        await page.evaluate(
            """() => { window.reports = [];
              document.addEventListener("securitypolicyviolation", (e) =>
                window.reports.push(e.violatedDirective)); }"""
        )
        html = await page.evaluate(
            """async (text) => {
              const { renderMarkdown } = await import("/static/markdown.js");
              const html = renderMarkdown(text);
              document.getElementById("run").innerHTML = html;
              await new Promise((resolve) => setTimeout(resolve, 300));
              return html;
            }""",
            _HOSTILE,
        )
        for marker in ("<img", "onerror", "style=", "onclick", "onbegin", "<script"):
            assert marker not in html.lower(), html
        assert "[image: chart]" in html
        assert await page.evaluate("window.reports") == []
        assert await page.evaluate("window.pwned") is None
        assert console == []
        assert not [url for url in requests if "example.com" in url or url.endswith("/x")]
    finally:
        await page.context.close()


async def test_the_icon_is_served_and_linked(browser: Browser, system: System) -> None:
    page = await _signed_in(browser, system)
    try:
        icon = await page.locator('link[rel="icon"]').get_attribute("href")
        for path in (icon, "/favicon.ico"):
            answer = await system.api.get(str(path))
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("image/svg+xml")
            assert answer.text.startswith("<svg")
    finally:
        await page.context.close()
