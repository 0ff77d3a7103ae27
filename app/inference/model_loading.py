"""Load a bundle into a ready-to-decode model: verify, rebuild the fine-tuned LLM, build the trie.

Order: base model from ``<base_models_dir>/<manifest.base_model.name>`` (its
weights' sha256 must match the manifest) -> resize the embedding to the bundle tokenizer -> write the
new token rows -> remove the frozen layers training dropped (the manifest's ``lora.dropped_layers``) -> put
the fine-tuned top layers in place (``finetuned_layers.safetensors``) or, in a
bundle of the retired LoRA-on-every-layer loop, apply its ``adapter/`` and merge it (no adapter overhead per
token) -> eval. A plain Llama with fine-tuned top layers (every bundle training writes now) takes the same
steps on tensors (``bundle_llama``) into the search's own forward (``LlamaBody``), and transformers' model is
built only when something asks for it (``LoadedModel.model``: ``generate``, comparisons).
Every way a bundle can fail to fit raises ``BundleMismatch`` with a message saying what differs.

Beside the model: the lexical index, and the item vectors with the query encoder of their embedding
model (MiniLM) when the bundle has them and its fusion uses the dense source (``with_dense`` loads the
encoder regardless, for tuning and for catalogue updates); the encoder is loaded once, here, like the
model. A bundle with an overlay (``semantic_ids.overlay``: items added, changed or deleted since
training) serves base + overlay: the trie and both indexes are built over that catalogue.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from app.catalogue_updates import LiveCatalogue, served_catalogue
from app.inference.bundle_llama import (
    check_finetuned_names,
    dropped_layers,
    new_token_rows,
    plain_llama_config,
    read_bundle_llama,
)
from semantic_ids.bundle import (
    ADAPTER_DIR,
    BASE_WEIGHTS,
    CATALOGUE,
    FINETUNED_LAYERS,
    NEW_TOKEN_ROWS,
    TOKENIZER_DIR,
    BundleMismatch,
    CatalogueRows,
    FusionParams,
    Manifest,
    base_weights_sha256,
    catalogue_hash,
    file_sha256,
    read_manifest,
    row_semantic_ids,
)
from semantic_ids.causal_lm import (
    FROM_PRETRAINED_LOCK,
    DeferredModel,
    drop_decoder_layers,
    hold_linear_weights_fp16,
    inference_precision,
    resize_for_tokens,
    resolve_device,
    store_linear_weights_fp16,
    untie_head,
)
from semantic_ids.decoding import CodeTokenIds, ConstrainedDecoder
from semantic_ids.dense import DenseIndex, DenseRetriever, QueryEncoder, bundle_dense_index
from semantic_ids.hybrid import HybridRanker
from semantic_ids.ids import InvalidSemanticId, SemanticId
from semantic_ids.lexical import LexicalIndex, bundle_lexical_index
from semantic_ids.llama_body import LlamaBody
from semantic_ids.overlay import Overlay, read_overlay
from semantic_ids.served_tokenizer import ServedTokenizer
from semantic_ids.text_encoder import EncoderUnavailable, encoder_for
from semantic_ids.trie import PrefixTrie

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    # The merged transformers causal LM in eval mode; where the search runs its own forward, built only
    # when something asks for it (``model``: ``generate``, comparisons), never for serving.
    reference: DeferredModel
    tokenizer: Any
    manifest: Manifest
    trie: PrefixTrie
    device: torch.device
    ids: list[SemanticId]  # in catalogue order, the lexical index's rows
    lexical: LexicalIndex
    dense: DenseRetriever | None = None  # the item vectors and the query encoder; None: no dense source
    precision: str = "fp32"  # how the model runs: bf16, fp32 or fp16-weights (``inference_precision``)
    # The search's own forward over the model's weights (``semantic_ids.llama_body``); None: transformers'.
    body: LlamaBody | None = None
    # The served catalogue (base + overlay) and the base bundle's rows and vectors, which catalogue
    # updates diff against; None for a bundle without item vectors (no updates then).
    live: LiveCatalogue | None = None
    base_rows: Sequence[dict[str, Any]] | None = None
    base_vectors: Any = None  # (base rows, dimensions) float32

    @property
    def model(self) -> Any:
        return self.reference.get()

    @property
    def fusion(self) -> FusionParams:
        return self.manifest.retrieval.fusion if self.manifest.retrieval is not None else FusionParams()

    def decoder(self) -> ConstrainedDecoder:
        return ConstrainedDecoder(self.reference, self.tokenizer, self.trie, body=self.body)

    def ranker(self, fusion: FusionParams | None = None) -> HybridRanker:
        return HybridRanker(self.decoder(), self.lexical, self.ids, fusion or self.fusion, self.dense)


def load_recommender_model(
    bundle_dir: Path,
    base_models_dir: Path,
    device: str,
    *,
    precision: str = "auto",
    expected_catalogue_hash: str | None = None,
    query_encoder: QueryEncoder | None = None,
    with_dense: bool = False,
    own_forward: bool = True,
) -> LoadedModel:
    """Check ``bundle_dir`` against its manifest, the base model and the expected catalogue, then load it.

    ``query_encoder``: embeds queries for the dense source (default: the model the manifest names).
    ``own_forward``: searches run ``LlamaBody`` where the model is a plain Llama (same results, about a
    third less time on a CPU); False: transformers' forward, for comparison.
    """
    manifest = read_manifest(bundle_dir)
    _require_files(bundle_dir)
    overlay = read_overlay(bundle_dir, manifest)
    _check_served_catalogue(manifest, overlay, expected_catalogue_hash)
    base_rows = _checked_catalogue(bundle_dir, manifest)
    lexical = bundle_lexical_index(bundle_dir, manifest, base_rows)
    base_dense = dense_index = bundle_dense_index(bundle_dir, manifest, base_rows)
    items, live = served_catalogue(
        manifest, base_rows, None if base_dense is None else base_dense.vectors, overlay
    )
    if overlay is not None:
        lexical = lexical.rebuilt(items, overlay.catalogue_hash)
        if dense_index is not None and live is not None:
            dense_index = live.dense_index(dense_index.model)
    ids, trie = _build_trie(items, manifest)
    base_dir = _base_dir(manifest, base_models_dir)
    tokenizer = ServedTokenizer(bundle_dir / TOKENIZER_DIR, padding_side="left")
    try:
        CodeTokenIds.from_tokenizer(tokenizer, manifest.semantic_ids.scheme)
    except ValueError as error:
        raise BundleMismatch(
            f"bundle {manifest.bundle_id}: tokenizer does not fit its IDs: {error}"
        ) from error
    target = resolve_device(device)
    fusion = manifest.retrieval.fusion if manifest.retrieval is not None else FusionParams()
    dense_source = dense_index if with_dense or fusion.uses_dense else None
    runs_as = inference_precision(target, precision)
    served = _ServedModel(bundle_dir, base_dir, tokenizer, manifest, target, runs_as)
    llama_config = plain_llama_config(bundle_dir, base_dir) if own_forward else None
    # The model's code first, alone, where transformers' model is built: importing it (its loading
    # machinery pulls in torch.distributed) while the encoder's thread imported its own cost ~1 s of every
    # cold start more than one after the other (bench/HISTORY.md).
    model_class = _model_class(base_dir) if llama_config is None else None
    # Hashing the base weights and loading the query encoder overlap building the model (cold start).
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="load") as pool:
        base_checked = pool.submit(_check_base_weights, manifest, base_dir)
        dense_loaded = (
            None
            if dense_source is None
            else pool.submit(_dense_retriever, dense_source, query_encoder, manifest, target)
        )
        try:
            if llama_config is not None:
                body: LlamaBody | None = served.body_from_files(llama_config)
                reference = DeferredModel(served.reference_model)
            else:
                model, body = served.model_and_body(model_class, own_forward=own_forward)
                reference = DeferredModel.ready(model)
        except Exception:
            base_checked.result()  # changed base weights explain the failure: say that instead
            raise
        base_checked.result()
        dense = dense_loaded.result() if dense_loaded is not None else None
    forward = "transformers' forward" if body is None else f"own forward, weights {body.weights}"
    logger.info("loaded bundle %s on %s (%s, %s)", manifest.bundle_id, target, runs_as, forward)
    return LoadedModel(
        reference=reference,
        tokenizer=tokenizer,
        manifest=manifest,
        trie=trie.to(target),
        device=target,
        ids=ids,
        lexical=lexical,
        dense=dense,
        precision=runs_as,
        body=body,
        live=live,
        base_rows=base_rows,
        base_vectors=None if base_dense is None else base_dense.vectors,
    )


@dataclass(frozen=True)
class _ServedModel:
    """How a bundle's model is built for serving, in ``runs_as`` precision (``inference_precision``)."""

    bundle_dir: Path
    base_dir: Path
    tokenizer: Any
    manifest: Manifest
    device: torch.device
    runs_as: str

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.runs_as == "bf16" else torch.float32

    @property
    def fp16_weights(self) -> bool:
        return self.runs_as == "fp16-weights"

    def body_from_files(self, config: dict[str, Any]) -> LlamaBody:
        """The search's forward read straight from the bundle's files (``bundle_llama``)."""
        with torch.no_grad():
            weights = read_bundle_llama(
                self.bundle_dir, self.base_dir, self.manifest, config, len(self.tokenizer),
                dtype=self.dtype, device=self.device,
            )  # fmt: skip
            return LlamaBody(weights, fp16_weights=self.fp16_weights)

    def reference_model(self) -> Any:
        """transformers' model of the bundle, as ``model_and_body`` leaves it beside a body: its decoder
        layers held in fp16 where the body's weights are (``generate`` then finds what the search finds)."""
        model = self._model(_model_class(self.base_dir))
        if self.fp16_weights:
            hold_linear_weights_fp16(model.get_decoder())
        return model

    def model_and_body(self, model_class: Any, *, own_forward: bool) -> tuple[Any, LlamaBody | None]:
        """transformers' model, and the search's own forward over its weights where it is a plain Llama
        (``own_forward``); for a LoRA bundle, another architecture, or comparisons."""
        model = self._model(model_class)
        # The body first: it joins the fp32 weights and stores its own fp16 copy; the model's layers are
        # then held in fp16 too, so the fp32 weights are freed: fbgemm's layers where transformers' forward
        # searches, plain fp16 copies where only ``generate`` (the reference) runs them.
        body = LlamaBody.of(model, fp16_weights=self.fp16_weights) if own_forward else None
        if self.fp16_weights and body is None:
            store_linear_weights_fp16(model.get_decoder())
        elif self.fp16_weights:
            hold_linear_weights_fp16(model.get_decoder())
        return model, body

    def _model(self, model_class: Any) -> Any:
        model = _build_model(model_class, self.bundle_dir, self.base_dir, self.tokenizer, self.manifest)
        return model.to(device=self.device, dtype=self.dtype).eval()


