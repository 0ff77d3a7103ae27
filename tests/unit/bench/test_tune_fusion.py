"""Fusion tuning on the tiny bundle: held-out phrasings only, one model pass, the choice in the manifest."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from app.inference.model_loading import load_recommender_model
from bench.fusion_eval import Scored, baselines
from bench.tune_fusion import (
    GATE_WEIGHTS,
    MODEL_ONLY,
    _tolerance,
    _within_noise,
    choose,
    collect,
    evaluate,
    fit_dense_gate,
    gate_the_dense_term,
    grid,
    noise,
    people_pairs,
    tune,
    tune_decisive,
    typo_title_pairs,
    valid_examples,
    write_fusion,
)
from semantic_ids.bundle import FusionParams, read_manifest
from semantic_ids.fusion import Candidates
from tests.helpers.tiny_bundle import make_tiny_bundle
from tests.helpers.tiny_encoder import HashingEncoder


def _examples(path: Path, items: list[dict[str, object]]) -> Path:
    rows = []
    for item in items:
        fields = item["fields"]
        assert isinstance(fields, dict)
        rows.append({"split": "train", "item_id": item["item_id"], "query": str(item["title"])})
        rows.append({"split": "valid", "item_id": item["item_id"], "query": f"looking for {item['title']}"})
        rows.append({"split": "valid", "item_id": item["item_id"], "query": f"{fields['director']} film"})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_tuning_reads_held_out_phrasings_and_stores_its_choice(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path, steps=30)
    loaded = load_recommender_model(bundle.bundle_dir, bundle.base_models_dir, "cpu")
    examples = _examples(tmp_path / "examples.jsonl", bundle.items)
    pairs = valid_examples(examples, loaded.lexical.item_ids, None, 0)
    assert len(pairs) == 40 and not any(query == item["title"] for query, _ in pairs for item in bundle.items)
    assert len(valid_examples(examples, loaded.lexical.item_ids, 7, 0)) == 7
    ranker = loaded.ranker()
    collected = collect(ranker, pairs, beams=4, batch=16)
    assert evaluate(collected, MODEL_ONLY) == evaluate(collected, MODEL_ONLY)  # deterministic
    typos = typo_title_pairs(bundle.items, 10)
    assert [len(typos["typo"]), len(typos["typo_phrased"])] == [5, 5]
    typoed = [query for kind in typos.values() for query, _ in kind]
    assert all(query != item["title"] for query in typoed for item in bundle.items)
    assert all(query.startswith("looking for ") for query, _ in typos["typo_phrased"])
    # What a query costs is bench.hybrid_cost's to choose: tuning keeps the bundle's settings.
    ranker.fusion = ranker.fusion.model_copy(update={"model_beam_share": 0.5, "estimate_margin": 1.5})
    result = tune(ranker, pairs, beams=4, batch=16, source="examples.jsonl", kinds=typos)
    chosen = FusionParams.model_validate(result["chosen"])
    assert (chosen.model_beam_share, chosen.estimate_margin) == (0.5, 1.5)
    figures = result["figures"]
    assert len(result["grid"]) == len(grid())
    assert figures["held_out_phrasings"]["queries"] == 40
    assert figures["typo"]["queries"] == figures["typo_phrased"]["queries"] == 5
    # never below the lexical retriever alone on what it was tuned on, when any setting is not
    floor = min(figures["lexical"]["recall@10"], figures["best_in_grid"]["recall@10"])
    assert figures["hybrid"]["recall@10"] >= floor
    # the model alone is in the grid, so the choice never measures worse than it
    assert figures["hybrid"]["recall@10"] >= figures["generative"]["recall@10"]
    best = max(row["recall@10"] for row in result["grid"])
    assert figures["best_in_grid"]["recall@10"] == best
    assert figures["hybrid"]["recall@10"] >= best - noise(best, 50) - 0.5 / 50
    write_fusion(bundle.bundle_dir, chosen)
    manifest = read_manifest(bundle.bundle_dir)
    assert manifest.retrieval is not None and manifest.retrieval.fusion == chosen
    assert "40 held-out phrasings" in chosen.tuned_on and ", 10 typo'd titles" in chosen.tuned_on
    assert load_recommender_model(bundle.bundle_dir, bundle.base_models_dir, "cpu").ranker().fusion == chosen


def test_noise_is_one_standard_error_in_whole_queries() -> None:
    assert noise(296 / 300, 300) == 2 / 300  # SE 1.99 queries
    assert noise(1.0, 300) == 1 / 300  # at least one query
    assert noise(0.5, 100) == 5 / 100  # SE exactly 5 queries


def test_tuning_weighs_the_dense_source_of_a_bundle_with_item_vectors(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path, steps=30, dense=True)
    loaded = load_recommender_model(
        bundle.bundle_dir, bundle.base_models_dir, "cpu", query_encoder=HashingEncoder(), with_dense=True
    )
    assert loaded.dense is not None and not loaded.fusion.uses_dense  # untuned: off until tuning says
    pairs = valid_examples(
        _examples(tmp_path / "examples.jsonl", bundle.items), loaded.lexical.item_ids, None, 0
    )
    ranker = loaded.ranker()
    collected = collect(ranker, pairs, beams=4, batch=16)
    assert all(s.dense_rank is not None and s.candidates.dense is not None for s in collected)
    # The widest dense depth brings in finds that neither the beams nor BM25 had.
    assert any(sources == ("dense",) for s in collected for sources in s.candidates.sources)
    result = tune(ranker, pairs, beams=4, batch=16, source="examples.jsonl")
    assert len(result["grid"]) == len(grid(dense=True)) > len(grid())
    assert {"generative", "lexical", "dense"} <= set(result["figures"])
    chosen = FusionParams.model_validate(result["chosen"])
    best = max(row["recall@10"] for row in result["grid"])
    assert result["figures"]["hybrid"]["recall@10"] >= best - noise(best, 40) - 0.5 / 40
    write_fusion(bundle.bundle_dir, chosen)
    again = load_recommender_model(
        bundle.bundle_dir, bundle.base_models_dir, "cpu", query_encoder=HashingEncoder()
    )
    assert again.fusion == chosen and (again.dense is not None) == chosen.uses_dense


def _scored(target_log_prob: float, title: float, reachable: bool = True) -> Scored:
    """A query whose 11 candidates are all beams: the target (row 0) with ``target_log_prob`` and title
    match ``title``, and ten others the model puts between -0.1 and -1.0; no lexical evidence."""
    log_probs = np.asarray([target_log_prob] + [-0.1 * (i + 1) for i in range(10)])
    candidates = Candidates(
        rows=list(range(11)),
        sources=[("model",)] * 11,
        log_probs=log_probs,
        lexical=np.zeros(11),
        title=np.asarray([title] + [0.0] * 10),
    )
    return Scored(candidates, np.ones(11, dtype=bool), np.arange(11) + 100, (0,) if reachable else (99,), ())


def test_a_small_kind_of_query_is_not_traded_away_within_the_pools_noise() -> None:
    easy = [_scored(0.0, 0.0) for _ in range(300)]  # the model's first choice
    unreachable = [_scored(0.0, 0.0, reachable=False) for _ in range(100)]
    titles = [_scored(-20.0, 1.0) for _ in range(4)]  # found only by a title weight of 32
    pooled = [*easy, *unreachable, *titles]
    # Pooled, losing the 4 is within one standard error (9 queries of 404): the smallest title weight wins.
    assert choose(pooled)[0].title_weight == 0.0
    chosen, _ = choose(pooled, {"held_out_phrasings": [*easy, *unreachable], "typo_phrased": titles})
    assert chosen.title_weight == 32.0
    assert evaluate(titles, chosen)["recall@10"] == 1.0


def test_a_query_with_many_relevant_items_counts_the_share_of_its_top_10_they_fill() -> None:
    scored = _scored(0.0, 0.0)  # candidates 0..10, the model's order 0, 1, ..., 10
    many = replace(scored, relevant=tuple(range(5, 30)))  # 25 relevant: rows 5-9 of the top 10
    few = replace(scored, relevant=(9, 40))  # 2 relevant: row 9 of them, at rank 10
    assert evaluate([many], MODEL_ONLY) == {"recall@10": 0.5, "mrr@10": round(1 / 6, 4)}
    assert evaluate([few], MODEL_ONLY) == {"recall@10": 0.5, "mrr@10": 0.1}
    assert baselines([replace(scored, relevant=(3, 4), lexical_top=(4, 8))])["lexical"]["recall@10"] == 0.5


def test_a_kind_of_many_relevant_queries_is_held_to_its_measured_spread() -> None:
    # 100 queries: hit or miss, a recall of 0.5 has a standard error of 5 queries, and 0.45 is within it;
    # recalls that each lie near 0.5 (spread 0.1) have one of 1 query, and 0.45 is not.
    assert _tolerance(0.5, 100, None) == 0.05 and _within_noise([0.5, 0.45], 100) == [0, 1]
    assert _tolerance(0.5, 100, spread=0.1) == 0.01
    # through choose: a kind of many-relevant queries takes part like any other
    many = [replace(_scored(0.0, 0.0), relevant=tuple(range(5, 30))) for _ in range(20)]
    chosen, table = choose([*many, *[_scored(0.0, 0.0) for _ in range(20)]], {"synonyms": many})
    assert chosen.method == "linear" and all(row["recall@10_by_kind"]["synonyms"] == 0.5 for row in table)


def _named(n_others: int = 10) -> Scored:
    """A query the model gets right (row 0 first) whose ten other candidates all match a title: any
    title weight pushes row 0 out of the top 10."""
    candidates = Candidates(
        rows=list(range(n_others + 1)),
        sources=[("model",)] * (n_others + 1),
        log_probs=np.asarray([-0.05] + [-0.1 * (i + 1) for i in range(n_others)]),
        lexical=np.zeros(n_others + 1),
        title=np.asarray([0.0] + [1.0] * n_others),
    )
    return Scored(candidates, np.ones(n_others + 1, dtype=bool), np.arange(n_others + 1) + 100, (0,), ())


def test_where_no_setting_suits_every_kind_the_one_that_falls_least_short_wins() -> None:
    easy = [_scored(0.0, 0.0) for _ in range(300)]
    unreachable = [_scored(0.0, 0.0, reachable=False) for _ in range(100)]
    named = [_named() for _ in range(4)]  # want no title weight
    titles = [_scored(-20.0, 1.0) for _ in range(8)]  # want a title weight of 32
    groups = {"held_out_phrasings": [*easy, *unreachable], "named": named, "typo": titles}
    chosen, _ = choose([*easy, *unreachable, *named, *titles], groups)
    # No title weight loses all 8 titles (7.5 standard errors of that kind), 32 all 4 named queries (3.5)
    assert chosen.title_weight == 32.0
    assert evaluate(titles, chosen)["recall@10"] == 1.0 and evaluate(named, chosen)["recall@10"] == 0.0


def _gate_query(rng: np.random.Generator, named: bool) -> Scored:
    """Ten beams and one dense find (row 10) the model likes little. A paraphrase wants the dense find
    (relevant: row 10); a named query matched its tenth beam lexically (relevant: row 9), which a loud
    dense term pushes out of the top 10."""
    evidence = rng.uniform(0.6, 1.0) if named else rng.uniform(0.0, 0.2)
    lexical = np.zeros(11)
    lexical[9] = evidence
    candidates = Candidates(
        rows=list(range(11)),
        sources=[("model",)] * 10 + [("dense",)],
        log_probs=np.asarray([-1.0 - 0.1 * i for i in range(10)] + [-5.0]),
        lexical=lexical,
        dense=np.asarray([0.1] * 10 + [0.9]),
        title=np.zeros(11),
    )
    return Scored(
        candidates, np.asarray([True] * 10 + [False]), np.arange(11), (9,) if named else (10,),
        tuple(range(10)), np.asarray([*range(1, 11), 0]), (10, *range(9)),
    )  # fmt: skip


def test_the_learned_gate_opens_the_dense_term_only_where_it_helps() -> None:
    rng = np.random.default_rng(0)
    groups = {
        "named": [_gate_query(rng, named=True) for _ in range(30)],
        "paraphrases": [_gate_query(rng, named=False) for _ in range(30)],
    }
    base = FusionParams(lexical_weight=0.01, dense_depth=10, dense_weight=0.0, dense_gated=True)
    assert evaluate(groups["paraphrases"], base)["recall@10"] == 0.0
    opened = base.model_copy(update={"dense_weight": 16.0, "dense_gated": False})
    assert evaluate(groups["named"], opened)["recall@10"] == 0.0  # the open term costs them all
    gate = fit_dense_gate([s for m in groups.values() for s in m], base, 16.0)
    assert gate.weights["lexical_evidence"] < 0.0  # learnt: lexical evidence shuts it
    pick, tried = gate_the_dense_term(base, groups)
    assert pick.dense_gate is not None and len(tried) == len(GATE_WEIGHTS)
    assert evaluate(groups["named"], pick)["recall@10"] == 1.0
    assert evaluate(groups["paraphrases"], pick)["recall@10"] == 1.0
    # a ranking that uses no dense term has nothing to gate
    assert gate_the_dense_term(base.model_copy(update={"dense_depth": 0}), groups) == (
        base.model_copy(update={"dense_depth": 0}),
        [],
    )


def _decisive(target_decisive: float, others_decisive: float, target_log_prob: float) -> Scored:
    """``_scored``'s query with decisiveness: the target's ``target_decisive``, the ten others'."""
    scored = _scored(target_log_prob, 0.0)
    decisive = np.asarray([target_decisive] + [others_decisive] * 10)
    return replace(scored, candidates=replace(scored.candidates, decisive=decisive))


