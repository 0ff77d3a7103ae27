"""The whole offline pipeline for a profile: IDs -> base model -> examples -> fine-tune -> evaluate ->
bundle, in one process, with ``<run>/pipeline_report.json`` recording the stage timings and the PNGs
drawn (training curves, evaluation bars)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from training.io import write_json
from training.llm.base_model import prepare_base_model
from training.pipeline.config import PipelineConfig
from training.pipeline.id_stage import build_ids
from training.pipeline.stages import (
    draw_training_curves,
    evaluate_model,
    make_examples,
    train_model,
    training_summary,
    write_run_bundle,
)
from training.pipeline.timing import timed
from training.run_layout import BASE_MODELS_DIR, EMBEDDING_CACHE_DIR, RunLayout, bundle_dir_for


def run_pipeline(
    config: PipelineConfig,
    *,
    reuse_ids: bool = False,
    base_models_dir: Path = BASE_MODELS_DIR,
    run_dir: Path | None = None,
    bundle_dir: Path | None = None,
    cache_dir: Path = EMBEDDING_CACHE_DIR,
) -> dict[str, Any]:
    """Every stage in order; ``reuse_ids`` keeps the run's semantic IDs instead of building them."""
    layout = RunLayout.for_profile(config.profile, run_dir)
    bundle_dir = bundle_dir or bundle_dir_for(config.profile)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if not reuse_ids:
        timed(timings, "ids", lambda: build_ids(layout, config.profile, jsonl=None, cache_dir=cache_dir))
    timed(timings, "base_model", lambda: prepare_base_model(base_models_dir))
    example_report = timed(timings, "examples", lambda: make_examples(layout, config.examples))
    result, tokenizer, new_ids = timed(
        timings, "finetune", lambda: train_model(layout, base_models_dir, config)
    )
    draw_training_curves(layout, result.history)  # before evaluating: curves even if evaluation fails
    evaluation = timed(timings, "evaluate", lambda: evaluate_model(result.model, tokenizer, layout, config))
    training = training_summary(result, config)
    bundle = timed(
        timings,
        "bundle",
        lambda: write_run_bundle(
            result.model,
            tokenizer,
            new_ids,
            layout,
            base_models_dir,
            config,
            training,
            evaluation,
            bundle_dir,
        ),
    )
    timings["total"] = round(time.perf_counter() - started, 1)
    report = {
        "profile": config.profile,
        "timings_s": timings,
        "examples": example_report["counts"],
        "training": {k: v for k, v in training.items() if k != "history"},
        "evaluation": evaluation,
        "plots": [str(path) for path in (layout.training_plot, layout.evaluation_plot) if path.is_file()],
        **bundle,
    }
    write_json(report, layout.report("pipeline"))
    return report
