"""The profiles of the offline pipeline, in one registry: for each, which films of the default
catalogue, the RQ-VAE preset, and the fine-tuning pipeline's config.

RQ-VAE presets, per catalogue size. full (17,470 films): 3 levels x 256 codes is 16.7M possible IDs
for 17k items, so collisions stay rare, while level 0 still groups about 68 films per code: coarse,
genre-like groups an LLM can learn to pick first. demo (1,000 films): 2 x 64. With 256 codes most
level-0 codes would hold about 4 films and nothing would be shared; 64 codes give about 16 films each,
so every level-0 token is seen often in fine-tuning. 64^2 = 4,096 combinations leave 23 % of the films
sharing theirs (at most 5 to one), which the disambiguation code resolves. Against 3 x 32 (one more
decision per ID), on the same CPU and time budget (bench/HISTORY.md): held-out Recall@10 0.75 vs 0.71,
unseen 0.50 vs 0.49 model alone, and hybrid queries 20 % faster (one level fewer for the finds' rows).
Smaller batches for the small catalogue keep enough optimiser steps per epoch. Another catalogue (a
JSONL file, run under a name of its own) takes the preset nearest its size, RQ-VAE and pipeline alike,
with a level more wherever the preset's codes would give fewer than ``MIN_IDS_PER_ITEM`` possible IDs
per item (a 3,000-item catalogue gets 3 x 64).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from semantic_ids.bundle import DenseGate, FusionParams
from semantic_ids.rqvae import RQVAEConfig
from training.data.catalogue import CatalogueError, load_films
from training.data.items import CatalogueItem
from training.llm.examples import ExampleConfig
from training.llm.finetune_config import FinetuneConfig
from training.pipeline.config import PipelineConfig, PipelineError

SMALL_CATALOGUE = 5000  # items; a catalogue of another profile up to this size takes the demo preset
MIN_IDS_PER_ITEM = 4  # possible IDs (codebook_size ** levels) per item; below, collisions crowd the IDs
# Past this many items the RQ-VAE trains on a sample of this many (``RQVAEConfig.train_sample``): at 10^6
# items training on all of them took 1,380 s of a 1,424 s ID stage on 2 cores (bench/RESULTS.md, Scale).
RQVAE_TRAIN_SAMPLE = 100_000


@dataclass(frozen=True)
class Profile:
    name: str
    catalogue_size: int | None  # the N most-reviewed films of the default catalogue; None: all
    rqvae: Mapping[str, Any]  # RQVAEConfig fields that differ from its defaults
    pipeline: PipelineConfig


# Demo: 1,000 films end to end in under 25 minutes on a 2-core CPU. The top 8 of 30 layers train in
# bf16 (where the CPU has it) on fresh queries every epoch for a fixed time, over the bottom 4 only: the 18
# frozen layers between are dropped (a 12-layer model). Equal-time runs on one CPU (bench/HISTORY.md): 789 /
# 1,092 / 1,156 / 1,386 steps with 0 / 10 / 14 / 18 dropped, held-out Recall@10 0.733 / 0.757 / 0.790 / 0.790
# (18 taken at the tie: the faster), and every forward served runs that many layers fewer (generative over
# HTTP 0.47x the time with 18). Equal-time runs chose the layer learning rate (2e-3 over 3e-4, 1e-3 and
# 4e-3); the top 4 over cached activations (3 passes per epoch) learnt the training strings better but
# generalised worse: held-out 0.46 vs 0.64 (bench/HISTORY.md).
# Held-out recall still climbs steeply at the end of the budget (watch: 0.47 at 500 steps, 0.75 at 747),
# so the budget takes what the 25 minutes leave: up to 1,260 s of training, less on a machine whose other
# stages take longer (``total_budget_s``). The layers run compiled where a C++ compiler is there, one layer
# at a time (+29 % examples per second on an AVX2-only CPU after a 30 s compile, bench/HISTORY.md).
# What `bench.tune_fusion` chose on the demo bundle of 2026-12-05 (bench/results/fusion_tuning.json,
# training-side queries only: held-out phrasings, typo'd titles, held-out genre synonyms, cast members at
# any billing position), so `make demo` serves all three sources at once, the dense term behind the gate
# learned there (the model's sureness is one of its signals: a bundle trained for less time may want its
# own) and decisive lexical matches first from 0.7 of the query's known words (0.8 held as well; 0.5 lost
# the people kind); `bench.tune_fusion --write` tunes a bundle on its own (about 7 minutes on the demo).
# What a hybrid query costs, chosen by `bench.hybrid_cost` on training-side queries (the same kinds) by one
# rule: the cheapest setting with every kind within one query of every find run over ten beams (margin 3).
# Eighth session (shares down to 0.4): 4 of the 10 beams, finds estimated past 1 nat. Eleventh (2026-12-07, a
# 12-layer bundle on the bf16 EPYC, shares down to 0.1; bench/results/hybrid_cost_demo_epyc_eleventh.json):
# one beam, finds estimated past 0.5 nat, 1.05x generative's time against 1.17x, Recall@10 0.8588 against
# 0.8574. The lexical and dense finds are the candidates; the model scores each of them in its search and adds
# its own best ID (items only its beams found were 1.4 % of hybrid's top 10s on the unseen sets with 4 beams).
DEMO_FUSION = FusionParams(
    method="linear",
    lexical_depth=10,
    lexical_weight=64.0,
    title_weight=16.0,
    dense_depth=10,
    dense_weight=256.0,
    dense_gate=DenseGate(
        bias=-0.994377,
        weights={
            "lexical_evidence": -1.800788,
            "title_match": -0.621783,
            "model_top_log_prob": 0.228969,
            "model_top_gap": -0.309041,
            "dense_top_cosine": 5.656158,
            "beam_dense_overlap": 6.166463,
        },
    ),
    decisive_evidence=0.7,
    estimate_margin=0.5,
    model_beam_share=0.1,
    tuned_on="the demo preset: bench.tune_fusion on demo bundle demo-20261205T122242Z and "
    "bench.hybrid_cost on demo-20261207T060408Z, not this bundle",
)
_DEMO_PIPELINE = PipelineConfig(
    profile="demo",
    examples=ExampleConfig(train_queries_per_item=12, attribute_examples_per_item=1),
    finetune=FinetuneConfig(
        method="top_layers",
        trainable_layers=8,
        dropped_layers=18,
        lr_layers=2e-3,
        lr_tokens=2e-2,
        batch_size=64,
        time_budget_s=1260,
        compile=True,
        queries_per_item=8,
        warmup_steps=30,
        eval_every=250,
        eval_queries=32,
    ),
    eval_queries=300,
    fusion=DEMO_FUSION,
    total_budget_s=1470,  # 24.5 minutes: the IDs and evaluation take twice as long on a slow machine
)
DEMO = Profile(
    name="demo",
    catalogue_size=1000,
    rqvae={"levels": 2, "codebook_size": 64, "batch_size": 128, "epochs": 150, "dead_code_threshold": 0.5},
    pipeline=_DEMO_PIPELINE,
)
FULL = Profile(
    name="full",
    catalogue_size=None,
    rqvae={"codebook_size": 256, "batch_size": 1024, "epochs": 40, "dead_code_threshold": 0.5},
    pipeline=replace(
        _DEMO_PIPELINE,
        profile="full",
        examples=ExampleConfig(train_queries_per_item=16, attribute_examples_per_item=2),
        # Sized for one GPU (bf16 on CUDA): 15 minutes of training, larger batches.
        # Every layer kept: dropping them was measured on the demo catalogue only (bench/HISTORY.md).
        finetune=replace(
            _DEMO_PIPELINE.finetune, time_budget_s=900, batch_size=256, eval_every=1_000, dropped_layers=0
        ),
        eval_queries=1_000,
        fusion=None,  # not tuned on the full catalogue: the defaults
        total_budget_s=1140,  # the 20 minutes on one GPU, with a minute to spare
    ),
)
PROFILES: dict[str, Profile] = {"demo": DEMO, "full": FULL}


def load_profile(profile: str, db_path: Path | None = None) -> list[CatalogueItem]:
    """The profile's films from the default catalogue (most-reviewed first)."""
    if profile not in PROFILES:
        raise CatalogueError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    return load_films(db_path, limit=PROFILES[profile].catalogue_size)


