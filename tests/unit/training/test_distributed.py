"""Data-parallel fine-tuning: two gloo processes under torchrun train the tiny Llama through `semid finetune`
on disjoint shards of each epoch, stay bit-identical, stop at the same step when one's budget ends first,
and only rank 0 writes; through `semid pipeline`, rank 0 prepares and finishes while both train, and the
two learn about as much as one process with their batches together. Without torchrun nothing of
torch.distributed is touched."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist

from tests.helpers.ddp_finetune import TINY
from tests.helpers.tiny_catalogue import tiny_catalogue
from tests.unit.training.test_finetune import make_run
from training.data.embeddings import content_key, embed_texts
from training.data.item_text import render_item_text
from training.distributed import Place
from training.llm.batches import IGNORE, collate, encode_examples
from training.llm.query_generator import QueryGenerator
from training.llm.top_layers import TopLayersModel
from training.llm.top_layers_stage import prepare_top_layers
from training.llm.train_top_layers import merge_down, train_top_layers
from training.run_layout import RunLayout

REPO = Path(__file__).resolve().parents[3]
RANK1_BUDGET_S = 3.0  # rank 0's is far longer: it must stop when rank 1's ends
PIPELINE_STEPS = 40


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _torchrun(root: Path, *args: str, timeout_s: float = 150) -> str:
    """Two gloo ranks of ``tests/helpers/ddp_finetune.py``; their stdout. Stopped on timeout, as ranks
    waiting on a collective that one of them never joins would wait (for ``training.distributed.WAIT``)."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        "-m", "tests.helpers.ddp_finetune", str(root), *args,
    ]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "SEMID_LOG_LEVEL": "WARNING"}
    out, err = root / "stdout.txt", root / "stderr.txt"
    with out.open("w") as stdout, err.open("w") as stderr:  # files: a stray rank cannot hold a pipe open
        process = subprocess.Popen(command, cwd=REPO, env=env, text=True, stdout=stdout, stderr=stderr)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop(process)
            pytest.fail(f"the ranks did not finish in {timeout_s} s:\n{err.read_text()[-4000:]}")
    assert process.returncode == 0, err.read_text()[-4000:]
    return out.read_text()


def _stop(launcher: subprocess.Popen[str]) -> None:
    """SIGTERM to torchrun, which stops its ranks; SIGKILL to them and it if that does not do."""
    launcher.terminate()
    try:
        launcher.wait(timeout=20)
    except subprocess.TimeoutExpired:
        for pid in [*_children(launcher.pid), launcher.pid]:  # the ranks run in sessions of their own
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        launcher.wait()


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:  # field 4: the parent's pid
                children.append(int(stat.parent.name))
    return children


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One launch: rank 0 with a 5-minute budget, rank 1 with RANK1_BUDGET_S; each on its own copy of the
    tiny run, so what each wrote can be told apart."""
    root = tmp_path_factory.mktemp("ddp")
    run_dir, _ = make_run(root)
    for rank in (0, 1):
        shutil.copytree(run_dir, root / f"run{rank}")
    before = _files(root / "run1")
    stdout = _torchrun(root, "finetune", "300", str(RANK1_BUDGET_S))
    ranks = [json.loads((root / "record" / f"rank{r}.json").read_text()) for r in (0, 1)]
    params = [torch.load(root / "record" / f"params{r}.pt") for r in (0, 1)]
    return {"root": root, "before": before, "ranks": ranks, "params": params, "stdout": stdout}


def test_each_rank_trains_on_its_disjoint_shard_of_every_epoch(two_ranks: dict[str, Any]) -> None:
    first, second = two_ranks["ranks"]
    assert first["epochs"] == second["epochs"]  # every rank draws the same seeded epochs
    assert len(first["shards"]) == len(second["shards"]) >= 2  # the budget lasts more than one epoch
    for number, (mine, theirs) in enumerate(zip(first["shards"], second["shards"], strict=True)):
        epoch = first["epochs"][str(number)]
        assert len(epoch) == 20 * TINY.finetune.queries_per_item
        assert mine == epoch[0::2] and theirs == epoch[1::2]  # disjoint positions, together the epoch
        assert sorted(mine + theirs) == sorted(epoch)


def test_the_ranks_stop_together_when_one_budget_ends_and_stay_identical(two_ranks: dict[str, Any]) -> None:
    first, second = two_ranks["ranks"]
    assert first["exit_code"] == second["exit_code"] == 0
    assert first["steps"] == second["steps"] >= 3
    # Rank 0's own budget was 300 s: it stopped at rank 1's (its clock started a moment apart, and the
    # watches' pauses are not counted).
    assert RANK1_BUDGET_S / 2 <= first["train_seconds"] < RANK1_BUDGET_S + 10
    mine, theirs = two_ranks["params"]
    assert mine.keys() == theirs.keys() and "code_rows" in mine
    for name, value in mine.items():
        assert torch.equal(value, theirs[name]), name  # bit-identical: the same averaged steps
    report = json.loads((two_ranks["root"] / "run0" / "training.json").read_text())
    assert report["steps"] == first["steps"]
    assert report["examples_seen"] == first["rows"] + second["rows"]  # both ranks' examples


def test_only_rank_0_writes(two_ranks: dict[str, Any]) -> None:
    root = two_ranks["root"]
    assert _files(root / "run1") == two_ranks["before"]  # untouched, not even rewritten
    written = set(_files(root / "run0")) - set(two_ranks["before"])
    assert {
        "training.json",
        "training_curves.png",
        "finetuned/model/model.safetensors",
        "finetuned/info.json",
    } <= written
    reports = [line for line in two_ranks["stdout"].splitlines() if line.startswith("{")]
    assert len(reports) == 1 and json.loads(reports[0])["steps"] == two_ranks["ranks"][0]["steps"]


@pytest.fixture(scope="module")
def pipeline_ranks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`semid pipeline` on two ranks for PIPELINE_STEPS steps, each in a folder of its own."""
    root = tmp_path_factory.mktemp("ddp_pipeline")
    run_dir, _ = make_run(root)
    for rank in (0, 1):
        shutil.copytree(run_dir, root / f"rank{rank}" / "artifacts" / "runs" / "tiny")
    before = [_files(root / f"rank{rank}") for rank in (0, 1)]
    stdout = _torchrun(root, "pipeline", str(PIPELINE_STEPS))
    ranks = [json.loads((root / "record" / f"rank{r}.json").read_text()) for r in (0, 1)]
    params = [torch.load(root / "record" / f"params{r}.pt") for r in (0, 1)]
    return {"root": root, "before": before, "ranks": ranks, "params": params, "stdout": stdout}


