"""Denormal floats and CPU matrix products, side by side in one run, each case in a fresh process.

    .venv/bin/python -m bench.denormals

One fine-tuning-sized product (1280 x 576 @ 576 x 1536, fp32) on 2 threads: with ordinary values, and
with values whose products fall below float32's normal range (~1e-38, as tiny gradients do late in
training), each with denormals kept, flushed the way ``semantic_ids.causal_lm.flush_denormals`` does
(before the OpenMP workers start), and flushed only after they started (so only the calling thread
flushes). Prints ms per product and the ratio to the ordinary one; writes ``bench/results/denormals.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path("bench/results/denormals.json")
CASE = """
import time, torch
from semantic_ids.causal_lm import flush_denormals
if "{flush}" == "first":
    flush_denormals()
torch.set_num_threads(2)
scale = {scale}
a, b = torch.randn(1280, 576) * scale, torch.randn(576, 1536) * scale
torch.mm(a, b)  # starts the thread pool
if "{flush}" == "late":
    flush_denormals()
started = time.perf_counter()
for _ in range({repeats}):
    torch.mm(a, b)
print((time.perf_counter() - started) / {repeats} * 1000)
"""
CASES = (  # (name, scale, flush, repeats)
    ("ordinary values", 1.0, "no", 20),
    ("tiny values, denormals kept", 1e-20, "no", 2),
    ("tiny values, flushed after the pool started", 1e-20, "late", 2),
    ("tiny values, flushed first (as the code does)", 1e-20, "first", 20),
)


def milliseconds(scale: float, flush: str, repeats: int) -> float:
    script = CASE.format(flush=flush, scale=scale, repeats=repeats)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def main() -> int:
    rows = [
        {"case": name, "ms": round(milliseconds(scale, flush, repeats), 1)}
        for name, scale, flush, repeats in CASES
    ]
    base = rows[0]["ms"]
    print(f"{'case':<48} {'ms':>9} {'x ordinary':>11}")
    for row in rows:
        row["x_ordinary"] = round(row["ms"] / base, 1)
        print(f"{row['case']:<48} {row['ms']:>9} {row['x_ordinary']:>11}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"command": "python -m bench.denormals", "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
