"""The whole offline pipeline for a profile: catalogue -> IDs -> examples -> fine-tune -> evaluate -> bundle.

Each stage is a function the CLI also exposes on its own; ``run_pipeline`` chains them in one
process (no reloads) and writes ``<run>/pipeline_report.json`` with the stage timings.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from semantic_ids.bundle import EVALUATION
from semantic_ids.decoding import ConstrainedDecoder
from semantic_ids.ids import IdScheme, SemanticId
from semantic_ids.trie import PrefixTrie
from training.llm.base_model import DEFAULT_BASE_MODELS_DIR, SMOLLM2_NAME, prepare_base_model
from training.llm.examples import ExampleConfig, build_examples, read_examples, write_examples
from training.llm.finetune import FinetuneConfig, FinetuneResult, Validator, finetune, prepare_model
from training.llm.lora import LoraSettings

logger = logging.getLogger(__name__)

ARTIFACTS = Path("artifacts")
EXAMPLES = "examples.jsonl"
ITEMS_WITH_IDS = "items_with_ids.jsonl"
ID_REPORT = "id_report.json"
T = TypeVar("T")


class PipelineError(RuntimeError):
    """A stage's input is missing or wrong; the message says which command to run or what to fix."""


@dataclass(frozen=True)
class PipelineConfig:
    profile: str
    examples: ExampleConfig = field(default_factory=ExampleConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval_queries: int = 300  # held-out queries in the evaluation table (seeded sample)
    eval_beams: int = 10
    seen_phrasing_queries: int = 100  # training queries re-asked: memorisation vs generalisation
    base_model: str = SMOLLM2_NAME

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "finetune": self.finetune.to_dict()}


# Demo: 1,000 films end to end in about 30 minutes on a 2-core CPU.
DEMO = PipelineConfig(
    profile="demo",
    examples=ExampleConfig(train_queries_per_item=12, attribute_examples_per_item=1),
    finetune=FinetuneConfig(
        lora=LoraSettings(rank=16, alpha=32),
        batch_size=16,
        max_steps=1000,
        lr_lora=1e-3,  # best of 5e-4 / 1e-3 / 2e-3 / 5e-3 in 200-step runs (bench/RESULTS.md)
        lr_tokens=3e-3,
        warmup_steps=30,
        eval_every=0,
        eval_queries=32,
        checkpoint_every=50,
    ),
    eval_queries=300,
)
FULL = replace(
    DEMO,
    profile="full",
    examples=ExampleConfig(train_queries_per_item=16, attribute_examples_per_item=2),
    finetune=replace(DEMO.finetune, max_steps=20_000, batch_size=32, eval_every=2_000, checkpoint_every=500),
    eval_queries=1_000,
)
PROFILES = {"demo": DEMO, "full": FULL}


def run_dir_for(profile: str) -> Path:
    return ARTIFACTS / "runs" / profile


def bundle_dir_for(profile: str) -> Path:
    return ARTIFACTS / "bundles" / profile


def load_id_outputs(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any], IdScheme]:
    path = run_dir / ITEMS_WITH_IDS
    if not path.is_file() or not (run_dir / ID_REPORT).is_file():
        raise PipelineError(f"{run_dir}: no semantic IDs here; run `semid ids` for this run first")
    with path.open(encoding="utf-8") as handle:
        items = [json.loads(line) for line in handle if line.strip()]
    report = json.loads((run_dir / ID_REPORT).read_text())
    return items, report, IdScheme(tuple(int(k) for k in report["codebook_sizes"]))


def make_examples(run_dir: Path, config: ExampleConfig) -> dict[str, Any]:
    items, _, _ = load_id_outputs(run_dir)
    examples = build_examples(items, config)
    write_examples(examples, run_dir / EXAMPLES)
    counts: dict[str, int] = {}
    for example in examples:
        key = f"{example['split']}_{example['kind']}"
        counts[key] = counts.get(key, 0) + 1
    return {"examples": str(run_dir / EXAMPLES), "counts": counts, "config": asdict(config)}