def test_the_pipeline_prepares_and_finishes_on_rank_0_and_trains_on_both(
    pipeline_ranks: dict[str, Any],
) -> None:
    root, (first, second) = pipeline_ranks["root"], pipeline_ranks["ranks"]
    assert first["exit_code"] == second["exit_code"] == 0
    assert first["steps"] == second["steps"] == PIPELINE_STEPS and len(first["shards"]) >= 2
    for name, value in pipeline_ranks["params"][0].items():
        assert torch.equal(value, pipeline_ranks["params"][1][name]), name
    assert _files(root / "rank1") == pipeline_ranks["before"][1]  # rank 1 read and trained, wrote nothing
    after, before = _files(root / "rank0"), pipeline_ranks["before"][0]
    rewritten = {name for name, stamp in after.items() if before.get(name) != stamp}
    run = "artifacts/runs/tiny/"
    # Rank 0 wrote the examples before training (the others waited), then evaluated and bundled.
    assert {f"{run}examples.jsonl", f"{run}evaluation.json", f"{run}pipeline_report.json"} <= rewritten
    assert f"{run}training_curves.png" in rewritten and "artifacts/bundles/tiny/manifest.json" in rewritten
    reports = [line for line in pipeline_ranks["stdout"].splitlines() if line.startswith("{")]
    assert len(reports) == 1 and json.loads(reports[0])["training"]["steps"] == PIPELINE_STEPS
    assert json.loads(reports[0])["training"]["examples_seen"] == first["rows"] + second["rows"]


def test_two_ranks_embed_disjoint_shares_and_rank_0_then_embeds_nothing(tmp_path: Path) -> None:
    """Issue 26: the catalogue's embedding sharded like the queries; the cache holds each rank's vectors
    as a shard of its own, together every text once, equal to one process's embedding."""
    _torchrun(tmp_path, "embed")
    counts = [json.loads((tmp_path / "record" / f"embed{r}.json").read_text()) for r in (0, 1)]
    texts = [render_item_text(item) for item in tiny_catalogue()]
    assert counts[0]["missing"] == counts[1]["missing"] == len(set(texts))
    assert counts[0]["embedded_here"] + counts[1]["embedded_here"] == len(set(texts))
    assert min(c["embedded_here"] for c in counts) >= len(set(texts)) // 2
    shards = [set(path.read_text().split()) for path in (tmp_path / "cache").rglob("*.keys")]
    assert len(shards) == 2 and not shards[0] & shards[1]
    assert shards[0] | shards[1] == {content_key(text) for text in texts}
    shared, counts_after = embed_texts(texts, cache_dir=tmp_path / "cache")
    assert counts_after["embedded"] == 0
    alone, _ = embed_texts(texts, cache_dir=tmp_path / "alone")
    np.testing.assert_allclose(shared, alone, atol=1e-5)


