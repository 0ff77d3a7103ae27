"""Fine-tuning the tiny Llama on the 20-film catalogue through the pipeline's stage (the one training loop,
its default method): it learns, decodes only real IDs, bundles; the CLI's options and their errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.inference.model_loading import load_recommender_model
from semantic_ids.decoding import ConstrainedDecoder
from semantic_ids.ids import SemanticId
from semantic_ids.trie import PrefixTrie
from tests.helpers.semid_cli import run_semid
from tests.helpers.tiny_catalogue import TINY_ID_REPORT, TINY_SCHEME, tiny_items
from tests.helpers.tiny_models import TINY_BASE_NAME, make_tiny_base_model
from training.llm.examples import ExampleConfig
from training.llm.finetune_config import FinetuneConfig
from training.pipeline.config import PipelineConfig
from training.pipeline.stages import make_examples, train_model, write_run_bundle
from training.profiles import PROFILES, Profile, pipeline_config
from training.run_layout import RunLayout

CONFIG = PipelineConfig(
    profile="tiny",
    base_model=TINY_BASE_NAME,
    examples=ExampleConfig(train_queries_per_item=10, attribute_examples_per_item=0),
    finetune=FinetuneConfig(
        trainable_layers=2,  # both tiny layers: one random frozen layer under char-level tokens is little
        batch_size=16,
        max_steps=1600,
        lr_layers=3e-3,
        lr_tokens=3e-2,
        warmup_steps=10,
        eval_every=0,
        eval_queries=8,
        precision="fp32",  # the timed choice (auto) could differ run to run
        device="cpu",
    ),
    eval_queries=20,
)


def make_run(root: Path) -> tuple[Path, Path]:
    """A run folder with the ID pipeline's outputs for the tiny catalogue, and a base-models folder."""
    base_models = root / "base_models"
    make_tiny_base_model(base_models)
    run_dir = root / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    with (run_dir / "items_with_ids.jsonl").open("w") as handle:
        for item in tiny_items():
            handle.write(json.dumps(item) + "\n")
    (run_dir / "id_report.json").write_text(json.dumps(TINY_ID_REPORT))
    vectors = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    np.save(run_dir / "embeddings.npy", vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    make_examples(RunLayout(run_dir), CONFIG.examples)
    return run_dir, base_models


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run_dir, base_models = make_run(tmp_path_factory.mktemp("ft"))
    result, tokenizer, new_ids = train_model(RunLayout(run_dir), base_models, CONFIG)
    trie = PrefixTrie([SemanticId.from_codes(i["semantic_id"]) for i in tiny_items()], TINY_SCHEME)
    decoder = ConstrainedDecoder(result.model, tokenizer, trie)
    return {"result": result, "tokenizer": tokenizer, "new_ids": new_ids, "decoder": decoder,
            "run_dir": run_dir, "base_models": base_models}  # fmt: skip


def test_training_lowers_the_loss(trained: dict[str, Any]) -> None:
    losses = [record["loss"] for record in trained["result"].history]
    assert np.mean(losses[-20:]) < 0.25 * np.mean(losses[:5])
    steps, batch = CONFIG.finetune.max_steps, CONFIG.finetune.batch_size
    # The last batch of an epoch's queries may be short.
    assert 0.9 * steps * batch <= trained["result"].examples_seen <= steps * batch


def test_right_item_first_for_title_queries(trained: dict[str, Any]) -> None:
    # Title queries name one film; attribute queries here often fit several (same director and genre). The
    # loop trains on generated queries, whose title forms name the title alone or with its year: each item's
    # own title, and the examples file's phrasings of those two kinds (some lowercased or with a typo).
    train, _ = RunLayout(trained["run_dir"]).load_examples()
    titled = [(e["query"], e["item_id"]) for e in train if e["template"] in ("title", "title_year")]
    titled += [(item["title"], item["item_id"]) for item in tiny_items()]
    sid_of = {item["item_id"]: SemanticId.from_codes(item["semantic_id"]) for item in tiny_items()}
    top = trained["decoder"].decode([query for query, _ in titled], num_beams=5, top_k=1)
    hits = [row[0].semantic_id == sid_of[item_id] for row, (_, item_id) in zip(top, titled, strict=True)]
    assert len(titled) >= 40
    assert sum(hits) / len(hits) >= 0.9


def test_more_beams_than_items_gives_only_real_distinct_ids(trained: dict[str, Any]) -> None:
    queries = ["Alien", "a comedy from the eighties", "zzz"]
    results = trained["decoder"].decode(queries, num_beams=30, top_k=30)
    for candidates in results:
        ids = [c.semantic_id for c in candidates]
        assert len(ids) == len(set(ids)) == 20
        assert all(sid in trained["decoder"].trie for sid in ids)


def test_trained_model_round_trips_through_the_bundle(trained: dict[str, Any], tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    write_run_bundle(
        trained["result"].model, trained["tokenizer"], trained["new_ids"], RunLayout(trained["run_dir"]),
        trained["base_models"], CONFIG, {"steps": 1}, {"recall@10": 1.0}, bundle,
    )  # fmt: skip
    loaded = load_recommender_model(bundle, trained["base_models"], "cpu", precision="fp32")
    queries = ["Heat", "Ran by Akira Kurosawa", "romance with Emma Stone"]
    expected = trained["decoder"].decode(queries, num_beams=8, top_k=5)
    actual = loaded.decoder().decode(queries, num_beams=8, top_k=5)
    assert [[c.semantic_id for c in r] for r in actual] == [[c.semantic_id for c in r] for r in expected]
    for got, want in zip(actual, expected, strict=True):
        assert [c.score for c in got] == pytest.approx([c.score for c in want], abs=1e-4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["finetune", "--profile", "nope"], "error: unknown profile 'nope': use demo or full"),
        (["pipeline", "--max-steps", "-3", "--reuse-ids"], "error: --max-steps must not be negative, got -3"),
        (["finetune", "--token-init", "zeros"], "error: --token-init must be mean or cluster, got 'zeros'"),
        (["finetune", "--method", "full"],
         "error: --method must be top_layers or top_layers_lora, got 'full'"),
        (["pipeline", "--method", "lora"],
         "error: --method lora was retired: use --method top_layers_lora --trainable-layers 30 "
         "(the base model's layer count) for LoRA on every layer"),
        (["pipeline", "--trainable-layers", "0"], "error: --trainable-layers must be at least 1"),
        (["finetune", "--epoch-repeats", "0"], "error: --epoch-repeats must be at least 1"),
        (["examples", "--run-dir", "/nonexistent/run"],
         "error: /nonexistent/run: no semantic IDs here; run `semid ids` for this run first"),
        (["prepare-base-model", "--source", "/nonexistent/model.gguf"],
         "error: base model source /nonexistent/model.gguf does not exist"),
    ],
)  # fmt: skip
def test_bad_cli_arguments_exit_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert run_semid(monkeypatch, *args) == 2
    assert capsys.readouterr().err.strip().splitlines() == [message]


