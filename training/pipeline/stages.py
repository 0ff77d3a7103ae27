"""The fine-tuning half of the pipeline, one function per stage: examples -> fine-tune -> evaluate ->
bundle. Each reads the run folder through ``RunLayout``; the CLI exposes each on its own and
``training.pipeline.run`` chains them in one process (no reloads).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from semantic_ids.bundle import BASE_WEIGHTS
from semantic_ids.decoding import ConstrainedDecoder
from semantic_ids.trie import PrefixTrie
from training.bundle_writer import BundleInputs, add_dense_index, write_bundle
from training.data.embeddings import MODEL_NAME
from training.distributed import Place
from training.eval.evaluate import evaluate_all
from training.eval.metrics import ambiguity_metrics
from training.io import write_json, write_plot
from training.llm.base_model import recorded_base
from training.llm.examples import ExampleConfig, build_examples
from training.llm.finetune_config import FinetuneResult
from training.llm.finetuned_model import load_finetuned, save_finetuned
from training.llm.query_generator import QueryGenerator
from training.llm.template_files import choose_templates
from training.llm.template_spec import QueryTemplates
from training.llm.top_layers_stage import train_top_layers_model
from training.pipeline.config import PipelineConfig, PipelineError
from training.pipeline.plots import plot_evaluation, plot_training_curves
from training.run_layout import RunLayout

logger = logging.getLogger(__name__)


def make_examples(
    layout: RunLayout,
    config: ExampleConfig,
    templates: QueryTemplates | None = None,
    *,
    templates_file: Path | None = None,
) -> dict[str, Any]:
    """The run's examples file, and beside it the query configuration it was made with: ``templates``,
    else the file ``templates_file``, else the films' or the generic default (``choose_templates``)."""
    items, _, _ = layout.load_id_outputs()
    if templates is None:
        films = layout.has_film_catalogue()
        templates = choose_templates(templates_file, items, films=films, name=layout.folder.name)
    examples = build_examples(items, config, templates)
    layout.save_examples(examples)
    # Fine-tuning on fresh queries and the evaluation read it there, so every stage phrases alike.
    layout.save_query_templates(templates)
    counts: dict[str, int] = {}
    for example in examples:
        key = f"{example['split']}_{example['kind']}"
        counts[key] = counts.get(key, 0) + 1
    return {
        "examples": str(layout.examples),
        "query_templates": str(layout.query_templates),
        "template_set": templates.name,
        "counts": counts,
        "config": asdict(config),
    }


Example = TypeVar("Example", bound=Mapping[str, Any])


def eval_sample(valid: Sequence[Example], count: int, seed: int) -> list[Example]:
    """A seeded sample of held-out queries; the quick in-training check uses a disjoint slice of them."""
    # Sorted first, so the sample does not depend on how the examples file happens to be ordered.
    queries = sorted((v for v in valid if v["kind"] == "query"), key=lambda v: (v["item_id"], v["query"]))
    random.Random(seed).shuffle(queries)
    return queries[:count]


def train_model(
    layout: RunLayout, base_models_dir: Path, config: PipelineConfig, place: Place | None = None
) -> tuple[FinetuneResult, Any, list[int]]:
    """Fine-tune on fresh queries phrased by the run's query configuration; the training loop watches
    held-out phrasings the evaluation table does not use. Under ``torchrun`` every rank calls this (each
    reads the run folder; none writes)."""
    items, report, scheme = layout.load_id_outputs()
    _, valid = layout.load_examples()
    base_dir = base_models_dir / config.base_model
    if not (base_dir / BASE_WEIGHTS).is_file():
        raise PipelineError(f"{base_dir}: no base model here; run `semid prepare-base-model` first")
    held_out = eval_sample(valid, config.eval_queries + config.finetune.eval_queries, config.examples.seed)
    _check_trainable_layers(base_dir, config.finetune.trainable_layers, config.finetune.dropped_layers)
    return train_top_layers_model(
        base_dir,
        scheme,
        items,
        int(report["rq_levels"]),
        held_out[config.eval_queries :],
        config.finetune,
        config.examples.seed,
        layout.load_query_templates(),
        place,
    )


