"""The fine-tuned model of a run, saved between CLI steps (``semid finetune`` -> ``evaluate`` -> ``bundle``).

Under ``<run>/finetuned/``: a LoRA model in peft's own format (its adapter keeps the trainable token
rows); a top-layers model as a whole causal LM (its head is untied). This is a working file of a
run, not the served artifact: the bundle is written from the loaded model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from semantic_ids.causal_lm import resize_for_tokens
from training.io import atomic_directory
from training.run_layout import RunLayout


def save_finetuned(model: Any, tokenizer: Any, run_dir: Path, info: dict[str, Any]) -> Path:
    folder = RunLayout(run_dir).finetuned
    with atomic_directory(folder) as staging:
        if hasattr(model, "peft_config"):
            model.save_pretrained(str(staging / "adapter"), save_embedding_layers=False)
        else:
            model.save_pretrained(str(staging / "model"))
        tokenizer.save_pretrained(str(staging / "tokenizer"))
        (staging / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return folder


def load_finetuned(run_dir: Path, base_models_dir: Path) -> tuple[Any, Any, dict[str, Any]]:
    """(peft model in eval mode, tokenizer, info) of a run; ``FileNotFoundError`` when there is none."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = RunLayout(run_dir).finetuned
    if not (folder / "info.json").is_file():
        raise FileNotFoundError(f"{folder}: no fine-tuned model here; run `semid finetune` first")
    info = json.loads((folder / "info.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"))
    if (folder / "model").is_dir():
        whole: Any = AutoModelForCausalLM.from_pretrained(str(folder / "model"), dtype=torch.float32)
        return whole.eval(), tokenizer, info
    base: Any = AutoModelForCausalLM.from_pretrained(
        str(base_models_dir / info["base_model"]), dtype=torch.float32
    )
    resize_for_tokens(base, tokenizer)
    model = PeftModel.from_pretrained(base, str(folder / "adapter"))
    return model.eval(), tokenizer, info
