"""`semid`: the offline pipeline, one subcommand per step.

Each command reads its options, runs one stage of ``training.pipeline`` and reports: the stage writes
a machine-readable JSON report into the run folder, and the command echoes it on stdout. Bad input
ends in one line on stderr and exit code 2: domain errors are raised deep and mapped here, in
``main`` only.

``finetune`` and ``pipeline`` also run under ``torchrun`` (``python -m training.cli`` is this module's
``main``): every process fine-tunes on its share of the queries, rank 0 alone writes and reports, the
others end with exit code 0 (``training/distributed.py``).

Adding a command is one block: a function decorated with ``@app.command("name")`` that calls a stage
and finishes with ``_echo(report)``; add the stage's domain error to ``DOMAIN_ERRORS``. Options that
several commands share are declared once, in ``cli_options.py``.
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
from semantic_ids.causal_lm import flush_denormals
from semantic_ids.rqvae import RQVAEError
from training import cli_options as opt
from training.data.catalogue import CatalogueError
from training.data.embeddings import EmbeddingError
from training.distributed import MainRankFailed, session
from training.eval.evaluate import format_table
from training.io import write_json
from training.llm.base_model import BaseModelError, prepare_base_model
from training.llm.template_spec import TemplateError
from training.pipeline import id_stage, stages
from training.pipeline.config import PipelineError
from training.pipeline.run import pipeline_inputs, run_pipeline
from training.profiles import PROFILES, pipeline_config
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
    TemplateError,
    MainRankFailed,
)

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None
)


def _echo(report: dict[str, Any]) -> None:
    typer.echo(json.dumps(report, ensure_ascii=False))


@app.callback()
def _configure(
    threads: Annotated[int, typer.Option(envvar="SEMID_THREADS", help="torch CPU threads.")] = 1,
) -> None:
    """Semantic-ID recommender: offline training pipeline."""
    # One thread by default: the RQ-VAE's matrices are small, and on a busy machine OpenMP workers
    # spin-wait for a core, which made 2 threads about 25x slower than 1 here. Raise it on a free box.
    flush_denormals()  # before any parallel work, so the OpenMP workers start with it
    torch.set_num_threads(max(1, threads))


@app.command("import-catalogue")
def import_catalogue(
    profile: opt.ProfileOption = "demo",
    jsonl: opt.JsonlOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Output [default: artifacts/runs/<profile>/catalogue.jsonl].")
    ] = None,
) -> None:
    """Validate and normalise a catalogue into one JSON object per line."""
    _echo(id_stage.import_catalogue(RunLayout.for_profile(profile), profile, jsonl, out))


@app.command("embed")
def embed(
    profile: opt.ProfileOption = "demo",
    run_dir: opt.RunDirOption = None,
    cache_dir: opt.CacheDirOption = EMBEDDING_CACHE_DIR,
    batch_size: int = id_stage.EMBED_BATCH,
) -> None:
    """Embed the run's catalogue with MiniLM (cached by content) into embeddings.npy."""
    _echo(id_stage.embed(RunLayout.for_profile(profile, run_dir), cache_dir, batch_size))


@app.command("train-rqvae")
def train_rqvae_command(
    profile: opt.ProfileOption = "demo",
    run_dir: opt.RunDirOption = None,
    epochs: Annotated[int | None, typer.Option(help="Override the profile's epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the seed.")] = None,
) -> None:
    """Train the RQ-VAE on the run's embeddings; writes rqvae.safetensors and rqvae_training.json."""
    layout = RunLayout.for_profile(profile, run_dir)
    _echo(id_stage.train_ids_model(layout, profile, epochs=epochs, seed=seed))


@app.command("assign")
def assign(profile: opt.ProfileOption = "demo", run_dir: opt.RunDirOption = None) -> None:
    """Give every item a unique semantic ID (RQ-VAE codes + disambiguation code); writes the ID outputs."""
    _echo(id_stage.assign(RunLayout.for_profile(profile, run_dir)))


