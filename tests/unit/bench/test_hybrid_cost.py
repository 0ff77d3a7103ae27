"""bench.hybrid_cost on the tiny bundle: every setting measured on the same queries, side by side."""

from __future__ import annotations

from pathlib import Path

from app.inference.model_loading import load_recommender_model
from bench.hybrid_cost import measure
from tests.helpers.tiny_bundle import make_tiny_bundle


def test_each_setting_gets_its_beams_recall_and_time(tmp_path: Path) -> None:
    bundle = make_tiny_bundle(tmp_path)
    ranker = load_recommender_model(bundle.bundle_dir, bundle.base_models_dir, "cpu").ranker()
    titles = [(str(item["title"]), (row,)) for row, item in enumerate(bundle.items[:6])]
    kinds = {"titles": titles, "nothing": [("zzz qqq", (0, 1))]}
    settings = [
        ranker.fusion.model_copy(update={"model_beam_share": share, "estimate_margin": margin})
        for share, margin in ((1.0, 3.0), (0.4, 1.0))
    ]
    result = measure(ranker, kinds, settings)
    full, cheap = result["settings"]
    assert (full["model_beams"], cheap["model_beams"]) == (10, 4)
    assert (full["estimate_margin"], cheap["estimate_margin"]) == (3.0, 1.0)
    for setting in (full, cheap):
        assert setting["kinds"]["titles"]["queries"] == 6 and setting["kinds"]["nothing"]["queries"] == 1
        assert setting["kinds"]["titles"]["recall@10"] == 1.0  # a verbatim title is found in either
        assert 0.0 <= setting["hit@1"] <= 1.0 and setting["p50_ms"] > 0.0
        assert setting["p50_over_generative"] > 0.0
    assert result["generative_p50_ms"] > 0.0