def _nearest(item_count: int | None) -> Profile:
    return DEMO if item_count is not None and item_count <= SMALL_CATALOGUE else FULL


def rqvae_config(profile: str, item_count: int | None = None, **overrides: Any) -> RQVAEConfig:
    """The profile's RQ-VAE preset; another profile takes the preset nearest its catalogue size, with
    no more codes than items (halved until they fit) and as many levels as give ``MIN_IDS_PER_ITEM``
    possible IDs per item; past ``RQVAE_TRAIN_SAMPLE`` items, trained on a sample of that many."""
    preset = PROFILES.get(profile) or _nearest(item_count)
    sample = {"train_sample": RQVAE_TRAIN_SAMPLE} if (item_count or 0) > RQVAE_TRAIN_SAMPLE else {}
    config = RQVAEConfig(**{**preset.rqvae, **sample, **overrides})
    if profile in PROFILES or item_count is None or "levels" in overrides:
        return config
    size = config.codebook_size
    if "codebook_size" not in overrides:  # a codebook needs at least as many items as codes
        while size > 2 and size > item_count:
            size //= 2
    levels = config.levels
    while size**levels < MIN_IDS_PER_ITEM * item_count:
        levels += 1
    return replace(config, codebook_size=size, levels=levels)


def pipeline_config(profile: str, item_count: int | None = None, **overrides: Any) -> PipelineConfig:
    """The profile's pipeline config with overrides (None keeps the profile's value) checked and applied.

    Another name is a run of a catalogue of one's own: with its ``item_count`` it takes the preset
    nearest that size under its own name (the bundle's profile); without, it is an unknown profile.
    """
    preset = PROFILES.get(profile)
    if preset is not None:
        return preset.pipeline.with_overrides(**overrides)
    if item_count is None:
        raise PipelineError(f"unknown profile {profile!r}: use {' or '.join(PROFILES)}")
    # A catalogue of one's own keeps the default fusion: the demo's was tuned on films.
    own = replace(_nearest(item_count).pipeline, profile=profile, fusion=None)
    return own.with_overrides(**overrides)
