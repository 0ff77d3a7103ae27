"""A catalogue of one's own, end to end: `semid pipeline --jsonl books.jsonl --profile books` on 40 books
with the tiny random Llama and a stand-in for MiniLM, from import to a bundle that answers queries; and
bad input that stops it before anything is written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from app.inference.model_loading import load_recommender_model
from semantic_ids.bundle import MANIFEST
from tests.helpers.book_catalogue import book_rows, write_books
from tests.helpers.fake_embedder import FakeEmbedder
from tests.helpers.semid_cli import run_semid
from tests.helpers.tiny_models import TINY_BASE_NAME, make_tiny_base_model
from tests.unit.training.test_query_templates import FILM_WORDS
from training.llm.examples import ExampleConfig
from training.llm.finetune_config import FinetuneConfig
from training.llm.query_generator import QueryGenerator
from training.pipeline.config import PipelineConfig
from training.profiles import DEMO
from training.run_layout import RunLayout

# What a catalogue of 40 items gets in place of the demo preset: the nearest preset, made tiny.
TINY_PRESET = replace(
    DEMO,
    rqvae={"codebook_size": 4, "levels": 2, "hidden_dims": (64,), "latent_dim": 16, "epochs": 30,
           "batch_size": 16, "kmeans_iters": 5},
    pipeline=PipelineConfig(
        profile="demo",
        base_model=TINY_BASE_NAME,
        examples=ExampleConfig(train_queries_per_item=6, attribute_examples_per_item=1),
        finetune=FinetuneConfig(
            method="top_layers", trainable_layers=2, lr_layers=3e-3, lr_tokens=3e-2, batch_size=16,
            max_steps=40, queries_per_item=4, eval_every=0, eval_queries=8,
            precision="fp32", device="cpu",
        ),
        eval_queries=20,
        seen_phrasing_queries=20,
    ),
)  # fmt: skip


def _offline(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Run in ``root`` (artifacts/ lands there) with the tiny preset, no MiniLM and no SmolLM2."""
    monkeypatch.chdir(root)
    monkeypatch.setattr("training.profiles.DEMO", TINY_PRESET)
    monkeypatch.setattr("training.data.embeddings.load_minilm", lambda device="cpu": FakeEmbedder())
    monkeypatch.setattr("training.pipeline.run.prepare_base_model", lambda _folder: None)
    make_tiny_base_model(root / "base_models")


def run_pipeline_on(monkeypatch: pytest.MonkeyPatch, catalogue: str, profile: str) -> None:
    """`semid pipeline --jsonl CATALOGUE --profile PROFILE` in the folder ``_offline`` set up; it succeeds."""
    args = ["--jsonl", catalogue, "--profile", profile, "--base-models-dir", "base_models"]
    assert run_semid(monkeypatch, "pipeline", *args) == 0


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("own")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _offline(monkeypatch, root)
        write_books(root / "books.jsonl")
        run_pipeline_on(monkeypatch, "books.jsonl", "books")
        yield root


def test_the_run_and_the_bundle_land_under_the_catalogues_name(built: Path) -> None:
    run, bundle = built / "artifacts" / "runs" / "books", built / "artifacts" / "bundles" / "books"
    report = json.loads((run / "pipeline_report.json").read_text())
    assert report["catalogue"] == "books.jsonl" and report["query_templates"] == "books"
    assert report["bundle"] == str(Path("artifacts/bundles/books"))
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert manifest["catalogue"]["profile"] == "books" and manifest["catalogue"]["item_count"] == 40
    assert json.loads((run / "import_report.json").read_text())["catalogue"] == "jsonl"
    assert (run / "evaluation.json").is_file() and (run / "query_templates.json").is_file()


