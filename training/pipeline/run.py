"""The whole offline pipeline for a profile: IDs -> base model -> examples -> fine-tune -> evaluate ->
bundle, in one process, with ``<run>/pipeline_report.json`` recording the stage timings and the PNGs
drawn (training curves, evaluation bars).

Under ``torchrun`` (``training/distributed.py``) every rank first embeds its share of the catalogue (into the
embedding cache), rank 0 runs the stages before fine-tuning while the other ranks wait, every rank
fine-tunes on its share of the queries, and rank 0 alone runs the stages after it.

What the user gives (the catalogue, a query templates file) is read and checked first, in
``pipeline_inputs``: bad input is an error before any stage writes anything.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.data.embeddings import embed_share
from training.data.item_text import render_item_text
from training.data.items import CatalogueItem
from training.distributed import Place
from training.io import write_json
from training.llm.base_model import prepare_base_model
from training.llm.template_files import choose_templates
from training.llm.template_spec import QueryTemplates
from training.pipeline.config import PipelineConfig, PipelineError
from training.pipeline.id_stage import build_ids, read_items
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


@dataclass(frozen=True)
class PipelineInputs:
    """The catalogue (``jsonl``, or the profile's films when None) and its query configuration."""

    items: list[CatalogueItem]
    templates: QueryTemplates
    jsonl: Path | None = None
    # Items kept out of the IDs model and fine-tuning (``hold_out``), written to ``<run>/held_out.jsonl``
    # so they can be added to the served bundle later (``semid-service add-items``): never-trained items.
    held_out: list[CatalogueItem] = field(default_factory=list)


def hold_out(
    items: list[CatalogueItem], share: float, seed: int
) -> tuple[list[CatalogueItem], list[CatalogueItem]]:
    """(kept, held out): a seeded ``share`` of the items held out, both in catalogue order."""
    if not 0.0 <= share < 1.0:
        raise PipelineError(f"--hold-out must be a share in [0, 1), got {share}")
    count = round(len(items) * share)
    chosen = set(random.Random(seed).sample(range(len(items)), count))
    kept = [item for index, item in enumerate(items) if index not in chosen]
    return kept, [item for index, item in enumerate(items) if index in chosen]


def pipeline_inputs(
    layout: RunLayout,
    profile: str,
    *,
    jsonl: Path | None = None,
    templates_file: Path | None = None,
    reuse_ids: bool = False,
    hold_out_share: float = 0.0,
    seed: int = 0,
) -> PipelineInputs:
    """The catalogue and its query configuration, read and checked; nothing is written.
    ``hold_out_share``: that share of the items is kept out of the run (``hold_out``)."""
    held_out: list[CatalogueItem] = []
    if reuse_ids:
        if jsonl is not None or hold_out_share:
            raise PipelineError(
                "--reuse-ids keeps the run's catalogue and semantic IDs: leave out --jsonl and --hold-out"
            )
        items, _, _ = layout.load_id_outputs()
        films = layout.has_film_catalogue()
    else:
        items, films = read_items(profile, jsonl), jsonl is None
        items, held_out = hold_out(items, hold_out_share, seed)
    templates = choose_templates(templates_file, items, films=films, name=profile)
    return PipelineInputs(items, templates, jsonl, held_out)


def run_pipeline(
    config: PipelineConfig,
    *,
    inputs: PipelineInputs | None = None,
    reuse_ids: bool = False,
    base_models_dir: Path = BASE_MODELS_DIR,
    run_dir: Path | None = None,
    bundle_dir: Path | None = None,
    cache_dir: Path = EMBEDDING_CACHE_DIR,
    place: Place | None = None,
) -> dict[str, Any] | None:
    """Every stage in order; ``reuse_ids`` keeps the run's semantic IDs instead of building them.
    ``inputs`` from ``pipeline_inputs`` [the profile's films, or the run's catalogue with reuse_ids].
    ``place``: this process's rank under ``torchrun`` [alone]; the report on rank 0, None elsewhere."""
    place = place or Place()
    layout = RunLayout.for_profile(config.profile, run_dir)
    given = inputs or pipeline_inputs(layout, config.profile, reuse_ids=reuse_ids)
    bundle_dir = bundle_dir or bundle_dir_for(config.profile)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def before_training() -> dict[str, Any]:
        """What fine-tuning reads, written once (by rank 0); the examples stage's report."""
        if given.held_out:
            layout.save_catalogue(given.held_out, layout.held_out)
        if not reuse_ids:
            timed(timings, "ids", lambda: build_ids(
                layout, config.profile, jsonl=given.jsonl, cache_dir=cache_dir, read=given.items
            ))  # fmt: skip
        timed(timings, "base_model", lambda: prepare_base_model(base_models_dir))
        return timed(timings, "examples", lambda: make_examples(layout, config.examples, given.templates))

    if place.is_distributed and not reuse_ids:
        # Every rank embeds its share of the catalogue first: rank 0's ID stage then finds it all cached.
        texts = [render_item_text(item) for item in given.items]
        timed(timings, "embed_shares", lambda: embed_share(texts, place, cache_dir=cache_dir))
    examples = place.main_first(before_training)
    config = config.with_training_time(time.perf_counter() - started)
    result, tokenizer, new_ids = timed(
        timings, "finetune", lambda: train_model(layout, base_models_dir, config, place)
    )

    def after_training() -> dict[str, Any]:
        draw_training_curves(layout, result.history)  # before evaluating: curves even if evaluation fails
        evaluation = timed(
            timings, "evaluate", lambda: evaluate_model(result.model, tokenizer, layout, config)
        )
        training = training_summary(result, config)
        bundle = timed(timings, "bundle", lambda: write_run_bundle(
            result.model, tokenizer, new_ids, layout, base_models_dir, config, training, evaluation,
            bundle_dir,
        ))  # fmt: skip
        timings["total"] = round(time.perf_counter() - started, 1)
        report = {
            "profile": config.profile,
            "catalogue": str(given.jsonl) if given.jsonl else "films",
            "query_templates": given.templates.name,
            "held_out": (
                {"items": len(given.held_out), "file": str(layout.held_out)} if given.held_out else None
            ),
            "timings_s": timings,
            "examples": examples["counts"] if examples else {},
            "training": {k: v for k, v in training.items() if k != "history"},
            "evaluation": evaluation,
            "plots": [str(path) for path in (layout.training_plot, layout.evaluation_plot) if path.is_file()],
            **bundle,
        }
        write_json(report, layout.report("pipeline"))
        return report

    return place.main_only(after_training)
