"""The serving forward of a Llama-family model: transformers' arithmetic in fewer, larger operations.

On a 2-core CPU a search's forward costs what reading the weights costs plus a fixed price per operation
(measured on 2026-12-06, bench/HISTORY.md: of SmolLM2's 37 ms per forward, 26 ms were its 210 matrix
products at ~7 GB/s, the rest ~1,300 small operations and module calls). transformers' ``LlamaModel`` runs
seven products per layer (q, k, v, o, gate, up, down); here q, k and v are one product over their
concatenated weights and gate and up another, the rotary embedding is read from a table and applied to q
and k in one go, and the KV cache is two tensors per layer that the search reorders with ``index_select``.

It runs ``LlamaWeights``: read by the service straight from a bundle's files
(``LlamaWeights.of_state_dict``, without transformers' model classes), or taken from a loaded model in eval
mode (``LlamaBody.of(model)``, which makes the model's own q/k/v and gate/up weights views of the
concatenated ones: ``model.generate`` still works, and on a CPU the copy laid out for oneDNN,
``PackedLinear``, is the one second copy of the weights). ``of`` returns None for a model it does not cover
(another architecture, rope scaling, biases, peft or quantised layers), which then decodes through
transformers (``search_steps.CausalLm``). In fp32 both give the same IDs, order and scores (the
tests compare them); in bf16 they round differently here and there: on the demo bundle 84 % of unseen
queries got the same ten IDs in the same order, at the same recall (``bench/forward_bench.py``). The body
is for frozen weights: built once when a bundle is loaded for serving, never while training changes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from semantic_ids.search_steps import head_logits


@dataclass(frozen=True)
class _Shape:
    heads: int
    kv_heads: int
    head_dim: int
    eps: float


@dataclass
class LlamaLayer:
    """One decoder layer's weights, (out, in) each: q, k and v stacked in ``qkv``, gate and up in
    ``gate_up``."""

    input_norm: torch.Tensor
    post_norm: torch.Tensor
    qkv: torch.Tensor
    o: torch.Tensor
    gate_up: torch.Tensor
    down: torch.Tensor


@dataclass
class LlamaWeights:
    """What ``LlamaBody`` runs: a plain Llama's weights and shape, from a loaded model (``of_model``) or
    from a state dict by transformers' names (``of_state_dict``: the service reads its bundle's files
    straight into one, without importing transformers' model classes)."""

    shape: _Shape
    embed: torch.Tensor
    head: torch.Tensor
    final_norm: torch.Tensor
    layers: list[LlamaLayer]
    inv_freq: torch.Tensor  # the rotary embedding's frequencies, (head_dim / 2,)
    attention_scaling: float
    max_positions: int

    @classmethod
    def of_model(cls, model: Any) -> LlamaWeights | None:
        """The weights of ``model`` (eval mode, frozen), or None where it is not a plain Llama. Its own
        q/k/v and gate/up weights become views of the stacked ones: ``model.generate`` still works and
        the weights are held once."""
        config = getattr(model, "config", None)
        if config is None or model.training or unsupported_llama_config(config.to_dict()) is not None:
            return None
        decoder = model.get_decoder()
        linears = [
            module
            for layer in decoder.layers
            for module in (
                *_attention_linears(layer),
                layer.mlp.gate_proj,
                layer.mlp.up_proj,
                layer.mlp.down_proj,
            )
        ]
        if any(type(module) is not torch.nn.Linear for module in linears):
            return None  # peft or quantised layers: transformers' forward
        layers = [
            LlamaLayer(
                input_norm=layer.input_layernorm.weight,
                post_norm=layer.post_attention_layernorm.weight,
                qkv=_stacked(layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj),
                o=layer.self_attn.o_proj.weight,
                gate_up=_stacked(layer.mlp.gate_proj, layer.mlp.up_proj),
                down=layer.mlp.down_proj.weight,
            )
            for layer in decoder.layers
        ]
        rotary = decoder.rotary_emb
        return cls(
            shape=_shape(config.to_dict()),
            embed=decoder.embed_tokens.weight,
            head=model.get_output_embeddings().weight,
            final_norm=decoder.norm.weight,
            layers=layers,
            inv_freq=rotary.inv_freq,
            attention_scaling=float(rotary.attention_scaling),
            max_positions=int(config.max_position_embeddings),
        )

    @classmethod
    def of_state_dict(cls, config: dict[str, Any], state: Mapping[str, torch.Tensor]) -> LlamaWeights:
        """A plain Llama's weights from its ``config.json`` and a state dict by transformers' names
        (``model.layers.0.self_attn.q_proj.weight``, ...; ``lm_head.weight`` absent where the head is the
        embedding); ``ValueError`` saying what does not fit otherwise."""
        unsupported = unsupported_llama_config(config)
        if unsupported is not None:
            raise ValueError(f"not a plain Llama: {unsupported}")

        def weight(name: str) -> torch.Tensor:
            try:
                return state[name]
            except KeyError:
                raise ValueError(f"the weights lack {name}") from None

        count = int(config["num_hidden_layers"])
        layers = []
        for index in range(count):
            prefix = f"model.layers.{index}"
            attention, mlp = f"{prefix}.self_attn", f"{prefix}.mlp"
            layers.append(
                LlamaLayer(
                    input_norm=weight(f"{prefix}.input_layernorm.weight"),
                    post_norm=weight(f"{prefix}.post_attention_layernorm.weight"),
                    qkv=torch.cat([weight(f"{attention}.{part}_proj.weight") for part in "qkv"]),
                    o=weight(f"{attention}.o_proj.weight"),
                    gate_up=torch.cat([weight(f"{mlp}.{part}_proj.weight") for part in ("gate", "up")]),
                    down=weight(f"{mlp}.down_proj.weight"),
                )
            )
        if f"model.layers.{count}.input_layernorm.weight" in state:
            raise ValueError(f"the weights have more layers than the config's {count}")
        embed = weight("model.embed_tokens.weight")
        shape = _shape(config)
        # transformers' default rotary frequencies; a model cast to bf16 holds them in bf16 (its buffer
        # is cast with the weights), so they are rounded alike: the same angles as that model's.
        dim = shape.head_dim
        theta = float(_rope(config).get("rope_theta", config.get("rope_theta", 10000.0)))
        inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        return cls(
            shape=shape,
            embed=embed,
            head=state.get("lm_head.weight", embed),
            final_norm=weight("model.norm.weight"),
            layers=layers,
            inv_freq=inv_freq.to(device=embed.device, dtype=embed.dtype),
            attention_scaling=1.0,
            max_positions=int(config["max_position_embeddings"]),
        )