@app.command("ids")
def ids(
    profile: opt.ProfileOption = "demo",
    jsonl: opt.JsonlOption = None,
    run_dir: opt.RunDirOption = None,
    cache_dir: opt.CacheDirOption = EMBEDDING_CACHE_DIR,
    seed: Annotated[int | None, typer.Option(help="Override the RQ-VAE seed.")] = None,
) -> None:
    """The whole ID pipeline: catalogue -> embeddings -> RQ-VAE -> unique semantic IDs."""
    layout = RunLayout.for_profile(profile, run_dir)
    _echo(id_stage.build_ids(layout, profile, jsonl=jsonl, cache_dir=cache_dir, seed=seed))


@app.command("prepare-base-model")
def prepare_base_model_command(
    base_models_dir: opt.BaseModelsOption = BASE_MODELS_DIR,
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
def examples_command(
    profile: opt.ProfileOption = "demo",
    run_dir: opt.RunDirOption = None,
    templates: opt.TemplatesOption = None,
) -> None:
    """Write the run's seeded fine-tuning examples (train / held-out phrasings) to examples.jsonl."""
    layout = RunLayout.for_profile(profile, run_dir)
    config = pipeline_config(profile, layout.item_count())
    report = stages.make_examples(layout, config.examples, templates_file=templates)
    write_json(report, layout.report("examples"))
    _echo(report)


@app.command("finetune")
def finetune_command(
    profile: opt.ProfileOption = "demo",
    run_dir: opt.RunDirOption = None,
    base_models_dir: opt.BaseModelsOption = BASE_MODELS_DIR,
    max_steps: opt.MaxStepsOption = None,
    batch_size: opt.BatchOption = None,
    lr_lora: opt.LrLoraOption = None,
    lr_tokens: opt.LrTokensOption = None,
    token_init: opt.TokenInitOption = None,
    rank: opt.RankOption = None,
    method: opt.MethodOption = None,
    trainable_layers: opt.LayersOption = None,
    dropped_layers: opt.DroppedLayersOption = None,
    lr_layers: opt.LrLayersOption = None,
    time_budget_s: opt.BudgetOption = None,
    epoch_repeats: opt.RepeatsOption = None,
) -> None:
    """Fine-tune the base model's top layers on fresh queries: in full (default) or by LoRA adapters
    (--method top_layers_lora; LoRA on every layer with --trainable-layers set to the model's count)."""
    layout = RunLayout.for_profile(profile, run_dir)
    overrides: dict[str, Any] = {
        "max_steps": max_steps, "batch_size": batch_size, "lr_lora": lr_lora, "lr_tokens": lr_tokens,
        "token_init": token_init, "rank": rank, "method": method,
        "trainable_layers": trainable_layers, "dropped_layers": dropped_layers, "lr_layers": lr_layers,
        "time_budget_s": time_budget_s,
        "epoch_repeats": epoch_repeats,
    }  # fmt: skip
    config = pipeline_config(profile, layout.item_count(), **overrides)
    with session(config.finetune.device) as place:
        summary = stages.finetune_run(layout, base_models_dir, config, place)
    if summary is None:
        return  # not rank 0: it writes the report
    report = {k: v for k, v in summary.items() if k != "history"}
    write_json(report, layout.training)
    _echo(report)


@app.command("evaluate")
def evaluate_command(
    profile: opt.ProfileOption = "demo",
    run_dir: opt.RunDirOption = None,
    eval_queries: opt.EvalQueriesOption = None,
) -> None:
    """Fine-tuned model vs dense (MiniLM) vs BM25 on the same held-out queries: one table."""
    layout = RunLayout.for_profile(profile, run_dir)
    config = pipeline_config(profile, layout.item_count(), eval_queries=eval_queries)
    result = stages.evaluate_run(layout, config)
    typer.echo(format_table(result), err=True)
    _echo(result)


@app.command("bundle")
def bundle_command(
    profile: opt.ProfileOption = "demo",
    run_dir: opt.RunDirOption = None,
    base_models_dir: opt.BaseModelsOption = BASE_MODELS_DIR,
    out: Annotated[
        Path | None, typer.Option(help="Bundle folder [default: artifacts/bundles/<profile>].")
    ] = None,
) -> None:
    """Write the serving bundle from the run's fine-tuned model and evaluation (atomically)."""
    layout = RunLayout.for_profile(profile, run_dir)
    config = pipeline_config(profile, layout.item_count())
    report = stages.bundle_run(layout, base_models_dir, config, out or bundle_dir_for(profile))
    write_json(report, layout.report("bundle"))
    _echo(report)


@app.command("dense-index")
def dense_index_command(
    profile: opt.ProfileOption = "demo",
    run_dir: opt.RunDirOption = None,
    bundle: Annotated[
        Path | None, typer.Option(help="Bundle [default: artifacts/bundles/<profile>].")
    ] = None,
) -> None:
    """Store the run's item embeddings in a bundle written without them: hybrid's dense source."""
    _echo(stages.dense_index_run(RunLayout.for_profile(profile, run_dir), bundle or bundle_dir_for(profile)))


@app.command("pipeline")
def pipeline_command(
    profile: opt.ProfileOption = "demo",
    jsonl: opt.JsonlOption = None,
    templates: opt.TemplatesOption = None,
    base_models_dir: opt.BaseModelsOption = BASE_MODELS_DIR,
    reuse_ids: Annotated[bool, typer.Option(help="Keep the run's existing semantic IDs.")] = False,
    max_steps: opt.MaxStepsOption = None,
    batch_size: opt.BatchOption = None,
    lr_lora: opt.LrLoraOption = None,
    lr_tokens: opt.LrTokensOption = None,
    token_init: opt.TokenInitOption = None,
    rank: opt.RankOption = None,
    method: opt.MethodOption = None,
    trainable_layers: opt.LayersOption = None,
    dropped_layers: opt.DroppedLayersOption = None,
    lr_layers: opt.LrLayersOption = None,
    time_budget_s: opt.BudgetOption = None,
    epoch_repeats: opt.RepeatsOption = None,
    eval_queries: opt.EvalQueriesOption = None,
    hold_out: Annotated[
        float,
        typer.Option(
            "--hold-out",
            help="Share of the items kept out of IDs and fine-tuning, written to <run>/held_out.jsonl "
            "(to add to the served bundle later: never-trained items).",
        ),
    ] = 0.0,
    name: Annotated[
        str | None, typer.Option(help="Name of the run and the bundle [default: the profile's].")
    ] = None,
) -> None:
    """catalogue -> IDs -> examples -> fine-tune -> evaluate -> bundle (artifacts/bundles/<profile>).

    With --jsonl, the catalogue is that file and --profile names its run (artifacts/runs/<profile>);
    a name other than demo or full takes the preset nearest the catalogue's size.
    """
    overrides: dict[str, Any] = {
        "max_steps": max_steps, "batch_size": batch_size, "lr_lora": lr_lora, "lr_tokens": lr_tokens,
        "token_init": token_init, "rank": rank, "method": method,
        "trainable_layers": trainable_layers, "dropped_layers": dropped_layers, "lr_layers": lr_layers,
        "time_budget_s": time_budget_s,
        "epoch_repeats": epoch_repeats, "eval_queries": eval_queries,
    }  # fmt: skip
    # A film profile's overrides are checked before the catalogue is read; another run's need its size.
    config = pipeline_config(profile, **overrides) if profile in PROFILES else None
    layout = RunLayout.for_profile(name or profile)
    inputs = pipeline_inputs(
        layout, profile, jsonl=jsonl, templates_file=templates, reuse_ids=reuse_ids, hold_out_share=hold_out
    )
    config = config or pipeline_config(profile, len(inputs.items), **overrides)
    with session(config.finetune.device) as place:
        report = run_pipeline(
            config,
            inputs=inputs,
            reuse_ids=reuse_ids,
            base_models_dir=base_models_dir,
            run_dir=layout.folder,
            bundle_dir=bundle_dir_for(name or profile),
            place=place,
        )
    if report is None:
        return  # not rank 0: it writes the report
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


if __name__ == "__main__":  # python -m training.cli: the semid script, where it is not installed
    main()