def _check_served_catalogue(manifest: Manifest, overlay: Overlay | None, expected: str | None) -> None:
    """Refuse a bundle (with its overlay) built for another catalogue than the one being served."""
    served = manifest.catalogue.content_hash if overlay is None else overlay.catalogue_hash
    if expected is not None and served != expected:
        with_overlay = "" if overlay is None else f" with its overlay v{overlay.version}"
        raise BundleMismatch(
            f"bundle {manifest.bundle_id}{with_overlay} serves catalogue {served[:12]}, but the catalogue "
            f"being served is {expected[:12]} (run `semid-service load-catalogue --bundle <bundle dir>`)"
        )


def _dense_retriever(
    index: DenseIndex, encoder: QueryEncoder | None, manifest: Manifest, device: torch.device
) -> DenseRetriever:
    if encoder is None:
        try:
            encoder = encoder_for(index.model, str(device))
        except EncoderUnavailable as error:
            raise BundleMismatch(
                f"bundle {manifest.bundle_id}: cannot embed queries for its dense index: {error}"
            ) from error
    return DenseRetriever(index, encoder)


def _require_files(bundle_dir: Path) -> None:
    missing = [
        name for name in (CATALOGUE, TOKENIZER_DIR, NEW_TOKEN_ROWS) if not (bundle_dir / name).exists()
    ]
    if not (bundle_dir / ADAPTER_DIR).exists() and not (bundle_dir / FINETUNED_LAYERS).exists():
        missing.append(f"{ADAPTER_DIR} or {FINETUNED_LAYERS}")
    if missing:
        raise BundleMismatch(f"bundle {bundle_dir} is incomplete: missing {', '.join(missing)}")