@pytest.mark.parametrize("method", ["top_layers", "top_layers_lora"])
def test_cli_top_layers_options_reach_the_training_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], method: str
) -> None:
    run_dir, base_models = make_run(tmp_path)
    monkeypatch.setitem(PROFILES, "tiny", Profile("tiny", catalogue_size=None, rqvae={}, pipeline=CONFIG))
    where = ["--profile", "tiny", "--run-dir", str(run_dir), "--base-models-dir", str(base_models)]
    top = ["--method", method, "--time-budget", "0", "--max-steps", "4", "--lr-layers", "5e-3", "--rank", "2"]
    assert run_semid(monkeypatch, "finetune", *where, *top, "--trainable-layers", "3") == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --trainable-layers must be at most 2, the base model's layer count"
    )
    too_deep = ["--trainable-layers", "2", "--dropped-layers", "1"]
    assert run_semid(monkeypatch, "finetune", *where, *top, *too_deep) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --trainable-layers plus --dropped-layers must be at most 2, the base model's layer count"
    )
    one_layer = ["--trainable-layers", "1", "--dropped-layers", "1", "--epoch-repeats", "2"]
    assert run_semid(monkeypatch, "finetune", *where, *top, *one_layer) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 4 and report["config"]["method"] == method
    assert report["config"]["dropped_layers"] == 1
    assert report["config"]["lora"]["rank"] == 2
    assert (report["config"]["trainable_layers"], report["config"]["lr_layers"]) == (1, 5e-3)
    assert report["config"]["epoch_repeats"] == 2


def test_cli_finetune_then_bundle_writes_a_loadable_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, base_models = make_run(tmp_path)
    monkeypatch.setitem(PROFILES, "tiny", Profile("tiny", catalogue_size=None, rqvae={}, pipeline=CONFIG))
    where = ["--profile", "tiny", "--run-dir", str(run_dir), "--base-models-dir", str(base_models)]
    assert run_semid(monkeypatch, "finetune", *where, "--max-steps", "6") == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 6
    (run_dir / "evaluation.json").write_text(json.dumps({"systems": {}}))
    assert run_semid(monkeypatch, "bundle", *where, "--out", str(tmp_path / "bundle")) == 0
    loaded = load_recommender_model(tmp_path / "bundle", base_models, "cpu", precision="fp32")
    assert loaded.manifest.training["steps"] == 6 and len(loaded.trie) == 20
    assert loaded.decoder().decode(["Heat"], num_beams=4, top_k=3)[0]


def test_the_training_budget_shrinks_to_keep_the_whole_run_within_its_total() -> None:
    demo = PROFILES["demo"].pipeline
    assert demo.total_budget_s and demo.finetune.time_budget_s == 1260
    # A fast machine: the stages before took 43 s; the training budget stays as configured.
    assert demo.with_training_time(43.0).finetune.time_budget_s == 1260
    # A slow one: 112 s before; training gets what the total leaves after the reserve for what follows.
    slow = demo.with_training_time(112.0).finetune.time_budget_s
    assert slow == demo.total_budget_s - 112.0 - demo.after_training_s < 1260
    # Never below half the budget: a very slow machine still trains a model.
    assert demo.with_training_time(1_000.0).finetune.time_budget_s == 630
    # A budget given on the command line is taken as given; no total, no change.
    given = demo.with_overrides(time_budget_s=300)
    assert given.with_training_time(1_000.0).finetune.time_budget_s == 300
    assert replace(demo, total_budget_s=0.0).with_training_time(1_000.0) == replace(demo, total_budget_s=0.0)


def test_the_top_layers_lora_method_is_accepted_with_its_lora_settings() -> None:
    config = pipeline_config("demo", method="top_layers_lora", rank=8, lr_lora=5e-3, trainable_layers=12)
    tuned = config.finetune
    assert (tuned.lora.rank, tuned.lora.alpha, tuned.lr_lora) == (8, 16, 5e-3)
    recorded = tuned.adapter()  # the bundle manifest's record: the layers the bundle carries, and the LoRA
    assert (recorded["method"], recorded["trainable_layers"], recorded["rank"]) == ("top_layers_lora", 12, 8)
    assert PROFILES["demo"].pipeline.finetune.adapter() == {
        "method": "top_layers",
        "trainable_layers": 8,
        "dropped_layers": 18,
    }
    assert "dropped_layers" not in PROFILES["full"].pipeline.finetune.adapter()
