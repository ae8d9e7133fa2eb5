"""The page in a real headless Chromium against the real system: broker, agent
service (scripted model), demo integration and PostgreSQL, all over loopback.

Each test logs in through a one-time link, as a user of `broker up` does, and
compares what the page shows with the transcript the broker persisted.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from broker.store.postgres import Store
from broker.web.login import LoginCodes, login_url
from broker.web.settings import Settings
from models.ids import WorkspaceId
from tests.database import TestDatabases
from tests.e2e.browser import SCREENSHOTS, browser
from tests.e2e.whole_system import whole_system

__all__ = ["browser"]  # the fixture, re-exported for pytest

# A breakdown answers with a table of ~two dozen rows: long enough to act on mid-run.
QUESTION = "Show revenue by month"
TIMEOUT_MS = 30_000
expect.set_options(timeout=TIMEOUT_MS)


@dataclass
class System:
    base: str
    store: Store
    workspace_id: WorkspaceId
    api: httpx.AsyncClient

    async def login_link(self) -> str:
        return login_url(self.base, await LoginCodes(self.store).issue(self.workspace_id))

    async def wait_for_progress(self, thread_id: str, events: int) -> None:
        """Wait until the thread's run stored `events` more events, or finished."""
        run_id = (await self.api.get(f"/api/threads/{thread_id}")).json()["latest_run"]["run_id"]
        start = (await self.api.get(f"/api/runs/{run_id}")).json()["last_seq"]
        while True:
            run = (await self.api.get(f"/api/runs/{run_id}")).json()
            if run["last_seq"] >= start + events or run["status"] != "streaming":
                return
            await asyncio.sleep(0.05)

    async def persisted_answer(self, thread_id: str) -> str:
        answer = await self.api.get(f"/api/threads/{thread_id}/messages")
        messages = answer.json()["messages"]
        return "".join(m["content"] for m in messages if m["role"] == "assistant")


@pytest.fixture
async def system(
    settings: Settings, store: Store, databases: TestDatabases
) -> AsyncIterator[System]:
    # Slow enough that a reload, a second tab or an outage lands mid-run.
    async with whole_system(settings, store, databases, name="page", delay_ms=60) as system:
        yield System(system.base, store, system.workspace_id, system.api)


async def _signed_in(browser: Browser, system: System) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 820})
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    await page.goto(await system.login_link())
    await expect(page).to_have_url(f"{system.base}/")
    return context, page