def test_the_decisive_threshold_is_the_one_that_serves_every_kind() -> None:
    # Names: the target matches 0.7 of the query's known words and the model ranks it last.
    names = [_decisive(0.7, 0.0, -20.0) for _ in range(30)]
    # Paraphrases: the model is right, ten wrong rows each share 0.6 of a common word.
    paraphrases = [_decisive(0.0, 0.6, 0.0) for _ in range(30)]
    chosen, tried = tune_decisive(FusionParams(), {"names": names, "paraphrases": paraphrases})
    assert chosen.decisive_evidence == 0.7
    by_threshold = {row["decisive_evidence"]: row["recall@10_by_kind"] for row in tried}
    assert by_threshold[0.7] == {"names": 1.0, "paraphrases": 1.0}
    assert by_threshold[0.6]["paraphrases"] == 0.0 and by_threshold[None]["names"] == 0.0


def test_people_queries_name_any_billing_position_and_count_every_film() -> None:
    rows = [
        {"fields": {"cast": [f"Lead {i}", *[f"Extra{j} Person{j}" for j in range(12)]]}} for i in range(3)
    ]
    pairs = people_pairs(rows, 15, seed=0)
    assert len(pairs) == 15
    for query, relevant in pairs:
        assert isinstance(relevant, tuple)
        if "Person" in query:  # an extra is in every film
            assert relevant == (0, 1, 2)
        else:
            assert len(relevant) == 1
    assert any(query.split()[-1].startswith("Person1") for query, _ in pairs)  # billed 2nd to 13th
