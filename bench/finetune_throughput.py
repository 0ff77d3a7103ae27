"""Fine-tuning throughput and learning per example, side by side in one run, on the demo run's IDs.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m bench.finetune_throughput --examples 2560
    .venv/bin/python -m bench.finetune_throughput --variants top8_fp32_b64,top8_bf16_b64 --examples 640
    .venv/bin/python -m bench.finetune_throughput --examples 1280 \
        --variants top8_fp32_b64,top8_fp32_b64_frozen_fp16,top8_bf16_b64

Each variant trains SmolLM2 from the same initial state on the same generated queries (fresh
queries, ~17 tokens each) for ``--examples`` examples, timing the steps after the first two; then
the held-out ID loss (the examples file's held-out phrasings, scored against the new tokens, as in
training) is measured. Every variant is the one training loop's model (``training/llm/top_layers.py``):
``top30_lora_fp32_b16`` is LoRA r=16 on all 30 layers (``top_layers_lora``), fp32, batch 16 (the shape
of the retired first design, whose own figures, ``lora_all_fp32_b16``, are in bench/HISTORY.md); the
others train the top layers in full. Writes ``bench/results/finetune_throughput.json`` (``--out``); the
ratio column is to the first variant run.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from semantic_ids.causal_lm import cpu_has_native_bf16, flush_denormals
from training.llm.batches import collate, encode_examples
from training.llm.finetune_config import FinetuneConfig, FinetuneMethod
from training.llm.query_generator import QueryGenerator
from training.llm.top_layers import ActivationCache, TopLayersModel
from training.llm.top_layers_stage import prepare_top_layers
from training.profiles import PROFILES
from training.run_layout import BASE_MODELS_DIR, RunLayout

RESULTS = Path("bench/results/finetune_throughput.json")


@dataclass(frozen=True)
class Variant:
    name: str
    method: FinetuneMethod
    batch: int
    bf16: bool = False
    layers: int = 8
    cached: bool = False
    frozen_fp16: bool = False  # the frozen layers over fp16-stored weights (training/llm/step_precision.py)


VARIANTS = (
    Variant("top30_lora_fp32_b16", "top_layers_lora", 16, layers=30),
    Variant("top8_fp32_b64", "top_layers", 64),
    Variant("top8_fp32_b64_frozen_fp16", "top_layers", 64, frozen_fp16=True),
    Variant("top8_bf16_b64", "top_layers", 64, bf16=True),
    Variant("top8_bf16_b64_cached", "top_layers", 64, bf16=True, cached=True),
    Variant("top4_bf16_b64_cached", "top_layers", 64, bf16=True, layers=4, cached=True),
)


def run_variant(
    variant: Variant, examples: list[dict[str, Any]], held_out: list[Any], count: int
) -> dict[str, Any]:
    layout = RunLayout(Path("artifacts/runs/demo"))
    items, report, scheme = layout.load_id_outputs()
    config = FinetuneConfig(method=variant.method, trainable_layers=variant.layers)
    base = BASE_MODELS_DIR / PROFILES["demo"].pipeline.base_model
    torch.manual_seed(0)
    model, tokenizer, _ = prepare_top_layers(base, scheme, items, config, int(report["rq_levels"]))
    if variant.frozen_fp16:
        model.store_frozen_fp16()
    lr = config.lr_lora if variant.method == "top_layers_lora" else 2e-3
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=lr)
    encoded = encode_examples(tokenizer, examples[:count], 64)
    batches = [
        collate(encoded[i : i + variant.batch], tokenizer.pad_token_id)
        for i in range(0, count, variant.batch)
    ]
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant.bf16)
    started = time.perf_counter()
    cache = None
    if variant.cached:
        with autocast:
            cache = ActivationCache(model, batches)
    cache_seconds = time.perf_counter() - started
    times = []
    for index, batch in enumerate(batches):
        started = time.perf_counter()
        with autocast:
            loss = model(batch, cache[index] if cache is not None else None)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    steady = times[2:]
    result = {
        "examples_per_second": round(variant.batch * len(steady) / sum(steady), 1),
        "cache_examples_per_second": round(count / cache_seconds, 1) if variant.cached else None,
        "heldout_id_loss": round(_held_out_loss(variant, model, held_out, tokenizer), 4),
    }
    return {"variant": variant.__dict__, **result}


@torch.no_grad()
def _held_out_loss(variant: Variant, model: TopLayersModel, held_out: list[Any], tokenizer: Any) -> float:
    encoded = encode_examples(tokenizer, held_out, 64)
    losses = []
    for start in range(0, len(encoded), 64):
        batch = collate(encoded[start : start + 64], tokenizer.pad_token_id)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant.bf16):
            losses.append(float(model(batch)) * len(batch["input_ids"]))
    return sum(losses) / len(encoded)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=2560)
    parser.add_argument("--held-out", type=int, default=256)
    parser.add_argument("--variants", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    chosen = [v for v in VARIANTS if args.variants is None or v.name in args.variants.split(",")]
    if not chosen:
        parser.error(f"--variants names none of: {', '.join(v.name for v in VARIANTS)}")
    flush_denormals()  # as the training CLI does, before the thread pool starts
    torch.set_num_threads(2)
    layout = RunLayout(Path("artifacts/runs/demo"))
    items, _, _ = layout.load_id_outputs()
    _, valid = layout.load_examples()
    examples = QueryGenerator(items, 1 + args.examples // len(items), seed=0).epoch(0)
    rows = [run_variant(v, examples, valid[: args.held_out], args.examples) for v in chosen]
    first = rows[0]["examples_per_second"]
    print(f"cpu native bf16: {cpu_has_native_bf16()}; {args.examples} examples per variant")
    print(f"{'variant':<24} {'ex/s':>7} {'x first':>8} {'cache ex/s':>11} {'held-out ID loss':>17}")
    for row in rows:
        ratio = row["examples_per_second"] / first
        cache = row["cache_examples_per_second"] or "-"
        print(
            f"{row['variant']['name']:<24} {row['examples_per_second']:>7} {ratio:>8.2f} "
            f"{cache!s:>11} {row['heldout_id_loss']:>17}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"examples": args.examples, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