async def _ask(page: Page, question: str = QUESTION) -> str:
    """Send a message from a fresh page; the id of the thread it created."""
    await page.get_by_role("textbox", name="Message").fill(question)
    await page.get_by_role("button", name="Send").click()
    await expect(page).to_have_url(re.compile(r"/threads/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


async def _answer_text(page: Page) -> str:
    return await page.locator("#run .answer").inner_text()


async def _some_answer_shown(page: Page) -> None:
    """Wait until part of the answer is on screen while the run is still live."""
    await expect(page.locator("#run .answer")).not_to_be_empty()
    await expect(page.get_by_role("status")).to_have_text("live")


async def _finished_answer(page: Page) -> str:
    await expect(page.get_by_role("status")).to_have_text("completed")
    return await page.locator("#run .answer").evaluate("node => node.dataset.source")


async def test_login_link_signs_in_once_and_sets_an_httponly_cookie(
    browser: Browser, system: System
) -> None:
    context, page = await _signed_in(browser, system)
    await expect(page.get_by_role("textbox", name="Message")).to_be_visible()
    await expect(page.get_by_role("button", name="Send")).to_be_visible()
    await expect(page.locator("#run-status")).to_be_hidden()  # no run, no status
    await expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    cookies = await context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
        ("broker_session", True, "Strict")
    ]
    assert await page.evaluate("document.cookie") == ""
    await page.screenshot(path=SCREENSHOTS / "home.png")

    link = await system.login_link()
    await page.goto(link)
    other = await browser.new_context()
    try:
        refused = await (await other.new_page()).goto(link)
        assert refused is not None and refused.status == 401
        unsigned = await (await other.new_page()).goto(f"{system.base}/")
        assert unsigned is not None and unsigned.status == 401
    finally:
        await other.close()
        await context.close()


async def test_a_message_streams_its_answer_in_as_rendered_markdown(
    browser: Browser, system: System
) -> None:
    context, page = await _signed_in(browser, system)
    try:
        thread_id = await _ask(page)
        await _some_answer_shown(page)
        partial = await _answer_text(page)
        await expect(page.get_by_role("button", name="Stop")).to_be_visible()
        await page.screenshot(path=SCREENSHOTS / "streaming.png")

        answer = await _finished_answer(page)
        assert answer == await system.persisted_answer(thread_id)
        assert len(partial) < len(await _answer_text(page)), "the answer did not stream in"
        await expect(page.get_by_role("button", name="Stop")).to_be_hidden()
        # The tool call shows its input and its rows as a table; reasoning is collapsible.
        await expect(page.locator("#run .tool pre.code").first).to_contain_text("SELECT")
        await expect(page.locator("#run .tool table.rows").first).to_be_visible()
        reasoning = page.locator("#run details.reasoning").first
        await reasoning.locator("summary").click()
        assert await reasoning.evaluate("node => node.open") is False
        # The thread appears in the sidebar.
        await expect(page.get_by_role("link", name=QUESTION)).to_be_visible()
        await page.screenshot(path=SCREENSHOTS / "completed.png", full_page=True)
    finally:
        await context.close()


_FOLLOW_WITH_EVENTSOURCE = """async ([runId, cursor]) => {
  const { followRunWithEventSource } = await import("/static/client.js");
  const seqs = [];
  const run = followRunWithEventSource(runId, { cursor, onEvent: (e) => seqs.push(e.seq) });
  await run.done;
  return seqs;
}"""


async def test_the_client_also_follows_a_run_over_the_browsers_event_source(
    browser: Browser, system: System
) -> None:
    context, page = await _signed_in(browser, system)
    try:
        thread_id = await _ask(page)
        run_id = (await system.api.get(f"/api/threads/{thread_id}")).json()["latest_run"]["run_id"]
        live = await page.evaluate(_FOLLOW_WITH_EVENTSOURCE, [run_id, None])
        last_seq = (await system.api.get(f"/api/runs/{run_id}")).json()["last_seq"]
        assert live == list(range(1, last_seq + 1))
        resumed = await page.evaluate(_FOLLOW_WITH_EVENTSOURCE, [run_id, 5])
        assert resumed == list(range(6, last_seq + 1))
    finally:
        await context.close()


async def test_reload_mid_run_replays_and_ends_with_the_same_transcript(
    browser: Browser, system: System
) -> None:
    context, page = await _signed_in(browser, system)
    try:
        thread_id = await _ask(page)
        await _some_answer_shown(page)
        await page.reload()
        await expect(page.get_by_role("status")).to_have_text("live")
        reloaded = await _finished_answer(page)
        reloaded_view = await page.locator("#run").text_content()

        fresh = await context.new_page()
        await fresh.goto(f"{system.base}/threads/{thread_id}")
        assert await _finished_answer(fresh) == reloaded
        assert await fresh.locator("#run").text_content() == reloaded_view
        assert reloaded == await system.persisted_answer(thread_id)
    finally:
        await context.close()


async def test_two_tabs_on_one_thread_show_the_same_run_live_and_end_identical(
    browser: Browser, system: System
) -> None:
    context, first = await _signed_in(browser, system)
    try:
        thread_id = await _ask(first)
        second = await context.new_page()
        await second.emulate_media(color_scheme="dark")  # and the dark theme gets looked at
        await second.goto(f"{system.base}/threads/{thread_id}")
        await _some_answer_shown(second)
        await second.screenshot(path=SCREENSHOTS / "second-tab.png")
        answers = [await _finished_answer(first), await _finished_answer(second)]
        assert answers[0] == answers[1] == await system.persisted_answer(thread_id)
        views = [await tab.locator("#run").text_content() for tab in (first, second)]
        assert views[0] == views[1]
    finally:
        await context.close()


async def test_going_offline_mid_run_and_back_loses_and_repeats_nothing(
    browser: Browser, system: System
) -> None:
    context, page = await _signed_in(browser, system)
    try:
        thread_id = await _ask(page)
        await _some_answer_shown(page)
        await context.set_offline(True)
        await expect(page.get_by_role("status")).to_have_text("reconnecting")
        seen_offline = await page.locator("#run .answer").inner_text()
        # Let the run go on without this viewer: events it must catch up on later.
        await system.wait_for_progress(thread_id, events=5)
        await page.screenshot(path=SCREENSHOTS / "reconnecting.png")
        assert await page.locator("#run .answer").inner_text() == seen_offline
        await context.set_offline(False)
        answer = await _finished_answer(page)
        assert answer == await system.persisted_answer(thread_id)
        assert await _answer_text(page) == await page.locator("#run .answer").inner_text()
    finally:
        await context.close()


async def test_stop_ends_the_run_cancelled(browser: Browser, system: System) -> None:
    context, page = await _signed_in(browser, system)
    try:
        await _ask(page, "Which customers spent the most?")
        await expect(page.get_by_role("status")).to_have_text("live")
        async with page.expect_response(lambda r: r.url.endswith("/cancel")) as answer:
            await page.get_by_role("button", name="Stop").click()
        response = await answer.value
        assert response.status in (200, 202), f"POST …/cancel answered {response.status}"
        await expect(page.get_by_role("status")).to_have_text("cancelled", timeout=10_000)
        await page.screenshot(path=SCREENSHOTS / "cancelled.png")
    finally:
        await context.close()


_RENDER = """async (text) => {
  const { renderMarkdown } = await import("/static/markdown.js");
  return renderMarkdown(text);
}"""


_HOSTILE = [
    "<script>window.pwned = 1</script>",
    '<img src=x onerror="window.pwned = 1">',
    "[click](javascript:window.pwned=1)",
    '<iframe srcdoc="<script>parent.pwned=1</script>"></iframe>',
    '<svg><animate onbegin="window.pwned=1" attributeName=x dur=1s></svg>',
]


async def test_the_answers_markdown_is_rendered_and_sanitized(
    browser: Browser, system: System
) -> None:
    context, page = await _signed_in(browser, system)
    try:
        for hostile in _HOSTILE:
            html = await page.evaluate(_RENDER, f"**Total:** 400 orders\n\n{hostile}")
            assert "<strong>Total:</strong> 400 orders" in html
            for marker in ("<script", "onerror", "javascript:", "<iframe", "onbegin"):
                assert marker not in html.lower(), html
            await page.evaluate(
                "html => { document.getElementById('run').innerHTML = html; }", html
            )
            assert await page.evaluate("window.pwned") is None
    finally:
        await context.close()
