"""Collect the demo run's fine-tuning figures into ``bench/results/finetune_demo.json``.

    .venv/bin/python -m bench.finetune_report

Reads what the pipeline and the quality benchmark wrote (run them first):
``artifacts/runs/demo/pipeline_report.json`` (throughput, end-to-end time, held-out and
training-phrasing recall) and ``artifacts/bench/quality_unseen.json`` (unseen queries, per category).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from training.run_layout import RunLayout

RESULTS = Path("bench/results/finetune_demo.json")
UNSEEN = Path("artifacts/bench/quality_unseen.json")
SYSTEMS = {"llm_semantic_id": "generative", "dense_minilm": "dense", "bm25": "bm25"}


def collect(run_dir: Path, unseen_path: Path) -> dict[str, Any]:
    report = json.loads((run_dir / "pipeline_report.json").read_text())
    unseen = json.loads(unseen_path.read_text())["systems"]
    evaluation = report["evaluation"]
    systems: dict[str, Any] = {}
    seen = evaluation.get("llm_on_training_phrasings", {})
    on_seen = {"llm_semantic_id": seen, **evaluation.get("baselines_on_training_phrasings", {})}
    for name, bench_name in SYSTEMS.items():
        systems[name] = {
            "heldout_recall@10": evaluation["systems"][name]["recall@10"],
            "training_phrasings_recall@10": on_seen.get(name, {}).get("recall@10"),
            "unseen_recall@10": round(unseen[bench_name]["all"]["recall@10"], 4),
            "unseen_hit@10": round(unseen[bench_name]["all"]["hit@10"], 4),
            "unseen_recall@10_by_category": {
                category: round(figures["recall@10"], 4)
                for category, figures in unseen[bench_name]["by_category"].items()
            },
        }
    training = report["training"]
    return {
        "bundle_id": report["bundle_id"],
        "examples_per_second": training["examples_per_second"],
        "end_to_end_seconds": report["timings_s"]["total"],
        "timings_s": report["timings_s"],
        "steps": training["steps"],
        "examples_seen": training["examples_seen"],
        "final_watch": training["final"],
        # What ambiguous training phrasings let any system reach (training.eval.metrics.ambiguity_metrics).
        "training_phrasings_ceiling": {
            key: seen[key]
            for key in ("oracle_recall@10", "specific_queries", "specific_recall@10")
            if key in seen
        },
        "systems": systems,
    }


def main() -> int:
    result = collect(RunLayout.for_profile("demo").folder, UNSEEN)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["systems"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