def _loss(model: TopLayersModel, batches: list[dict[str, torch.Tensor]]) -> float:
    with torch.no_grad():
        return sum(float(model(batch)) for batch in batches) / len(batches)


def test_two_ranks_learn_as_much_as_one_with_their_batches_together(pipeline_ranks: dict[str, Any]) -> None:
    """At equal examples (two ranks of 4 a step, one process of 8), the loss after PIPELINE_STEPS steps
    on queries of a seed neither trained on is within a tolerance."""
    run = RunLayout(pipeline_ranks["root"] / "rank0" / "artifacts" / "runs" / "tiny")
    items, report, scheme = run.load_id_outputs()
    base, levels = pipeline_ranks["root"] / "base_models" / TINY.base_model, int(report["rq_levels"])
    alone = replace(TINY.finetune, batch_size=2 * TINY.finetune.batch_size, max_steps=PIPELINE_STEPS)
    models = [prepare_top_layers(base, scheme, items, alone, levels)[0] for _ in range(3)]
    tokenizer = prepare_top_layers(base, scheme, items, alone, levels)[1]
    generator = QueryGenerator(items, alone.queries_per_item, TINY.examples.seed, run.load_query_templates())
    train_top_layers(models[1], tokenizer, generator, alone)
    with torch.no_grad():
        for name, value in pipeline_ranks["params"][0].items():
            models[2].get_parameter(name).copy_(value)
    encoded = encode_examples(tokenizer, QueryGenerator(items, 2, seed=99).epoch(0), alone.max_length)
    batches = [collate(encoded[i : i + 10], tokenizer.pad_token_id) for i in range(0, len(encoded), 10)]
    untrained, one, two = (_loss(model, batches) for model in models)
    assert one < 0.7 * untrained and two < 0.7 * untrained
    assert two == pytest.approx(one, rel=0.15)


def test_without_torchrun_the_process_is_alone_and_calls_no_collective(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def forbidden(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("torch.distributed was called")

    for name in (
        "init_process_group",
        "all_reduce",
        "barrier",
        "broadcast_object_list",
        "destroy_process_group",
    ):
        monkeypatch.setattr(dist, name, forbidden)
    place = Place.from_env("cpu", env={"OMP_NUM_THREADS": "1"})
    assert (place.rank, place.world_size, place.local_rank, place.device) == (0, 1, 0, torch.device("cpu"))
    assert place.is_main and not place.is_distributed
    assert place.shard([3, 1, 2]) == [3, 1, 2]
    assert place.any_true(True) and not place.any_true(False) and place.reduce(2.5, "sum") == 2.5
    assert (
        place.from_main("fp32") == "fp32" and place.main_first(lambda: 7) == place.main_only(lambda: 7) == 7
    )
    place.barrier()
    place.destroy()
    assert Place.from_env("cpu", env={"WORLD_SIZE": "1", "RANK": "0"}).world_size == 1


def test_shards_of_three_ranks_are_disjoint_and_cover_the_sequence() -> None:
    items = list(range(10))
    shards = [Place(rank=r, world_size=3).shard(items) for r in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(x for shard in shards for x in shard) == items


def test_a_rank_with_one_batch_more_merges_its_smallest_and_keeps_every_example() -> None:
    order = [[0, 1, 2], [3], [4, 5, 6], [7, 8]]
    merged = merge_down(order, 3)
    assert len(merged) == 3 and sorted(i for batch in merged for i in batch) == list(range(9))
    assert [7, 8, 3] in merged
    assert merge_down(order, 4) == order
    with pytest.raises(ValueError, match="fewer examples than processes"):
        merge_down([], 0)


def test_code_rows_get_a_gradient_from_a_batch_without_code_targets(tmp_path: Path) -> None:
    """DDP all-reduces every trainable parameter's gradient each step: none may drop out of the graph."""
    run_dir, base_models = make_run(tmp_path)
    items, report, scheme = RunLayout(run_dir).load_id_outputs()
    model, _, _ = prepare_top_layers(
        base_models / TINY.base_model, scheme, items, TINY.finetune, int(report["rq_levels"])
    )
    input_ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    labels = torch.tensor([[IGNORE, IGNORE, IGNORE, 8, 9, 10]])  # text targets only
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    model(batch).backward()
    assert model.code_rows.grad is not None and not model.code_rows.grad.any()
    assert all(p.grad is not None for p in model.trainable_parameters())
