"""A written bundle loads back into the model that was trained (and a LoRA bundle of the retired loop into
the model it was written from); a bundle that does not fit is refused."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from app.inference.model_loading import load_recommender_model
from semantic_ids.bundle import (
    ADAPTER_DIR,
    CATALOGUE,
    DENSE_DIR,
    FINETUNED_LAYERS,
    MANIFEST,
    SCHEMA_VERSION,
    BundleMismatch,
    file_sha256,
    read_manifest,
    write_manifest,
)
from semantic_ids.causal_lm import Fp16StoredLinear, cpu_runs_fp16_weights, resize_for_tokens
from semantic_ids.decoding import ConstrainedDecoder, build_prompt
from semantic_ids.ids import SemanticId
from semantic_ids.llama_body import LlamaBody
from semantic_ids.search_steps import prompt_positions
from semantic_ids.trie import PrefixTrie
from tests.helpers.lora_bundle import write_lora_bundle
from tests.helpers.tiny_catalogue import TINY_ID_REPORT, TINY_SCHEME, tiny_catalogue, tiny_items
from tests.helpers.tiny_encoder import HashingEncoder
from tests.helpers.tiny_models import make_tiny_base_model
from training import cli
from training.bundle_writer import BundleInputs, add_dense_index, write_bundle
from training.llm.finetune_config import FinetuneConfig
from training.llm.lora import LoraSettings
from training.llm.tokens import add_semantic_tokens, initialise_new_rows
from training.llm.top_layers import TopLayersModel

QUERIES = ["a crime drama by Michael Mann", "Alien", "japanese film from the eighties"]
TOP_LAYER = FinetuneConfig(trainable_layers=1)
PRUNED = FinetuneConfig(trainable_layers=1, dropped_layers=1)  # the tiny model's lower layer removed


def _base(root: Path) -> tuple[Path, Any, Any, list[int]]:
    """(base folder, tiny Llama with the semantic-ID tokens and initialised rows, tokenizer, new ids)."""
    base_dir = make_tiny_base_model(root / "base_models")
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    new_ids = add_semantic_tokens(tokenizer, TINY_SCHEME)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    resize_for_tokens(model, tokenizer)
    initialise_new_rows(
        model, tokenizer, TINY_SCHEME, strategy="cluster", items=tiny_catalogue(), rq_levels=2
    )
    return base_dir, model, tokenizer, new_ids


def _inputs(base_dir: Path, lora: dict[str, Any]) -> BundleInputs:
    return BundleInputs(
        profile="tiny",
        items=tiny_catalogue(),
        id_report=TINY_ID_REPORT,
        base_model_dir=base_dir,
        base_model_source="tests.helpers.tiny_models",
        embedding_model="none",
        embedding_dimensions=8,
        rqvae_path=None,
        lora=lora,
        training={"steps": 0},
        evaluation={"recall@10": 1.0},
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The training loop's export of a tiny model whose trained weights (top layer, final norm, new output
    rows) are far from their initial values, and its bundle."""
    return _trained_bundle(tmp_path_factory.mktemp("roundtrip"), TOP_LAYER)


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """As ``trained``, the frozen layer below the trained one removed (``dropped_layers``)."""
    return _trained_bundle(tmp_path_factory.mktemp("pruned"), PRUNED)


def _trained_bundle(root: Path, config: FinetuneConfig) -> dict[str, Any]:
    base_dir, lm, tokenizer, new_ids = _base(root)
    split = TopLayersModel(lm, config.trainable_layers, new_ids, dropped_layers=config.dropped_layers)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in split.named_parameters():
            if parameter.requires_grad:  # stand-in for training: move every trainable weight
                parameter.add_(torch.randn_like(parameter) * (0.5 if name == "code_rows" else 0.05))
    model = split.export().eval()
    bundle_dir = root / "bundles" / "tiny"
    manifest = write_bundle(
        bundle_dir,
        model=model,
        tokenizer=tokenizer,
        new_token_ids=new_ids,
        inputs=_inputs(base_dir, config.adapter()),
    )
    return _written(model, tokenizer, bundle_dir, root, manifest)


