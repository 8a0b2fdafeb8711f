"""The units of work of the ablations: train-and-score one configuration at one seed, or one seed of the mask analysis.

Each cell keeps its own folder; a finished cell's result.json is reused when its fingerprint matches, an
interrupted training resumes from its training state. Cells run in spawned worker processes (`jobs` > 1),
each with a fixed number of torch threads, or in this process (`jobs` = 1).
"""
from __future__ import annotations

import json
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from contrafeat.discovery.config import EXECUTION_FIELDS, DiscoveryConfig, build_config
from contrafeat.discovery.registry import method_spec
from contrafeat.discovery.trainer import saved_state
from contrafeat.evaluation.attribute_scores import build_predictor
from contrafeat.evaluation.evaluate_run import SCORING_VERSION, EvaluationSettings, fixed_strength_scores
from contrafeat.evaluation.true_edits import true_edit_agreement
from contrafeat.experiments.mask_analysis import DEFAULT_SIGMA, run_mask_analysis, summary_table
from contrafeat.features import build_sensor
from contrafeat.gan.interface import has_true_edits
from contrafeat.io_utils import atomic_write_text, short_hash
from contrafeat.runs import discover
from contrafeat.zoo import load_generator

RESULT_FILE = "result.json"
"""Each cell's result with the fingerprint it was computed under (see `stored_result`)."""


class Cell(Protocol):
    @property
    def folder(self) -> Path: ...

    def fingerprint(self) -> dict[str, Any]: ...

    def compute(self) -> dict[str, Any]: ...


def config_of(overrides: dict[str, Any], seed: int, steps: int, pca_samples: int) -> DiscoveryConfig:
    """The shapes3d preset with a variant's overrides, the seed, and (for methods that train) the step count."""
    values = {**overrides, "seed": seed, "pca_samples": pca_samples, "save_every": max(1, min(100, steps))}
    if method_spec(overrides.get("method", DiscoveryConfig.method)).trains:
        values["steps"] = steps
    return build_config("shapes3d", None, values)


def training_fingerprint(config: DiscoveryConfig, evaluation: EvaluationSettings) -> dict[str, Any]:
    """What a trained cell's numbers depend on: the config (execution fields aside) and how it is judged."""
    learned = {key: value for key, value in config.to_dict().items() if key not in EXECUTION_FIELDS}
    judged = {key: value for key, value in asdict(evaluation).items() if key != "distill"}
    return {"kind": "training", "config": learned, "evaluation": judged, "scoring": SCORING_VERSION}


@dataclass(frozen=True)
class TrainingCell:
    """Train one configuration (or build closed-form directions) and score them at the fixed strength."""

    config: DiscoveryConfig
    evaluation: EvaluationSettings
    folder: Path

    @classmethod
    def in_work(cls, work: Path, config: DiscoveryConfig, evaluation: EvaluationSettings) -> TrainingCell:
        """The cell in work/cells/<method>-seed<seed>-<hash of everything learned and judged>, shared by every study asking for it."""
        name = f"{config.method.replace('+', '_')}-seed{config.seed}-{short_hash(training_fingerprint(config, evaluation))}"
        return cls(config, evaluation, work / "cells" / name)

    def fingerprint(self) -> dict[str, Any]:
        return training_fingerprint(self.config, self.evaluation)

    def compute(self) -> dict[str, Any]:
        resuming = saved_state(self.folder) is not None
        if not resuming and self.folder.exists():
            shutil.rmtree(self.folder)  # without a training state it holds nothing to continue: a stale result at most
        directions = discover(config=self.config, out=self.folder, resume=resuming, progress=False, pictures=False)
        generator = load_generator(self.config.checkpoint)
        assert directions is not None  # a single process is rank 0, which holds them
        assert has_true_edits(generator)  # the grid runs on the linear shapes3d world
        scores = fixed_strength_scores(generator, directions, build_predictor("exact", generator), self.evaluation)
        agreement = true_edit_agreement(generator, directions)["true_edit_cos"]
        return {"score": scores.score, "found": scores.found, "factor_score": scores.factor_score, "true_edit_cos": agreement}


@dataclass(frozen=True)
class MaskCell:
    """One seed of the L2-mask analysis (paper Table 8): summary rows per setting and similarity."""

    sensor: str
    samples: int
    seed: int
    folder: Path

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "mask", "sensor": self.sensor, "samples": self.samples, "seed": self.seed, "sigma": DEFAULT_SIGMA, "cos": "abs"}

    def compute(self) -> dict[str, Any]:
        result = run_mask_analysis(build_sensor(self.sensor), self.samples, DEFAULT_SIGMA, "abs", self.seed)
        return {"rows": summary_table(result)}


def full_fingerprint(cell: Cell, threads: int) -> dict[str, Any]:
    """The cell's fingerprint plus the torch thread count (float sums, and so the last digits, depend on it)."""
    return json.loads(json.dumps({"threads": threads, **cell.fingerprint()}))


def stored_result(cell: Cell, threads: int) -> dict[str, Any] | None:
    """The cell's earlier result when it was computed with the same fingerprint and thread count."""
    path = cell.folder / RESULT_FILE
    if not path.is_file():
        return None
    stored = json.loads(path.read_text())
    return stored["result"] if stored.get("fingerprint") == full_fingerprint(cell, threads) else None


def run_cell(cell: Cell, threads: int) -> dict[str, Any]:
    """The cell's result, computed with `threads` torch threads and stored atomically (or reused when stored alike)."""
    earlier = stored_result(cell, threads)
    if earlier is not None:
        return earlier
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        result = cell.compute()
    finally:
        torch.set_num_threads(previous)
    cell.folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cell.folder / RESULT_FILE, json.dumps({"fingerprint": full_fingerprint(cell, threads), "result": result}, indent=1))
    return result


def run_cells(cells: list[Cell], jobs: int, threads: int, progress: bool = True) -> list[dict[str, Any]]:
    """Every cell's result in the order given, `jobs` at once with `threads` torch threads each; stored results are reused."""
    results: list[dict[str, Any] | None] = [stored_result(cell, threads) for cell in cells]
    pending = [index for index, result in enumerate(results) if result is None]
    with tqdm(total=len(cells), initial=len(cells) - len(pending), disable=not progress, desc="ablation cells", unit="cell") as bar:
        if jobs == 1:
            for index in pending:
                results[index] = run_cell(cells[index], threads)
                bar.update(1)
        elif pending:
            pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
            try:
                futures = {pool.submit(run_cell, cells[index], threads): index for index in pending}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update(1)
            finally:
                pool.shutdown(cancel_futures=True)
    return results  # type: ignore[return-value]
