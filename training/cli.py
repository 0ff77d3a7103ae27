"""`semid`: the offline pipeline, one subcommand per step.

Each command reads its options, runs one stage of ``training.pipeline`` and reports: the stage writes
a machine-readable JSON report into the run folder, and the command echoes it on stdout. Bad input
ends in one line on stderr and exit code 2: domain errors are raised deep and mapped here, in
``main`` only.

Adding a command is one block: a function decorated with ``@app.command("name")`` that calls a stage
and finishes with ``_echo(report)``; add the stage's domain error to ``DOMAIN_ERRORS``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from semantic_ids.bundle import BundleMismatch
from training.data.catalogue import CatalogueError
from training.data.embeddings import EmbeddingError
from training.eval.evaluate import format_table
from training.ids.rqvae import RQVAEError
from training.io import write_json
from training.llm.base_model import BaseModelError, prepare_base_model
from training.pipeline import id_stage, stages
from training.pipeline.config import PipelineError
from training.pipeline.run import run_pipeline
from training.profiles import pipeline_config
from training.run_layout import (
    BASE_MODELS_DIR,
    EMBEDDING_CACHE_DIR,
    MissingRunFile,
    RunLayout,
    bundle_dir_for,
)

logger = logging.getLogger(__name__)

# Errors that mean "the input is wrong, here is what to fix": one line, exit code 2, no traceback.
DOMAIN_ERRORS: tuple[type[Exception], ...] = (
    CatalogueError,
    EmbeddingError,
    RQVAEError,
    MissingRunFile,
    PipelineError,
    BaseModelError,
    BundleMismatch,
)

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None
)

ProfileOption = Annotated[
    str, typer.Option("--profile", help="Catalogue profile: demo | full (or a run name).")
]
RunDirOption = Annotated[Path | None, typer.Option(help="Run folder [default: artifacts/runs/<profile>].")]
CacheDirOption = Annotated[Path, typer.Option(help="Embedding cache folder.")]
JsonlOption = Annotated[Path | None, typer.Option(help="A JSONL catalogue instead of the default films.")]
BaseModelsOption = Annotated[Path, typer.Option(help="Folder of prepared base models.")]
MaxStepsOption = Annotated[int | None, typer.Option(help="Optimizer steps [profile default].")]
BatchOption = Annotated[int | None, typer.Option(help="Examples per step [profile default].")]
LrLoraOption = Annotated[float | None, typer.Option(help="Peak learning rate of the LoRA weights.")]
LrTokensOption = Annotated[float | None, typer.Option(help="Peak learning rate of the new token rows.")]
TokenInitOption = Annotated[str | None, typer.Option(help="New-row init: mean | cluster.")]
RowsOnlyOption = Annotated[int | None, typer.Option(help="First steps that train only the new rows.")]
RankOption = Annotated[int | None, typer.Option(help="LoRA rank (alpha = 2 x rank).")]
EvalQueriesOption = Annotated[int | None, typer.Option(help="Held-out queries in the evaluation table.")]
MethodOption = Annotated[str | None, typer.Option(help="Fine-tuning method: top_layers | lora.")]
LayersOption = Annotated[int | None, typer.Option(help="top_layers: how many top layers train.")]
LrLayersOption = Annotated[float | None, typer.Option(help="top_layers: peak learning rate of the layers.")]
BudgetOption = Annotated[
    float | None, typer.Option("--time-budget", help="top_layers: seconds of training (0: max-steps).")
]
RepeatsOption = Annotated[int | None, typer.Option(help="top_layers: passes over each epoch's queries.")]


def _echo(report: dict[str, Any]) -> None:
    typer.echo(json.dumps(report, ensure_ascii=False))


@app.callback()
def _configure(
    threads: Annotated[int, typer.Option(envvar="SEMID_THREADS", help="torch CPU threads.")] = 1,
) -> None:
    """Semantic-ID recommender: offline training pipeline."""
    # One thread by default: the RQ-VAE's matrices are small, and on a busy machine OpenMP workers
    # spin-wait for a core, which made 2 threads about 25x slower than 1 here. Raise it on a free box.
    torch.set_num_threads(max(1, threads))


@app.command("import-catalogue")
def import_catalogue(
    profile: ProfileOption = "demo",
    jsonl: JsonlOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Output [default: artifacts/runs/<profile>/catalogue.jsonl].")
    ] = None,
) -> None:
    """Validate and normalise a catalogue into one JSON object per line."""
    _echo(id_stage.import_catalogue(RunLayout.for_profile(profile), profile, jsonl, out))


@app.command("embed")
def embed(
    profile: ProfileOption = "demo",
    run_dir: RunDirOption = None,
    cache_dir: CacheDirOption = EMBEDDING_CACHE_DIR,
    batch_size: int = id_stage.EMBED_BATCH,
) -> None:
    """Embed the run's catalogue with MiniLM (cached by content) into embeddings.npy."""
    _echo(id_stage.embed(RunLayout.for_profile(profile, run_dir), cache_dir, batch_size))


