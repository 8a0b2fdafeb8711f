"""Training jobs on the tiny world, run in one process or in each of several gloo processes (spawned by the tests)."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tiny_world import TinyGenerator, TinySensor

from contrafeat.discovery import distributed
from contrafeat.discovery.config import build_config
from contrafeat.discovery.distributed import Runtime
from contrafeat.discovery.methods import build_navigator
from contrafeat.discovery.objectives import build_objective
from contrafeat.discovery.subspace import compute_pca
from contrafeat.discovery.trainer import Trainer

TINY = {"batch_size": 8, "num_directions": 3, "subspace_dim": 4, "save_every": 2, "log_every": 1, "pca_samples": 500}


@dataclass
class Job:
    """Train `method` to `steps` in `run_dirs[rank]` (resuming its training state when `resume`)."""

    run_dirs: list[Path]
    method: str = "contra-bi"
    steps: int = 4
    resume: bool = False
    overrides: dict = field(default_factory=dict)


def make_trainer(job: Job, runtime: Runtime | None = None) -> Trainer:
    rank = runtime.rank if runtime else 0
    config = build_config("shapes3d", None, {**TINY, "method": job.method, "steps": job.steps, **job.overrides})
    generator = TinyGenerator()
    pca = compute_pca(generator, num_samples=500, batch_size=250, progress=False)
    navigator, objective = build_navigator(config, generator, pca), build_objective(config, generator)
    return Trainer(config, generator, TinySensor(), pca, navigator, objective, job.run_dirs[rank], runtime)


def train(job: Job, runtime: Runtime | None = None) -> dict[str, torch.Tensor]:
    """Run a job (rank 0 creates its run folder, as the command line does); the trained navigator and objective parameters."""
    trainer = make_trainer(job, runtime)
    if trainer.runtime.is_main:
        trainer.run_dir.mkdir(parents=True, exist_ok=True)
    if job.resume:
        trainer.load_state()
    trainer.run(progress=False)
    return {**trainer.navigator.state_dict(), **{f"objective.{k}": v for k, v in trainer.objective.state_dict().items()}}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rank_main(rank: int, world_size: int, port: int, jobs: list[Job], results: Path) -> None:
    """Entry point of one spawned rank: join the gloo group, run the jobs, rank 0 saves their parameters."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    runtime = distributed.start("cpu")
    try:
        outcomes = [train(job, runtime) for job in jobs]
    finally:
        distributed.stop(runtime)
    if runtime.is_main:
        torch.save(outcomes, results)


def train_in_processes(jobs: list[Job], world_size: int, results: Path) -> list[dict[str, torch.Tensor]]:
    """Run the jobs in `world_size` spawned gloo processes; rank 0's parameters per job."""
    torch.multiprocessing.spawn(rank_main, args=(world_size, free_port(), jobs, results), nprocs=world_size, join=True)
    return torch.load(results, weights_only=True)