def _checked_catalogue(bundle_dir: Path, manifest: Manifest) -> CatalogueRows:
    """The bundle's catalogue rows, checked against the manifest: by the file's digest where the manifest
    has one (the content hash was computed from these bytes when they were written), else by content."""
    expected_file = manifest.catalogue.file_sha256
    if expected_file is not None and file_sha256(bundle_dir / CATALOGUE) != expected_file:
        raise BundleMismatch(
            f"bundle {manifest.bundle_id}: {CATALOGUE} is not the file it was written with "
            f"(sha256 differs from its manifest's {expected_file[:12]})"
        )
    items = CatalogueRows.read(bundle_dir)
    actual = manifest.catalogue.content_hash if expected_file is not None else catalogue_hash(items)
    if actual != manifest.catalogue.content_hash or len(items) != manifest.catalogue.item_count:
        raise BundleMismatch(
            f"bundle {manifest.bundle_id}: {CATALOGUE} ({len(items)} items, hash {actual[:12]}) differs from "
            f"its manifest ({manifest.catalogue.item_count} items, "
            f"hash {manifest.catalogue.content_hash[:12]})"
        )
    return items


def _build_trie(items: Sequence[dict[str, Any]], manifest: Manifest) -> tuple[list[SemanticId], PrefixTrie]:
    try:
        ids = [SemanticId.from_codes(codes) for codes in row_semantic_ids(items)]
        return ids, PrefixTrie(ids, manifest.semantic_ids.scheme)
    except (InvalidSemanticId, KeyError, TypeError) as error:
        raise BundleMismatch(
            f"bundle {manifest.bundle_id}: bad semantic ID in {CATALOGUE}: {error}"
        ) from error


