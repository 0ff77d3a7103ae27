"""Torch-only helpers that training and serving both need around a causal LM: the device to run on,
whether the output head shares the input embedding, and growing the embedding for new tokens.

No transformers or peft import: the model is used through its own methods.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any

import torch

# transformers' ``from_pretrained`` builds a model with its weights' initialisation switched off and on the
# meta device by patching process-wide state: two models built at once on two threads (the LLM and the
# query encoder, loaded side by side for the cold start) left the LLM's tied head on the meta device.
# Every ``from_pretrained`` of the service holds this lock.
FROM_PRETRAINED_LOCK = threading.Lock()


class DeferredModel:
    """A model built the first time it is asked for (``get``), once, whichever thread asks first.

    The service searches with its own forward over the bundle's weights (``LlamaBody``) and builds
    transformers' model only where something needs it (``generate``, the reference, and comparisons)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build: Callable[[], Any] | None = build
        self._model: Any = None
        self._lock = threading.Lock()

    @classmethod
    def ready(cls, model: Any) -> DeferredModel:
        deferred = cls(lambda: model)
        deferred.get()
        return deferred

    @property
    def built(self) -> bool:
        return self._build is None

    def get(self) -> Any:
        with self._lock:
            if self._build is not None:
                self._model, self._build = self._build(), None
            return self._model


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _stored_weight(module: Any) -> Any:
    """The module's own weight tensor; peft wrappers' ``.weight`` is a fresh merged copy on every access."""
    inner = getattr(module, "original_module", None) or module
    if hasattr(inner, "get_base_layer"):
        inner = inner.get_base_layer()
    return inner.weight


def heads_are_tied(model: Any) -> bool:
    """True when the output head is the input embedding (or there is no head)."""
    head = model.get_output_embeddings()
    if head is None:
        return True
    return bool(_stored_weight(head).data_ptr() == _stored_weight(model.get_input_embeddings()).data_ptr())


def resize_for_tokens(model: Any, tokenizer: Any) -> int:
    """Grow the embedding (and a tied head) to cover the tokenizer; never shrink a padded vocabulary."""
    size = max(len(tokenizer), model.get_input_embeddings().weight.shape[0])
    model.resize_token_embeddings(size, mean_resizing=False)
    return int(size)


# AMX, or AVX512-BF16 on an AMD CPU. On a Xeon with AVX512-BF16 whose hypervisor hides the AMX tiles, bf16
# autocast trained the top layers 1.7x slower than fp32 (14.6 vs 25.4 examples/s); on an AMD EPYC (Zen, which
# runs AVX512-BF16 natively) 2.4x faster, where MKL's fp32 GEMM takes AVX2 code paths (bench/HISTORY.md).
_BF16_CPU_FLAGS = ("amx_bf16",)
_AMD_BF16_FLAGS = ("AuthenticAMD", "avx512_bf16")


def flush_denormals() -> bool:
    """Have this process's CPU threads treat denormal floats as zero (FTZ/DAZ); False where the CPU cannot.

    A matrix product whose terms fall below ~1e-38 runs on microcode assists: measured on this project's
    2-core Xeon, MKL's sgemm of 1280 x 576 x 1536 took 3.8 s instead of 14 ms; late in fine-tuning, once the
    gradients of learnt examples are tiny, steps slowed from 1.3 s to 6 s for minutes at a time
    (bench/HISTORY.md). Flushing changes only values below that range. Call it before the first parallel
    torch operation: OpenMP's worker threads take the floating-point mode of the thread that starts them,
    when they start; set later, it reaches the calling thread alone and half of a 2-thread product stays slow.
    """
    return bool(torch.set_flush_denormal(True))


