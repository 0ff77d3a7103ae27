"""How a top-layers training step computes on this machine: bf16 autocast, fp32, or fp32 with the frozen
layers' weights stored in fp16 (fbgemm's fp16-weight GEMM: fp32 compute, weights converted in registers).

Which is fastest depends on the CPU more than its flags say (bench/HISTORY.md): bf16 autocast trained
2.6x as fast as fp32 on a Xeon with AMX and 0.58x as fast on a Xeon with AVX512-BF16 but its AMX tiles
hidden; on a 2-core AMD EPYC a bf16 matrix product ran 4x as fast as MKL's fp32 one (which takes AVX2
code paths there) and fbgemm's fp16-weight product 2x. So ``auto`` on a CPU times one training step of
each candidate on a batch of the training shape and keeps the fastest: seconds of the time budget, never
a slower run. A CPU without bf16 instructions emulates them: one bf16 step of the demo took 46 s against
1.7 in fp32 on an AVX2-only EPYC, and its three probe steps 2.3 minutes of the demo's training time, so a
candidate whose matrix product alone is ``SKIP_SLOWER_THAN`` times fp32's is left out before its steps
are timed. CUDA takes bf16 (where supported) without a probe; an explicit precision is taken as given.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from semantic_ids.causal_lm import compute_dtype, cpu_runs_fp16_weights
from training.llm.batches import IGNORE
from training.llm.top_layers import TopLayersModel

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32", "fp32-frozen-fp16")
PROBE_WIDTH = 20  # tokens: the demo's queries are ~17 tokens plus the ID
# bf16 is not timed as a step where a (256, hidden) x (hidden, 3 hidden) product takes this many times
# fp32's: emulated bf16 (AVX2-only EPYC) 60x fp32's product and 27x its step; the CPUs with bf16
# instructions measured here had a bf16 step within 2x of fp32's either way.
SKIP_SLOWER_THAN = 4.0


@dataclass(frozen=True)
class StepPrecision:
    name: str  # one of PRECISIONS but auto
    dtype: torch.dtype  # what autocast computes in
    frozen_fp16: bool  # the frozen layers over fp16-stored linear weights


_CANDIDATES = {
    "bf16": StepPrecision("bf16", torch.bfloat16, False),
    "fp32": StepPrecision("fp32", torch.float32, False),
    "fp32-frozen-fp16": StepPrecision("fp32-frozen-fp16", torch.float32, True),
}


def choose_step_precision(
    model: TopLayersModel, requested: str, device: torch.device, batch_size: int
) -> StepPrecision:
    """The precision to train in; the frozen fp16 copy is stored on ``model`` when it is chosen."""
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}: use {', '.join(PRECISIONS)}")
    if requested == "fp32-frozen-fp16" and device.type != "cpu":
        raise ValueError(f"precision fp32-frozen-fp16 runs on the CPU only, not on {device.type}")
    if requested == "auto" and device.type == "cpu":
        chosen = _fastest(model, batch_size, device)
    elif requested == "auto":
        chosen = "bf16" if compute_dtype(device) == torch.bfloat16 else "fp32"
    else:
        chosen = requested
    if _CANDIDATES[chosen].frozen_fp16:
        model.store_frozen_fp16()
    return _CANDIDATES[chosen]


def _fastest(
    model: TopLayersModel,
    batch_size: int,
    device: torch.device,
    *,
    skip_slower_than: float = SKIP_SLOWER_THAN,
) -> str:
    names = ["fp32", "bf16"] + (["fp32-frozen-fp16"] if cpu_runs_fp16_weights() else [])
    hidden = model.code_rows.shape[1]
    product = {dtype: _product_seconds(hidden, dtype) for dtype in (torch.float32, torch.bfloat16)}
    ratio = product[torch.bfloat16] / product[torch.float32]
    if ratio > skip_slower_than:  # emulated bf16: its probe steps alone would take minutes
        names.remove("bf16")
        logger.info("not timing bf16: its matrix product takes %.1f times fp32's here", ratio)
    seconds = {}
    for name in names:
        if _CANDIDATES[name].frozen_fp16:
            model.store_frozen_fp16()
        seconds[name] = _seconds_per_step(model, _CANDIDATES[name].dtype, batch_size, device)
        model.drop_frozen_fp16()
    logger.info("one training step of %d rows: %s", batch_size, {k: round(v, 3) for k, v in seconds.items()})
    return min(seconds, key=seconds.__getitem__)


def _product_seconds(hidden: int, dtype: torch.dtype, rows: int = 256, repeats: int = 3) -> float:
    """Best of ``repeats`` (rows, hidden) x (hidden, 3 hidden) products in ``dtype`` on the CPU."""
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(rows, hidden, generator=generator).to(dtype)
    right = torch.randn(hidden, 3 * hidden, generator=generator).to(dtype)
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        left @ right
        times.append(time.perf_counter() - started)
    return min(times[1:])


def _seconds_per_step(
    model: TopLayersModel, dtype: torch.dtype, batch_size: int, device: torch.device, repeats: int = 2
) -> float:
    """Best of ``repeats`` timed forward + backward passes (after one untimed) over random tokens;
    the gradients are dropped, so the model is left as it was."""
    generator = torch.Generator().manual_seed(0)
    first, count = model.first, model.code_rows.shape[0]
    input_ids = torch.randint(0, first, (batch_size, PROBE_WIDTH), generator=generator)
    labels = torch.full_like(input_ids, IGNORE)
    labels[:, -3:] = torch.randint(first, first + count, (batch_size, 3), generator=generator)
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    batch = {key: value.to(device) for key, value in batch.items()}
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = model(batch)
        loss.backward()
        times.append(time.perf_counter() - started)
    for param in model.trainable_parameters():
        param.grad = None
    return min(times[1:])
