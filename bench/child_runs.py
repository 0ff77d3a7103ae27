"""What the size-by-size benchmarks share: each size (or library) measured in a child process of its own, so
its peak memory is its own, and the header every result file carries.

Used by ``bench.scale_ids``, ``bench.scale_service`` and ``bench.dense_ann``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def child_row(
    command: Sequence[str], what: str, env: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """Run ``command`` (a child that prints its row as JSON last) and return that row, printed; None, with
    the child's error output on stderr, when it failed."""
    done = subprocess.run(list(command), capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        print(f"error: {what} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
        return None
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)
    return row


def run_header(module: str, argv: Sequence[str] | None) -> dict[str, Any]:
    """The command line that made a result, when, and on what."""
    return {
        "command": f"python -m {module} " + " ".join(argv if argv is not None else sys.argv[1:]),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }


def write_result(out: Path, result: Mapping[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