def _cpu_flags(cpuinfo: str | None) -> set[str]:
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
                cpuinfo = handle.read()
        except OSError:
            return set()
    return set(cpuinfo.split())


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU advertises AMX-BF16 (oneDNN runs bf16 matmuls on the tile units), or is an AMD
    CPU with AVX512-BF16."""
    flags = _cpu_flags(cpuinfo)
    return any(flag in flags for flag in _BF16_CPU_FLAGS) or all(flag in flags for flag in _AMD_BF16_FLAGS)


def cpu_runs_fp16_weights(cpuinfo: str | None = None) -> bool:
    """True where fbgemm's fp16-weight GEMM runs: an x86 CPU with AVX2 and F16C (it converts the weights
    in registers) and a torch built with fbgemm."""
    flags = _cpu_flags(cpuinfo)
    return {"avx2", "f16c"} <= flags and "fbgemm" in torch.backends.quantized.supported_engines


def inference_precision(device: torch.device, requested: str = "auto", *, cpuinfo: str | None = None) -> str:
    """How the service runs the model: ``bf16``, ``fp32``, or ``fp16-weights`` (fp32 compute over linear
    weights stored in fp16). ``auto``: bf16 where ``compute_dtype`` takes it (CUDA, AMX, AMD's AVX512-BF16);
    fp16 weights on other x86 CPUs with AVX2, where decoding is bound by reading the weights: measured on
    an AVX2-only 2-core CPU, 25 % less time per query than fp32 at the same held-out recall
    (bench/HISTORY.md; bf16 there would be emulated); fp32 elsewhere."""
    if requested == "fp16-weights":
        if device.type != "cpu":  # torch.ao's dynamic fp16 linear layers are CPU kernels
            raise ValueError(f"precision fp16-weights runs on the CPU only, not on {device.type}")
        return requested
    dtype = compute_dtype(device, requested, cpuinfo=cpuinfo)
    if dtype == torch.bfloat16:
        return "bf16"
    if requested == "auto" and device.type == "cpu" and cpu_runs_fp16_weights(cpuinfo):
        return "fp16-weights"
    return "fp32"


def store_linear_weights_fp16(body: torch.nn.Module) -> None:
    """Replace the ``nn.Linear`` layers of ``body`` (the decoder layers, not the output head, whose rows
    the search reads itself) by dynamic fp16-weight ones, in place: half the bytes to read per forward."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao's note that eager quantisation is moving to torchao
        warnings.simplefilter("ignore")
        quantize_dynamic(body, {torch.nn.Linear}, dtype=torch.float16, inplace=True)  # type: ignore[no-untyped-call]


class Fp16StoredLinear(torch.nn.Module):
    """A linear layer that holds its weight in fp16 and computes in the input's dtype, widening the weight
    at each call. For the layers only the reference path (``generate``) runs once the search has a forward
    of its own (``LlamaBody``): they are held in half the bytes, and making them costs a copy, where
    fbgemm's packing (``store_linear_weights_fp16``) took 1.7 s of every cold start on a 2-core AVX2 EPYC."""

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.register_buffer("weight", linear.weight.detach().to(torch.float16))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return torch.nn.functional.linear(x, self.weight.to(x.dtype), bias)


def hold_linear_weights_fp16(body: torch.nn.Module) -> None:
    """Replace the ``nn.Linear`` layers of ``body`` by ``Fp16StoredLinear`` ones, in place."""
    for parent in list(body.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, Fp16StoredLinear(child))


def compute_dtype(
    device: torch.device, requested: str = "auto", *, cpuinfo: str | None = None
) -> torch.dtype:
    """The dtype to compute in: bf16 on CUDA, on CPUs with AMX and on AMD CPUs with AVX512-BF16; fp32
    elsewhere.

    Measured on 2-core CPUs (bench/HISTORY.md): bf16 autocast trains the top layers 2.6x faster on one
    with AMX, 2.4x faster on an AMD EPYC, and 1.7x slower on a Xeon with AVX512-BF16 but no AMX, hence
    the detection. (Training on a CPU times the candidates instead: training/llm/step_precision.py.)
    """
    if requested not in ("auto", "bf16", "fp32"):
        raise ValueError(f"unknown precision {requested!r}: use auto, bf16 or fp32")
    if requested != "auto":
        return torch.bfloat16 if requested == "bf16" else torch.float32
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16(cpuinfo) else torch.float32


@torch.no_grad()
def untie_head(model: Any) -> None:
    """Give the output head its own copy of the embedding, so code tokens can read and write differently."""
    if not heads_are_tied(model):
        return
    embedding = model.get_input_embeddings().weight
    head = torch.nn.Linear(embedding.shape[1], embedding.shape[0], bias=False)
    head.weight = torch.nn.Parameter(embedding.detach().clone(), requires_grad=False)
    model.set_output_embeddings(head)
    model.config.tie_word_embeddings = False


def drop_decoder_layers(model: Any, first: int, count: int) -> None:
    """Remove decoder layers ``first .. first + count - 1`` from a causal LM, in place: the layers above
    move down (their attention's ``layer_idx`` and the config follow, so a KV cache and ``save_pretrained``
    see the shorter model). Training and loading call it alike, so a bundle's layer names line up."""
    if count == 0:
        return
    layers = model.get_decoder().layers
    dropped = range(first, first + count)
    if first < 0 or count < 0 or first + count > len(layers):
        raise ValueError(f"cannot drop layers {first}..{first + count - 1} of {len(layers)}")
    kept = [layer for index, layer in enumerate(layers) if index not in dropped]
    model.get_decoder().layers = torch.nn.ModuleList(kept)
    for index, layer in enumerate(kept):
        layer.self_attn.layer_idx = index
    model.config.num_hidden_layers = len(kept)
    layer_types = getattr(model.config, "layer_types", None)
    if layer_types is not None:
        model.config.layer_types = [kind for index, kind in enumerate(layer_types) if index not in dropped]