class LlamaBody(torch.nn.Module):
    """The decoder layers of a ``LlamaForCausalLM`` with q/k/v and gate/up each in one linear layer."""

    def __init__(self, weights: LlamaWeights, *, pack: bool = True, fp16_weights: bool = False) -> None:
        super().__init__()
        if fp16_weights and (weights.embed.device.type != "cpu" or weights.embed.dtype != torch.float32):
            raise ValueError("fp16 weights are for an fp32 model on a CPU (fbgemm's kernels)")
        self.shape = weights.shape
        self.embed = weights.embed
        self.head = frozen_linear(weights.head)
        self.final_norm = weights.final_norm
        self.input_norms = [layer.input_norm for layer in weights.layers]
        self.post_norms = [layer.post_norm for layer in weights.layers]
        self.qkv = torch.nn.ModuleList()
        self.o = torch.nn.ModuleList()
        self.gate_up = torch.nn.ModuleList()
        self.down = torch.nn.ModuleList()
        if fp16_weights:
            laid_out: Any = Fp16WeightLinear
        else:
            laid_out = _packs_weights(self.embed) if pack else _as_is
        linears = [(layer.qkv, layer.gate_up, layer.o, layer.down) for layer in weights.layers]
        # Laid out on as many threads as torch computes on: the kernels that lay weights out release the
        # GIL, and fbgemm's fp16 packing took 1.5 s of a cold start on one core of a 2-core AVX2 EPYC.
        with ThreadPoolExecutor(max_workers=torch.get_num_threads(), thread_name_prefix="lay-out") as pool:
            for qkv, gate_up, o, down in pool.map(
                lambda four: [laid_out(frozen_linear(weight)) for weight in four], linears
            ):
                self.qkv.append(qkv)
                self.gate_up.append(gate_up)
                self.o.append(o)
                self.down.append(down)
        self.packed = laid_out is PackedLinear
        self.weights = (
            "fp16 (fbgemm)" if fp16_weights else "packed for oneDNN" if self.packed else "as loaded"
        )
        positions = torch.arange(weights.max_positions, device=self.embed.device)
        # transformers' rotary forward, for every position at once: the same fp32 products, then the cast.
        freqs = positions[:, None].float() * weights.inv_freq.float()[None, :]  # (P, D / 2)
        angles = torch.cat((freqs, freqs), dim=-1)  # (P, D)
        self.cos = (angles.cos() * weights.attention_scaling).to(self.embed.dtype)
        self.sin = (angles.sin() * weights.attention_scaling).to(self.embed.dtype)

    @property
    def device(self) -> torch.device:
        return self.embed.device

    @classmethod
    def of(cls, model: Any, *, pack: bool = True, fp16_weights: bool = False) -> LlamaBody | None:
        """The body of ``model`` (eval mode, weights frozen), or None where it is not a plain Llama.
        ``pack=False`` keeps the weights as they are instead of laying them out (``PackedLinear``), for
        comparison. ``fp16_weights``: the body's linear weights stored in fp16 for fbgemm
        (``Fp16WeightLinear``; an fp32 model on a CPU only), what the service runs on AVX2 CPUs without
        native bf16."""
        with torch.no_grad():
            weights = LlamaWeights.of_model(model)
            return None if weights is None else cls(weights, pack=pack, fp16_weights=fp16_weights)

    def session(self) -> LlamaSession:
        """A search's view of the body: its forwards share one fresh KV cache."""
        return LlamaSession(self)


