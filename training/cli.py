"""`semid`: the offline pipeline, one subcommand per step.

Each command writes a machine-readable JSON report (and echoes it on stdout). Bad input ends in one
line on stderr and exit code 2: domain errors are raised deep and mapped here, in ``main`` only.

Adding a command is one block: a function decorated with ``@app.command("name")`` that does its work
through a training module and finishes with ``_emit(report, path)``; add the module's domain error to
``DOMAIN_ERRORS``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from training.data.catalogue import PROFILE_SIZES, CatalogueError, load_profile, read_catalogue, write_jsonl
from training.data.embeddings import DEFAULT_CACHE_DIR, EmbeddingError, embed_texts
from training.data.item_text import render_item_text
from training.ids.assign import ID_REPORT, assign_ids, save_embeddings, write_id_outputs
from training.ids.rqvae import RQVAEConfig, RQVAEError, load_rqvae, save_rqvae
from training.ids.train_rqvae import train_rqvae
from training.io import write_json

logger = logging.getLogger(__name__)

ARTIFACTS = Path("artifacts")
CATALOGUE = "catalogue.jsonl"
EMBEDDINGS = "embeddings.npy"
RQVAE_WEIGHTS = "rqvae.safetensors"

# Errors that mean "the input is wrong, here is what to fix": one line, exit code 2, no traceback.
DOMAIN_ERRORS: tuple[type[Exception], ...] = (CatalogueError, EmbeddingError, RQVAEError)


def _llm_errors() -> tuple[type[Exception], ...]:
    # Imported on demand: these modules pull in torch/transformers, which plain ID commands don't need.
    from semantic_ids.bundle import BundleMismatch
    from training.llm.base_model import BaseModelError
    from training.pipeline.stages import PipelineError

    return (PipelineError, BaseModelError, BundleMismatch)


app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None
)

ProfileOption = Annotated[
    str, typer.Option("--profile", help="Catalogue profile: demo | full (or a run name).")
]
RunDirOption = Annotated[Path | None, typer.Option(help="Run folder [default: artifacts/runs/<profile>].")]
CacheDirOption = Annotated[Path, typer.Option(help="Embedding cache folder.")]


def run_dir_for(profile: str, run_dir: Path | None = None) -> Path:
    return run_dir or ARTIFACTS / "runs" / profile


def _emit(report: dict[str, Any], path: Path) -> None:
    write_json(report, path)
    typer.echo(json.dumps(report, ensure_ascii=False))


def _require(path: Path, what: str, step: str) -> Path:
    if not path.is_file():
        raise CatalogueError(f"{path}: no {what} here; run `semid {step}` first")
    return path


def _import(profile: str, jsonl: Path | None) -> list[dict[str, Any]]:
    if jsonl is not None:
        return read_catalogue(jsonl)
    if profile not in PROFILE_SIZES:
        raise CatalogueError(f"unknown profile {profile!r}: use demo or full, or give --jsonl FILE")
    return load_profile(profile)


def _embed(
    items: list[dict[str, Any]], cache_dir: Path, batch_size: int
) -> tuple[np.ndarray, dict[str, Any]]:
    started = time.perf_counter()
    embeddings, counts = embed_texts(
        [render_item_text(item) for item in items], cache_dir=cache_dir, batch_size=batch_size
    )
    return embeddings, {**counts, "seconds": round(time.perf_counter() - started, 2)}


def _load_embeddings(path: Path, items: int | None = None) -> np.ndarray:
    embeddings: np.ndarray = np.load(_require(path, "embeddings", "embed"), allow_pickle=False)
    if items is not None and len(embeddings) != items:
        raise RQVAEError(
            f"{path}: {len(embeddings)} embedding rows for {items} catalogue items; re-run `semid embed`"
        )
    return embeddings.astype(np.float32)


@app.callback()
def _configure(
    threads: Annotated[int, typer.Option(envvar="SEMID_THREADS", help="torch CPU threads.")] = 1,
) -> None:
    """Semantic-ID recommender: offline training pipeline."""
    import torch

    # One thread by default: the RQ-VAE's matrices are small, and on a busy machine OpenMP workers
    # spin-wait for a core, which made 2 threads about 25x slower than 1 here. Raise it on a free box.
    torch.set_num_threads(max(1, threads))


@app.command("import-catalogue")
def import_catalogue(
    profile: ProfileOption = "demo",
    jsonl: Annotated[
        Path | None, typer.Option(help="A JSONL catalogue instead of the default films.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output [default: artifacts/runs/<profile>/catalogue.jsonl].")
    ] = None,
) -> None:
    """Validate and normalise a catalogue into one JSON object per line."""
    items = _import(profile, jsonl)
    out = out or run_dir_for(profile) / CATALOGUE
    write_jsonl(items, out)
    source = str(jsonl) if jsonl else f"bokeh-sampledata movies.db ({profile})"
    _emit({"source": source, "item_count": len(items), "out": str(out)}, out.with_name("import_report.json"))


@app.command("embed")
def embed(
    profile: ProfileOption = "demo",
    run_dir: RunDirOption = None,
    cache_dir: CacheDirOption = DEFAULT_CACHE_DIR,
    batch_size: int = 64,
) -> None:
    """Embed the run's catalogue with MiniLM (cached by content) into embeddings.npy."""
    folder = run_dir_for(profile, run_dir)
    items = read_catalogue(_require(folder / CATALOGUE, "catalogue", "import-catalogue"))
    embeddings, report = _embed(items, cache_dir, batch_size)
    save_embeddings(embeddings, folder / EMBEDDINGS)
    _emit({**report, "out": str(folder / EMBEDDINGS)}, folder / "embed_report.json")


