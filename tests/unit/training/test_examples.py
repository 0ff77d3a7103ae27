"""Fine-tuning examples, ranking metrics and base-model preparation (no training here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from semantic_ids.bundle import base_weights_sha256
from semantic_ids.decoding import build_prompt
from semantic_ids.ids import SemanticId
from tests.helpers.tiny_catalogue import tiny_catalogue, tiny_items
from tests.helpers.tiny_models import make_tiny_base_model
from training.eval.metrics import ambiguity_metrics, ranking_metrics
from training.llm.base_model import BaseModelError, prepare_base_model
from training.llm.examples import ExampleConfig, attribute_example, build_examples
from training.llm.template_files import films_templates

CONFIG = ExampleConfig(train_queries_per_item=8, valid_queries_per_item=2, attribute_examples_per_item=2)


def test_examples_are_seeded_and_prompts_come_from_build_prompt() -> None:
    first, again = build_examples(tiny_catalogue(), CONFIG), build_examples(tiny_catalogue(), CONFIG)
    assert first == again
    assert first != build_examples(tiny_catalogue(), ExampleConfig(seed=1))
    sid_of = {i["item_id"]: SemanticId.from_codes(i["semantic_id"]) for i in tiny_items()}
    for example in first:
        if example["kind"] == "query":
            assert example["prompt"] == build_prompt(example["query"])
            assert example["target"] == "".join(sid_of[example["item_id"]].code_tokens()) + "[SEM_END]"


def test_validation_uses_only_held_out_templates() -> None:
    examples = build_examples(tiny_catalogue(), CONFIG)
    held_out = {t.name for t in films_templates().examples.templates if t.held_out}
    train = {e["template"] for e in examples if e["split"] == "train" and e["kind"] == "query"}
    valid = {e["template"] for e in examples if e["split"] == "valid"}
    assert valid <= held_out and not (train & held_out)
    assert len(valid) >= 5 and len(train) >= 10
    train_queries = {e["query"].lower() for e in examples if e["split"] == "train" and e["kind"] == "query"}
    assert not any(e["query"].lower() in train_queries for e in examples if e["split"] == "valid")


def test_every_item_gets_queries_and_matching_items_include_the_source() -> None:
    examples = build_examples(tiny_catalogue(), CONFIG)
    for item in tiny_items():
        mine = [e for e in examples if e["item_id"] == item["item_id"]]
        assert sum(e["split"] == "train" and e["kind"] == "query" for e in mine) == 8
        for example in (e for e in mine if e["split"] == "valid"):
            assert item["item_id"] in example["matching_item_ids"]
    # "Heat" is the only film by Michael Mann from 1977, but one of four Michael Mann crime dramas.
    heat = next(i for i in tiny_catalogue() if i.title == "Heat")
    assert attribute_example(heat, "director") == (
        f"{heat.sid.tokens} director:",
        " Michael Mann",
    )


def test_queries_vary_in_form() -> None:
    examples = build_examples(tiny_catalogue(), ExampleConfig(train_queries_per_item=30))
    queries = [e["query"] for e in examples if e["kind"] == "query"]
    assert any(q == q.lower() and q != q.upper() for q in queries)  # lowercased
    assert any(word in q for q in queries for word in ("seventies", "70s", "1970s", "eighties", "80s"))
    assert any(g in q for q in queries for g in ("science fiction", "scifi", "sci-fi"))
    assert min(len(q.split()) for q in queries) == 1 and max(len(q.split()) for q in queries) >= 12


def test_ranking_metrics_by_hand() -> None:
    ranked = [["a", "b", "c"], ["x", "y"], ["b", "a"]]
    metrics = ranking_metrics(ranked, ["a", "q", "a"], matching=[["a"], ["q"], ["a", "b"]])
    assert metrics["recall@1"] == pytest.approx(1 / 3, abs=1e-4)
    assert metrics["recall@5"] == pytest.approx(2 / 3, abs=1e-4)
    assert metrics["mrr"] == pytest.approx((1 + 0 + 0.5) / 3, abs=1e-4)
    assert metrics["ndcg@10"] == pytest.approx((1 + 0 + 1 / 1.58496) / 3, abs=1e-4)
    assert metrics["any_match@10"] == pytest.approx(2 / 3, abs=1e-4)


def test_ambiguity_metrics_by_hand() -> None:
    ranked = [["a", "b"], ["x", "y"], ["c", "q"]]
    matching = [["a"], [f"m{i}" for i in range(40)] + ["q"], ["c", "q"]]
    figures = ambiguity_metrics(ranked, ["a", "q", "q"], matching, k=10)
    assert figures["oracle_recall@10"] == pytest.approx((1 + 10 / 41 + 1) / 3, abs=1e-4)
    assert figures["specific_queries"] == 2  # the query that fits 41 items is not specific
    assert figures["specific_recall@10"] == 1.0
    with pytest.raises(ValueError, match="matching lists"):
        ambiguity_metrics(ranked, ["a"], matching)


def test_prepare_base_model_is_idempotent_and_records_the_hash(tmp_path: Path) -> None:
    source = make_tiny_base_model(tmp_path / "hf")
    first = prepare_base_model(tmp_path / "bases", source=source, name="tiny")
    assert not first.reused and first.weights_sha256 == base_weights_sha256(first.folder)
    assert json.loads((first.folder / "prepared.json").read_text())["weights_sha256"] == first.weights_sha256
    again = prepare_base_model(tmp_path / "bases", source=source, name="tiny")
    assert again.reused and again.weights_sha256 == first.weights_sha256
    with pytest.raises(BaseModelError, match=r"neither a \.gguf file nor a Hugging Face model folder"):
        prepare_base_model(tmp_path / "bases", source=tmp_path, name="other")
    assert not (tmp_path / "bases" / "other").exists()
