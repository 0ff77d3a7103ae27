"""Short fine-tuning runs that differ in one setting, on the demo run's IDs and examples.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m bench.llm_ablation --steps 250 --eval-queries 100 \
        --variants base mean:token_init=mean rows_first:rows_only_steps=60 --out bench/llm_ablation.json

Each variant trains from the same base for ``--steps`` steps in its own run folder (a copy of the
demo run's ID outputs and examples), then is evaluated on the same held-out queries.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from training.llm.lora import LoraSettings
from training.llm.validator import Validator
from training.pipeline.config import PipelineConfig
from training.pipeline.stages import eval_sample, evaluate_model, make_examples, train_model
from training.profiles import PROFILES
from training.run_layout import BASE_MODELS_DIR, RunLayout

DEMO = PROFILES["demo"].pipeline


def _run_files(layout: RunLayout) -> tuple[Path, ...]:
    """What a variant needs from the demo run: the ID outputs and the examples."""
    return (layout.items_with_ids, layout.id_report, layout.embeddings, layout.examples)


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def variant_config(spec: str, steps: int, eval_queries: int) -> PipelineConfig:
    """``name`` or ``name:key=value,key=value`` with FinetuneConfig fields (``rank`` sets LoRA rank)."""
    _, _, settings = spec.partition(":")
    changes = {k: _value(v) for k, v in (pair.split("=", 1) for pair in settings.split(",") if pair)}
    example_changes = {k[3:]: changes.pop(k) for k in list(changes) if k.startswith("ex.")}
    tuned = replace(DEMO.finetune, max_steps=steps, checkpoint_every=10**9, eval_queries=0)
    if "rank" in changes:
        rank = int(changes.pop("rank"))
        tuned = replace(tuned, lora=LoraSettings(rank=rank, alpha=2 * rank))
    examples = replace(DEMO.examples, **example_changes)
    return replace(DEMO, examples=examples, finetune=replace(tuned, **changes), eval_queries=eval_queries)


def run_variant(spec: str, source: Path, base_models: Path, steps: int, eval_queries: int) -> dict[str, Any]:
    name = spec.partition(":")[0]
    layout = RunLayout.for_profile(f"ablation-{name}")
    shutil.rmtree(layout.folder, ignore_errors=True)
    layout.folder.mkdir(parents=True)
    for file in _run_files(RunLayout(source)):
        shutil.copyfile(file, layout.folder / file.name)
    config = variant_config(spec, steps, eval_queries)
    if config.examples != DEMO.examples:
        make_examples(layout, config.examples)
    started = time.perf_counter()
    result, tokenizer, _ = train_model(layout, base_models, config)
    # Loss on the ID tokens of held-out phrasings: comparable across example mixes, no decoding needed.
    items, _, scheme = layout.load_id_outputs()
    held_out = eval_sample(layout.load_examples()[1], 300, config.examples.seed)
    loss_config = replace(config.finetune, eval_queries=0, eval_loss_examples=len(held_out))
    valid = Validator(tokenizer, held_out, items, scheme, loss_config)(result.model, torch.device("cpu"))
    windows = [result.history[i : i + 50] for i in range(0, len(result.history), 50)]
    row: dict[str, Any] = {
        "variant": spec,
        "heldout_id_loss": valid["valid_loss"],
        "loss_by_50_steps": [round(sum(h["loss"] for h in w) / len(w), 3) for w in windows],
        "steps": steps,
        "examples_per_second": round(result.examples_per_second, 2),
        "train_seconds": round(result.train_seconds, 1),
    }
    if eval_queries:
        evaluation = evaluate_model(result.model, tokenizer, layout, config)
        llm = evaluation["systems"]["llm_semantic_id"]
        row |= {k: llm[k] for k in ("recall@1", "recall@10", "ndcg@10", "mrr", "prefix_accuracy")}
        row["dense_recall@10"] = evaluation["systems"]["dense_minilm"]["recall@10"]
    row["seconds"] = round(time.perf_counter() - started, 1)
    shutil.rmtree(layout.folder, ignore_errors=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--eval-queries", type=int, default=100)
    parser.add_argument("--variants", nargs="+", default=["cluster", "mean:token_init=mean"])
    parser.add_argument("--source", type=Path, default=RunLayout.for_profile("demo").folder)
    parser.add_argument("--base-models", type=Path, default=BASE_MODELS_DIR)
    parser.add_argument("--out", type=Path, default=Path("bench/llm_ablation.json"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.variants:
        rows.append(run_variant(name, args.source, args.base_models, args.steps, args.eval_queries))
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
        print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()