def _config(profile: str, item_count: int, epochs: int | None, seed: int | None) -> RQVAEConfig:
    overrides = {key: value for key, value in {"epochs": epochs, "seed": seed}.items() if value is not None}
    return RQVAEConfig.for_profile(profile, item_count, **overrides)


@app.command("train-rqvae")
def train_rqvae_command(
    profile: ProfileOption = "demo",
    run_dir: RunDirOption = None,
    epochs: Annotated[int | None, typer.Option(help="Override the profile's epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the seed.")] = None,
) -> None:
    """Train the RQ-VAE on the run's embeddings; writes rqvae.safetensors and rqvae_training.json."""
    folder = run_dir_for(profile, run_dir)
    embeddings = _load_embeddings(folder / EMBEDDINGS)
    config = _config(profile, len(embeddings), epochs, seed)
    started = time.perf_counter()
    model, history = train_rqvae(embeddings, config)
    save_rqvae(model, config, folder / RQVAE_WEIGHTS)
    report = {
        "config": config.to_json(),
        "seconds": round(time.perf_counter() - started, 2),
        "epochs": history,
    }
    _emit(report, folder / "rqvae_training.json")


@app.command("assign")
def assign(profile: ProfileOption = "demo", run_dir: RunDirOption = None) -> None:
    """Give every item a unique semantic ID (RQ-VAE codes + disambiguation code); writes the ID outputs."""
    folder = run_dir_for(profile, run_dir)
    items = read_catalogue(_require(folder / CATALOGUE, "catalogue", "import-catalogue"))
    embeddings = _load_embeddings(folder / EMBEDDINGS, len(items))
    model, config = load_rqvae(folder / RQVAE_WEIGHTS)
    assignment = assign_ids(items, embeddings, model, config)
    write_id_outputs(folder, items, embeddings, model, config, assignment)
    typer.echo(json.dumps(assignment.report, ensure_ascii=False))


@app.command("ids")
def ids(
    profile: ProfileOption = "demo",
    jsonl: Annotated[
        Path | None, typer.Option(help="A JSONL catalogue instead of the default films.")
    ] = None,
    run_dir: RunDirOption = None,
    cache_dir: CacheDirOption = DEFAULT_CACHE_DIR,
    seed: Annotated[int | None, typer.Option(help="Override the RQ-VAE seed.")] = None,
) -> None:
    """The whole ID pipeline: catalogue -> embeddings -> RQ-VAE -> unique semantic IDs."""
    folder = run_dir_for(profile, run_dir)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    items = _import(profile, jsonl)
    write_jsonl(items, folder / CATALOGUE)
    timings["import"] = round(time.perf_counter() - started, 2)
    embeddings, embed_report = _embed(items, cache_dir, batch_size=64)
    timings["embed"] = embed_report["seconds"]
    config = _config(profile, len(items), None, seed)
    step = time.perf_counter()
    model, history = train_rqvae(embeddings, config)
    timings["train_rqvae"] = round(time.perf_counter() - step, 2)
    step = time.perf_counter()
    assignment = assign_ids(items, embeddings, model, config)
    write_json({"config": config.to_json(), "epochs": history}, folder / "rqvae_training.json")
    write_id_outputs(folder, items, embeddings, model, config, assignment)
    timings["assign"] = round(time.perf_counter() - step, 2)
    timings["total"] = round(time.perf_counter() - started, 2)
    report = {**assignment.report, "profile": profile, "embedding_cache": embed_report, "timings_s": timings}
    report["rqvae_final_epoch"] = history[-1] if history else None
    _emit(report, folder / ID_REPORT)


# --- LLM fine-tuning (issue 3): base model, examples, fine-tune, evaluate, bundle, whole pipeline ---