def _written(model: Any, tokenizer: Any, bundle_dir: Path, root: Path, manifest: Any) -> dict[str, Any]:
    """What a bundle fixture hands its tests: the model it was written from, and where it went."""
    return {
        "model": model,
        "tokenizer": tokenizer,
        "bundle_dir": bundle_dir,
        "base_models_dir": root / "base_models",
        "manifest": manifest,
    }


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A LoRA bundle of the retired loop (tests/helpers/lora_bundle.py) over new rows moved far from their
    initial values, and the peft model it was written from."""
    root = tmp_path_factory.mktemp("legacy")
    base_dir, lm, tokenizer, new_ids = _base(root)
    torch.manual_seed(2)
    with torch.no_grad():
        rows = lm.get_input_embeddings().weight
        rows[new_ids] += torch.randn_like(rows[new_ids]) * 0.5
    lora = LoraSettings(rank=4, alpha=8)
    bundle_dir = root / "bundles" / "tiny"
    model, manifest = write_lora_bundle(
        bundle_dir,
        model=lm,
        tokenizer=tokenizer,
        new_token_ids=new_ids,
        inputs=_inputs(base_dir, {}),
        lora=lora,
    )
    return _written(model, tokenizer, bundle_dir, root, manifest)


def _logits(model: Any, tokenizer: Any) -> torch.Tensor:
    batch = tokenizer([build_prompt(q) for q in QUERIES], return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits.float()


@pytest.mark.parametrize("written", ["trained", "pruned", "legacy"])
def test_loaded_model_matches_trained_model(written: str, request: pytest.FixtureRequest) -> None:
    bundle = request.getfixturevalue(written)
    loaded = load_recommender_model(bundle["bundle_dir"], bundle["base_models_dir"], "cpu", precision="fp32")
    expected = _logits(bundle["model"], bundle["tokenizer"])
    actual = _logits(loaded.model, loaded.tokenizer)
    # Merging LoRA into the weights reorders float sums: equal up to rounding, relative to the logit scale.
    assert (actual - expected).abs().max() <= 1e-5 * expected.abs().max(), (actual - expected).abs().max()
    assert loaded.manifest.bundle_id == bundle["manifest"].bundle_id
    assert len(loaded.trie) == 20


@pytest.mark.parametrize("written", ["trained", "pruned", "legacy"])
def test_loaded_decoder_gives_same_top_ids(written: str, request: pytest.FixtureRequest) -> None:
    bundle = request.getfixturevalue(written)
    loaded = load_recommender_model(bundle["bundle_dir"], bundle["base_models_dir"], "cpu", precision="fp32")
    trie = PrefixTrie([SemanticId.from_codes(i["semantic_id"]) for i in tiny_items()], TINY_SCHEME)
    reference = ConstrainedDecoder(bundle["model"], bundle["tokenizer"], trie)
    expected = reference.decode(QUERIES, num_beams=6, top_k=5)
    actual = loaded.decoder().decode(QUERIES, num_beams=6, top_k=5)
    assert [[c.semantic_id for c in row] for row in actual] == [
        [c.semantic_id for c in row] for row in expected
    ]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("written", ["trained", "pruned"])
def test_the_served_body_is_read_from_the_files_as_the_model_would_hold_it(
    written: str, precision: str, request: pytest.FixtureRequest
) -> None:
    """The search's forward is read from the bundle's files without building transformers' model, and
    gives, bit for bit, what the body of that model (built when asked for) gives."""
    bundle = request.getfixturevalue(written)
    loaded = load_recommender_model(
        bundle["bundle_dir"], bundle["base_models_dir"], "cpu", precision=precision
    )
    assert loaded.body is not None and not loaded.reference.built
    of_model = LlamaBody.of(copy.deepcopy(loaded.model))
    assert loaded.reference.built and of_model is not None
    batch = loaded.tokenizer([build_prompt(q) for q in QUERIES], return_tensors="pt", padding=True)
    input_ids, mask = batch["input_ids"], batch["attention_mask"]
    positions = prompt_positions(input_ids, mask)
    served, reference = loaded.body.session(), of_model.session()
    for session in (served, reference):
        session.hidden = session.forward(input_ids, mask, positions)  # type: ignore[attr-defined]
    assert torch.equal(served.hidden, reference.hidden)  # type: ignore[attr-defined]
    first, size = loaded.decoder().token_ids.first[0], loaded.decoder().token_ids.sizes[0]
    last = served.hidden[:, -1]  # type: ignore[attr-defined]
    assert torch.equal(served.logits(last, first, size), reference.logits(last, first, size))
    assert len(loaded.body.qkv) == len(of_model.qkv) == (1 if written == "pruned" else 2)


def test_the_service_never_imports_transformers_model_classes(trained: dict[str, Any]) -> None:
    """Loading a bundle and answering a query import no transformers model code (their loading
    machinery was most of a cold start); asking for the reference model builds it."""
    script = """