def _check_trainable_layers(base_dir: Path, trainable: int, dropped: int) -> None:
    layers = int(json.loads((base_dir / "config.json").read_text())["num_hidden_layers"])
    if trainable + dropped > layers:
        options = "--trainable-layers plus --dropped-layers" if dropped else "--trainable-layers"
        raise PipelineError(f"{options} must be at most {layers}, the base model's layer count")


def evaluate_model(
    model: Any, tokenizer: Any, layout: RunLayout, config: PipelineConfig, cache_dir: Path | None = None
) -> dict[str, Any]:
    items, _, scheme = layout.load_id_outputs()
    _, valid = layout.load_examples()
    queries = eval_sample(valid, config.eval_queries, config.examples.seed)
    embeddings = layout.load_embeddings()
    decoder = ConstrainedDecoder(model, tokenizer, PrefixTrie([item.sid for item in items], scheme))
    result = evaluate_all(decoder, queries, items, embeddings, beams=config.eval_beams, cache_dir=cache_dir)
    # The model trains on generated queries (not the examples file): its first epoch's are the seen ones
    # (the first chunk's of a catalogue past EPOCH_CHUNK_ITEMS items).
    generator = QueryGenerator(
        items, config.finetune.queries_per_item, config.examples.seed, layout.load_query_templates()
    )
    seen = generator.first_chunk_sample(
        lambda first: eval_sample(first, config.seen_phrasing_queries, config.examples.seed),
        with_matching=True,
    )
    if seen:
        # The training phrasings, as the model, dense and BM25 find them, and how ambiguous they are: a
        # query naming one facet that fits dozens of items caps Recall@10 for every system.
        table = evaluate_all(
            decoder, seen, items, embeddings, beams=config.eval_beams, cache_dir=cache_dir, with_rankings=True
        )
        ranked = table.pop("rankings")["llm_semantic_id"]
        matching = [q.get("matching_item_ids", [q["item_id"]]) for q in seen]
        result["llm_on_training_phrasings"] = (
            table["systems"]["llm_semantic_id"]
            | ambiguity_metrics(ranked, [q["item_id"] for q in seen], matching)
            | {"queries": len(seen)}
        )
        result["baselines_on_training_phrasings"] = {
            system: table["systems"][system] for system in ("dense_minilm", "bm25")
        }
    write_json(result, layout.evaluation)
    write_plot(lambda path: plot_evaluation(result, path), layout.evaluation_plot)
    return result


def write_run_bundle(
    model: Any,
    tokenizer: Any,
    new_ids: Sequence[int],
    layout: RunLayout,
    base_models_dir: Path,
    config: PipelineConfig,
    training: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    bundle_dir: Path,
) -> dict[str, Any]:
    items, report, _ = layout.load_id_outputs()
    base_dir = base_models_dir / config.base_model
    recorded = recorded_base(base_dir)
    embeddings = layout.load_embeddings()  # rows in items_with_ids order (the ID stage writes both)
    if len(embeddings) != len(items):
        raise PipelineError(
            f"{layout.embeddings}: {len(embeddings)} rows for {len(items)} items; re-run `semid ids`"
        )
    inputs = BundleInputs(
        profile=config.profile,
        items=items,
        id_report=report,
        base_model_dir=base_dir,
        base_model_source=recorded.source if recorded is not None else str(base_dir),
        embedding_model=str(report.get("embedding_model", MODEL_NAME)),
        embedding_dimensions=int(embeddings.shape[1]),
        rqvae_path=layout.rqvae if layout.rqvae.is_file() else None,
        lora=config.finetune.adapter(),
        training=dict(training),
        evaluation=dict(evaluation),
        item_embeddings=embeddings,
        fusion=config.fusion,
        framing_text=layout.load_query_templates().framing_text(),
    )
    manifest = write_bundle(
        bundle_dir, model=model, tokenizer=tokenizer, new_token_ids=new_ids, inputs=inputs
    )
    return {
        "bundle": str(bundle_dir),
        "bundle_id": manifest.bundle_id,
        "content_hash": manifest.catalogue.content_hash,
    }


