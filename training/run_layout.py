"""The folders of the offline pipeline and every file name of a run folder, with their load and save.

``artifacts/runs/<profile>/`` holds one run; each stage reads what the one before wrote::

    catalogue.jsonl       the imported catalogue, flat records          (import-catalogue)
    embeddings.npy        MiniLM vectors, row order of the catalogue     (embed)
    rqvae.safetensors     the RQ-VAE, its config in the file's metadata  (train-rqvae)
    items_with_ids.jsonl  items with their semantic IDs; written last    (assign)
    id_report.json        collisions, codebook usage, cosine check       (assign)
    examples.jsonl        fine-tuning examples, train and valid splits   (examples)
    query_templates.json  the query configuration the examples used      (examples)
    finetuned/            the fine-tuned model between CLI steps         (finetune)
    evaluation.json       model vs dense vs BM25                         (evaluate)
    training_curves.png   loss and Recall@10 over steps                  (finetune)
    evaluation.png        evaluation.json as grouped bars                (evaluate)

and a JSON report per step. The serving bundle goes to ``artifacts/bundles/<profile>/``; its own
file names are defined in ``semantic_ids/bundle.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semantic_ids.bundle import EVALUATION, RQVAE_WEIGHTS
from semantic_ids.ids import IdScheme
from training.data.catalogue import read_catalogue
from training.data.items import CatalogueItem, items_from_dicts
from training.io import atomic_path, read_json, read_jsonl, write_json, write_jsonl
from training.llm.template_files import films_templates, templates_from_dict, to_dict
from training.llm.template_spec import QueryTemplates

ARTIFACTS = Path("artifacts")
RUNS_DIR = ARTIFACTS / "runs"
BUNDLES_DIR = ARTIFACTS / "bundles"
BASE_MODELS_DIR = ARTIFACTS / "base_models"
EMBEDDING_CACHE_DIR = ARTIFACTS / "cache" / "embeddings"


class MissingRunFile(RuntimeError):
    """A stage's input is not in the run folder; the message says which command writes it."""


def bundle_dir_for(profile: str) -> Path:
    return BUNDLES_DIR / profile


@dataclass(frozen=True)
class RunLayout:
    folder: Path

    @classmethod
    def for_profile(cls, profile: str, run_dir: Path | None = None) -> RunLayout:
        return cls(run_dir or RUNS_DIR / profile)

    # Stage outputs.
    @property
    def catalogue(self) -> Path:
        return self.folder / "catalogue.jsonl"

    @property
    def held_out(self) -> Path:
        """Items kept out of the run (``semid pipeline --hold-out``), in the import form."""
        return self.folder / "held_out.jsonl"

    @property
    def embeddings(self) -> Path:
        return self.folder / "embeddings.npy"

    @property
    def rqvae(self) -> Path:
        return self.folder / RQVAE_WEIGHTS

    @property
    def items_with_ids(self) -> Path:
        return self.folder / "items_with_ids.jsonl"

    @property
    def id_report(self) -> Path:
        return self.folder / "id_report.json"

    @property
    def usage_plot(self) -> Path:
        return self.folder / "codebook_usage.png"

    @property
    def examples(self) -> Path:
        return self.folder / "examples.jsonl"

    @property
    def query_templates(self) -> Path:
        return self.folder / "query_templates.json"

    @property
    def finetuned(self) -> Path:
        return self.folder / "finetuned"

    @property
    def evaluation(self) -> Path:
        return self.folder / EVALUATION

    @property
    def training_plot(self) -> Path:
        return self.folder / "training_curves.png"

    @property
    def evaluation_plot(self) -> Path:
        return self.folder / "evaluation.png"

    def report(self, step: str) -> Path:
        """A step's JSON report: import, embed, examples, bundle, pipeline (``<step>_report.json``)."""
        return self.folder / f"{step}_report.json"

    @property
    def rqvae_training(self) -> Path:
        return self.folder / "rqvae_training.json"

    @property
    def training(self) -> Path:
        return self.folder / "training.json"

    # Load and save.
    def _require(self, path: Path, what: str, step: str, where: str = "") -> Path:
        if not path.is_file():
            raise MissingRunFile(f"{path}: no {what} here; run `semid {step}`{where} first")
        return path

    def load_catalogue(self) -> list[CatalogueItem]:
        return read_catalogue(self._require(self.catalogue, "catalogue", "import-catalogue"))

    def save_catalogue(self, items: list[CatalogueItem], path: Path | None = None) -> None:
        write_jsonl((item.to_flat() for item in items), path or self.catalogue)

    def load_embeddings(self) -> np.ndarray:
        embeddings: np.ndarray = np.load(
            self._require(self.embeddings, "embeddings", "embed"), allow_pickle=False
        )
        return embeddings.astype(np.float32)

    def save_embeddings(self, embeddings: np.ndarray) -> None:
        with atomic_path(self.embeddings) as partial:
            np.save(partial, embeddings.astype(np.float32))

    def save_items_with_ids(self, items: list[CatalogueItem]) -> None:
        write_jsonl((item.to_dict() for item in items), self.items_with_ids)

    def load_id_outputs(self) -> tuple[list[CatalogueItem], dict[str, Any], IdScheme]:
        """Items with their IDs, the ID report, and the ID scheme it describes."""
        if not self.items_with_ids.is_file() or not self.id_report.is_file():
            raise MissingRunFile(f"{self.folder}: no semantic IDs here; run `semid ids` for this run first")
        report: dict[str, Any] = read_json(self.id_report)
        scheme = IdScheme(tuple(int(k) for k in report["codebook_sizes"]))
        return items_from_dicts(read_jsonl(self.items_with_ids)), report, scheme

    def save_examples(self, examples: list[dict[str, Any]]) -> None:
        write_jsonl(examples, self.examples)

    def load_examples(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The train and valid examples, in file order."""
        rows = read_jsonl(self._require(self.examples, "examples", "examples", " for this run"))
        return [r for r in rows if r["split"] == "train"], [r for r in rows if r["split"] == "valid"]

    def item_count(self) -> int | None:
        """How many items the run's semantic IDs cover; None before ``semid ids``."""
        if not self.id_report.is_file():
            return None
        count = read_json(self.id_report).get("item_count")
        return None if count is None else int(count)

    def has_film_catalogue(self) -> bool:
        """Whether the run's catalogue is the default films, as its import report says (a run without
        one, or with one from before reports said so, is films unless it names a JSONL file)."""
        path = self.report("import")
        if not path.is_file():
            return True
        report = read_json(path)
        if "catalogue" in report:
            return bool(report["catalogue"] == "films")
        return "movies.db" in str(report.get("source"))

    def save_query_templates(self, templates: QueryTemplates) -> None:
        write_json(to_dict(templates), self.query_templates)

    def load_query_templates(self) -> QueryTemplates:
        """The query configuration the run's examples were made with; the films' for a run from before
        runs kept theirs."""
        if not self.query_templates.is_file():
            return films_templates()
        return templates_from_dict(read_json(self.query_templates), str(self.query_templates))

    def load_evaluation(self) -> dict[str, Any]:
        evaluation: dict[str, Any] = read_json(self._require(self.evaluation, "evaluation", "evaluate"))
        return evaluation