import sys
from pathlib import Path
from app.inference.model_loading import load_recommender_model
loaded = load_recommender_model(Path(sys.argv[1]), Path(sys.argv[2]), "cpu")
loaded.decoder().decode(["Alien"], num_beams=4, top_k=2)
model_code = ("transformers.modeling_utils", "transformers.models.llama")
print(sorted(name for name in sys.modules if name.startswith(model_code)))
loaded.model
print("transformers.models.llama.modeling_llama" in sys.modules)
"""
    arguments = [str(trained["bundle_dir"]), str(trained["base_models_dir"])]
    done = subprocess.run(
        [sys.executable, "-c", script, *arguments], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["[]", "True"]


def test_fp16_weights_serve_with_the_model_layers_held_in_fp16_for_generate(trained: dict[str, Any]) -> None:
    """Where the search runs its own forward over fbgemm's fp16 weights, the model's own decoder layers are
    held as plain fp16 copies (the fp32 weights freed, nothing packed twice): ``generate``, the reference,
    still finds what the search finds."""
    if not cpu_runs_fp16_weights():
        pytest.skip("fbgemm's fp16-weight kernel does not run on this CPU")
    loaded = load_recommender_model(
        trained["bundle_dir"], trained["base_models_dir"], "cpu", precision="fp16-weights"
    )
    assert loaded.body is not None
    decoder_linears = [m for m in loaded.model.get_decoder().modules() if isinstance(m, torch.nn.Linear)]
    held = [m for m in loaded.model.get_decoder().modules() if isinstance(m, Fp16StoredLinear)]
    assert not decoder_linears and held and all(m.weight.dtype == torch.float16 for m in held)
    decoder = loaded.decoder()
    searched = decoder.decode(QUERIES, num_beams=6, top_k=5)
    generated = decoder.decode(QUERIES, num_beams=6, top_k=5, method="generate")
    assert [[c.semantic_id for c in row] for row in generated] == [
        [c.semantic_id for c in row] for row in searched
    ]
    for want, got in zip(searched, generated, strict=True):
        assert [c.score for c in got] == pytest.approx([c.score for c in want], rel=1e-4)


def test_training_writes_layers_and_a_lora_bundle_of_the_retired_loop_still_loads(
    trained: dict[str, Any], legacy: dict[str, Any]
) -> None:
    written = trained["bundle_dir"]
    assert (written / FINETUNED_LAYERS).is_file() and not (written / ADAPTER_DIR).exists()
    assert read_manifest(written).lora == {"method": "top_layers", "trainable_layers": 1}
    old = legacy["bundle_dir"]
    assert (old / ADAPTER_DIR / "adapter_config.json").is_file() and not (old / FINETUNED_LAYERS).exists()
    loaded = load_recommender_model(old, legacy["base_models_dir"], "cpu", precision="fp32")
    assert loaded.manifest.lora["method"] == "lora"
    assert not any("lora_" in name for name, _ in loaded.model.named_parameters())  # merged on load


def test_a_bundle_trained_over_fewer_layers_loads_them_alike(pruned: dict[str, Any], tmp_path: Path) -> None:
    """Training removed the frozen layer: the bundle says so, the loaded model has only the trained layer
    (its weights the trained ones, not the base's layer 0), and a base too shallow for it is refused."""
    assert read_manifest(pruned["bundle_dir"]).lora == {
        "method": "top_layers",
        "trainable_layers": 1,
        "dropped_layers": 1,
    }
    loaded = load_recommender_model(pruned["bundle_dir"], pruned["base_models_dir"], "cpu", precision="fp32")
    layers = loaded.model.get_decoder().layers
    assert len(layers) == 1 == loaded.model.config.num_hidden_layers
    assert layers[0].self_attn.layer_idx == 0
    trained_weight = pruned["model"].get_decoder().layers[0].mlp.up_proj.weight
    assert torch.equal(layers[0].mlp.up_proj.weight, trained_weight)
    bundle = _copy(pruned, tmp_path)
    manifest = read_manifest(bundle)
    write_manifest(bundle, manifest.model_copy(update={"lora": {**manifest.lora, "dropped_layers": 2}}))
    with pytest.raises(
        BundleMismatch, match=r"trained 1 layers above 2 dropped ones, but the base model has 2"
    ):
        load_recommender_model(bundle, pruned["base_models_dir"], "cpu")


def _copy(trained: dict[str, Any], tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(trained["bundle_dir"], copy)
    return copy


def test_catalogue_edited_after_writing_is_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    """Checked by the file's digest the manifest records; a bundle written before it kept one is checked
    by the rows' content hash."""
    bundle = _copy(trained, tmp_path)
    manifest = read_manifest(bundle)
    assert manifest.catalogue.file_sha256 == file_sha256(bundle / CATALOGUE)
    lines = (bundle / CATALOGUE).read_text().splitlines()
    (bundle / CATALOGUE).write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(BundleMismatch, match=r"catalogue.jsonl is not the file it was written with"):
        load_recommender_model(bundle, trained["base_models_dir"], "cpu")
    older = manifest.catalogue.model_copy(update={"file_sha256": None})
    write_manifest(bundle, manifest.model_copy(update={"catalogue": older}))
    with pytest.raises(
        BundleMismatch, match=r"catalogue.jsonl \(19 items.*differs from its manifest \(20 items"
    ):
        load_recommender_model(bundle, trained["base_models_dir"], "cpu")


def test_other_catalogue_hash_is_refused(trained: dict[str, Any]) -> None:
    with pytest.raises(
        BundleMismatch, match=r"serves catalogue .* but the catalogue being served is 000000000000"
    ):
        load_recommender_model(
            trained["bundle_dir"], trained["base_models_dir"], "cpu", expected_catalogue_hash="0" * 64
        )


def test_other_schema_version_is_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    bundle = _copy(trained, tmp_path)
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["schema_version"] = 99
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleMismatch, match=r"schema version 99; this code reads versions 1, 2, 3$"):
        load_recommender_model(bundle, trained["base_models_dir"], "cpu")


def test_changed_base_weights_are_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    bases = tmp_path / "bases"
    shutil.copytree(trained["base_models_dir"], bases)
    weights = bases / trained["manifest"].base_model.name / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")
    with pytest.raises(BundleMismatch, match=r"has weights sha256 .* but bundle .* was trained on"):
        load_recommender_model(trained["bundle_dir"], bases, "cpu")


def test_missing_base_model_is_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(
        BundleMismatch, match=r"needs base model 'tiny-random-llama'.*semid prepare-base-model"
    ):
        load_recommender_model(trained["bundle_dir"], tmp_path, "cpu")


def test_a_base_model_without_its_config_is_refused(trained: dict[str, Any], tmp_path: Path) -> None:
    bases = tmp_path / "bases"
    shutil.copytree(trained["base_models_dir"], bases)
    (bases / trained["manifest"].base_model.name / "config.json").unlink()
    with pytest.raises(BundleMismatch, match=r"has no config.json \(run `semid prepare-base-model`\)"):
        load_recommender_model(trained["bundle_dir"], bases, "cpu")


def test_failed_write_leaves_previous_bundle_in_place(trained: dict[str, Any], tmp_path: Path) -> None:
    bundle = _copy(trained, tmp_path)
    before = (bundle / MANIFEST).read_text()
    broken = [tiny_catalogue()[0], tiny_catalogue()[0]]  # two items, one ID: must be refused
    inputs = BundleInputs(
        profile="tiny",
        items=broken,
        id_report=TINY_ID_REPORT,
        base_model_dir=trained["base_models_dir"] / "tiny-random-llama",
        base_model_source="x",
        embedding_model="none",
        embedding_dimensions=8,
        rqvae_path=None,
        lora={},
        training={},
        evaluation={},
    )
    new_ids = trained["tokenizer"].convert_tokens_to_ids(TINY_SCHEME.all_tokens())
    with pytest.raises(ValueError, match="carried by more than one item"):
        write_bundle(
            bundle,
            model=trained["model"],
            tokenizer=trained["tokenizer"],
            new_token_ids=new_ids,
            inputs=inputs,
        )
    assert (bundle / MANIFEST).read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_item_vectors_join_a_bundle_written_without_them(trained: dict[str, Any], tmp_path: Path) -> None:
    """``semid dense-index``: the run's vectors, in its own item order, become the bundle's dense index."""
    bundle = _copy(trained, tmp_path)
    assert (
        not (bundle / DENSE_DIR).exists()
        and load_recommender_model(bundle, trained["base_models_dir"], "cpu").dense is None
    )
    items = tiny_items()[::-1]  # the run lists its items in another order than the bundle
    encoder = HashingEncoder()
    vectors = encoder.encode([item["title"] for item in items])
    ids = [item["item_id"] for item in items]
    with pytest.raises(
        BundleMismatch, match=r"19 item vectors for 19 ids do not cover .* 20 items \(1 missing"
    ):
        add_dense_index(bundle, vectors[1:], ids[1:], encoder.model)
    manifest = add_dense_index(bundle, vectors, ids, encoder.model)
    assert manifest == read_manifest(bundle) and manifest.schema_version == SCHEMA_VERSION
    assert manifest.retrieval is not None and manifest.retrieval.dense_index == DENSE_DIR
    assert (manifest.embedding.model, manifest.embedding.dimensions) == (encoder.model, encoder.dimensions)
    loaded = load_recommender_model(
        bundle, trained["base_models_dir"], "cpu", query_encoder=encoder, with_dense=True
    )
    assert loaded.dense is not None
    expected = encoder.encode([item["title"] for item in tiny_items()])  # the bundle's order
    assert np.allclose(loaded.dense.index.vectors, expected, atol=1e-6)


def test_semid_dense_index_adds_the_runs_vectors(trained: dict[str, Any], tmp_path: Path) -> None:
    bundle = _copy(trained, tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    items = tiny_items()
    (run / "items_with_ids.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))
    (run / "id_report.json").write_text(
        json.dumps(TINY_ID_REPORT | {"embedding_model": HashingEncoder.model})
    )
    np.save(run / "embeddings.npy", HashingEncoder().encode([item["title"] for item in items]))
    command = ["dense-index", "--run-dir", str(run), "--bundle", str(bundle)]
    result = CliRunner().invoke(cli.app, command)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (
        report["dense_index"] == DENSE_DIR and report["embedding"]["dimensions"] == HashingEncoder.dimensions
    )
    assert report["fusion_uses_dense"] is False  # on once bench.tune_fusion --write says so
    np.save(run / "embeddings.npy", np.zeros((19, 64), dtype=np.float32))  # a run of another catalogue
    failed = CliRunner().invoke(cli.app, command)
    assert isinstance(failed.exception, BundleMismatch) and BundleMismatch in cli.DOMAIN_ERRORS
