"""Issue 26 at a small size: a synthetic film-like catalogue through `semid pipeline` and the service's load,
with every path a large catalogue takes switched on by lowering its threshold: the epoch drawn in chunks,
the lexical index's stored row lookups with the title trigrams, the dense source's neighbour index, the
catalogue checked by its file digest and held as its JSON lines. The same paths at 10^6 items are measured
by `python -m bench.scale_service` (bench/RESULTS.md, Scale)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.inference.model_loading import load_recommender_model
from bench.synthetic_catalogue import synthetic_items, write_catalogue
from semantic_ids import dense, lexical
from semantic_ids.bundle import CatalogueRows, file_sha256, read_catalogue, read_manifest
from semantic_ids.hybrid import MODES
from semantic_ids.text_encoder import MINILM
from tests.helpers.fake_embedder import FakeEmbedder
from tests.unit.training.test_own_catalogue import _offline, run_pipeline_on
from training.llm import query_generator

ITEMS = 300
CHUNKS_DRAWN: list[tuple[int, int]] = []  # (epoch, chunk) as the pipeline drew them


class FakeQueryEncoder:
    """The pipeline's MiniLM stand-in as the service's query encoder."""

    model = MINILM
    dimensions = 384

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return FakeEmbedder().encode(list(texts))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("large")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _offline(monkeypatch, root)
        monkeypatch.setattr(query_generator, "EPOCH_CHUNK_ITEMS", 40)  # 8 chunks an epoch
        drawn = query_generator.QueryGenerator._chunk

        def chunk(generator: query_generator.QueryGenerator, epoch: int, index: int, order: Any) -> Any:
            CHUNKS_DRAWN.append((epoch, index))
            return drawn(generator, epoch, index, order)

        monkeypatch.setattr(query_generator.QueryGenerator, "_chunk", chunk)
        monkeypatch.setattr(lexical, "TITLE_PREFILTER_MIN", 50)  # the title trigrams built and stored
        write_catalogue(synthetic_items(ITEMS, seed=3), root / "films.jsonl")
        run_pipeline_on(monkeypatch, "films.jsonl", "synthetic")
        yield root


def test_the_pipeline_trains_through_chunks_and_the_bundle_keeps_what_a_load_reads(built: Path) -> None:
    run, bundle = built / "artifacts" / "runs" / "synthetic", built / "artifacts" / "bundles" / "synthetic"
    report = json.loads((run / "pipeline_report.json").read_text())
    assert report["training"]["steps"] == 40 and report["training"]["examples_seen"] == 40 * 16
    # 10 steps a chunk of 40 items x 4 queries: training reached the fourth chunk of epoch 0 (the watch
    # and the evaluation drew the first chunk only)
    assert {(0, index) for index in range(4)} <= set(CHUNKS_DRAWN) and max(i for _, i in CHUNKS_DRAWN) < 8
    assert report["evaluation"]["llm_on_training_phrasings"]["queries"] == 20
    manifest = read_manifest(bundle)
    assert manifest.catalogue.item_count == ITEMS
    assert manifest.catalogue.file_sha256 == file_sha256(bundle / "catalogue.jsonl")
    lookups = bundle / "lexical" / "lookups"
    assert {"title_grams.keys.txt", "people.rows.npy", "attribute_genre.bounds.npy"} <= {
        path.name for path in lookups.iterdir()
    }


def test_the_service_loads_it_with_the_large_catalogue_paths_and_answers_in_every_mode(
    built: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dense, "ANN_MIN_ITEMS", 100)  # faiss's inverted lists, built at load
    monkeypatch.setattr(lexical, "TITLE_PREFILTER_MIN", 50)
    bundle = built / "artifacts" / "bundles" / "synthetic"
    loaded = load_recommender_model(
        bundle,
        built / "base_models",
        "cpu",
        precision="fp32",
        with_dense=True,
        query_encoder=FakeQueryEncoder(),
    )
    assert isinstance(loaded.base_rows, CatalogueRows) and len(loaded.base_rows) == ITEMS
    assert loaded.dense is not None and loaded.dense.neighbours is not None
    assert loaded.lexical._title_grams is not None
    rows = list(read_catalogue(bundle))
    assert list(loaded.base_rows) == rows
    title = str(rows[7]["title"])
    ranker = loaded.ranker()
    for mode in MODES:
        answers = ranker.rank([title.lower(), "a comedy from the nineties"], 10, mode, num_beams=10)
        assert [len(found) for found in answers] == [10, 10], mode
    found = ranker.rank([title.lower()], 10, "hybrid", num_beams=10)[0]
    assert tuple(rows[7]["semantic_id"]) in [tuple(r.semantic_id.codes) for r in found[:3]]


@pytest.mark.slow
def test_ten_thousand_synthetic_items_go_through_ids_bundle_database_and_service(tmp_path: Path) -> None:
    """The real base model and the whole product at 10^4 items (`bench.scale_service`, PostgreSQL): a few
    minutes on 2 cores, so marked slow (`make slow`)."""
    import subprocess
    import sys

    out = tmp_path / "scale.json"
    command = [
        sys.executable,
        "-m",
        "bench.scale_service",
        "--sizes",
        "10000",
        "--queries",
        "10",
        "--out",
        str(out),
    ]
    repo = Path(__file__).resolve().parents[3]  # the module's fixture may have changed the folder
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False, cwd=repo)
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads(out.read_text())["service"]["rows"]
    assert row["items"] == 10_000 and row["cold_start_s"] > 0
    assert all(row["recommend"][mode]["n"] == 10 for mode in MODES)
    assert row["items_by_semantic_id"]["n"] == 100 and row["service_memory_mib"]["resident"] > 0
