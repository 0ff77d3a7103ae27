"""The run's pictures: training curves and evaluation bars are real PNGs with something drawn in them,
the pipeline and the ``finetune``/``evaluate`` commands write them next to their JSON, and a drawing that
fails costs a warning, never the run."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.helpers.semid_cli import run_semid
from tests.helpers.tiny_catalogue import tiny_items
from tests.unit.training.test_finetune import CONFIG, make_run
from training.io import write_plot
from training.pipeline import plots
from training.pipeline.run import run_pipeline
from training.profiles import PROFILES, Profile
from training.run_layout import RunLayout

DPI = 90  # plots._save
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TOP_LAYERS_HISTORY = [
    {"step": s, "epoch": s // 20, "loss": 3.0 / s, "seconds": s / 10}
    | ({"train_recall@10": min(1.0, s / 60), "heldout_recall@10": min(1.0, s / 90)} if s % 20 == 0 else {})
    for s in range(1, 101)
]
EVALUATION = {
    "queries": 30,
    "beams": 10,
    "systems": {
        system: dict(zip(plots.OVERALL_METRICS, (base, base + 0.1, base + 0.2, base, base), strict=True))
        for system, base in (("llm_semantic_id", 0.5), ("dense_minilm", 0.4), ("bm25", 0.6))
    },
    "recall@10_by_template": {
        system: {f"v_template_{n}": round(n / 11, 2) for n in range(12)}
        for system in ("llm_semantic_id", "dense_minilm", "bm25")
    },
    "llm_on_training_phrasings": {"recall@1": 0.7, "recall@10": 0.9, "queries": 20},
}


def assert_drawn_png(path: Path, *, min_bytes: int = 15_000) -> tuple[int, int]:
    """A valid PNG of some size with more than one colour in it; its (width, height)."""
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > min_bytes, (path, len(data))
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"))
        assert pixels.std() > 5, "the picture is blank"
        return image.size


def test_training_curves_show_loss_and_recall_panels(tmp_path: Path) -> None:
    plots.plot_training_curves(TOP_LAYERS_HISTORY, tmp_path / "curves.png")
    assert assert_drawn_png(tmp_path / "curves.png")[1] == round(2 * 3.4 * DPI)  # loss, then recall


def test_a_history_without_recall_draws_the_loss_alone(tmp_path: Path) -> None:
    plots.plot_training_curves([{"step": s, "loss": 1 / s} for s in range(1, 40)], tmp_path / "loss.png")
    assert assert_drawn_png(tmp_path / "loss.png", min_bytes=8_000)[1] == round(3.4 * DPI)


def test_the_evaluation_bars_widen_with_the_templates(tmp_path: Path) -> None:
    plots.plot_evaluation(EVALUATION, tmp_path / "evaluation.png")
    width, height = assert_drawn_png(tmp_path / "evaluation.png")
    assert (width, height) == (round(1.1 * 12 * DPI), round(2 * 3.8 * DPI))  # overall, then per template
    overall_only = {k: v for k, v in EVALUATION.items() if k != "recall@10_by_template"}
    plots.plot_evaluation(overall_only, tmp_path / "overall.png")
    assert assert_drawn_png(tmp_path / "overall.png")[1] == round(3.8 * DPI)


def test_a_failed_drawing_is_a_warning_and_leaves_no_stale_picture(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stale = tmp_path / "training_curves.png"
    stale.write_bytes(PNG_MAGIC + b"an earlier run's picture")
    with caplog.at_level(logging.WARNING, logger="training.io"):
        assert write_plot(lambda path: plots.plot_training_curves([], path), stale) is None
    assert "could not draw" in caplog.text and "history is empty" in caplog.text
    assert not stale.exists()


def _no_dense_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dense retrieval would load MiniLM; the tiny run ranks the catalogue in order instead."""
    ids = [item["item_id"] for item in tiny_items()]
    monkeypatch.setattr(
        "training.eval.evaluate.dense_rankings", lambda queries, *_a, **_k: [ids[:10] for _ in queries]
    )


def test_the_pipeline_draws_both_pictures_next_to_its_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir, base_models = make_run(tmp_path)
    _no_dense_model(monkeypatch)
    # The tiny base model is in place already; SmolLM2 is not wanted.
    monkeypatch.setattr("training.pipeline.run.prepare_base_model", lambda _folder: None)
    top = replace(CONFIG.finetune, trainable_layers=1, max_steps=6, eval_every=3)
    config = replace(CONFIG, finetune=top, eval_queries=8, seen_phrasing_queries=8)
    report = run_pipeline(
        config, reuse_ids=True, base_models_dir=base_models, run_dir=run_dir, bundle_dir=tmp_path / "bundle"
    )
    layout = RunLayout(run_dir)
    assert report["plots"] == [str(layout.training_plot), str(layout.evaluation_plot)]
    assert assert_drawn_png(layout.training_plot)[1] == round(2 * 3.4 * DPI)  # the recalls were watched
    assert_drawn_png(layout.evaluation_plot)
    assert json.loads((run_dir / "pipeline_report.json").read_text())["plots"] == report["plots"]
    seen = report["evaluation"]["llm_on_training_phrasings"]
    assert seen["queries"] == 8 and 0.0 < seen["oracle_recall@10"] <= 1.0
    assert set(report["evaluation"]["baselines_on_training_phrasings"]) == {"dense_minilm", "bm25"}


def test_the_commands_draw_their_pictures_and_survive_a_failed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir, base_models = make_run(tmp_path)
    _no_dense_model(monkeypatch)
    monkeypatch.setitem(PROFILES, "tiny", Profile("tiny", catalogue_size=None, rqvae={}, pipeline=CONFIG))
    where = ["--profile", "tiny", "--run-dir", str(run_dir)]
    assert (
        run_semid(monkeypatch, "finetune", *where, "--base-models-dir", str(base_models), "--max-steps", "4")
        == 0
    )
    layout = RunLayout(run_dir)
    assert_drawn_png(layout.training_plot, min_bytes=8_000)
    assert run_semid(monkeypatch, "evaluate", *where, "--eval-queries", "8") == 0
    assert_drawn_png(layout.evaluation_plot)

    def broken(*_args: Any) -> None:
        raise RuntimeError("no fonts on this machine")

    monkeypatch.setattr("training.pipeline.plots.plot_evaluation", broken)
    monkeypatch.setattr("training.pipeline.stages.plot_evaluation", broken)
    layout.evaluation.unlink()
    with caplog.at_level(logging.WARNING):
        assert run_semid(monkeypatch, "evaluate", *where, "--eval-queries", "8") == 0
    assert layout.evaluation.is_file() and not layout.evaluation_plot.exists()
    assert "could not draw" in caplog.text and "no fonts on this machine" in caplog.text
