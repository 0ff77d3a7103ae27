"""The options the ``semid`` commands share, declared once (``training/cli.py`` uses them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ProfileOption = Annotated[
    str, typer.Option("--profile", help="Catalogue profile: demo | full (or a run name).")
]
RunDirOption = Annotated[Path | None, typer.Option(help="Run folder [default: artifacts/runs/<profile>].")]
CacheDirOption = Annotated[Path, typer.Option(help="Embedding cache folder.")]
JsonlOption = Annotated[Path | None, typer.Option(help="A JSONL catalogue instead of the default films.")]
TemplatesOption = Annotated[
    Path | None,
    typer.Option(
        "--templates",
        help="Query templates file, YAML or JSON [the films' for the default catalogue; "
        "built from the fields of any other].",
    ),
]
BaseModelsOption = Annotated[Path, typer.Option(help="Folder of prepared base models.")]
MaxStepsOption = Annotated[
    int | None, typer.Option(help="Optimizer steps, with --time-budget 0 [profile default].")
]
BatchOption = Annotated[int | None, typer.Option(help="Examples per step [profile default].")]
LrLoraOption = Annotated[
    float | None, typer.Option(help="top_layers_lora: peak learning rate of the LoRA weights.")
]
LrTokensOption = Annotated[float | None, typer.Option(help="Peak learning rate of the new token rows.")]
TokenInitOption = Annotated[str | None, typer.Option(help="New-row init: mean | cluster.")]
RankOption = Annotated[int | None, typer.Option(help="top_layers_lora: LoRA rank (alpha = 2 x rank).")]
EvalQueriesOption = Annotated[int | None, typer.Option(help="Held-out queries in the evaluation table.")]
MethodOption = Annotated[
    str | None,
    typer.Option(
        help="Fine-tuning method: top_layers (the top layers in full) | top_layers_lora (LoRA adapters on "
        "them; on every layer with --trainable-layers set to the model's count)."
    ),
]
LayersOption = Annotated[int | None, typer.Option(help="How many top layers train.")]
DroppedLayersOption = Annotated[
    int | None,
    typer.Option(help="How many frozen layers just below the trained ones are removed (fewer to run)."),
]
LrLayersOption = Annotated[
    float | None,
    typer.Option(help="top_layers: peak learning rate of the layers (top_layers_lora: of the final norm)."),
]
BudgetOption = Annotated[
    float | None, typer.Option("--time-budget", help="Seconds of training (0: --max-steps).")
]
RepeatsOption = Annotated[int | None, typer.Option(help="Passes over each epoch's queries.")]
