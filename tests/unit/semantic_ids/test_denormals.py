"""Denormal floats are flushed to zero on every CPU thread, so tiny gradients cannot slow training 250x."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from semantic_ids.causal_lm import flush_denormals

ROOT = Path(__file__).resolve().parents[3]
# Each product is 1e-40, below float32's normal range: a denormal unless the CPU flushes it to zero.
SCRIPT = """
import torch
from semantic_ids.causal_lm import flush_denormals
if {flush}:
    assert flush_denormals()
torch.set_num_threads(2)
a, b = torch.full((256, 64), 1e-20), torch.full((64, 256), 1e-20)
print(int((torch.mm(a, b) != 0).sum()))
"""


def _nonzero_results(flush: bool) -> int:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(flush=flush)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.split()[-1])


def test_flushing_zeroes_denormal_products_on_both_threads() -> None:
    if not flush_denormals():
        pytest.skip("this CPU cannot flush denormals")
    assert _nonzero_results(flush=False) > 0  # denormal results: what made the sgemm slow
    assert _nonzero_results(flush=True) == 0  # every row, the worker thread's too