@app.command("train-rqvae")
def train_rqvae_command(
    profile: ProfileOption = "demo",
    run_dir: RunDirOption = None,
    epochs: Annotated[int | None, typer.Option(help="Override the profile's epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the seed.")] = None,
) -> None:
    """Train the RQ-VAE on the run's embeddings; writes rqvae.safetensors and rqvae_training.json."""
    layout = RunLayout.for_profile(profile, run_dir)
    _echo(id_stage.train_ids_model(layout, profile, epochs=epochs, seed=seed))


@app.command("assign")
def assign(profile: ProfileOption = "demo", run_dir: RunDirOption = None) -> None:
    """Give every item a unique semantic ID (RQ-VAE codes + disambiguation code); writes the ID outputs."""
    _echo(id_stage.assign(RunLayout.for_profile(profile, run_dir)))


@app.command("ids")
def ids(
    profile: ProfileOption = "demo",
    jsonl: JsonlOption = None,
    run_dir: RunDirOption = None,
    cache_dir: CacheDirOption = EMBEDDING_CACHE_DIR,
    seed: Annotated[int | None, typer.Option(help="Override the RQ-VAE seed.")] = None,
) -> None:
    """The whole ID pipeline: catalogue -> embeddings -> RQ-VAE -> unique semantic IDs."""
    layout = RunLayout.for_profile(profile, run_dir)
    _echo(id_stage.build_ids(layout, profile, jsonl=jsonl, cache_dir=cache_dir, seed=seed))


