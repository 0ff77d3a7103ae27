"""The top-layers method on the tiny Llama: frozen weights stay put, caching is exact, the loop learns,
the per-epoch generator is seeded, bf16 only where native, and the model round-trips through a bundle;
with LoRA on the top layers (or on every layer), only the adapters train and the export merges them into a
plain model."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from peft.tuners.lora import LoraLayer

from app.inference.model_loading import load_recommender_model
from semantic_ids.bundle import FusionParams, read_manifest
from semantic_ids.causal_lm import compute_dtype, cpu_has_native_bf16
from semantic_ids.decoding import ConstrainedDecoder
from semantic_ids.trie import PrefixTrie
from tests.helpers.tiny_catalogue import TINY_SCHEME, tiny_catalogue
from tests.unit.training.test_finetune import CONFIG, make_run
from training.llm.batches import collate, encode_examples, length_grouped_batches
from training.llm.finetune_config import FinetuneConfig
from training.llm.lora import LoraSettings
from training.llm.query_generator import QueryGenerator, title_form
from training.llm.step_precision import _fastest, choose_step_precision
from training.llm.top_layers import ActivationCache, TopLayersModel
from training.llm.top_layers_stage import prepare_top_layers
from training.llm.train_top_layers import _optimizer, train_top_layers
from training.pipeline.stages import train_model, write_run_bundle
from training.run_layout import RunLayout

TOP = replace(
    CONFIG,
    finetune=replace(
        CONFIG.finetune,
        method="top_layers",
        trainable_layers=1,
        lr_layers=3e-3,
        lr_tokens=3e-2,
        max_steps=240,
        queries_per_item=16,
        eval_every=120,
        precision="fp32",  # the timed choice (auto) could differ run to run; tested on its own below
    ),
    eval_queries=12,  # the other 8 held-out queries are watched during training
)
# LoRA on the top layer in place of training it in full (hidden size 64: rank 4 is a sixteenth of it).
TOP_LORA = replace(TOP.finetune, method="top_layers_lora", lora=LoraSettings(rank=4, alpha=8), lr_lora=2e-2)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_run(tmp_path_factory.mktemp("top"))


def _split(
    run: tuple[Path, Path], config: FinetuneConfig = TOP.finetune
) -> tuple[TopLayersModel, Any, list[dict[str, torch.Tensor]]]:
    run_dir, base_models = run
    items, report, scheme = RunLayout(run_dir).load_id_outputs()
    base = base_models / TOP.base_model
    model, tokenizer, _ = prepare_top_layers(base, scheme, items, config, int(report["rq_levels"]))
    examples = QueryGenerator(items, 4, seed=0).epoch(0)
    encoded = encode_examples(tokenizer, examples, 64)
    batches = [collate(encoded[i : i + 16], tokenizer.pad_token_id) for i in range(0, 64, 16)]
    return model, tokenizer, batches


def _train(model: TopLayersModel, batches: list[dict[str, torch.Tensor]], passes: int) -> list[float]:
    """``passes`` passes of AdamW steps over ``batches``; the loss of each step."""
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    losses = []
    for _ in range(passes):
        for batch in batches:
            loss = model(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(float(loss.detach()))
    return losses


def test_frozen_layers_stay_bit_identical_while_the_loss_falls(run: tuple[Path, Path]) -> None:
    torch.manual_seed(0)
    model, _, batches = _split(run)
    frozen = {n: p.detach().clone() for n, p in model.lm.named_parameters() if not p.requires_grad}
    assert any(".layers.0." in n for n in frozen) and not any(".layers.1." in n for n in frozen)
    losses = _train(model, batches, passes=15)
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4])
    for name, param in model.lm.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name


def test_cached_lower_activations_give_the_same_loss(run: tuple[Path, Path]) -> None:
    model, _, batches = _split(run)
    cache = ActivationCache(model, batches)
    for index, batch in enumerate(batches):
        assert float(model(batch, cache[index])) == pytest.approx(float(model(batch)), rel=1e-6)


def test_fp16_frozen_weights_give_fp32s_loss_and_leave_the_saved_model_fp32(run: tuple[Path, Path]) -> None:
    torch.manual_seed(0)
    model, _, batches = _split(run)
    reference = [float(model(batch).detach()) for batch in batches]
    model.store_frozen_fp16()
    assert type(model._parts()[0][0].mlp.down_proj) is not torch.nn.Linear  # the fp16-weight copy runs
    np.testing.assert_allclose([float(model(batch).detach()) for batch in batches], reference, rtol=2e-3)
    losses = _train(model, batches, passes=8)
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    exported = model.export()
    linears = [m for m in exported.model.layers.modules() if "Linear" in type(m).__name__]
    assert linears and all(type(m) is torch.nn.Linear for m in linears)  # what is saved stays fp32
    assert not any("_frozen" in name for name, _ in model.named_parameters())


def test_step_precision_is_taken_as_asked_or_timed_on_the_cpu(run: tuple[Path, Path]) -> None:
    cpu, model = torch.device("cpu"), _split(run)[0]
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert choose_step_precision(model, "fp32", cpu, 8).dtype == torch.float32
    assert choose_step_precision(model, "bf16", cpu, 8).dtype == torch.bfloat16
    assert model._frozen_fp16 is None
    with pytest.raises(ValueError, match="unknown precision"):
        choose_step_precision(model, "int8", cpu, 8)
    with pytest.raises(ValueError, match="CPU only"):
        choose_step_precision(model, "fp32-frozen-fp16", torch.device("cuda"), 8)
    chosen = choose_step_precision(model, "fp32-frozen-fp16", cpu, 8)
    assert (chosen.dtype, chosen.frozen_fp16) == (torch.float32, True) and model._frozen_fp16 is not None
    model.drop_frozen_fp16()
    timed = choose_step_precision(model, "auto", cpu, 8)  # the fastest here: any of the three, as stored
    assert timed.name in ("fp32", "bf16", "fp32-frozen-fp16")
    assert (model._frozen_fp16 is not None) == timed.frozen_fp16
    for name, param in model.named_parameters():  # the probe's steps leave no trace
        assert param.grad is None and torch.equal(param, frozen[name]), name


def test_a_precision_whose_product_is_too_slow_is_not_timed(
    run: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    # Emulated bf16 (a CPU without its instructions) took 27x fp32's step: its probe steps alone would
    # spend minutes of the training budget. Any product is slower than 0x fp32's, so bf16 is left out.
    cpu, model = torch.device("cpu"), _split(run)[0]
    with caplog.at_level(logging.INFO, logger="training.llm.step_precision"):
        assert _fastest(model, 8, cpu, skip_slower_than=0.0) != "bf16"
    assert "not timing bf16" in caplog.text
    assert "'bf16'" not in caplog.records[-1].getMessage()  # no step of it timed
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="training.llm.step_precision"):
        _fastest(model, 8, cpu, skip_slower_than=float("inf"))
    assert "not timing" not in caplog.text and "'bf16'" in caplog.records[-1].getMessage()


def test_compiled_layers_train_like_eager_ones_and_export_the_plain_model(run: tuple[Path, Path]) -> None:
    losses = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model, _, batches = _split(run)
        if compiled:
            assert model.compile_layers()  # this machine has g++
        optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
        run_losses = []
        for batch in [*batches, *batches]:  # widths differ: dynamic shapes, no recompilation per width
            loss = model(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            run_losses.append(float(loss.detach()))
        losses.append(run_losses)
        assert type(model.export().model) is type(model.lm.model)  # decoding gets the plain body
        assert not any(name.startswith("_compiled") for name, _ in model.named_parameters())
    np.testing.assert_allclose(losses[1], losses[0], rtol=2e-3)


def test_compiling_reuses_one_graph_for_every_layer(run: tuple[Path, Path]) -> None:
    """Regional compilation: the layers share their compiled code (one graph with grad, one without),
    where compiling the body unrolled every layer; the tiny model is deepened to 12 layers to tell."""
    run_dir, base_models = run
    items, report, scheme = RunLayout(run_dir).load_id_outputs()
    base = base_models / TOP.base_model
    small, _, new_ids = prepare_top_layers(base, scheme, items, TOP.finetune, int(report["rq_levels"]))
    lm = small.lm
    for _ in range(5):
        lm.model.layers.extend(copy.deepcopy(layer) for layer in list(lm.model.layers[:2]))
    for index, layer in enumerate(lm.model.layers):
        layer.self_attn.layer_idx = index
    lm.config.num_hidden_layers = len(lm.model.layers)
    model = TopLayersModel(lm, 6, new_ids)
    batches = _split(run)[2]
    torch._dynamo.reset()
    assert model.compile_layers()
    for batch in batches[:2]:
        model(batch).backward()
    # Without grad (below the cut), then with grad for the first layer above it (its input needs none)
    # and for the others, with a graph break or two: a handful, where a graph per layer would be 12.
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] <= 6


def test_the_time_budget_counts_caching_the_frozen_activations(
    run: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building an epoch's cache is training time: a budget shorter than the build stops after one step."""
    run_dir, base_models = run
    items, report, scheme = RunLayout(run_dir).load_id_outputs()
    config = replace(TOP.finetune, time_budget_s=1.0, epoch_repeats=2, eval_every=0)
    model, tokenizer, _ = prepare_top_layers(
        base_models / TOP.base_model, scheme, items, config, int(report["rq_levels"])
    )
    build = ActivationCache.__init__

    def slow_build(self: ActivationCache, *args: Any) -> None:
        time.sleep(1.5)
        build(self, *args)

    monkeypatch.setattr(ActivationCache, "__init__", slow_build)
    result = train_top_layers(model, tokenizer, QueryGenerator(items, 4, seed=0), config)
    assert result.steps == 1 and result.train_seconds >= 1.5


