"""A bundle as the retired LoRA-on-every-layer loop wrote it: a peft LoRA ``adapter/`` (every layer's
projections; the new rows in ``new_token_rows.safetensors``, a tied head) in place of
``finetuned_layers.safetensors``.

Training writes no such bundle any more; the service still serves the ones there are, and this is how
the tests keep that tested. ``write_bundle`` writes the rest of the bundle, then the adapter replaces the
layers file and the manifest records the method as that loop did.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model

from semantic_ids.bundle import ADAPTER_DIR, FINETUNED_LAYERS, Manifest, read_manifest, write_manifest
from training.bundle_writer import BundleInputs, write_bundle
from training.llm.lora import LoraSettings


def write_lora_bundle(
    bundle_dir: Path,
    *,
    model: Any,
    tokenizer: Any,
    new_token_ids: list[int],
    inputs: BundleInputs,
    lora: LoraSettings,
    seed: int = 1,
) -> tuple[Any, Manifest]:
    """Write ``model`` (a plain causal LM with a tied head and its new rows in place) with LoRA adapters of
    random, non-zero weights on every layer; the peft model the bundle must load back as, and the manifest.
    ``model`` is wrapped in place."""
    write_bundle(
        bundle_dir,
        model=model,
        tokenizer=tokenizer,
        new_token_ids=new_token_ids,
        inputs=replace(inputs, lora={"trainable_layers": 0}),  # the layers file holds the final norm only
    )
    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
    )
    peft_model = get_peft_model(model, config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name:  # stand-in for training: B starts at zero, so the adapters would do nothing
                parameter.add_(torch.randn_like(parameter) * 0.05)
    (bundle_dir / FINETUNED_LAYERS).unlink()
    peft_model.save_pretrained(str(bundle_dir / ADAPTER_DIR), save_embedding_layers=False)
    manifest = read_manifest(bundle_dir).model_copy(update={"lora": {"method": "lora", **lora.to_dict()}})
    write_manifest(bundle_dir, manifest)
    return peft_model.eval(), manifest
