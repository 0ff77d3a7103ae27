"""The fine-tuned model of a run, saved between CLI steps (``semid finetune`` -> ``evaluate`` -> ``bundle``).

Under ``<run>/finetuned/``: the exported causal LM as a whole (its head is untied), its tokenizer and what
the run recorded. This is a working file of a run, not the served artifact: the bundle is written from the
loaded model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from training.io import atomic_directory
from training.run_layout import RunLayout


def save_finetuned(model: Any, tokenizer: Any, run_dir: Path, info: dict[str, Any]) -> Path:
    folder = RunLayout(run_dir).finetuned
    with atomic_directory(folder) as staging:
        model.save_pretrained(str(staging / "model"))
        tokenizer.save_pretrained(str(staging / "tokenizer"))
        (staging / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return folder


def load_finetuned(run_dir: Path) -> tuple[Any, Any, dict[str, Any]]:
    """(causal LM in eval mode, tokenizer, info) of a run; ``FileNotFoundError`` when there is none."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = RunLayout(run_dir).finetuned
    if not (folder / "info.json").is_file():
        raise FileNotFoundError(f"{folder}: no fine-tuned model here; run `semid finetune` first")
    if not (folder / "model").is_dir():  # a peft adapter: what the retired --method lora saved here
        raise FileNotFoundError(
            f"{folder}: a LoRA adapter of the retired --method lora, no model; run `semid finetune` again"
        )
    info = json.loads((folder / "info.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"))
    model: Any = AutoModelForCausalLM.from_pretrained(str(folder / "model"), dtype=torch.float32)
    return model.eval(), tokenizer, info