class KvCache:
    """Keys and values of every layer, (rows, kv_heads, length, head_dim) each; one row per prefix."""

    def __init__(self, layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * layers
        self.values: list[torch.Tensor | None] = [None] * layers

    @property
    def length(self) -> int:
        first = self.keys[0]
        return 0 if first is None else first.shape[2]

    def batch_select_indices(self, rows: torch.Tensor) -> None:
        """Keep the given rows, in that order (repeats copy a row): as ``DynamicCache``'s method does."""
        self.keys = [None if k is None else k.index_select(0, rows) for k in self.keys]
        self.values = [None if v is None else v.index_select(0, rows) for v in self.values]

    def extend(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        old_keys, old_values = self.keys[layer], self.values[layer]
        if old_keys is not None and old_values is not None:
            keys, values = torch.cat([old_keys, keys], dim=2), torch.cat([old_values, values], dim=2)
        self.keys[layer], self.values[layer] = keys, values
        return keys, values


class LlamaSession:
    """What ``search_steps.CausalLm`` offers a search (``forward``, ``logits``, ``cache``), over a
    ``LlamaBody``."""

    def __init__(self, body: LlamaBody) -> None:
        self.body = body
        self.cache = KvCache(len(body.qkv))

    @torch.inference_mode()
    def forward(
        self, input_ids: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor
    ) -> torch.Tensor:
        """(rows, new) tokens after the cached ones -> (rows, new, hidden) last hidden states.

        ``mask``: (rows, cached + new), 0 where a row's prompt is padded, or None where nothing is.
        """
        body, shape = self.body, self.body.shape
        rows, new = input_ids.shape
        attend = _attention_mask(mask, self.cache.length, new, input_ids.device)
        cos = body.cos[positions].unsqueeze(2)  # (rows, new, 1, D): broadcast over heads
        sin = body.sin[positions].unsqueeze(2)
        rotated = shape.heads + shape.kv_heads  # q's heads then k's, side by side in the qkv output
        hidden = F.embedding(input_ids, body.embed)
        for layer, qkv_proj in enumerate(body.qkv):
            x = _rms_norm(hidden, body.input_norms[layer], shape.eps)
            qkv = qkv_proj(x).view(rows, new, rotated + shape.kv_heads, shape.head_dim)
            qk = qkv[:, :, :rotated]
            qk = qk * cos + _rotate_half(qk) * sin
            keys = qk[:, :, shape.heads :].transpose(1, 2)  # (rows, kv_heads, new, D)
            keys, values = self.cache.extend(layer, keys, qkv[:, :, rotated:].transpose(1, 2))
            if new == 1:
                attended = _one_token_attention(qk[:, 0, : shape.heads], keys, values, attend, shape)
            else:
                attended = F.scaled_dot_product_attention(
                    qk[:, :, : shape.heads].transpose(1, 2),  # (rows, heads, new, D)
                    keys,
                    values,
                    attn_mask=attend,
                    is_causal=attend is None and keys.shape[2] == new,
                    scale=shape.head_dim**-0.5,
                    enable_gqa=shape.kv_heads != shape.heads,
                ).transpose(1, 2)
            hidden = hidden + body.o[layer](attended.reshape(rows, new, -1))
            gate, up = body.gate_up[layer](_rms_norm(hidden, body.post_norms[layer], shape.eps)).chunk(
                2, dim=-1
            )
            hidden = hidden + body.down[layer](F.silu(gate) * up)
        return _rms_norm(hidden, body.final_norm, shape.eps)

    def logits(self, hidden: torch.Tensor, first: int, size: int) -> torch.Tensor:
        return head_logits(self.body.head, hidden, first, size)


def _one_token_attention(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, attend: torch.Tensor | None, shape: _Shape
) -> torch.Tensor:
    """Attention of one new token a row: (rows, heads, D) queries -> (rows, 1, heads, D).

    The query heads that share a key/value head are given as that head's queries (the heads of a group
    see the same keys and the same mask), so the products run kv_heads at a time a row. In fp32 they are
    two plain matrix products and a softmax: for a dozen keys and 10-20 rows, the fused kernel
    (``scaled_dot_product_attention``) spent 130-270 us a layer in its own set-up, the products 45-90 us
    (2-core AVX2 EPYC, bench/HISTORY.md), equal within 5e-7. In bf16 the kernel stays: it accumulates
    and normalises in fp32, which products in bf16 would not.
    """
    rows = query.shape[0]
    grouped = query.reshape(rows, shape.kv_heads, shape.heads // shape.kv_heads, shape.head_dim)
    scale = shape.head_dim**-0.5
    if query.dtype != torch.float32:
        attended = F.scaled_dot_product_attention(grouped, keys, values, attn_mask=attend, scale=scale)
        return attended.reshape(rows, 1, shape.heads, shape.head_dim)
    weights = torch.matmul(grouped, keys.transpose(-1, -2)).mul_(scale)  # (rows, kv_heads, group, keys)
    if attend is not None:  # (rows, 1, 1, keys) bool: a row's own token is always visible, never all -inf
        weights = weights.masked_fill_(~attend, float("-inf"))
    return torch.matmul(weights.softmax(-1), values).reshape(rows, 1, shape.heads, shape.head_dim)


def _attention_linears(layer: Any) -> tuple[Any, ...]:
    attention = layer.self_attn
    return attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj


def _stacked(*parts: torch.nn.Linear) -> torch.Tensor:
    """The parts' weights stacked, (sum of outputs, inputs); each part's weight becomes a view of it, so
    the model keeps working and the weights are held once."""
    weights = [part.weight for part in parts]
    stacked = torch.cat(weights).detach()
    start = 0
    for part, weight in zip(parts, weights, strict=True):
        part.weight = torch.nn.Parameter(stacked[start : start + weight.shape[0]], requires_grad=False)
        start += weight.shape[0]
    return stacked


def frozen_linear(weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.nn.Linear:
    """A linear layer over these tensors, for inference; made on the meta device, as a real one would fill
    its weight with random numbers first (1.2 s of a cold start)."""
    linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    linear.weight = torch.nn.Parameter(weight, requires_grad=False)
    if bias is not None:
        linear.bias = torch.nn.Parameter(bias, requires_grad=False)
    return linear


def _rope(config: dict[str, Any]) -> dict[str, Any]:
    return config.get("rope_parameters") or config.get("rope_scaling") or {}


def unsupported_llama_config(config: dict[str, Any]) -> str | None:
    """What keeps a model of this config from running as a ``LlamaBody``, or None."""
    rope = _rope(config)
    checks = {
        "model_type": (config.get("model_type"), "llama"),
        # Older configs name the rotary kind ``type`` (``rope_scaling``); newer ones ``rope_type``.
        "rope_type": (rope.get("rope_type", rope.get("type", "default")), "default"),
        "attention_bias": (bool(config.get("attention_bias", False)), False),
        "mlp_bias": (bool(config.get("mlp_bias", False)), False),
        "hidden_act": (config.get("hidden_act", "silu"), "silu"),
        "pretraining_tp": (config.get("pretraining_tp", 1), 1),
    }
    differs = [f"{key} {value!r}" for key, (value, plain) in checks.items() if value != plain]
    return ", ".join(differs) if differs else None


def _shape(config: dict[str, Any]) -> _Shape:
    heads = int(config["num_attention_heads"])
    return _Shape(
        heads=heads,
        kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or config["hidden_size"] // heads),
        eps=float(config["rms_norm_eps"]),
    )


class PackedLinear(torch.nn.Module):
    """A linear layer whose weight oneDNN has laid out for its own kernels once, at load.

    ``F.linear`` on a CPU hands oneDNN the plain weight at every call; laid out ahead (what inductor's
    weight freezing does), SmolLM2's products took 13 ms a forward instead of 20 on a 2-core AMX Xeon,
    with bitwise-equal results (bench/HISTORY.md, 2026-12-06). A second copy of the weight: the model's own
    stays for ``generate``.
    """

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.out_features = linear.weight.shape[0]
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach())
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [None], "")
        return out


def pack_linear_layers(module: torch.nn.Module, *, fp16_weights: bool = False) -> int:
    """Every ``nn.Linear`` inside ``module`` replaced by a ``PackedLinear`` of it, where oneDNN packs the
    module's dtype on this CPU (``_packs_weights``), or by an ``Fp16WeightLinear`` (``fp16_weights``: the
    caller checked ``causal_lm.cpu_runs_fp16_weights``); how many were. For a model that only infers (the
    service's query encoder): the packed layers hold copies of the weights, and the originals are freed."""
    linears = [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
               if isinstance(child, torch.nn.Linear)]  # fmt: skip
    laid_out: Any = Fp16WeightLinear if fp16_weights else PackedLinear
    if not linears or (not fp16_weights and _packs_weights(linears[0][2].weight) is not PackedLinear):
        return 0
    for parent, name, child in linears:
        setattr(parent, name, laid_out(child))
    return len(linears)


class Fp16WeightLinear(torch.nn.Module):
    """A linear layer with its weight stored in fp16, laid out for fbgemm once, computed in fp32.

    What ``torch.ao``'s dynamic fp16 ``Linear`` runs (``causal_lm.store_linear_weights_fp16``), over the
    joined weights: on an AVX2 CPU without native bf16, decoding is bound by reading the weights, and fp16
    halves the bytes at fp32's rankings (bench/HISTORY.md, issue 10). Results equal that layer's, bitwise.
    """

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.out_features = linear.weight.shape[0]
        bias = None if linear.bias is None else linear.bias.detach().float()
        self.packed = torch.ops.quantized.linear_prepack_fp16(linear.weight.detach().float(), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.ops.quantized.linear_dynamic_fp16(x, self.packed)
        return out


def _packs_weights(sample: torch.Tensor) -> Any:
    """``PackedLinear`` where oneDNN runs this dtype on this CPU and gives what ``F.linear`` gives on a
    trial product; else the linear layers as they are."""
    if sample.device.type != "cpu" or sample.dtype not in (torch.bfloat16, torch.float32):
        return _as_is
    if not torch.backends.mkldnn.is_available():  # type: ignore[no-untyped-call]
        return _as_is
    try:
        with torch.random.fork_rng(devices=[]):  # the trial leaves the caller's random numbers as they were
            trial = torch.nn.Linear(64, 48, bias=False).to(sample.dtype)
            x = torch.randn(3, 5, 64, dtype=sample.dtype)
        if not torch.equal(PackedLinear(trial)(x), F.linear(x, trial.weight)):
            return _as_is
    except (RuntimeError, AttributeError):  # a torch built without these oneDNN operators
        return _as_is
    return PackedLinear


def _as_is(linear: torch.nn.Linear) -> torch.nn.Module:
    return linear


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' LlamaRMSNorm: normalised in float32, cast back, then scaled. In fp32 torch's own
    kernel (``F.rms_norm``: one op instead of six, 21 against 33 us for 10 rows on a 2-core AVX2 EPYC,
    equal in bits there); in bf16 operation for operation, where ``F.rms_norm`` rounds differently."""
    if x.dtype == torch.float32 and weight.dtype == torch.float32:
        return F.rms_norm(x, weight.shape, weight, eps)
    wide = x.float()
    return weight * (wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _attention_mask(
    mask: torch.Tensor | None, cached: int, new: int, device: torch.device
) -> torch.Tensor | None:
    """(rows, 1, new, cached + new) bool: each new token sees the unpadded tokens up to itself.

    None where nothing is padded and either one token is new (it sees everything) or the cache is empty
    (plain causal attention, ``is_causal``). A padded position sees itself too: a query that sees nothing
    would give NaN, and a NaN value there would reach every row through the zero weights of the mask.
    """
    if mask is None and (new == 1 or cached == 0):
        return None
    total = cached + new
    keys = torch.arange(total, device=device)
    queries = torch.arange(cached, total, device=device)
    visible = keys[None, :] <= queries[:, None]  # (new, total): causal
    if mask is None:
        return visible[None, None]
    itself = keys[None, :] == queries[:, None]
    return ((visible[None] & mask.bool()[:, None, :]) | itself[None]).unsqueeze(1)
