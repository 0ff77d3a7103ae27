"""Where this process sits in a data-parallel run started by ``torchrun``, and the few collectives the
training loop and the pipeline need.

``torchrun`` starts one process per GPU (or per CPU share) and tells each its place in the environment:
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT`` for the rendezvous).
``Place.from_env`` reads them; without them (a plain ``semid`` run) the process is alone: no process
group is created and none of the helpers below calls ``torch.distributed``, so a single-process run
behaves as it did before this module existed.

The division of work (``main_first``, ``main_only``): rank 0 writes every file of the run; the other
ranks read what it wrote, train beside it, and leave. CUDA ranks talk over NCCL, CPU ranks over gloo.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal, TypeVar

import torch
import torch.distributed as dist

from semantic_ids.causal_lm import resolve_device

logger = logging.getLogger(__name__)

T = TypeVar("T")
Reduction = Literal["sum", "max", "min"]

# How long a rank waits at a collective. The other ranks wait at one while rank 0 builds the semantic
# IDs and the examples (``main_first``): minutes on a big catalogue, so well above torch's default.
WAIT = timedelta(hours=2)


class MainRankFailed(RuntimeError):
    """Rank 0 failed in work the other ranks were waiting for; its own error says why."""


@dataclass(frozen=True)
class Place:
    """This process's rank among ``world_size`` processes, its rank on this machine, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def from_env(cls, device: str = "auto", env: Mapping[str, str] | None = None) -> Place:
        """The place ``torchrun`` gave this process, with its process group initialised; alone (no
        group, no ``torch.distributed`` call) when ``WORLD_SIZE`` is absent or 1."""
        env = os.environ if env is None else env
        world_size = int(env.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls(device=resolve_device(device))
        rank, local_rank = int(env["RANK"]), int(env.get("LOCAL_RANK", "0"))
        chosen = resolve_device(device)
        if chosen.type == "cuda":  # one GPU per process on each machine: the local rank's
            chosen = torch.device("cuda", local_rank)
            torch.cuda.set_device(chosen)
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=WAIT)
        logger.info("rank %d of %d on %s (%s)", rank, world_size, chosen, backend)
        return cls(rank, world_size, local_rank, chosen)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, sequence: Sequence[T]) -> list[T]:
        """This rank's share: every ``world_size``-th element from its rank on. The shards are disjoint,
        their union is ``sequence``, and their sizes differ by at most one."""
        return list(sequence[self.rank :: self.world_size])

    def reduce(self, value: float, op: Reduction) -> float:
        """``value`` summed, or its largest or smallest, over every rank."""
        if not self.is_distributed:
            return value
        # float64 holds every count and second exactly enough; NCCL needs the tensor on the GPU.
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op.upper()))
        return float(tensor.item())

    def any_true(self, flag: bool) -> bool:
        """True on every rank when it is true on any: every rank stops at the same step."""
        return self.reduce(float(flag), "max") > 0 if self.is_distributed else flag

    def from_main(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (a small picklable object)."""
        if not self.is_distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier(device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def destroy(self) -> None:
        if self.is_distributed and dist.is_initialized():
            dist.destroy_process_group()

    def main_first(self, work: Callable[[], T]) -> T | None:
        """Rank 0 runs ``work`` (writing what every rank reads next) while the others wait; its result on
        rank 0, None elsewhere. If rank 0 fails the others raise ``MainRankFailed`` instead of waiting on."""
        if not self.is_distributed:
            return work()
        done = False
        try:
            result = work() if self.is_main else None
            done = True
        finally:
            # Doubles as the barrier; rank 0 reaches it with its error too, so nobody waits for WAIT.
            failed = self.any_true(not done)
        if failed:
            raise MainRankFailed("rank 0 failed before the ranks could go on; see its error")
        return result

    def main_only(self, work: Callable[[], T]) -> T | None:
        """``work`` on rank 0 only (what follows training: evaluating, writing); None elsewhere."""
        return work() if self.is_main else None


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[Place]:
    """``Place.from_env`` for the length of a command, its process group destroyed at the end."""
    place = Place.from_env(device)
    try:
        yield place
    finally:
        place.destroy()