def examples_for(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    path = run_dir / EXAMPLES
    if not path.is_file():
        raise PipelineError(f"{path}: no examples here; run `semid examples` for this run first")
    return read_examples(path, split="train"), read_examples(path, split="valid")


def eval_sample(valid: Sequence[Mapping[str, Any]], count: int, seed: int) -> list[Mapping[str, Any]]:
    """A seeded sample of held-out queries; the quick in-training check uses a disjoint slice of them."""
    # Sorted first, so the sample does not depend on how the examples file happens to be ordered.
    queries = sorted((v for v in valid if v["kind"] == "query"), key=lambda v: (v["item_id"], v["query"]))
    random.Random(seed).shuffle(queries)
    return queries[:count]


def train_model(
    run_dir: Path, base_models_dir: Path, config: PipelineConfig
) -> tuple[FinetuneResult, Any, list[int]]:
    items, report, scheme = load_id_outputs(run_dir)
    train, valid = examples_for(run_dir)
    base_dir = base_models_dir / config.base_model
    if not (base_dir / "model.safetensors").is_file():
        raise PipelineError(f"{base_dir}: no base model here; run `semid prepare-base-model` first")
    model, tokenizer, new_ids = prepare_model(
        base_dir, scheme, items, config.finetune, int(report["rq_levels"])
    )
    held_out = eval_sample(valid, config.eval_queries + config.finetune.eval_queries, config.examples.seed)
    validator = Validator(tokenizer, held_out[config.eval_queries :], items, scheme, config.finetune)
    result = finetune(model, tokenizer, train, validator, config.finetune, run_dir)
    return result, tokenizer, new_ids


def evaluate_model(
    model: Any, tokenizer: Any, run_dir: Path, config: PipelineConfig, cache_dir: Path | None = None
) -> dict[str, Any]:
    from training.eval.evaluate import evaluate_all, model_rankings
    from training.eval.metrics import ranking_metrics

    items, _, scheme = load_id_outputs(run_dir)
    train, valid = examples_for(run_dir)
    queries = eval_sample(valid, config.eval_queries, config.examples.seed)
    embeddings = np.load(run_dir / "embeddings.npy", allow_pickle=False).astype(np.float32)
    trie = PrefixTrie([SemanticId(tuple(int(c) for c in item["semantic_id"])) for item in items], scheme)
    decoder = ConstrainedDecoder(model, tokenizer, trie)
    result = evaluate_all(decoder, queries, items, embeddings, beams=config.eval_beams, cache_dir=cache_dir)
    seen = eval_sample(train, config.seen_phrasing_queries, config.examples.seed)
    if seen:
        item_of = {SemanticId(tuple(int(c) for c in i["semantic_id"])): str(i["item_id"]) for i in items}
        ranked, _ = model_rankings(decoder, [q["query"] for q in seen], item_of, beams=config.eval_beams)
        result["llm_on_training_phrasings"] = ranking_metrics(ranked, [q["item_id"] for q in seen]) | {
            "queries": len(seen)
        }
    (run_dir / EVALUATION).write_text(json.dumps(result, indent=2) + "\n")
    return result


def write_run_bundle(
    model: Any,
    tokenizer: Any,
    new_ids: Sequence[int],
    run_dir: Path,
    base_models_dir: Path,
    config: PipelineConfig,
    training: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    bundle_dir: Path,
) -> dict[str, Any]:
    from training.bundle_writer import BundleInputs, write_bundle

    items, report, _ = load_id_outputs(run_dir)
    base_dir = base_models_dir / config.base_model
    prepared = base_dir / "prepared.json"
    source = json.loads(prepared.read_text())["source"] if prepared.is_file() else str(base_dir)
    inputs = BundleInputs(
        profile=config.profile,
        items=items,
        id_report=report,
        base_model_dir=base_dir,
        base_model_source=source,
        embedding_model=str(report.get("embedding_model", "sentence-transformers/all-MiniLM-L6-v2")),
        embedding_dimensions=int(report.get("embedding_dimensions", 384)),
        rqvae_path=run_dir / "rqvae.safetensors" if (run_dir / "rqvae.safetensors").is_file() else None,
        lora=config.finetune.lora.to_dict(),
        training=dict(training),
        evaluation=dict(evaluation),
    )
    manifest = write_bundle(
        bundle_dir, peft_model=model, tokenizer=tokenizer, new_token_ids=new_ids, inputs=inputs
    )
    return {
        "bundle": str(bundle_dir),
        "bundle_id": manifest.bundle_id,
        "content_hash": manifest.catalogue.content_hash,
    }


def training_summary(result: FinetuneResult, config: PipelineConfig) -> dict[str, Any]:
    return {
        "config": config.finetune.to_dict(),
        "train_examples": result.train_examples,
        "steps": result.steps,
        "examples_seen": result.examples_seen,
        "train_seconds": round(result.train_seconds, 1),
        "examples_per_second": round(result.examples_per_second, 2),
        "final": result.history[-1] if result.history else {},
        "history": result.history,
    }


def _timed(timings: dict[str, float], name: str, stage: Callable[[], T]) -> T:
    started = time.perf_counter()
    value = stage()
    timings[name] = round(time.perf_counter() - started, 1)
    logger.info("stage %s: %.1f s", name, timings[name])
    return value


def run_pipeline(
    config: PipelineConfig,
    *,
    run_ids: Callable[[Path], Any] | None,
    base_models_dir: Path = DEFAULT_BASE_MODELS_DIR,
    run_dir: Path | None = None,
    bundle_dir: Path | None = None,
) -> dict[str, Any]:
    """Every stage in order; ``run_ids(run_dir)`` builds the semantic IDs (None: reuse the run's IDs)."""
    run_dir = run_dir or run_dir_for(config.profile)
    bundle_dir = bundle_dir or bundle_dir_for(config.profile)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if run_ids is not None:
        _timed(timings, "ids", lambda: run_ids(run_dir))
    _timed(timings, "base_model", lambda: prepare_base_model(base_models_dir))
    example_report = _timed(timings, "examples", lambda: make_examples(run_dir, config.examples))
    result, tokenizer, new_ids = _timed(
        timings, "finetune", lambda: train_model(run_dir, base_models_dir, config)
    )
    evaluation = _timed(timings, "evaluate", lambda: evaluate_model(result.model, tokenizer, run_dir, config))
    training = training_summary(result, config)
    bundle = _timed(
        timings,
        "bundle",
        lambda: write_run_bundle(
            result.model,
            tokenizer,
            new_ids,
            run_dir,
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
        **bundle,
    }
    (run_dir / "pipeline_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