BaseModelsOption = Annotated[Path, typer.Option(help="Folder of prepared base models.")]
DEFAULT_BASE_MODELS = Path("artifacts/base_models")


def _pipeline_config(profile: str, **overrides: Any) -> Any:
    """The profile's pipeline config with the CLI's fine-tuning overrides (None = keep) applied."""
    from dataclasses import replace

    from training.llm.lora import LoraSettings
    from training.pipeline.stages import PROFILES, PipelineError

    base = PROFILES.get(profile)
    if base is None:
        raise PipelineError(f"unknown profile {profile!r}: use {' or '.join(PROFILES)}")
    eval_queries = overrides.pop("eval_queries", None)
    rank = overrides.pop("rank", None)
    changes = {key: value for key, value in overrides.items() if value is not None}
    for key, value in changes.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            raise PipelineError(f"--{key.replace('_', '-')} must not be negative, got {value}")
    if changes.get("token_init") not in (None, "mean", "cluster"):
        raise PipelineError(f"--token-init must be mean or cluster, got {changes['token_init']!r}")
    tuned = replace(base.finetune, **changes)
    if rank is not None:
        if rank < 1:
            raise PipelineError(f"--rank must be at least 1, got {rank}")
        tuned = replace(tuned, lora=LoraSettings(rank=rank, alpha=2 * rank))
    if tuned.max_steps < 1 or tuned.batch_size < 1:
        raise PipelineError("--max-steps and --batch-size must be at least 1")
    return replace(
        base, finetune=tuned, eval_queries=eval_queries if eval_queries is not None else base.eval_queries
    )


MaxStepsOption = Annotated[int | None, typer.Option(help="Optimizer steps [profile default].")]
BatchOption = Annotated[int | None, typer.Option(help="Examples per step [profile default].")]
LrLoraOption = Annotated[float | None, typer.Option(help="Peak learning rate of the LoRA weights.")]
LrTokensOption = Annotated[float | None, typer.Option(help="Peak learning rate of the new token rows.")]
TokenInitOption = Annotated[str | None, typer.Option(help="New-row init: mean | cluster.")]
RowsOnlyOption = Annotated[int | None, typer.Option(help="First steps that train only the new rows.")]
RankOption = Annotated[int | None, typer.Option(help="LoRA rank (alpha = 2 x rank).")]
EvalQueriesOption = Annotated[int | None, typer.Option(help="Held-out queries in the evaluation table.")]