def test_the_bundle_loads_and_answers_queries_with_books(built: Path) -> None:
    loaded = load_recommender_model(
        built / "artifacts" / "bundles" / "books", built / "base_models", "cpu", precision="fp32"
    )
    rows = [json.loads(line) for line in (built / "artifacts/bundles/books/catalogue.jsonl").open()]
    title_of = {tuple(row["semantic_id"]): row["title"] for row in rows}
    ranker = loaded.ranker()
    for mode in ("generative", "hybrid"):
        answers = ranker.rank(["project hail mary", "agatha christie mystery"], 5, mode, num_beams=5)
        assert [len(found) for found in answers] == [5, 5]
        assert all(tuple(r.semantic_id.codes) in title_of for found in answers for r in found)
    hybrid = ranker.rank(["project hail mary"], 5, "hybrid", num_beams=5)[0]
    assert "Project Hail Mary" in [title_of[tuple(r.semantic_id.codes)] for r in hybrid]


def test_queries_name_the_books_fields_and_never_film_words(built: Path) -> None:
    layout = RunLayout(built / "artifacts" / "runs" / "books")
    templates = layout.load_query_templates()
    assert templates.fields["author"].kind == "name" and "director" not in templates.fields
    train, valid = layout.load_examples()
    items, _, _ = layout.load_id_outputs()
    generated = [e["query"].lower() for e in QueryGenerator(items, 4, 0, templates).epoch(0)]
    written = [e["query"].lower() for e in train + valid if e["kind"] == "query"]
    authors = {row["author"].lower() for row in book_rows()}
    for queries in (generated, written):
        assert not [q for q in queries if any(word in q for word in FILM_WORDS)]
        assert sum(any(author in q for author in authors) for q in queries) >= 10
    assert {e["template"] for e in valid} and all(e["template"].startswith("v_") for e in valid)


def test_the_examples_command_takes_a_templates_file(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = shutil.copytree(built / "artifacts" / "runs" / "books", tmp_path / "run")
    shelf = {
        "name": "shelf",
        "fields": {"title": {"kind": "title"}, "writer": {"kind": "name", "key": "author"}},
        "examples": {"train": {"t": "{title} by {writer}"}, "held_out": {"v_shelf": "on my shelf: {title}"}},
    }
    (tmp_path / "shelf.json").write_text(json.dumps(shelf))  # JSON is YAML: either will do
    where = ["--profile", "books", "--run-dir", str(run), "--templates", str(tmp_path / "shelf.json")]
    assert run_semid(monkeypatch, "examples", *where) == 0
    assert json.loads(capsys.readouterr().out)["template_set"] == "shelf"
    layout = RunLayout(run)
    train, valid = layout.load_examples()
    assert {e["template"] for e in valid} == {"v_shelf"} and "t" in {e["template"] for e in train}
    assert layout.load_query_templates().fields["writer"].key == "author"


def _nothing_written(root: Path) -> bool:
    return not (root / "artifacts").exists()


DUNE = '{"item_id": "a", "title": "Dune", "author": "Frank Herbert"}'


@pytest.mark.parametrize(
    ("lines", "templates", "more", "message"),
    [
        (None, None, [], "books.jsonl: no such file"),
        (['{"item_id": "a", "author": "Ann Lee"}'], None, [], "books.jsonl:1: item 'a' has no title"),
        ([""], None, [], "books.jsonl:1: empty catalogue"),
        ([DUNE], "fields: {title: {kind: title}, author: {kind: name}}\n"
                 "examples: {train: {t: '{title}'}, held_out: {v: 'a book by {autor}'}}\n",
         [], "template 'v' names unknown field 'autor'"),
        ([DUNE], None, ["--reuse-ids"], "--reuse-ids keeps the run's catalogue and semantic IDs"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    lines: list[str] | None,
    templates: str | None,
    more: list[str],
    message: str,
) -> None:
    _offline(monkeypatch, tmp_path)
    capsys.readouterr()  # the tiny base model's own output
    if lines is not None:
        (tmp_path / "books.jsonl").write_text("\n".join(lines) + "\n")
    extra: list[str] = []
    if templates is not None:
        (tmp_path / "books.yaml").write_text(templates)
        extra = ["--templates", "books.yaml"]
    args = ["--jsonl", "books.jsonl", "--profile", "books", "--base-models-dir", "base_models", *extra, *more]
    assert run_semid(monkeypatch, "pipeline", *args) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0], errors
    assert _nothing_written(tmp_path)