def dense_index_run(layout: RunLayout, bundle_dir: Path) -> dict[str, Any]:
    """Put the run's item embeddings into ``bundle_dir`` as its dense index (``semid dense-index``)."""
    items, report, _ = layout.load_id_outputs()
    model = str(report.get("embedding_model", MODEL_NAME))
    manifest = add_dense_index(bundle_dir, layout.load_embeddings(), [item.item_id for item in items], model)
    retrieval = manifest.retrieval
    return {
        "bundle": str(bundle_dir),
        "bundle_id": manifest.bundle_id,
        "dense_index": retrieval.dense_index if retrieval is not None else None,
        "embedding": manifest.embedding.model_dump(),
        "fusion_uses_dense": retrieval is not None and retrieval.fusion.uses_dense,
    }


def training_summary(result: FinetuneResult, config: PipelineConfig) -> dict[str, Any]:
    return {
        "config": config.finetune.to_dict(),
        "train_examples": result.train_examples,
        "steps": result.steps,
        "examples_seen": result.examples_seen,
        "train_seconds": round(result.train_seconds, 1),
        "examples_per_second": round(result.examples_per_second, 2),
        "precision": result.precision,
        "final": result.history[-1] if result.history else {},
        "history": result.history,
    }


def draw_training_curves(layout: RunLayout, history: Sequence[Mapping[str, Any]]) -> Path | None:
    """``training_curves.png`` in the run folder; None (after a warning) when it could not be drawn."""
    return write_plot(lambda path: plot_training_curves(history, path), layout.training_plot)


def finetune_run(
    layout: RunLayout, base_models_dir: Path, config: PipelineConfig, place: Place | None = None
) -> dict[str, Any] | None:
    """Fine-tune the run's model; keep it in the run folder for ``evaluate`` and ``bundle``. Under
    ``torchrun`` every rank trains and rank 0 alone saves and returns the summary (None elsewhere)."""
    place = place or Place()
    result, tokenizer, _ = train_model(layout, base_models_dir, config, place)

    def save() -> dict[str, Any]:
        summary = training_summary(result, config)
        draw_training_curves(layout, result.history)
        save_finetuned(
            result.model, tokenizer, layout.folder, {"base_model": config.base_model, "training": summary}
        )
        return summary

    return place.main_only(save)


def _load_finetuned(layout: RunLayout) -> tuple[Any, Any, dict[str, Any]]:
    try:
        return load_finetuned(layout.folder)
    except FileNotFoundError as error:
        raise PipelineError(str(error)) from None


def evaluate_run(layout: RunLayout, config: PipelineConfig) -> dict[str, Any]:
    """Evaluate the run's saved fine-tuned model."""
    model, tokenizer, _ = _load_finetuned(layout)
    return evaluate_model(model, tokenizer, layout, config)


def bundle_run(
    layout: RunLayout, base_models_dir: Path, config: PipelineConfig, bundle_dir: Path
) -> dict[str, Any]:
    """Write the serving bundle from the run's saved fine-tuned model and evaluation."""
    evaluation = layout.load_evaluation()
    model, tokenizer, info = _load_finetuned(layout)
    _, _, scheme = layout.load_id_outputs()
    new_ids = tokenizer.convert_tokens_to_ids(scheme.all_tokens())
    return write_run_bundle(
        model, tokenizer, new_ids, layout, base_models_dir, config, info["training"], evaluation, bundle_dir
    )
