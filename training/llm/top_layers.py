"""Fine-tuning only the top N decoder layers: the backward stops there, and the layers below can be cached.

Measured on the 2-core CPU (bench/HISTORY.md): training the top 8 of SmolLM2's 30 layers in bf16
runs 4-5x the examples per second of LoRA on every layer, and learns more per second. What trains:
the top N layers, the final norm, and the *output* rows of the new tokens (``code_rows``). The
input rows of the new tokens stay at their initial values, so nothing below the cut depends on a
trained weight and ``lower`` is a pure function of the input ids (``ActivationCache`` relies on it).
The model is therefore served with an untied head whose new-token rows are ``code_rows``.

``compile_layers`` runs each decoder layer through ``torch.compile`` during training (regional
compilation: the layers share one class, so their code is compiled once per grad mode and reused by every
layer, where compiling the body unrolled all 30 of them: minutes of compiling on a slow 2-core CPU, which the
time budget pays; bench/HISTORY.md). ``export`` still hands out the plain model, so decoding never goes
through (or recompiles) the training graphs.

``store_frozen_fp16`` runs the frozen layers over a copy of their linear weights stored in fp16 (fbgemm's
fp16-weight GEMM, fp32 compute), as the service runs the whole model on x86 CPUs without AMX: on this
project's 2-core AMD EPYC the 22 frozen layers ran 2.1x as fast as MKL's fp32, their output within 5e-4
(relative) of fp32's (bench/HISTORY.md). The trained layers, the saved weights and ``export`` stay fp32.

With ``lora`` settings (the ``top_layers_lora`` method) the top layers are not trained in full: LoRA
adapters on their projections train instead (with the final norm and ``code_rows``), the layers below stay
plain modules. ``export`` then hands out a copy with the adapters merged into the top layers' weights, a
plain causal LM as without them, and the training model keeps its adapters to train on after a watch.
With ``trainable_layers`` = every layer this is LoRA on every layer, nothing below the cut but the embedding.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from semantic_ids.causal_lm import drop_decoder_layers, store_linear_weights_fp16, untie_head
from training.llm.batches import IGNORE
from training.llm.lora import LoraSettings, inject_lora, merged_copy

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _only_layers(body: Any, layers: nn.ModuleList, norm: nn.Module) -> Iterator[None]:
    """Run the model body's own forward over a slice of its layers (same masks and rotary positions)."""
    saved = body.layers, body.norm
    body.layers, body.norm = layers, norm
    try:
        yield
    finally:
        body.layers, body.norm = saved