def _base_dir(manifest: Manifest, base_models_dir: Path) -> Path:
    base_dir = base_models_dir / manifest.base_model.name
    if not (base_dir / BASE_WEIGHTS).is_file():
        raise BundleMismatch(
            f"bundle {manifest.bundle_id} needs base model {manifest.base_model.name!r}, "
            f"which is not in {base_models_dir} (run `semid prepare-base-model`)"
        )
    return base_dir


def _check_base_weights(manifest: Manifest, base_dir: Path) -> None:
    actual = base_weights_sha256(base_dir)
    if actual != manifest.base_model.weights_sha256:
        raise BundleMismatch(
            f"base model {base_dir} has weights sha256 {actual[:12]}, but bundle {manifest.bundle_id} "
            f"was trained on {manifest.base_model.weights_sha256[:12]}"
        )


def _model_class(base_dir: Path) -> Any:
    """The causal-LM class of the base model's config, its module imported (only where transformers'
    model is built: the import is most of its cost)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    config = AutoConfig.from_pretrained(str(base_dir))
    return MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]


@torch.no_grad()
def _build_model(
    model_class: Any, bundle_dir: Path, base_dir: Path, tokenizer: Any, manifest: Manifest
) -> Any:
    with FROM_PRETRAINED_LOCK:  # the query encoder may be loading on another thread
        model: Any = model_class.from_pretrained(str(base_dir), dtype=torch.float32)
    size = resize_for_tokens(model, tokenizer)
    ids, rows = new_token_rows(bundle_dir, manifest, size)
    embedding = model.get_input_embeddings().weight
    embedding[ids] = rows["embed_tokens"].to(embedding.dtype)
    if "lm_head" in rows:  # the new tokens read one row and write another: the head gets its own copy
        untie_head(model)
        head = model.get_output_embeddings().weight
        head[ids] = rows["lm_head"].to(head.dtype)
    if (bundle_dir / FINETUNED_LAYERS).is_file():
        _drop_layers_as_trained(model, manifest)
        return _with_layers(model, bundle_dir / FINETUNED_LAYERS, manifest)
    # A LoRA bundle (written by the retired loop; still served). Only those need peft: importing it costs
    # ~1 s of every cold start.
    from peft import PeftModel

    with FROM_PRETRAINED_LOCK:
        peft_model = PeftModel.from_pretrained(model, str(bundle_dir / ADAPTER_DIR))
    return peft_model.merge_and_unload()


def _drop_layers_as_trained(model: Any, manifest: Manifest) -> None:
    """The frozen layers training removed below the trained ones, removed here alike."""
    drop_decoder_layers(model, *dropped_layers(manifest, len(model.get_decoder().layers)))


def _with_layers(model: Any, path: Path, manifest: Manifest) -> Any:
    """The base model with a top-layers bundle's fine-tuned layers in place."""
    layers = load_file(str(path))
    check_finetuned_names(layers, {name: value.shape for name, value in model.state_dict().items()}, manifest)
    model.load_state_dict(layers, strict=False)
    return model
