"""A run rendered in the terminal with rich: what `broker watch` and `broker ask` show.

`RunView` folds typed events into blocks (pure, no I/O); `render()` draws
them: reasoning dimmed, each tool call a panel (rows as a table), the answer
as Markdown, and a status line (connecting / live / reconnecting / completed /
failed / cancelled). `follow()` drives a rich `Live` display from
`BrokerClient.events()`.

The live display is transient and shows only the bottom of the view that
fits the screen; when the run ends it is cleared and the whole view is
printed once. So the final screen (and a pipe, where rich draws no live
frames) holds the complete transcript exactly once, however often the
connection broke. `--plain` writes each event as one NDJSON line instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.segment import Segment
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from broker.client import (
    AuthenticationError,
    BadRequestError,
    BrokerClient,
    ClientError,
    ConnectionState,
    NotFoundError,
)
from broker.web.logs import configure_logging
from models.events import (
    Cancelled,
    Complete,
    ErrorEvent,
    ReasoningText,
    StoredEvent,
    ToolResult,
    ToolStream,
    ToolUse,
)
from models.events import (
    Text as TextEvent,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "RunView",
    "ToolCall",
    "ask",
    "follow",
    "render",
    "run_command",
]

EXIT_OK = 0
EXIT_FAILED = 1
"""`follow()` exits 0 when the run completed, 1 when it failed or was cancelled."""


@dataclass
class ToolCall:
    tool_use_id: str
    name: str
    input: dict[str, Any]
    progress: str = ""
    output: Any = None
    is_error: bool = False
    done: bool = False


@dataclass
class _Prose:
    kind: str  # "reasoning" or "answer"
    text: str


@dataclass
class RunView:
    """What the terminal shows of one run, folded from its events in order."""

    blocks: list[_Prose | ToolCall] = field(default_factory=list)
    status: str = "connecting"
    error: str | None = None
    seen_answer: bool = False

    @property
    def finished(self) -> bool:
        return self.status in {"completed", "failed", "cancelled"}

    @property
    def answer(self) -> str:
        return "".join(b.text for b in self.blocks if isinstance(b, _Prose) and b.kind == "answer")

    def set_connection(self, state: ConnectionState) -> None:
        if not self.finished:
            self.status = state

    def apply(self, stored: StoredEvent) -> None:
        event = stored.event
        if isinstance(event, ReasoningText):
            self._append("reasoning", event.data.text)
        elif isinstance(event, TextEvent):
            self.seen_answer = True
            self._append("answer", event.data.text)
        elif isinstance(event, ToolUse):
            data = event.data
            self.blocks.append(ToolCall(data.tool_use_id, data.name, dict(data.input)))
        elif isinstance(event, ToolStream):
            call = self._tool(event.data.tool_use_id)
            if call is not None:
                call.progress = _progress_line(call.progress, event.data.text)
        elif isinstance(event, ToolResult):
            call = self._tool(event.data.tool_use_id)
            if call is not None:
                call.output, call.is_error, call.done = (
                    event.data.output,
                    event.data.is_error,
                    True,
                )
        elif isinstance(event, Complete):
            self.status = "completed"
            if not self.seen_answer:  # raw events gone (retention): the kept transcript
                replies = [m for m in event.data.new_messages if m.role == "assistant"]
                if replies:
                    self._append("answer", replies[-1].content)
        elif isinstance(event, ErrorEvent):
            self.status, self.error = "failed", f"{event.data.error_type}: {event.data.error}"
        elif isinstance(event, Cancelled):
            self.status = "cancelled"
            self.error = f"cancelled by {event.data.by}" if event.data.by else None

    def _append(self, kind: str, text: str) -> None:
        last = self.blocks[-1] if self.blocks else None
        if isinstance(last, _Prose) and last.kind == kind:
            last.text += text
        else:
            self.blocks.append(_Prose(kind, text))

    def _tool(self, tool_use_id: str) -> ToolCall | None:
        for block in reversed(self.blocks):
            if isinstance(block, ToolCall) and block.tool_use_id == tool_use_id:
                return block
        return None


_STATUS_STYLE = {
    "connecting": "yellow",
    "live": "green",
    "reconnecting": "yellow",
    "completed": "bold green",
    "failed": "bold red",
    "cancelled": "bold yellow",
}


def render(view: RunView) -> RenderableType:
    """The whole view: its blocks in order, then the status line."""
    parts: list[RenderableType] = [_block(block) for block in view.blocks]
    status = Text(f"● {view.status}", style=_STATUS_STYLE.get(view.status, ""))
    if view.error:
        status.append(f"  {view.error}", style="red")
    parts.append(status)
    return Group(*parts)


def _block(block: _Prose | ToolCall) -> RenderableType:
    if isinstance(block, ToolCall):
        return _tool_panel(block)
    if block.kind == "reasoning":
        return Text(block.text, style="dim italic")
    return Markdown(block.text)


def _progress_line(progress: str, text: str) -> str:
    """Each progress message of a tool on its own line ("running query…", then "1 row")."""
    if progress and not progress.endswith("\n") and not text.startswith("\n"):
        progress += "\n"
    return progress + text


def json_cell(value: Any) -> str:
    """A JSON value as one compact line: a string as is, anything else as JSON (`null`)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


_SYNTAX_THEME = "ansi_dark"