@app.command("prepare-base-model")
def prepare_base_model_command(
    base_models_dir: BaseModelsOption = BASE_MODELS_DIR,
    source: Annotated[
        Path | None, typer.Option(help="A .gguf file or HF model folder [packaged SmolLM2].")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Folder name under the base-models dir.")] = None,
) -> None:
    """Dequantise SmolLM2-135M-Instruct (or convert another model) to safetensors, once."""
    prepared = prepare_base_model(base_models_dir, source=source, name=name)
    report = {
        "folder": str(prepared.folder),
        "source": prepared.source,
        "weights_sha256": prepared.weights_sha256,
        "reused": prepared.reused,
    }
    write_json(report, prepared.folder.parent / f"{prepared.name}.report.json")
    _echo(report)


@app.command("examples")
def examples_command(profile: ProfileOption = "demo", run_dir: RunDirOption = None) -> None:
    """Write the run's seeded fine-tuning examples (train / held-out phrasings) to examples.jsonl."""
    layout = RunLayout.for_profile(profile, run_dir)
    report = stages.make_examples(layout, pipeline_config(profile).examples)
    write_json(report, layout.report("examples"))
    _echo(report)


@app.command("finetune")
def finetune_command(
    profile: ProfileOption = "demo",
    run_dir: RunDirOption = None,
    base_models_dir: BaseModelsOption = BASE_MODELS_DIR,
    max_steps: MaxStepsOption = None,
    batch_size: BatchOption = None,
    lr_lora: LrLoraOption = None,
    lr_tokens: LrTokensOption = None,
    token_init: TokenInitOption = None,
    rows_only_steps: RowsOnlyOption = None,
    rank: RankOption = None,
    method: MethodOption = None,
    trainable_layers: LayersOption = None,
    lr_layers: LrLayersOption = None,
    time_budget_s: BudgetOption = None,
    epoch_repeats: RepeatsOption = None,
) -> None:
    """LoRA-fine-tune the base model on the run's examples (resumes from the run's checkpoint)."""
    layout = RunLayout.for_profile(profile, run_dir)
    config = pipeline_config(
        profile,
        max_steps=max_steps,
        batch_size=batch_size,
        lr_lora=lr_lora,
        lr_tokens=lr_tokens,
        token_init=token_init,
        rows_only_steps=rows_only_steps,
        rank=rank,
        method=method,
        trainable_layers=trainable_layers,
        lr_layers=lr_layers,
        time_budget_s=time_budget_s,
        epoch_repeats=epoch_repeats,
    )
    summary = stages.finetune_run(layout, base_models_dir, config)
    report = {k: v for k, v in summary.items() if k != "history"}
    write_json(report, layout.training)
    _echo(report)


@app.command("evaluate")
def evaluate_command(
    profile: ProfileOption = "demo",
    run_dir: RunDirOption = None,
    base_models_dir: BaseModelsOption = BASE_MODELS_DIR,
    eval_queries: EvalQueriesOption = None,
) -> None:
    """Fine-tuned model vs dense (MiniLM) vs BM25 on the same held-out queries: one table."""
    layout = RunLayout.for_profile(profile, run_dir)
    result = stages.evaluate_run(layout, base_models_dir, pipeline_config(profile, eval_queries=eval_queries))
    typer.echo(format_table(result), err=True)
    _echo(result)


@app.command("bundle")
def bundle_command(
    profile: ProfileOption = "demo",
    run_dir: RunDirOption = None,
    base_models_dir: BaseModelsOption = BASE_MODELS_DIR,
    out: Annotated[
        Path | None, typer.Option(help="Bundle folder [default: artifacts/bundles/<profile>].")
    ] = None,
) -> None:
    """Write the serving bundle from the run's fine-tuned model and evaluation (atomically)."""
    layout = RunLayout.for_profile(profile, run_dir)
    config = pipeline_config(profile)
    report = stages.bundle_run(layout, base_models_dir, config, out or bundle_dir_for(profile))
    write_json(report, layout.report("bundle"))
    _echo(report)


@app.command("dense-index")
def dense_index_command(
    profile: ProfileOption = "demo",
    run_dir: RunDirOption = None,
    bundle: Annotated[
        Path | None, typer.Option(help="Bundle [default: artifacts/bundles/<profile>].")
    ] = None,
) -> None:
    """Store the run's item embeddings in a bundle written without them: hybrid's dense source."""
    _echo(stages.dense_index_run(RunLayout.for_profile(profile, run_dir), bundle or bundle_dir_for(profile)))


@app.command("pipeline")
def pipeline_command(
    profile: ProfileOption = "demo",
    base_models_dir: BaseModelsOption = BASE_MODELS_DIR,
    reuse_ids: Annotated[bool, typer.Option(help="Keep the run's existing semantic IDs.")] = False,
    max_steps: MaxStepsOption = None,
    batch_size: BatchOption = None,
    lr_lora: LrLoraOption = None,
    lr_tokens: LrTokensOption = None,
    token_init: TokenInitOption = None,
    rows_only_steps: RowsOnlyOption = None,
    rank: RankOption = None,
    method: MethodOption = None,
    trainable_layers: LayersOption = None,
    lr_layers: LrLayersOption = None,
    time_budget_s: BudgetOption = None,
    epoch_repeats: RepeatsOption = None,
    eval_queries: EvalQueriesOption = None,
) -> None:
    """catalogue -> IDs -> examples -> fine-tune -> evaluate -> bundle (artifacts/bundles/<profile>)."""
    config = pipeline_config(
        profile,
        max_steps=max_steps,
        batch_size=batch_size,
        lr_lora=lr_lora,
        lr_tokens=lr_tokens,
        token_init=token_init,
        rows_only_steps=rows_only_steps,
        rank=rank,
        method=method,
        trainable_layers=trainable_layers,
        lr_layers=lr_layers,
        time_budget_s=time_budget_s,
        epoch_repeats=epoch_repeats,
        eval_queries=eval_queries,
    )
    report = run_pipeline(config, reuse_ids=reuse_ids, base_models_dir=base_models_dir)
    typer.echo(format_table(report["evaluation"]), err=True)
    _echo({k: v for k, v in report.items() if k != "evaluation"})


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
    except DOMAIN_ERRORS as error:
        typer.echo(f"error: {_one_line(error)}", err=True)
        raise SystemExit(2) from None
