"""One rank of `semid finetune` or `semid pipeline` on the tiny run under torchrun, recording what the
data-parallel tests check.

Run from the repository root as ``python -m torch.distributed.run --nproc-per-node 2 -m
tests.helpers.ddp_finetune ROOT MODE ARGS``; each rank works on its own copy of the tiny run, so what each
wrote can be told apart, and writes into ``ROOT/record``: the full epochs it drew and the shards it
encoded, its steps and rows trained, how long it trained, its trainable parameters afterwards, and the
CLI's exit code.

- ``finetune BUDGET0 BUDGET1``: rank r fine-tunes ``ROOT/run<r>`` with the r-th time budget.
- ``embed``: rank r embeds its share of the tiny catalogue's texts into ``ROOT/cache`` (``embed_share``).
- ``pipeline STEPS``: rank r runs the pipeline (IDs reused) in ``ROOT/rank<r>``, whose
  ``artifacts/runs/tiny`` is the tiny run, for STEPS steps; the base model is in place already and the
  dense baseline ranks in catalogue order (no MiniLM).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

import training.llm.top_layers_stage as stage
import training.llm.train_top_layers as loop
from tests.helpers.tiny_catalogue import tiny_catalogue, tiny_items
from tests.unit.training.test_finetune import CONFIG
from training.llm.query_generator import QueryGenerator
from training.profiles import PROFILES, Profile

TINY = replace(
    CONFIG,
    finetune=replace(CONFIG.finetune, batch_size=4, queries_per_item=4, eval_every=10, eval_beams=4),
    eval_queries=12,  # the other 8 held-out queries are watched during training
    seen_phrasing_queries=8,
)


class Recorder:
    """Wraps the loop's seams (the epoch drawn chunk by chunk, the shard encoded, the step, the trained
    model)."""

    def __init__(self) -> None:
        self.epochs: dict[int, list[list[str]]] = {}
        self.shards: list[list[list[str]]] = []
        self.steps, self.rows, self.train_seconds = 0, 0, 0.0
        self.params: dict[str, torch.Tensor] = {}

    def install(self) -> None:
        draw, encode = QueryGenerator.chunks, loop.encode_examples
        step, train = loop._step, stage.train_top_layers

        def chunks(generator: QueryGenerator, number: int) -> Iterator[list[dict[str, Any]]]:
            for examples in draw(generator, number):
                self.epochs.setdefault(number, []).extend(_key(example) for example in examples)
                yield examples

        def encode_examples(tokenizer: Any, examples: Any, max_length: int) -> Any:
            self.shards.append([_key(example) for example in examples])
            return encode(tokenizer, examples, max_length)

        def one_step(forward: Any, model: Any, optimizer: Any, batch: Any, *args: Any) -> float:
            self.steps, self.rows = self.steps + 1, self.rows + len(batch["input_ids"])
            return step(forward, model, optimizer, batch, *args)

        def train_top_layers(model: Any, *args: Any, **kwargs: Any) -> Any:
            result = train(model, *args, **kwargs)
            self.train_seconds = result.train_seconds
            self.params = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            return result

        QueryGenerator.chunks = chunks  # type: ignore[method-assign]
        loop.encode_examples, loop._step, stage.train_top_layers = encode_examples, one_step, train_top_layers
        stage.WATCH_TRAINING_QUERIES = 8  # a quick watch: the test is about the ranks, not the recall

    def save(self, folder: Path, rank: int, exit_code: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.params, folder / f"params{rank}.pt")
        record = {"epochs": self.epochs, "shards": self.shards, "steps": self.steps, "rows": self.rows}
        record |= {"train_seconds": self.train_seconds, "exit_code": exit_code}
        (folder / f"rank{rank}.json").write_text(json.dumps(record))


def _key(example: dict[str, Any]) -> list[str]:
    return [example["item_id"], example["query"]]


def main() -> int:
    from training.cli import main as semid

    root, mode, args = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    rank = int(os.environ["RANK"])
    if mode == "embed":
        return _embed_shares(root, rank)
    PROFILES["tiny"] = Profile("tiny", catalogue_size=None, rqvae={}, pipeline=TINY)
    recorder = Recorder()
    recorder.install()
    base_models = ["--base-models-dir", str(root / "base_models")]
    if mode == "finetune":
        run = ["--profile", "tiny", "--run-dir", str(root / f"run{rank}"), *base_models]
        sys.argv = ["semid", "finetune", *run, "--time-budget", args[rank]]
    else:
        _without_downloads()
        os.chdir(root / f"rank{rank}")  # the pipeline's run and bundle folders are under artifacts/ here
        steps = ["--time-budget", "0", "--max-steps", args[0]]
        sys.argv = ["semid", "pipeline", "--profile", "tiny", "--reuse-ids", *base_models, *steps]
    try:
        semid()
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    recorder.save(root / "record", rank, code)
    return code


def _embed_shares(root: Path, rank: int) -> int:
    """Rank r embeds its share of the tiny catalogue's texts into the shared cache ``ROOT/cache``."""
    from training.data.embeddings import embed_share
    from training.data.item_text import render_item_text
    from training.distributed import session

    with session("cpu") as place:
        counts = embed_share(
            [render_item_text(item) for item in tiny_catalogue()], place, cache_dir=root / "cache"
        )
    (root / "record").mkdir(parents=True, exist_ok=True)
    (root / "record" / f"embed{rank}.json").write_text(json.dumps(counts))
    return 0


def _without_downloads() -> None:
    """As the tiny pipeline test does: no SmolLM2 to prepare, no MiniLM to rank with."""
    import training.eval.evaluate as evaluate
    import training.pipeline.run as run

    ids = [item["item_id"] for item in tiny_items()]
    run.prepare_base_model = lambda _folder: None  # type: ignore[assignment,return-value]
    evaluate.dense_rankings = lambda queries, *_a, **_k: [ids[:10] for _ in queries]  # type: ignore[assignment]


if __name__ == "__main__":
    raise SystemExit(main())