@app.command("prepare-base-model")
def prepare_base_model_command(
    base_models_dir: BaseModelsOption = DEFAULT_BASE_MODELS,
    source: Annotated[
        Path | None, typer.Option(help="A .gguf file or HF model folder [packaged SmolLM2].")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Folder name under the base-models dir.")] = None,
) -> None:
    """Dequantise SmolLM2-135M-Instruct (or convert another model) to safetensors, once."""
    from training.llm.base_model import prepare_base_model

    prepared = prepare_base_model(base_models_dir, source=source, name=name)
    report = {
        "folder": str(prepared.folder),
        "source": prepared.source,
        "weights_sha256": prepared.weights_sha256,
    }
    _emit({**report, "reused": prepared.reused}, prepared.folder.parent / f"{prepared.name}.report.json")


@app.command("examples")
def examples_command(profile: ProfileOption = "demo", run_dir: RunDirOption = None) -> None:
    """Write the run's seeded fine-tuning examples (train / held-out phrasings) to examples.jsonl."""
    from training.pipeline.stages import make_examples

    folder = run_dir_for(profile, run_dir)
    _emit(make_examples(folder, _pipeline_config(profile).examples), folder / "examples_report.json")


@app.command("finetune")
def finetune_command(
    profile: ProfileOption = "demo",
    run_dir: RunDirOption = None,
    base_models_dir: BaseModelsOption = DEFAULT_BASE_MODELS,
    max_steps: MaxStepsOption = None,
    batch_size: BatchOption = None,
    lr_lora: LrLoraOption = None,
    lr_tokens: LrTokensOption = None,
    token_init: TokenInitOption = None,
    rows_only_steps: RowsOnlyOption = None,
    rank: RankOption = None,
) -> None:
    """LoRA-fine-tune the base model on the run's examples (resumes from the run's checkpoint)."""
    from training.llm.finetuned_model import save_finetuned
    from training.pipeline.stages import train_model, training_summary

    folder = run_dir_for(profile, run_dir)
    config = _pipeline_config(
        profile,
        max_steps=max_steps,
        batch_size=batch_size,
        lr_lora=lr_lora,
        lr_tokens=lr_tokens,
        token_init=token_init,
        rows_only_steps=rows_only_steps,
        rank=rank,
    )
    result, tokenizer, _ = train_model(folder, base_models_dir, config)
    summary = training_summary(result, config)
    save_finetuned(result.model, tokenizer, folder, {"base_model": config.base_model, "training": summary})
    _emit({k: v for k, v in summary.items() if k != "history"}, folder / "training.json")


@app.command("evaluate")
def evaluate_command(
    profile: ProfileOption = "demo",
    run_dir: RunDirOption = None,
    base_models_dir: BaseModelsOption = DEFAULT_BASE_MODELS,
    eval_queries: EvalQueriesOption = None,
) -> None:
    """Fine-tuned model vs dense (MiniLM) vs BM25 on the same held-out queries: one table."""
    from training.eval.evaluate import format_table
    from training.llm.finetuned_model import load_finetuned
    from training.pipeline.stages import PipelineError, evaluate_model

    folder = run_dir_for(profile, run_dir)
    try:
        model, tokenizer, _ = load_finetuned(folder, base_models_dir)
    except FileNotFoundError as error:
        raise PipelineError(str(error)) from None
    result = evaluate_model(model, tokenizer, folder, _pipeline_config(profile, eval_queries=eval_queries))
    typer.echo(format_table(result), err=True)
    _emit(result, folder / "evaluation.json")


@app.command("bundle")
def bundle_command(
    profile: ProfileOption = "demo",
    run_dir: RunDirOption = None,
    base_models_dir: BaseModelsOption = DEFAULT_BASE_MODELS,
    out: Annotated[
        Path | None, typer.Option(help="Bundle folder [default: artifacts/bundles/<profile>].")
    ] = None,
) -> None:
    """Write the serving bundle from the run's fine-tuned model and evaluation (atomically)."""
    from semantic_ids.ids import IdScheme
    from training.llm.finetuned_model import load_finetuned
    from training.pipeline.stages import PipelineError, bundle_dir_for, load_id_outputs, write_run_bundle

    folder = run_dir_for(profile, run_dir)
    evaluation_path = _require(folder / "evaluation.json", "evaluation", "evaluate")
    try:
        model, tokenizer, info = load_finetuned(folder, base_models_dir)
    except FileNotFoundError as error:
        raise PipelineError(str(error)) from None
    _, report, _ = load_id_outputs(folder)
    new_ids = tokenizer.convert_tokens_to_ids(IdScheme(tuple(report["codebook_sizes"])).all_tokens())
    result = write_run_bundle(
        model,
        tokenizer,
        new_ids,
        folder,
        base_models_dir,
        _pipeline_config(profile),
        info["training"],
        json.loads(evaluation_path.read_text()),
        out or bundle_dir_for(profile),
    )
    _emit(result, folder / "bundle_report.json")


@app.command("pipeline")
def pipeline_command(
    profile: ProfileOption = "demo",
    base_models_dir: BaseModelsOption = DEFAULT_BASE_MODELS,
    reuse_ids: Annotated[bool, typer.Option(help="Keep the run's existing semantic IDs.")] = False,
    max_steps: MaxStepsOption = None,
    batch_size: BatchOption = None,
    lr_lora: LrLoraOption = None,
    lr_tokens: LrTokensOption = None,
    token_init: TokenInitOption = None,
    rows_only_steps: RowsOnlyOption = None,
    rank: RankOption = None,
    eval_queries: EvalQueriesOption = None,
) -> None:
    """catalogue -> IDs -> examples -> fine-tune -> evaluate -> bundle (artifacts/bundles/<profile>)."""
    from training.eval.evaluate import format_table
    from training.pipeline.stages import run_pipeline

    config = _pipeline_config(
        profile,
        max_steps=max_steps,
        batch_size=batch_size,
        lr_lora=lr_lora,
        lr_tokens=lr_tokens,
        token_init=token_init,
        rows_only_steps=rows_only_steps,
        rank=rank,
        eval_queries=eval_queries,
    )

    def run_ids(folder: Path) -> None:
        ids(profile=profile, jsonl=None, run_dir=folder, cache_dir=DEFAULT_CACHE_DIR, seed=None)

    report = run_pipeline(config, run_ids=None if reuse_ids else run_ids, base_models_dir=base_models_dir)
    typer.echo(format_table(report["evaluation"]), err=True)
    typer.echo(json.dumps({k: v for k, v in report.items() if k != "evaluation"}, ensure_ascii=False))


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("SEMID_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        app()
    except Exception as error:
        if not isinstance(error, DOMAIN_ERRORS + _llm_errors()):
            raise
        typer.echo(f"error: {_one_line(error)}", err=True)
        raise SystemExit(2) from None