class TopLayersModel(nn.Module):
    """A causal LM split at a layer: frozen below, trainable above, with trainable new-token output rows."""

    def __init__(
        self,
        causal_lm: Any,
        trainable_layers: int,
        new_token_ids: Sequence[int],
        *,
        lora: LoraSettings | None = None,
        dropped_layers: int = 0,
    ) -> None:
        super().__init__()
        ids = list(new_token_ids)
        if ids != list(range(ids[0], ids[0] + len(ids))):
            raise ValueError("the new token ids must be contiguous")
        self.lm, self.first = causal_lm, ids[0]
        count = len(causal_lm.model.layers)
        if trainable_layers < 1 or dropped_layers < 0 or trainable_layers + dropped_layers > count:
            raise ValueError(
                f"trainable_layers ({trainable_layers}, at least 1) plus dropped_layers ({dropped_layers}) "
                f"must be at most the model's {count} layers"
            )
        drop_decoder_layers(causal_lm, count - trainable_layers - dropped_layers, dropped_layers)
        layers = list(causal_lm.model.layers)
        self.cut = len(layers) - trainable_layers
        self.lower_layers = nn.ModuleList(layers[: self.cut])
        self.upper_layers = nn.ModuleList(layers[self.cut :])
        causal_lm.requires_grad_(False)
        self.lora = lora
        if lora is None:
            self.upper_layers.requires_grad_(True)
        else:  # only the adapters' A and B matrices train in the top layers
            inject_lora(causal_lm, lora, range(self.cut, len(layers)))
        causal_lm.model.norm.requires_grad_(True)
        rows = causal_lm.get_input_embeddings().weight[ids]
        self.code_rows = nn.Parameter(rows.detach().clone())  # (new tokens, hidden): the output rows
        self._compiled: tuple[nn.ModuleList, nn.ModuleList] | None = None  # (lower, upper), once compiled
        self._frozen_fp16: nn.ModuleList | None = None  # the lower layers over fp16 weights, once stored

    def compile_layers(self) -> bool:
        """Run each decoder layer compiled from now on, on CPU when a C++ compiler is there (inductor's
        CPU code is C++); False, with the reason logged, where it stays eager."""
        device = next(self.parameters()).device
        compiler = shutil.which(os.environ.get("CXX") or "g++") or shutil.which("clang++")
        if device.type != "cpu" or compiler is None:
            reason = "no C++ compiler (set CXX)" if compiler is None else f"only on CPU, not {device.type}"
            logger.warning("training eager, not compiled: %s", reason)
            return False
        # Wrappers over the same layers (same parameters), swapped in by lower() and upper() only; kept
        # out of the module tree so no parameter is registered twice (state dicts, optimizer).
        lower, upper = (_compile_each(part) for part in (self.lower_layers, self.upper_layers))
        object.__setattr__(self, "_compiled", (lower, upper))
        return True

    def store_frozen_fp16(self) -> None:
        """Run the frozen layers over fp16-stored linear weights from now on (a copy: ``lower_layers``,
        which ``export`` and the bundle read, keep their fp32 weights). CPU only (torch.ao's kernels)."""
        frozen = copy.deepcopy(self.lower_layers)
        store_linear_weights_fp16(frozen)
        object.__setattr__(self, "_frozen_fp16", frozen)  # not a submodule: no second set of weights

    def drop_frozen_fp16(self) -> None:
        object.__setattr__(self, "_frozen_fp16", None)

    def _parts(self) -> tuple[nn.ModuleList, nn.ModuleList]:
        """The (lower, upper) layers to run: the fp16-weight copy of the lower ones once stored, the
        compiled wrappers once ``compile_layers`` made them."""
        lower, upper = self._compiled or (self.lower_layers, self.upper_layers)
        return self._frozen_fp16 if self._frozen_fp16 is not None else lower, upper

    def lower(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, width, hidden) after the frozen layers; no final norm."""
        with _only_layers(self.lm.model, self._parts()[0], nn.Identity()):
            out = self.lm.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        hidden: torch.Tensor = out.last_hidden_state
        return hidden

    def upper(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(batch, width, hidden) after the trainable layers and the final norm."""
        body = self.lm.model
        with _only_layers(body, self._parts()[1], body.norm):
            out = body(inputs_embeds=hidden, attention_mask=attention_mask, use_cache=False)
        states: torch.Tensor = out.last_hidden_state
        return states

    def loss(self, states: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy on the targets: code tokens against the new rows, text against the vocab."""
        labels = labels[:, 1:]  # (batch, width - 1): position t predicts token t + 1
        mask = labels != IGNORE
        states, targets = states[:, :-1][mask], labels[mask]  # (n, hidden), (n,)
        is_code = (targets >= self.first) & (targets < self.first + self.code_rows.shape[0])
        # No ``if is_code.any()`` here: with no code target the sum is 0 and ``code_rows`` still gets a
        # (zero) gradient, so under DDP every trainable parameter is in every step's graph (one left out
        # on one rank would stall the gradient all-reduce). The text rows are frozen: no such need there.
        logits = states[is_code] @ self.code_rows.T.to(states.dtype)  # (n_code, new tokens)
        total = F.cross_entropy(logits.float(), targets[is_code] - self.first, reduction="sum")
        if (~is_code).any():
            logits = self.lm.get_output_embeddings()(states[~is_code])  # (n_text, vocab)
            total = total + F.cross_entropy(logits.float(), targets[~is_code], reduction="sum")
        return total / max(1, int(mask.sum()))

    def forward(self, batch: dict[str, torch.Tensor], lower: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of a batch; ``lower`` are cached frozen-layer activations for it, if any."""
        if lower is None:
            with torch.no_grad():
                lower = self.lower(batch["input_ids"], batch["attention_mask"])
        return self.loss(self.upper(lower, batch["attention_mask"]), batch["labels"])

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    @torch.no_grad()
    def export(self) -> Any:
        """The causal LM for decoding and saving: an untied head whose new-token rows are ``code_rows``;
        with LoRA, a copy of it with the adapters merged (sharing every weight but the top layers')."""
        untie_head(self.lm)
        head = self.lm.get_output_embeddings().weight
        head[self.first : self.first + self.code_rows.shape[0]] = self.code_rows.to(head.dtype)
        return self.lm if self.lora is None else merged_copy(self.lm, self.upper_layers)


def _compile_each(layers: nn.ModuleList) -> nn.ModuleList:
    """Each layer through ``torch.compile``: a module over the same parameters (``OptimizedModule``)."""
    return nn.ModuleList(cast(nn.Module, torch.compile(layer, dynamic=True)) for layer in layers)


class ActivationCache:
    """Frozen-layer activations of a fixed list of encoded examples, computed once, reused every pass.

    Worth it only when the same examples are trained on more than once (``epoch_repeats`` > 1).
    """

    def __init__(self, model: TopLayersModel, batches: Sequence[dict[str, torch.Tensor]]) -> None:
        self.rows: list[torch.Tensor] = []
        with torch.no_grad():
            for batch in batches:
                hidden = model.lower(batch["input_ids"], batch["attention_mask"])
                self.rows.append(hidden.detach())

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.rows[index]
