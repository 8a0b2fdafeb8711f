"""Pair rendering shared by 2 gloo processes on the CPU: the folder one process writes, byte for byte;
and `contrafeat evaluate` under 2 ranks, which gives the single-process result."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from distributed_worker import free_port
from joblib.externals.loky import get_reusable_executor
from test_evaluate_cli import TINY_EVALUATION
from tiny_world import TinyGenerator

from contrafeat.cli import main
from contrafeat.commands import evaluate_commands
from contrafeat.discovery import distributed
from contrafeat.discovery.directions import Directions
from contrafeat.errors import UserError
from contrafeat.evaluation import api, pairs
from contrafeat.evaluation.distillation import PAIRS_FOLDER
from contrafeat.evaluation.pairs import MANIFEST_FILE, SHARD_PATTERN, PairSettings, write_pairs

WORLD_SIZE = 2


@dataclass
class PairJob:
    """Write the pair folder `name` (under the spawned processes' root) with these sizes."""

    name: str
    num_pairs: int
    shard_size: int = 4


JOBS = {
    "four": PairJob("four", 16),  # 4 shards, 2 per rank
    "three": PairJob("three", 10),  # 3 shards (the last one short): rank 0 renders two, rank 1 one
    "one": PairJob("one", 3),  # fewer shards than ranks: rank 1 renders nothing
    "resumed": PairJob("resumed", 20),  # 5 shards, 1 and 2 deleted from a finished folder beforehand
    "mismatch": PairJob("mismatch", 8),  # its folder holds pairs of other settings
}
MISSING = (1, 2)


def tiny_directions() -> Directions:
    rng = torch.Generator().manual_seed(3)
    return Directions(torch.randn(3, 6, generator=rng), torch.softmax(torch.randn(3, 4, generator=rng), dim=1), torch.ones(3), "test", "tiny")


def settings_of(job: PairJob) -> PairSettings:
    return PairSettings(
        generator_id="tiny", directions_digest=pairs.directions_digest(tiny_directions()), kept=[0, 2], strengths=[1.5, -2.0],
        num_pairs=job.num_pairs, shard_size=job.shard_size, seed=11, resolution=16,
    )


def write(folder: Path, job: PairJob, runtime: distributed.Runtime | None = None) -> Path:
    return write_pairs(folder, TinyGenerator(), tiny_directions(), settings_of(job), progress=False, runtime=runtime)


def join(rank: int, world_size: int, port: int) -> None:
    """The environment torchrun gives a rank, and one thread as in the single-process runs compared with."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)


def rank_main(rank: int, world_size: int, port: int, root: Path) -> None:
    """One spawned rank: write every job's folder under `root`, recording what this rank rendered and wrote."""
    join(rank, world_size, port)
    record: dict[str, list] = {"rendered": [], "manifests": [], "errors": []}
    render_shard, atomic_write_text = pairs.render_shard, pairs.atomic_write_text

    def recording_render(generator, directions, settings, shard):
        record["rendered"].append([settings.num_pairs, shard])
        return render_shard(generator, directions, settings, shard)

    def recording_write(target, text):
        record["manifests"].append(target.parent.name)
        atomic_write_text(target, text)

    pairs.render_shard, pairs.atomic_write_text = recording_render, recording_write
    runtime = distributed.start("cpu")
    try:
        for job in JOBS.values():
            try:
                write(root / job.name, job, runtime)
            except UserError as error:
                record["errors"].append(str(error))
    finally:
        distributed.stop(runtime)
    (root / f"rank{rank}.json").write_text(json.dumps(record))


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    """Single-process reference folders, then one spawn of 2 ranks over every job; the two roots and each rank's record."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    single, shared = tmp_path_factory.mktemp("single"), tmp_path_factory.mktemp("shared")
    try:
        for job in JOBS.values():
            write(single / job.name, job)
        shutil.copytree(single / "resumed", shared / "resumed")
        for shard in MISSING:
            (shared / "resumed" / SHARD_PATTERN.format(shard)).unlink()
        kept = {path.name: os.stat(path) for path in (shared / "resumed").iterdir()}
        write(shared / "mismatch", PairJob("mismatch", 8, shard_size=2))
        mismatch_before = folder_bytes(shared / "mismatch")
        torch.multiprocessing.spawn(rank_main, args=(WORLD_SIZE, free_port(), shared), nprocs=WORLD_SIZE, join=True)
    finally:
        torch.set_num_threads(threads)
    records = [json.loads((shared / f"rank{rank}.json").read_text()) for rank in range(WORLD_SIZE)]
    return single, shared, records, kept, mismatch_before


@pytest.mark.parametrize("name", ["four", "three", "one", "resumed"])
def test_two_ranks_write_the_files_one_process_writes(spawned, name):
    single, shared, *_ = spawned
    settings = settings_of(JOBS[name])
    written = folder_bytes(shared / name)
    assert set(written) == {MANIFEST_FILE, *(SHARD_PATTERN.format(shard) for shard in range(settings.num_shards))}
    assert written == folder_bytes(single / name)
    assert len(pairs.PairDataset(shared / name)) == settings.num_pairs


def test_each_rank_renders_its_own_missing_shards(spawned):
    *_, records, _, _ = spawned
    rendered = [sorted(map(tuple, record["rendered"])) for record in records]
    assert rendered[0] == [(3, 0), (10, 0), (10, 2), (16, 0), (16, 2), (20, 2)]
    assert rendered[1] == [(10, 1), (16, 1), (16, 3), (20, 1)]


def test_only_rank_zero_writes_new_manifests(spawned):
    *_, records, _, _ = spawned
    assert sorted(records[0]["manifests"]) == ["four", "one", "three"]
    assert records[1]["manifests"] == []


def test_an_interrupted_folder_is_completed_without_rewriting_its_shards(spawned):
    _, shared, _, kept, _ = spawned
    for name, before in kept.items():
        after = os.stat(shared / "resumed" / name)
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), name
    assert set(kept) == {MANIFEST_FILE, *(SHARD_PATTERN.format(shard) for shard in range(5) if shard not in MISSING)}


def test_a_folder_of_other_settings_fails_on_every_rank_and_stays_untouched(spawned):
    _, shared, records, _, mismatch_before = spawned
    for record in records:
        assert len(record["errors"]) == 1
        assert "holds pairs made with other settings (shard_size differ)" in record["errors"][0]
    assert folder_bytes(shared / "mismatch") == mismatch_before


def evaluate_rank_main(rank: int, world_size: int, port: int, argv: list[str], root: Path) -> None:
    """One spawned rank of `contrafeat evaluate`: its exit code and the result files it wrote through atomic_write_text."""
    join(rank, world_size, port)
    written: list[str] = []
    atomic_write_text = api.atomic_write_text

    def recording_write(target, text):
        written.append(target.name)
        atomic_write_text(target, text)

    api.atomic_write_text = recording_write
    code = main(argv)
    get_reusable_executor().shutdown(wait=True)  # a spawned process waits for its children at exit: DCI's idle joblib workers would live 300 s
    (root / f"evaluate-rank{rank}.json").write_text(json.dumps({"code": code, "written": written}))


@pytest.mark.slow
def test_evaluate_under_two_ranks_gives_the_single_process_result(tiny_run, tmp_path):
    """About a minute of CPU: two whole evaluations (calibration and DCI dominate), one of them in 2 spawned ranks."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    single, shared = tmp_path / "single" / tiny_run.name, tmp_path / "shared" / tiny_run.name
    shutil.copytree(tiny_run, single)
    shutil.copytree(tiny_run, shared)
    try:
        assert main(["evaluate", str(single), "--out", str(tmp_path / "single-tables"), *TINY_EVALUATION]) == 0
        argv = ["evaluate", str(shared), "--out", str(tmp_path / "shared-tables"), *TINY_EVALUATION]
        torch.multiprocessing.spawn(evaluate_rank_main, args=(WORLD_SIZE, free_port(), argv, tmp_path), nprocs=WORLD_SIZE, join=True)
    finally:
        torch.set_num_threads(threads)
    records = [json.loads((tmp_path / f"evaluate-rank{rank}.json").read_text()) for rank in range(WORLD_SIZE)]
    assert [record["code"] for record in records] == [0, 0]
    assert records[0]["written"] == [evaluate_commands.RESULT_FILE] and records[1]["written"] == []
    expected = json.loads((single / evaluate_commands.RESULT_FILE).read_text())
    result = json.loads((shared / evaluate_commands.RESULT_FILE).read_text())
    assert result["metrics"] == expected["metrics"]
    assert result == expected
    pair_folder = Path(evaluate_commands.WORK_FOLDER) / PAIRS_FOLDER
    assert folder_bytes(shared / pair_folder) == folder_bytes(single / pair_folder)
    assert (tmp_path / "shared-tables" / "evaluation.csv").read_text() == (tmp_path / "single-tables" / "evaluation.csv").read_text()
