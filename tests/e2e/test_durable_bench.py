"""The same workload against our /ds/ and the Node reference server, side by side.

`tests/node/bench.mjs` measures appends per second (8 writers, one stream
each) and SSE delivery latency (append -> `event: data` at a live reader)
against both in one run. This test runs a small workload and checks that
every append and every message was seen on both; docs/BENCHMARKS.md has the
figures of a full run (the command is there).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

from broker.web.settings import Settings
from tests.e2e.node import node_dir
from tests.e2e.test_subscribe_support import running_broker
from tests.servers import free_port

pytestmark = pytest.mark.slow


async def test_same_workload_runs_against_the_broker_and_the_reference(
    settings: Settings,
) -> None:
    directory = node_dir()
    port = free_port()
    reference = await asyncio.create_subprocess_exec(
        "node",
        "reference-server.mjs",
        cwd=directory,
        env={**os.environ, "PORT": str(port)},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert reference.stdout is not None
        assert b"ready" in await asyncio.wait_for(reference.stdout.readline(), 30)
        async with running_broker(settings, ds_anonymous_workspace="bench") as (_, client):
            broker = f"{str(client.base_url).rstrip('/')}/ds"
            bench = await asyncio.create_subprocess_exec(
                "node",
                "bench.mjs",
                f"reference=http://127.0.0.1:{port}",
                f"broker={broker}",
                cwd=directory,
                env={**os.environ, "APPENDS": "160", "WRITERS": "4", "SSE_MESSAGES": "30"},
                stdout=asyncio.subprocess.PIPE,
                stderr=sys.stderr,
            )
            out, _ = await asyncio.wait_for(bench.communicate(), 300)
        assert bench.returncode == 0
    finally:
        reference.terminate()
        await reference.wait()
    results = json.loads(out)
    print(json.dumps(results))
    for name in ("reference", "broker"):
        assert results[name]["appendsPerSecond"] > 0
        latency = results[name]["sseLatencyMs"]
        assert 0 <= latency["p50"] <= latency["p99"] <= latency["max"]