def test_a_budget_spent_before_the_first_step_still_trains_one(run: tuple[Path, Path]) -> None:
    """The precision probe counts against the budget: on a slow machine a short budget (the GPU check's,
    run on a CPU) was spent before the first step, which left no history and crashed the pipeline."""
    run_dir, base_models = run
    items, report, scheme = RunLayout(run_dir).load_id_outputs()
    config = replace(TOP.finetune, time_budget_s=1e-6, eval_every=0)
    model, tokenizer, _ = prepare_top_layers(
        base_models / TOP.base_model, scheme, items, config, int(report["rq_levels"])
    )
    result = train_top_layers(model, tokenizer, QueryGenerator(items, 4, seed=0), config)
    assert result.steps == 1 and [record["step"] for record in result.history] == [1]


def test_query_generator_is_seeded_and_differs_between_epochs(run: tuple[Path, Path]) -> None:
    items, _, _ = RunLayout(run[0]).load_id_outputs()
    generator = QueryGenerator(items, 5, seed=3)
    first = generator.epoch(0)
    assert first == QueryGenerator(items, 5, seed=3).epoch(0)
    assert [e["query"] for e in generator.epoch(1)] != [e["query"] for e in first]
    assert len(first) == 5 * len(items) and {e["item_id"] for e in first} == {i.item_id for i in items}
    assert all(e["target"].endswith("[SEM_END]") and e["prompt"].endswith("[SEM_START]") for e in first)


