"""The Node side of the Durable Streams tests: the pinned npm packages in tests/node.

`node_dir()` installs them once with npm (`npm install` of tests/node/package.json:
the official client, the reference server and the public conformance suite).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

__all__ = ["node_dir"]

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


def node_dir() -> Path:
    """tests/node with its node_modules installed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("node and npm are required for the Durable Streams tests")
    if not (NODE_DIR / "node_modules" / "@durable-streams" / "client").exists():
        subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            check=True,
            timeout=900,
        )
    return NODE_DIR
