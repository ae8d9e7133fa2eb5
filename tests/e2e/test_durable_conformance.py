"""The public Durable Streams conformance suite against a real broker.

The pinned suite (tests/node/package.json) runs under vitest against a broker
on uvicorn and the test PostgreSQL, with anonymous `/ds/` requests mapped to a
workspace (the suite sends no credentials). tests/node/known_failures.txt
lists, one per line, the tests this broker does not pass: two long-polls at
`offset=now` that wait past vitest's 5 s for the 30 s long-poll (the reference
server fails them too), and two property tests that need about 2,000 appends in
5 s, more than a durable commit per append allows on a small machine. Any other
failure fails this test; listed ones that depend on timing may pass.

vitest's per-test timeout is raised from 5 s to 20 s here (a runner setting, not
an assertion of the suite): the property tests send thousands of requests per
test, and on a loaded 2-core machine a durable commit per append can take them
past 5 s. Run with its default 5 s, two of them time out (known_failures.txt).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from broker.web.settings import Settings
from tests.e2e.node import node_dir
from tests.e2e.test_subscribe_support import running_broker

pytestmark = pytest.mark.slow


def _outcomes(report: dict[str, object]) -> dict[str, str]:
    """`describe > ... > test` -> passed / failed / skipped, from vitest's JSON report."""
    outcomes: dict[str, str] = {}
    for suite in report["testResults"]:  # type: ignore[attr-defined]
        for case in suite["assertionResults"]:
            name = " > ".join([*case["ancestorTitles"], case["title"]])
            outcomes[name] = case["status"]
    return outcomes


async def test_conformance_suite_passes_but_for_the_known_list(
    settings: Settings, tmp_path: Path
) -> None:
    directory = node_dir()
    known = set((directory / "known_failures.txt").read_text().splitlines()) - {""}
    report_path = tmp_path / "report.json"
    async with running_broker(settings, ds_anonymous_workspace="conformance") as (_, client):
        base = f"{str(client.base_url).rstrip('/')}/ds"
        suite = await asyncio.create_subprocess_exec(
            "npx",
            "--no-install",
            "vitest",
            "run",
            "conformance.test.mjs",
            "--reporter=json",
            f"--outputFile={report_path}",
            cwd=directory,
            env={**os.environ, "CONFORMANCE_TEST_URL": base},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.wait_for(suite.wait(), 900)
    outcomes = _outcomes(json.loads(report_path.read_text()))
    failed = {name for name, status in outcomes.items() if status == "failed"}
    passed = sum(status == "passed" for status in outcomes.values())
    print(f"conformance: {passed} passed, {len(failed)} failed of {len(outcomes)}")
    assert len(outcomes) == 338
    assert failed - known == set(), "new conformance failures"
    assert passed >= len(outcomes) - len(known) - 6  # 6: the suite's own skips