def test_an_epoch_in_chunks_covers_every_item_once_and_one_chunk_is_the_whole_epoch(
    run: tuple[Path, Path],
) -> None:
    """Past ``chunk_items`` items an epoch is generated a seeded random slice of items at a time: every
    item's queries in exactly one chunk, ``epoch`` the chunks in order; up to it, one chunk drawn as the
    whole epoch always was (the pinned queries of test_query_templates hold that too)."""
    items, _, _ = RunLayout(run[0]).load_id_outputs()
    whole = QueryGenerator(items, 3, seed=5)
    assert list(whole.chunks(0)) == [whole.epoch(0)]
    chunked = QueryGenerator(items, 3, seed=5, chunk_items=7)
    chunks = list(chunked.chunks(0))
    assert len(chunks) == chunked.chunk_count == -(-len(items) // 7) > 2
    owners = [{e["item_id"] for e in chunk} for chunk in chunks]
    assert sum(len(o) for o in owners) == len(items) and set().union(*owners) == {i.item_id for i in items}
    assert all(len(chunk) == 3 * len(o) for chunk, o in zip(chunks, owners, strict=True))
    assert owners[0] != {i.item_id for i in items[:7]}  # a random slice, not the catalogue's first rows
    assert (
        chunked.epoch(0)
        == [e for chunk in chunks for e in chunk]
        == QueryGenerator(items, 3, seed=5, chunk_items=7).epoch(0)
    )
    assert [{e["item_id"] for e in c} for c in chunked.chunks(1)] != owners  # dealt again each epoch


def test_the_first_chunk_sample_matches_only_what_it_picks(run: tuple[Path, Path]) -> None:
    items, _, _ = RunLayout(run[0]).load_id_outputs()
    generator = QueryGenerator(items, 4, seed=2)
    matched = {e["query"]: e["matching_item_ids"] for e in generator.epoch(0, with_matching=True)}
    picked = generator.first_chunk_sample(lambda first: first[3:9], with_matching=True)
    assert [e["query"] for e in picked] == [e["query"] for e in generator.epoch(0)[3:9]]
    assert all(e["matching_item_ids"] == matched[e["query"]] for e in picked)
    plain = generator.first_chunk_sample(lambda first: first[:5])
    assert len(plain) == 5 and not any("matching_item_ids" in e for e in plain)


def test_training_over_chunks_sees_every_chunk(run: tuple[Path, Path]) -> None:
    """A catalogue in several chunks trains through all of them in one epoch: as many steps as the
    chunks' batches, every item's query seen once."""
    run_dir, base_models = run
    items, report, scheme = RunLayout(run_dir).load_id_outputs()
    config = replace(TOP.finetune, batch_size=4, eval_every=0)
    model, tokenizer, _ = prepare_top_layers(
        base_models / TOP.base_model, scheme, items, config, int(report["rq_levels"])
    )
    generator = QueryGenerator(items, 1, seed=0, chunk_items=max(2, len(items) // 3))
    batches = [
        length_grouped_batches(encode_examples(tokenizer, chunk, config.max_length), 4, config.seed)
        for chunk in generator.chunks(0)
    ]
    assert len(batches) >= 3
    config = replace(config, max_steps=sum(len(b) for b in batches))
    result = train_top_layers(model, tokenizer, generator, config)
    assert result.steps == config.max_steps and {r["epoch"] for r in result.history} == {0}
    assert result.examples_seen == len(items)


def test_title_forms_drop_articles_and_keep_a_side_of_a_colon() -> None:
    forms = {
        title_form("The Lord of the Rings: The Two Towers", __import__("random").Random(s)) for s in range(60)
    }
    assert "Lord of the Rings: The Two Towers" in forms
    assert {"The Lord of the Rings", "The Two Towers"} & forms
    keywords = {form for form in forms if "of" not in form.split() and form.startswith("Lord")}
    assert keywords and all(set(form.split()) <= {"Lord", "Rings", "Two", "Towers"} for form in keywords)


def test_bf16_is_chosen_only_where_the_cpu_has_it() -> None:
    cpu = torch.device("cpu")
    assert compute_dtype(cpu, cpuinfo="flags : fpu sse avx2") == torch.float32
    assert compute_dtype(cpu, cpuinfo="flags : fpu avx512f avx512_bf16") == torch.float32  # no AMX
    amd = "vendor_id : AuthenticAMD\nflags : fpu avx512f avx512_bf16"  # Zen runs AVX512-BF16 natively
    assert compute_dtype(cpu, cpuinfo=amd) == torch.bfloat16
    assert compute_dtype(cpu, cpuinfo="vendor_id : AuthenticAMD\nflags : fpu avx2") == torch.float32
    assert compute_dtype(cpu, cpuinfo="flags : amx_bf16 amx_tile") == torch.bfloat16
    assert compute_dtype(cpu, "fp32", cpuinfo="flags : amx_bf16") == torch.float32
    assert cpu_has_native_bf16("flags : avx512f") is False
    with pytest.raises(ValueError, match="unknown precision"):
        compute_dtype(cpu, "fp16")


@pytest.fixture(scope="module")
def trained(run: tuple[Path, Path]) -> dict[str, Any]:
    # Both tiny layers trainable: one random frozen layer under a char-level tokenizer leaves too little.
    config = replace(TOP, finetune=replace(TOP.finetune, trainable_layers=2))
    result, tokenizer, new_ids = train_model(RunLayout(run[0]), run[1], config)
    items, _, _ = RunLayout(run[0]).load_id_outputs()
    decoder = ConstrainedDecoder(result.model, tokenizer, PrefixTrie([i.sid for i in items], TINY_SCHEME))
    return {
        "result": result,
        "tokenizer": tokenizer,
        "new_ids": new_ids,
        "decoder": decoder,
        "config": config,
    }


def test_training_learns_and_watches_both_recalls(trained: dict[str, Any]) -> None:
    history = trained["result"].history
    assert np.mean([r["loss"] for r in history[-20:]]) < 0.5 * np.mean([r["loss"] for r in history[:5]])
    watched = [r for r in history if "train_recall@10" in r]
    assert [r["step"] for r in watched] == [120, 240] and "heldout_recall@10" in watched[-1]
    assert history[-1]["exposures_per_item"] >= 16
    # 20 items, so a random ranking scores 0.5 Recall@10; the watch must see clearly better than that.
    assert watched[-1]["train_recall@10"] >= 0.7 and watched[-1]["heldout_recall@10"] >= 0.6


def _bundle(
    trained: dict[str, Any], run: tuple[Path, Path], tmp_path: Path, fusion: FusionParams | None = None
) -> Path:
    bundle = tmp_path / "bundle"
    write_run_bundle(
        trained["result"].model, trained["tokenizer"], trained["new_ids"], RunLayout(run[0]),
        run[1], replace(trained["config"], fusion=fusion), {"steps": 1}, {"recall@10": 1.0}, bundle,
    )  # fmt: skip
    return bundle


PRESET = FusionParams(lexical_depth=7, title_weight=3.0, tuned_on="a preset")


@pytest.mark.parametrize("fusion", [None, PRESET])
def test_the_bundle_gets_the_configs_fusion(
    trained: dict[str, Any], run: tuple[Path, Path], tmp_path: Path, fusion: FusionParams | None
) -> None:
    retrieval = read_manifest(_bundle(trained, run, tmp_path, fusion)).retrieval
    assert retrieval is not None and retrieval.fusion == (fusion or FusionParams())
    assert replace(trained["config"], fusion=fusion).to_dict()["fusion"] == (
        None if fusion is None else fusion.model_dump(exclude={"figures"})
    )


def test_the_bundle_leaves_the_query_configurations_framing_words_out_of_lexical_queries(
    trained: dict[str, Any], run: tuple[Path, Path], tmp_path: Path
) -> None:
    loaded = load_recommender_model(_bundle(trained, run, tmp_path), run[1], "cpu", precision="fp32")
    assert {"movie", "film", "starring", "show"} <= set(loaded.lexical.framing)
    assert loaded.lexical.scores("show me a movie starring").bm25.max() == 0.0  # nothing but framing


def test_top_layers_model_round_trips_through_the_bundle(
    trained: dict[str, Any], run: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle = _bundle(trained, run, tmp_path)
    assert (bundle / "finetuned_layers.safetensors").is_file() and not (bundle / "adapter").exists()
    loaded = load_recommender_model(bundle, run[1], "cpu", precision="fp32")
    queries = ["Heat", "Ran by Akira Kurosawa", "romance with Emma Stone"]
    expected = trained["decoder"].decode(queries, num_beams=8, top_k=5)
    actual = loaded.decoder().decode(queries, num_beams=8, top_k=5)
    assert [[c.semantic_id for c in r] for r in actual] == [[c.semantic_id for c in r] for r in expected]
    for got, want in zip(actual, expected, strict=True):
        assert [c.score for c in got] == pytest.approx([c.score for c in want], abs=1e-4)
    assert len(tiny_catalogue()) == 20


def test_bf16_serving_keeps_the_top_id(
    trained: dict[str, Any], run: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle = _bundle(trained, run, tmp_path)
    fp32 = load_recommender_model(bundle, run[1], "cpu", precision="fp32")
    bf16 = load_recommender_model(bundle, run[1], "cpu", precision="bf16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    items, _, _ = RunLayout(run[0]).load_id_outputs()
    queries = [item.title for item in items]
    want = fp32.decoder().decode(queries, num_beams=8, top_k=1)
    got = bf16.decoder().decode(queries, num_beams=8, top_k=1)
    same = sum(a[0].semantic_id == b[0].semantic_id for a, b in zip(got, want, strict=True))
    assert same >= 0.9 * len(queries)


def test_bf16_training_path_runs_on_cpu(run: tuple[Path, Path]) -> None:
    # The CUDA path is this one with device "cuda": autocast to bf16, fp32 master weights and loss.
    items, report, scheme = RunLayout(run[0]).load_id_outputs()
    config = replace(TOP.finetune, precision="bf16", max_steps=6, eval_every=0)
    model, tokenizer, _ = prepare_top_layers(
        run[1] / TOP.base_model, scheme, items, config, int(report["rq_levels"])
    )
    result = train_top_layers(model, tokenizer, QueryGenerator(items, 4, seed=0), config)
    assert result.steps == 6 and all(np.isfinite(r["loss"]) for r in result.history)
    assert all(p.dtype == torch.float32 for p in model.trainable_parameters())


def _assert_same_logits(lm: Any, other: Any, batch: dict[str, torch.Tensor]) -> None:
    """The same logits up to fp32 rounding: a merged W + BA rounds differently from x W + (x A) B, by up to
    1.9e-5 on an AVX2-only CPU (2026-12-06), under 1e-5 on AVX-512 ones; a wrong merge is off by far more."""
    with torch.no_grad():
        got, want = (
            m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            for m in (lm, other)
        )
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def _lora_modules(module: torch.nn.Module) -> list[str]:
    return [name for name, part in module.named_modules() if isinstance(part, LoraLayer)]


def test_top_layers_lora_trains_only_the_adapters_norm_and_rows(run: tuple[Path, Path]) -> None:
    model, _, batches = _split(run, TOP_LORA)
    trained = {name for name, param in model.named_parameters() if param.requires_grad}
    adapters = {name for name in trained if ".lora_A." in name or ".lora_B." in name}
    assert trained - adapters == {"code_rows", "lm.model.norm.weight"}
    assert len(adapters) == 2 * 7  # A and B on each of the top layer's seven projections
    assert not _lora_modules(model.lower_layers) and len(_lora_modules(model.upper_layers)) == 7
    lora_count = sum(p.numel() for p in model.trainable_parameters())
    full_count = sum(p.numel() for p in _split(run)[0].trainable_parameters())
    assert lora_count < full_count / 5
    reference = float(model(batches[0]).detach())
    model.store_frozen_fp16()  # the frozen layers stay plain: their fp16-weight copy runs as without LoRA
    assert float(model(batches[0]).detach()) == pytest.approx(reference, rel=2e-3)


def test_top_layers_lora_exports_its_adapters_merged_and_trains_on_after(run: tuple[Path, Path]) -> None:
    torch.manual_seed(0)
    model, _, batches = _split(run, TOP_LORA)
    frozen = {n: p.detach().clone() for n, p in model.lm.named_parameters() if not p.requires_grad}
    losses = _train(model, batches, passes=8)
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    exported = model.export()
    assert not _lora_modules(exported) and not hasattr(exported, "peft_config")
    assert exported.state_dict().keys() == _split(run)[0].export().state_dict().keys()
    base = frozen["model.layers.1.self_attn.q_proj.base_layer.weight"]
    assert not torch.equal(exported.model.layers[1].self_attn.q_proj.weight, base)  # merged: W + BA
    _assert_same_logits(exported, model.lm, batches[0])
    # The export merged into a copy: the training model keeps its adapters and its base weights.
    assert len(_lora_modules(model.upper_layers)) == 7
    adapters = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    _train(model, batches, passes=1)
    assert all(not torch.equal(p, adapters[n]) for n, p in model.named_parameters() if "lora_" in n)
    _assert_same_logits(model.export(), model.lm, batches[0])
    for name, param in model.lm.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name


def test_top_layers_lora_on_every_layer_is_lora_everywhere(run: tuple[Path, Path]) -> None:
    """``--trainable-layers`` at the model's count: what the retired first loop trained, in the one loop."""
    torch.manual_seed(0)
    model, _, batches = _split(run, replace(TOP_LORA, trainable_layers=2))
    assert len(model.lower_layers) == 0 and len(_lora_modules(model.upper_layers)) == 2 * 7
    losses = _train(model, batches, passes=8)
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    exported = model.export()
    assert not _lora_modules(exported)
    _assert_same_logits(exported, model.lm, batches[0])


def test_top_layers_lora_trains_in_the_loop_and_round_trips_through_the_bundle(
    run: tuple[Path, Path], tmp_path: Path
) -> None:
    run_dir, base_models = run
    items, report, scheme = RunLayout(run_dir).load_id_outputs()
    config = replace(TOP_LORA, max_steps=6, eval_every=2)
    model, tokenizer, new_ids = prepare_top_layers(
        base_models / TOP.base_model, scheme, items, config, int(report["rq_levels"])
    )
    by_lr = {g["base_lr"]: {id(p) for p in g["params"]} for g in _optimizer(model, config).param_groups}
    named = dict(model.named_parameters())
    assert by_lr[config.lr_lora] == {id(p) for n, p in named.items() if "lora_" in n}
    assert by_lr[config.lr_layers] == {id(named["lm.model.norm.weight"])}
    watched: list[torch.Tensor] = []

    def watch(lm: Any) -> dict[str, float]:
        assert not _lora_modules(lm)
        watched.append(lm.model.layers[1].self_attn.q_proj.weight.clone())
        return {"probe_recall@10": 1.0}

    result = train_top_layers(model, tokenizer, QueryGenerator(items, 4, seed=0), config, watch)
    assert result.steps == 6 and len(watched) == 3  # steps 2, 4 and 6
    assert not torch.equal(watched[0], watched[1]) and not torch.equal(watched[1], watched[2])
    bundle = tmp_path / "bundle"
    write_run_bundle(
        result.model, tokenizer, new_ids, RunLayout(run_dir), base_models, replace(TOP, finetune=config),
        {"steps": 6}, {"recall@10": 1.0}, bundle,
    )  # fmt: skip
    assert read_manifest(bundle).lora == config.adapter() and not (bundle / "adapter").exists()
    loaded = load_recommender_model(bundle, base_models, "cpu", precision="fp32")
    batch = collate(encode_examples(tokenizer, QueryGenerator(items, 1, seed=1).epoch(0)[:8], 64), 0)
    _assert_same_logits(loaded.model, result.model, batch)