def _tool_input(tool_input: dict[str, Any]) -> list[RenderableType]:
    """A query's SQL as a highlighted block and its other arguments as `key: value`;
    any other input as indented JSON."""
    sql = tool_input.get("sql")
    if not isinstance(sql, str):
        dumped = json.dumps(tool_input, ensure_ascii=False, indent=2)
        return [Syntax(dumped, "json", theme=_SYNTAX_THEME, word_wrap=True)]
    parts: list[RenderableType] = [Syntax(sql.strip(), "sql", theme=_SYNTAX_THEME, word_wrap=True)]
    rest = [f"{key}: {json_cell(value)}" for key, value in tool_input.items() if key != "sql"]
    if rest:
        parts.append(Text("  ".join(rest), style="dim"))
    return parts


def _tool_panel(call: ToolCall) -> Panel:
    body: list[RenderableType] = _tool_input(call.input)
    if call.progress:
        body.append(Text(call.progress, style="dim"))
    if call.done:
        body.append(_output(call.output, call.is_error))
    title = f"tool {call.name}" + ("" if call.done else " …")
    return Panel(Group(*body), title=title, title_align="left", border_style="blue")


def _output(output: Any, is_error: bool) -> RenderableType:
    """A `{"columns", "rows"}` result as a table; anything else as its JSON."""
    if (
        not is_error
        and isinstance(output, dict)
        and isinstance(output.get("columns"), list)
        and isinstance(output.get("rows"), list)
    ):
        rows = [row if isinstance(row, list) else [row] for row in output["rows"]]
        table = Table()
        for index, column in enumerate(output["columns"]):
            cells = [row[index] for row in rows if index < len(row) and row[index] is not None]
            numeric = bool(cells) and all(_is_number(cell) for cell in cells)
            table.add_column(json_cell(column), justify="right" if numeric else "left")
        for row in rows:
            table.add_row(*(json_cell(cell) for cell in row))
        return table
    text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    return Text(text, style="red" if is_error else "")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Bottom:
    """The last lines of a renderable that fit the screen: the live edge of a long answer."""

    def __init__(self, inner: RenderableType) -> None:
        self.inner = inner

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(self.inner, options.update(height=None), pad=False)
        room = max(1, (options.height or console.size.height) - 1)
        for line in lines[-room:]:
            yield from line
            yield Segment.line()


async def follow(
    client: BrokerClient,
    run_id: str,
    cursor: str | None = None,
    *,
    plain: bool = False,
    console: Console | None = None,
    out: TextIO | None = None,
) -> int:
    """Follow a run to its end; return `EXIT_OK` or `EXIT_FAILED`.

    `plain`: one JSON object per event on `out` (stdout), flushed per line.
    Client errors (`ClientError` and subclasses) propagate to the caller.
    """
    view = RunView()
    if plain:
        stream = out or sys.stdout
        async for stored in client.events(run_id, cursor):
            view.apply(stored)
            stream.write(json.dumps(stored.to_wire(), ensure_ascii=False) + "\n")
            stream.flush()
        return await _exit_code(client, run_id, view)
    console = console or Console()
    live = Live(
        get_renderable=lambda: _Bottom(render(view)),
        console=console,
        transient=True,
        refresh_per_second=8,
        redirect_stdout=False,
        redirect_stderr=False,
    )
    with live:
        async for stored in client.events(run_id, cursor, on_state=view.set_connection):
            view.apply(stored)
    console.print(render(view))
    return await _exit_code(client, run_id, view)


async def _exit_code(client: BrokerClient, run_id: str, view: RunView) -> int:
    """`EXIT_OK` for a completed run; asked of the broker when nothing was due after the cursor."""
    status = view.status if view.finished else (await client.run(run_id)).status
    return EXIT_OK if status == "completed" else EXIT_FAILED


async def ask(
    client: BrokerClient,
    message: str,
    thread_id: str | None = None,
    *,
    plain: bool = False,
    console: Console | None = None,
) -> int:
    """Start a run on `thread_id` (a new thread if None) and `follow()` it from its start."""
    if thread_id is None:
        thread_id = (await client.create_thread(title=message[:80])).thread_id
    started = await client.start_run(thread_id, message)
    console = console or Console()
    if not plain:
        console.print(f"thread {started.thread_id} · run {started.run_id}", style="dim")
    return await follow(client, started.run_id, plain=plain, console=console)


def run_command(
    url: str,
    token: str | None,
    work: Callable[[BrokerClient], Awaitable[int]],
    *,
    log_level: str = "warning",
) -> int:
    """Run one CLI command against the broker; return its exit code, errors as one clear line.

    2: no or refused token, unknown run or thread, bad input (nothing to retry);
    1: the broker could not be reached (after retries), or the run failed;
    130: Ctrl-C (the live display is closed first, no traceback);
    0 also when the reader of a `--plain` pipe goes away.
    """
    # Log lines written into a live display would break its redraw: only warnings, on
    # stderr; reconnects are shown on the status line instead.
    configure_logging(log_level)
    err = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)
    if not token:
        err.print(
            "error: no token: pass --token or set BROKER_TOKEN"
            " (`broker token --workspace default` prints one)"
        )
        return 2

    async def main() -> int:
        async with BrokerClient(url, token) as client:
            return await work(client)

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except BrokenPipeError:
        # The reader of a pipe left (`broker watch --plain ... | head`): not an error.
        # Point stdout at /dev/null so the interpreter's final flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except AuthenticationError as exc:
        err.print(
            f"error: the broker at {url} refused the token: {exc.message}. "
            "Pass a valid one with --token or BROKER_TOKEN (`broker token --workspace W`)."
        )
        return 2
    except (NotFoundError, BadRequestError) as exc:
        err.print(f"error: {exc}")
        return 2
    except ClientError as exc:
        err.print(f"error: {exc}")
        return 1
