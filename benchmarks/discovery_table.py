"""The comparison table, filled cell by cell: every method over several seeds on one world, distilled and scored.

A cell is (method, discovery seed, distillation seed). Each finished cell is stored as its own small JSON file in a
results folder that is committed (default docs/discovery_table/<world>/cells/): its key, its metrics (what
`contrafeat.evaluate` gives: the attribute-matrix scores, dead directions, the agreement with the true edits and the
group-VAE FVM / MIG / DCI), the fingerprint of the settings it was made with, the date, its wall seconds and the
command. A rerun skips the finished cells; a cell whose stored fingerprint differs from the current settings counts
as missing (stale) and says what differs. The cells run in the order of work (the methods in ORDER at discovery
seed 0, then seeds 1, 2, ...); `--budget-minutes M` starts a cell only when its estimated time still fits (the mean
wall time of finished cells of its kind, else DEFAULT_MINUTES) and stops cleanly before the first that does not.
Whatever happens, it then prints the done / missing cells and writes the table from the cells that exist (mean +-
std and the number of cells per method), beside the published 3DShapes numbers.

A method cell is `contrafeat.discover` (the run folder lives in --work, reused or resumed) then `contrafeat.evaluate`
with the distillation seed; a reference cell (beta-vae, factor-vae) is a VAE trained on the world's images with the
distillation seed, scored like the distilled encoders (it has no discovery seed). Trained methods get the same
budget of generator renders (--renders), not the same steps.

Usage:
  .venv/bin/python benchmarks/discovery_table.py --budget-minutes 120      # run what fits, then print and write the table
  .venv/bin/python benchmarks/discovery_table.py --list                    # run nothing: done / missing cells and the table
  .venv/bin/python benchmarks/discovery_table.py --checkpoint shapes3d-learned --distillation-seeds none   # direction-level cells only
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import re
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

import contrafeat
from contrafeat.commands.evaluate_commands import REFERENCE_KINDS
from contrafeat.console import attach_console
from contrafeat.discovery.config import DEFAULT_PRESET, EXECUTION_FIELDS, DiscoveryConfig, build_config
from contrafeat.discovery.directions import META_FILE
from contrafeat.discovery.registry import METHODS, method_spec
from contrafeat.discovery.run import check_answer_key
from contrafeat.discovery.trainer import saved_state
from contrafeat.errors import UserError
from contrafeat.evaluation.api import WORK_FOLDER, run_sensor
from contrafeat.evaluation.api import fingerprint as evaluation_fingerprint
from contrafeat.evaluation.disentanglement import COUNTS
from contrafeat.evaluation.distillation import PAIRS_FOLDER, REFERENCE_BETA, REFERENCE_GAMMA, DistillSettings, reference_vae, truth_metrics
from contrafeat.evaluation.evaluate_run import SCORING_VERSION, EvaluationSettings
from contrafeat.evaluation.tables import METRIC_LABELS, mean_std
from contrafeat.gan.identity import generator_identity
from contrafeat.gan.interface import GeneratorLike, has_factors
from contrafeat.io_utils import atomic_write_text, short_hash
from contrafeat.zoo import load_generator

CELL_FORMAT = 1
"""Version of how this benchmark makes a cell; part of every fingerprint, so a change here marks every cell stale."""
DEFAULT_SEEDS = [0, 1, 2]
"""The discovery seeds every table page covers (a command's --seeds may run fewer, or add others)."""
ORDER = ["truth", "contra-pt", "contra-bi", "ganspace", "sefa", "recog+att", "latentclr+att", "beta-vae", "factor-vae"]
"""The order of work: these rows at discovery seed 0 first, then the next seeds."""
REFERENCES = {kind: f"{kind} ({weight}, on the images)" for kind, weight in REFERENCE_KINDS.items()}
"""The reference VAEs trained on the world's images (no directions, no discovery seed), with their row labels."""
DEFAULT_RENDERS = build_config().renders_per_step * build_config().steps
"""The default run's renders (contra-bi: 1,500 steps of batch 10 at 2.5 renders per code)."""
DEFAULT_MINUTES = {
    ("fixed", True): 26.0,
    ("trained", True): 31.0,
    ("reference", True): 25.0,
    ("fixed", False): 2.0,
    ("trained", False): 8.0,
}
"""Estimated wall minutes of a cell before any of its kind has finished, on 2 CPU cores at the default settings: one
distillation 24-25 min (docs/distillation.md), a trained method's discovery at 37,500 renders 5-6 min
(docs/results.md), the reference VAE the same 10,000 VAE steps and metrics as a distillation."""
PUBLISHED = {
    "ganspace": ("GANSpace", (0.788, 0.121, 0.284)),
    "sefa": ("SeFa, as ClosedForm", (0.951, 0.307, 0.525)),
    "recog+att": ("Recog, as LatentDiscovery, without attention", (0.805, 0.168, 0.380)),
    "factor-vae": ("FactorVAE, on the real images", (0.840, 0.434, 0.611)),
}
"""Published FVM / MIG / DCI on 3DShapes (mean of 10 seeds; FDAE, Wu & Zheng, AAAI 2024, Table 2, which copies DisCo,
ICLR 2022; ../shared/REFERENCE.md), for the rows that have a counterpart here."""
PUBLISHED_ONLY = [("DisCo", (0.877, 0.512, 0.708)), ("FDAE", (0.987, 0.473, 0.917))]
"""Published rows with no counterpart here, for scale."""
STATEMENT = (
    "Ours are measured on contrafeat's procedural shapes3d world (`{world}`: a generator made by this package, with "
    "the 3DShapes factors), not on the StyleGAN2 trained on the 3DShapes dataset that the published GAN rows used, and "
    "our encoders are distilled at this machine's budget (docs/distillation.md), not the published one. The published "
    "numbers stand beside ours for scale; they are not a like-for-like comparison."
)
TABLE_METRICS = ["fvm", "mig", "dci", "score_fixed", "found_fixed", "score_calibrated", "found_calibrated", "dead", "true_edit_cos"]
"""The table's metric columns (every metric stays in the cell files and the per-cell CSV)."""
TINY: dict[str, Any] = {
    "discovery": {"batch_size": 2, "num_directions": 3, "subspace_dim": 4, "pca_samples": 2000, "sensor": "random-alexnet"},
    "trained_steps": 2,
    "evaluation": {"num_samples": 20},
    "distill": {"num_pairs": 24, "vae_steps": 2, "batch": 8, "metric_counts": "quick", "metric_fraction": 0.01},
}
"""The --tiny recipe: seconds per cell, for tests and trying the command; its numbers mean nothing."""


@dataclass(frozen=True)
class Cell:
    """One cell of the table: a method (or reference VAE), its discovery seed (None: a reference VAE) and its
    distillation seed (None: direction-level measures only, no distillation)."""

    method: str
    discovery_seed: int | None
    distillation_seed: int | None

    @property
    def reference(self) -> bool:
        return self.method in REFERENCES

    @property
    def stem(self) -> str:
        """The cell's file name without .json."""
        parts = [self.method.replace("+", "_")]
        if self.discovery_seed is not None:
            parts.append(f"seed{self.discovery_seed}")
        parts.append("nodistill" if self.distillation_seed is None else f"distill{self.distillation_seed}")
        return "_".join(parts)

    @property
    def label(self) -> str:
        seeds = "-" if self.discovery_seed is None else str(self.discovery_seed)
        return f"{self.method} (seed {seeds}, distillation {'none' if self.distillation_seed is None else self.distillation_seed})"

    @property
    def kind(self) -> tuple[str, bool]:
        """What its time is estimated from: (fixed / trained / reference, distilled)."""
        if self.reference:
            return "reference", True
        return ("trained" if method_spec(self.method).trains else "fixed"), self.distillation_seed is not None

    def key(self) -> dict[str, Any]:
        return {"method": self.method, "discovery_seed": self.discovery_seed, "distillation_seed": self.distillation_seed}


@dataclass
class Recipe:
    """How every cell is made: the world, the discovery options, the evaluation and distillation settings."""

    checkpoint: str
    renders: int | None = DEFAULT_RENDERS
    trained_steps: int | None = None
    discovery: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    distill: dict[str, Any] = field(default_factory=dict)
    predictor: str = "exact"
    keep_pairs: bool = False
    """Keep a distilled cell's rendered pairs (about 0.5 GB at the default 20,000) once its metrics are in; not part of
    any fingerprint."""

    def discovery_config(self, method: str, seed: int) -> DiscoveryConfig:
        """The configuration `contrafeat.discover` runs for this method and seed (the default preset, this world)."""
        options: dict[str, Any] = {**self.discovery, "checkpoint": self.checkpoint, "method": method, "seed": seed}
        if method_spec(method).trains:
            options["renders" if self.trained_steps is None else "steps"] = self.renders if self.trained_steps is None else self.trained_steps
        return build_config(DEFAULT_PRESET, None, options)

    def distill_settings(self, seed: int) -> DistillSettings:
        settings = DistillSettings(**{**self.distill, "seed": seed})
        settings.validate()
        return settings

    def evaluation_settings(self, cell: Cell) -> EvaluationSettings:
        """The samples, pairs, VAE and metrics all use the distillation seed (the discovery seed without one), as
        `contrafeat evaluate --seed` does."""
        seed = cell.distillation_seed if cell.distillation_seed is not None else cell.discovery_seed
        assert seed is not None  # a reference cell always has a distillation seed
        distill = None if cell.distillation_seed is None else self.distill_settings(cell.distillation_seed)
        settings = EvaluationSettings(**{**self.evaluation, "seed": seed, "distill": distill})
        settings.validate()
        return settings


def jsonable(value: Any) -> Any:
    """What the value reads back as from JSON (tuples become lists), so a stored fingerprint compares equal."""
    return json.loads(json.dumps(value))


def cell_fingerprint(cell: Cell, recipe: Recipe, identity: str) -> dict[str, Any]:
    """Everything a cell's numbers depend on besides its key: the generator's weights, the discovery configuration
    (without the options that only change how a run executes) and the evaluation's own fingerprint."""
    common = {"format": CELL_FORMAT, "world": recipe.checkpoint, "generator": identity}
    if cell.reference:
        assert cell.distillation_seed is not None
        distill = recipe.distill_settings(cell.distillation_seed)
        reference = {"kind": cell.method, "settings": asdict(distill), "beta": REFERENCE_BETA, "gamma": REFERENCE_GAMMA, "scoring": SCORING_VERSION}
        return jsonable({**common, "reference": reference})
    assert cell.discovery_seed is not None
    config = recipe.discovery_config(cell.method, cell.discovery_seed)
    discovery = {name: value for name, value in config.to_dict().items() if name not in EXECUTION_FIELDS}
    evaluation = evaluation_fingerprint(recipe.evaluation_settings(cell), recipe.predictor, run_sensor(config)[0])
    return jsonable({**common, "discovery": discovery, "evaluation": evaluation})


def differences(stored: Any, current: Any, path: str = "") -> list[str]:
    """The settings that differ between two fingerprints, as `path: stored -> current` lines."""
    if isinstance(stored, dict) and isinstance(current, dict):
        found = []
        for name in sorted(set(stored) | set(current), key=str):
            inner = f"{path}.{name}" if path else str(name)
            if name not in stored or name not in current:
                found.append(f"{inner}: {'absent' if name not in stored else stored[name]!r} -> {'absent' if name not in current else current[name]!r}")
            else:
                found += differences(stored[name], current[name], inner)
        return found
    return [] if stored == current else [f"{path}: {stored!r} -> {current!r}"]


@dataclass
class Status:
    """Where a cell stands: `done` (stored under the current fingerprint), `stale` (stored under another) or `missing`."""

    cell: Cell
    state: str
    record: dict[str, Any] | None = None
    changed: list[str] = field(default_factory=list)

    def line(self) -> str:
        if self.state != "stale":
            return self.cell.label
        shown = "; ".join(self.changed[:3]) + (f"; {len(self.changed) - 3} more" if len(self.changed) > 3 else "")
        return f"{self.cell.label}: stale, stored with other settings ({shown})"


class CellStore:
    """One JSON file per finished cell in `folder`, written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, cell: Cell) -> Path:
        return self.folder / f"{cell.stem}.json"

    def read(self, cell: Cell) -> dict[str, Any] | None:
        path = self.path(cell)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None  # cannot happen with atomic writes; an unreadable file is simply made again

    def status(self, cell: Cell, fingerprint: dict[str, Any]) -> Status:
        record = self.read(cell)
        if record is None:
            return Status(cell, "missing")
        if record.get("fingerprint") != fingerprint:
            return Status(cell, "stale", record, differences(record.get("fingerprint"), fingerprint) or ["unreadable fingerprint"])
        return Status(cell, "done", record)

    def write(self, cell: Cell, record: dict[str, Any]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(cell)
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
        return path


Compute = Callable[[Cell, Recipe, Path], dict[str, Any]]
"""Makes one cell: (cell, recipe, work folder) -> its metrics."""


def run_folder(cell: Cell, recipe: Recipe, work: Path) -> Path:
    """The discovery run of a method cell, named by its configuration's hash (another recipe gets another folder)."""
    assert cell.discovery_seed is not None
    config = recipe.discovery_config(cell.method, cell.discovery_seed)
    options = {name: value for name, value in config.to_dict().items() if name not in EXECUTION_FIELDS}
    return work / f"{cell.method.replace('+', '_')}-seed{cell.discovery_seed}-{short_hash(options)}"


def compute_cell(cell: Cell, recipe: Recipe, work: Path) -> dict[str, Any]:
    """The real cell: `contrafeat.discover` (its run folder reused when finished, resumed when interrupted) then
    `contrafeat.evaluate` into a folder of its own inside the run (an interrupted distillation resumes); a reference
    cell trains its VAE on the world's images (resumable) and scores it like a distilled encoder."""
    if cell.reference:
        assert cell.distillation_seed is not None
        generator = load_generator(recipe.checkpoint)
        distill = recipe.distill_settings(cell.distillation_seed)
        model = reference_vae(work / "references", generator, cell.method, distill, progress=False)
        return truth_metrics(generator, model, distill)
    assert cell.discovery_seed is not None
    folder = run_folder(cell, recipe, work)
    if not (folder / META_FILE).is_file():
        if saved_state(folder) is not None:
            contrafeat.discover(out=folder, resume=True, progress=False, pictures=False)
        else:
            contrafeat.discover(config=recipe.discovery_config(cell.method, cell.discovery_seed), out=folder, progress=False, pictures=False)
    settings = recipe.evaluation_settings(cell)
    distilled = "nodistill" if cell.distillation_seed is None else f"distill{cell.distillation_seed}"
    out = folder / f"evaluation-{distilled}-{short_hash(jsonable(asdict(settings)))}"
    result = contrafeat.evaluate(folder, out=out, predictor=recipe.predictor, progress=False, **{f.name: getattr(settings, f.name) for f in fields(settings)})
    if not recipe.keep_pairs:
        shutil.rmtree(out / WORK_FOLDER / PAIRS_FOLDER, ignore_errors=True)
    return dict(result["metrics"])


def plan_cells(methods: list[str], seeds: list[int], distillation: list[int | None] | None) -> list[Cell]:
    """The cells in the order of work: per discovery seed, per distillation seed (None: the discovery seed's own), the
    methods in their order; a reference cell once per distillation seed, none without distillation."""
    cells: list[Cell] = []
    for seed in seeds:
        for distill in ([seed] if distillation is None else distillation):
            for method in methods:
                if method in REFERENCES:
                    if distill is None:
                        continue
                    cell = Cell(method, None, distill)
                else:
                    cell = Cell(method, seed, distill)
                if cell not in cells:
                    cells.append(cell)
    return cells


def estimate_seconds(cell: Cell, finished: list[dict[str, Any]]) -> tuple[float, str]:
    """The cell's expected wall seconds: the mean of the finished cells of the same method (and distilled or not),
    else of the same kind, else DEFAULT_MINUTES; and where the number comes from."""
    def of(records: list[dict[str, Any]]) -> list[float]:
        return [float(record["wall_seconds"]) for record in records]

    same = [record for record in finished if Cell(**record["cell"]).method == cell.method and Cell(**record["cell"]).kind == cell.kind]
    if same:
        return sum(of(same)) / len(same), f"mean of {len(same)} finished {cell.method} cell(s)"
    alike = [record for record in finished if Cell(**record["cell"]).kind == cell.kind]
    if alike:
        return sum(of(alike)) / len(alike), f"mean of {len(alike)} finished {cell.kind[0]} cell(s)"
    return DEFAULT_MINUTES[cell.kind] * 60, "default estimate"


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "platform": platform.platform()}


def fill(
    statuses: list[Status],
    store: CellStore,
    fingerprints: dict[Cell, dict[str, Any]],
    recipe: Recipe,
    work: Path,
    compute: Compute,
    budget_seconds: float | None,
    clock: Callable[[], float],
    command: str,
) -> tuple[list[Status], str]:
    """Make the cells that are not done, in order, while each one's estimate fits the budget; returns the statuses
    afterwards and how the run ended."""
    start = clock()
    finished = [status.record for status in statuses if status.state == "done" and status.record is not None]
    result = list(statuses)
    ended = "every cell this command asked for is done"
    for position, status in enumerate(statuses):
        if status.state == "done":
            continue
        cell = status.cell
        used = clock() - start
        if budget_seconds is not None:
            need, source = estimate_seconds(cell, finished)
            if used + need > budget_seconds:
                ended = (
                    f"budget: {used / 60:.1f} of {budget_seconds / 60:.1f} min used; the next cell, {cell.label}, needs about "
                    f"{need / 60:.1f} min ({source}): stopped cleanly before it; rerun the same command to go on"
                )
                break
        print(f"cell {cell.label}: {'remaking a stale cell' if status.state == 'stale' else 'running'}", file=sys.stderr, flush=True)
        began = clock()
        metrics = compute(cell, recipe, work)
        wall = clock() - began
        record = {
            "cell": cell.key(),
            "world": recipe.checkpoint,
            "metrics": metrics,
            "fingerprint": fingerprints[cell],
            "fingerprint_hash": short_hash(fingerprints[cell]),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "wall_seconds": round(wall, 1),
            "command": command,
            "machine": machine(),
        }
        path = store.write(cell, record)
        print(f"cell {cell.label}: done in {wall / 60:.1f} min -> {path}", file=sys.stderr, flush=True)
        result[position] = Status(cell, "done", jsonable(record))
        finished.append(record)
    return result, ended


def row_label(method: str) -> str:
    return REFERENCES.get(method, method)


def seeds_text(cells: list[Cell]) -> str:
    """The seeds of a row's cells: `0, 1, 2` when each discovery seed is distilled with its own, else `s/d` pairs."""
    if all(cell.reference for cell in cells):
        return ", ".join(str(cell.distillation_seed) for cell in cells)
    if all(cell.discovery_seed == cell.distillation_seed for cell in cells):
        return ", ".join(str(cell.discovery_seed) for cell in cells)
    return ", ".join(f"{cell.discovery_seed}/{'-' if cell.distillation_seed is None else cell.distillation_seed}" for cell in cells)


def table_rows(statuses: list[Status], methods: list[str]) -> list[dict[str, Any]]:
    """One row per method (in the order of work): the number of cells done, their seeds, mean +- std of each metric
    (the value itself for one cell) and the published 3DShapes numbers where there is a counterpart."""
    rows = []
    for method in methods:
        done = [status for status in statuses if status.cell.method == method and status.state == "done" and status.record is not None]
        planned = [status for status in statuses if status.cell.method == method]
        row: dict[str, Any] = {"method": row_label(method), "cells": len(done), "planned": len(planned), "seeds": seeds_text([s.cell for s in done])}
        for metric in TABLE_METRICS:
            values = [float(s.record["metrics"][metric]) for s in done if s.record and s.record["metrics"].get(metric) is not None]
            if values:
                row[metric] = mean_std(values) if len(values) > 1 else (values[0], None)
        walls = [float(s.record["wall_seconds"]) for s in done if s.record]
        row["minutes"] = sum(walls) / len(walls) / 60 if walls else None
        published = PUBLISHED.get(method)
        if published is not None:
            row["published"], row["published_values"] = published
        rows.append(row)
    return rows


def format_value(value: tuple[float, float | None] | None, integer: bool = False) -> str:
    if value is None:
        return "-"
    mean, std = value
    digits = 1 if integer else 3
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def published_text(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.3f}".lstrip("0") for value in values)


def to_markdown(rows: list[dict[str, Any]], world: str, notes: list[str]) -> str:
    """The table page: the plain statement, the settings, our rows beside the published ones, the published-only rows."""
    titles = ["method", "cells", "seeds", *(METRIC_LABELS[m] for m in TABLE_METRICS), "min / cell", "published 3DShapes FVM / MIG / DCI"]
    lines = [f"# Discovery methods on `{world}`, cell by cell", "", STATEMENT.format(world=world), "", *notes, ""]
    lines += ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for row in rows:
        cells = [row["method"], f"{row['cells']} of {row['planned']}", row["seeds"] or "-"]
        cells += [format_value(row.get(metric), integer=metric.startswith("found") or metric == "dead") for metric in TABLE_METRICS]
        cells.append("-" if row["minutes"] is None else f"{row['minutes']:.1f}")
        cells.append(f"{published_text(row['published_values'])} ({row['published']})" if "published" in row else "")
        lines.append("| " + " | ".join(cells) + " |")
    for name, values in PUBLISHED_ONLY:
        lines.append("| " + " | ".join([f"{name} (published only)", "-", "-", *["" for _ in TABLE_METRICS], "", published_text(values)]) + " |")
    lines += [
        "",
        "cells: cells done of those planned (a cell is one method x discovery seed x distillation seed); seeds: the "
        "discovery seeds of the cells done, each distilled with its own seed (else discovery/distillation); mean ± std "
        "over the cells, one value where one cell is done. Published: mean of 10 seeds, FDAE (Wu & Zheng, AAAI 2024, "
        "Table 2, copying DisCo, ICLR 2022), on a StyleGAN2 trained on 3DShapes (the GAN rows) or on the real images.",
    ]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    header = ["method", "cells", "planned", "seeds"]
    for metric in TABLE_METRICS:
        header += [metric, f"{metric}_std"]
    header += ["minutes_per_cell", "published", "published_fvm", "published_mig", "published_dci"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        line: list[Any] = [row["method"], row["cells"], row["planned"], row["seeds"]]
        for metric in TABLE_METRICS:
            mean, std = row.get(metric) or ("", "")
            line += [mean, "" if std is None else std]
        line.append("" if row["minutes"] is None else round(row["minutes"], 2))
        line += [row.get("published", ""), *(row.get("published_values") or ("", "", ""))]
        writer.writerow(line)
    for name, values in PUBLISHED_ONLY:
        writer.writerow([name, 0, 0, "", *[""] * (2 * len(TABLE_METRICS)), "", name, *values])
    return buffer.getvalue()


def cells_csv(statuses: list[Status]) -> str:
    """Every cell done, one line each with all its metrics."""
    records = [status.record for status in statuses if status.state == "done" and status.record is not None]
    metrics: list[str] = []
    for record in records:
        metrics += [name for name in record["metrics"] if name not in metrics]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", "discovery_seed", "distillation_seed", *metrics, "wall_seconds", "date", "fingerprint_hash"])
    for record in records:
        key = record["cell"]
        seeds = ["" if key[name] is None else key[name] for name in ("discovery_seed", "distillation_seed")]
        values = [record["metrics"].get(name, "") for name in metrics]
        writer.writerow([key["method"], *seeds, *values, record["wall_seconds"], record["date"], record["fingerprint_hash"]])
    return buffer.getvalue()


def recipe_notes(recipe: Recipe, distillation: list[int | None] | None, tiny: bool) -> list[str]:
    distill = asdict(recipe.distill_settings(0))
    shown = ", ".join(f"{name} {value}" for name, value in distill.items() if name != "seed")
    budget = f"{recipe.renders:,} generator renders per trained method" if recipe.trained_steps is None else f"{recipe.trained_steps} steps per trained method"
    evaluation = json.dumps(recipe.evaluation) if recipe.evaluation else "defaults"
    distilled = distillation != [None]
    notes = [
        f"Settings: {budget}; predictor {recipe.predictor}; evaluation {evaluation}; "
        + (f"distillation: {shown}." if distilled else "no distillation: direction-level cells only (no FVM / MIG / DCI)."),
    ]
    if distilled and (distill["metric_counts"] != "full" or distill["metric_fraction"] < 1):
        counts = f"{distill['metric_counts']} metric counts x {distill['metric_fraction']:g}"
        notes.append(f"FVM / MIG / DCI at {counts}: a quick look, not comparable with published numbers.")
    if tiny:
        notes.append("**--tiny**: seconds per cell, for tests and trying the command; these numbers mean nothing.")
    return notes


def world_slug(checkpoint: str) -> str:
    name = checkpoint if re.fullmatch(r"[\w.-]+", checkpoint) else Path(checkpoint).stem
    return re.sub(r"[^\w.-]", "_", name)


def methods_for(generator: GeneratorLike, checkpoint: str, methods: list[str]) -> tuple[list[str], list[str]]:
    """The methods the generator can run (answer keys only where it knows them, reference VAEs only on a world with
    factors), and a line per method left out."""
    usable, left_out = [], []
    config = DiscoveryConfig(checkpoint=checkpoint)
    for name in methods:
        if name in REFERENCES:
            if has_factors(generator):
                usable.append(name)
            else:
                left_out.append(f"{name}: {checkpoint} has no known factors")
            continue
        try:
            check_answer_key(method_spec(name).directions, generator, config)
        except UserError as error:
            left_out.append(f"{name}: {error}")
            continue
        usable.append(name)
    return usable, left_out


def parse_distillation(values: list[str] | None) -> list[int | None] | None:
    """`--distillation-seeds`: None (each discovery seed its own), [None] (`none`) or the integers given."""
    if not values or values == ["same"]:
        return None
    if values == ["none"]:
        return [None]
    try:
        seeds: list[int | None] = [int(value) for value in values]
    except ValueError:
        raise UserError(f"--distillation-seeds {' '.join(values)}: expected `same`, `none` or non-negative integers") from None
    if any(seed is not None and seed < 0 for seed in seeds):
        raise UserError(f"--distillation-seeds {' '.join(values)}: expected non-negative integers")
    return seeds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="shapes3d", help="the world every method runs on (default shapes3d: the one with a truth row)")
    parser.add_argument(
        "--methods", nargs="+", default=None, choices=[*METHODS, *REFERENCES],
        help="rows to run (default: ORDER, as the world allows); the table shows ORDER and these",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=DEFAULT_SEEDS, help="discovery seeds to run, in the order of work")
    parser.add_argument(
        "--distillation-seeds", nargs="+", default=None,
        help="`same` (default: each discovery seed distilled with its own), `none` (direction-level cells only) or seeds for every discovery seed",
    )
    parser.add_argument("--budget-minutes", type=float, default=None, help="start a cell only while its estimated time fits this many minutes")
    parser.add_argument("--list", "--only-finished", dest="list", action="store_true", help="run nothing: print done / missing cells and write the table")
    parser.add_argument("--renders", type=int, default=DEFAULT_RENDERS, help="generator renders of each trained method's training")
    parser.add_argument("--pairs", type=int, default=DistillSettings.num_pairs, help="pairs per distillation")
    parser.add_argument("--vae-steps", type=int, default=DistillSettings.vae_steps, help="group-VAE and reference-VAE training steps")
    parser.add_argument("--metric-counts", default=DistillSettings.metric_counts, choices=list(COUNTS), help="FVM / MIG / DCI sample counts")
    parser.add_argument("--distill-option", nargs="+", default=[], metavar="NAME=VALUE", help="any other DistillSettings field (e.g. beta=4)")
    parser.add_argument("--predictor", default="exact", help="attribute predictor of the evaluation")
    parser.add_argument("--keep-pairs", action="store_true", help="keep each distilled cell's rendered pairs (about 0.5 GB) in --work")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--tiny", action="store_true", help="a recipe of seconds per cell, for tests; its results go to --results only when given")
    parser.add_argument("--work", type=Path, default=None, help="folder of the run folders (default benchmark_runs/discovery_table/<world>)")
    parser.add_argument("--results", type=Path, default=None, help="folder of the cells and the table (default docs/discovery_table/<world>)")
    args = parser.parse_args(argv)
    if args.renders < 1:
        parser.error(f"--renders {args.renders}: expected a positive integer")
    if any(seed < 0 for seed in args.seeds):
        parser.error(f"--seeds {' '.join(map(str, args.seeds))}: expected non-negative integers")
    if args.budget_minutes is not None and not args.budget_minutes >= 0:
        parser.error(f"--budget-minutes {args.budget_minutes}: expected a number >= 0")
    slug = world_slug(args.checkpoint)
    if args.distillation_seeds and args.distillation_seeds != ["same"]:
        slug += "-nodistill" if args.distillation_seeds == ["none"] else "-distill" + "_".join(args.distillation_seeds)
    if args.results is None:
        args.results = Path("benchmark_results/discovery_table_tiny" if args.tiny else "docs/discovery_table") / slug
    if args.work is None:
        args.work = Path("benchmark_runs/discovery_table" + ("_tiny" if args.tiny else "")) / slug
    return args


def distill_options(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """DistillSettings fields from the named flags, and from `--distill-option` (typed after each field's default)."""
    named: dict[str, Any] = {"num_pairs": args.pairs, "vae_steps": args.vae_steps, "metric_counts": args.metric_counts}
    options: dict[str, Any] = {}
    defaults: dict[str, Any] = {f.name: f.default for f in fields(DistillSettings)}
    for item in args.distill_option:
        name, _, value = item.partition("=")
        name = name.removeprefix("vae_") if name not in defaults and name.removeprefix("vae_") in defaults else name
        if name not in defaults or name == "seed":
            raise UserError(f"--distill-option {item}: expected NAME=VALUE with NAME one of {', '.join(n for n in defaults if n != 'seed')}")
        try:
            options[name] = type(defaults[name])(value)
        except ValueError:
            raise UserError(f"--distill-option {item}: expected a {type(defaults[name]).__name__}") from None
    return named, options


def recipe_of(args: argparse.Namespace) -> Recipe:
    """The recipe of the flags; --tiny's sizes go over the named flags, --distill-option over both."""
    named, options = distill_options(args)
    if args.tiny:
        return Recipe(
            args.checkpoint, renders=None, trained_steps=TINY["trained_steps"], discovery=dict(TINY["discovery"]),
            evaluation=dict(TINY["evaluation"]), distill={**named, **TINY["distill"], **options}, predictor=args.predictor, keep_pairs=args.keep_pairs,
        )
    return Recipe(args.checkpoint, renders=args.renders, distill={**named, **options}, predictor=args.predictor, keep_pairs=args.keep_pairs)


def report(statuses: list[Status]) -> str:
    done = [status for status in statuses if status.state == "done"]
    missing = [status for status in statuses if status.state != "done"]
    lines = [f"{len(done)} of {len(statuses)} cells done, {len(missing)} missing"]
    lines += [f"  done     {status.line()}" for status in done]
    lines += [f"  missing  {status.line()}" for status in missing]
    return "\n".join(lines)


def cells_section(statuses: list[Status]) -> str:
    """The page's last part: how the cells are made and kept, and which are done and missing."""
    return (
        "\n## Cells\n\nMade cell by cell by `benchmarks/discovery_table.py` (docs/distillation.md); each finished cell is a JSON file "
        "in `cells/` beside this page (key, metrics, settings fingerprint, date, wall seconds, command). Rerunning the "
        "command makes the missing cells in the order below.\n\n```\n" + report(statuses) + "\n```\n"
    )


def main(argv: list[str] | None = None, compute: Compute = compute_cell, clock: Callable[[], float] = time.monotonic) -> int:
    """The benchmark; `compute` makes one cell and `clock` measures time (both replaceable, for tests)."""
    try:
        args = parse_args(argv)
        attach_console()
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        recipe = recipe_of(args)
        distillation = parse_distillation(args.distillation_seeds)
        generator = load_generator(args.checkpoint)
        requested = args.methods or ORDER
        table_methods, left_out = methods_for(generator, args.checkpoint, [*ORDER, *(name for name in requested if name not in ORDER)])
        for line in left_out:
            print(f"left out: {line}", file=sys.stderr)
        run_cells = plan_cells([name for name in table_methods if name in requested], args.seeds, distillation)
        cells = plan_cells(table_methods, [*DEFAULT_SEEDS, *(seed for seed in args.seeds if seed not in DEFAULT_SEEDS)], distillation)
        identity = generator_identity(generator)
        fingerprints = {cell: cell_fingerprint(cell, recipe, identity) for cell in cells}
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    store = CellStore(args.results / "cells")
    statuses = [store.status(cell, fingerprints[cell]) for cell in run_cells]
    ended, code = "--list: nothing run", 0
    command = " ".join(shlex.quote(part) for part in ["benchmarks/discovery_table.py", *(sys.argv[1:] if argv is None else argv)])
    resumes = "rerun the same command to go on (an interrupted discovery or distillation resumes where it stopped)"
    try:
        if not args.list:
            budget = None if args.budget_minutes is None else args.budget_minutes * 60
            statuses, ended = fill(statuses, store, fingerprints, recipe, args.work, compute, budget, clock, command)
    except KeyboardInterrupt:
        ended, code = f"interrupted: {resumes}", 130
    except UserError as error:
        ended, code = f"error: {error}; {resumes}", 2
    except BaseException as error:
        ended = f"stopped by {type(error).__name__}: {error}; {resumes}"
        raise
    finally:
        statuses = [store.status(cell, fingerprints[cell]) for cell in cells]
        rows = table_rows(statuses, table_methods)
        page = to_markdown(rows, args.checkpoint, recipe_notes(recipe, distillation, args.tiny)) + cells_section(statuses)
        args.results.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.results / "discovery_table.md", page)
        atomic_write_text(args.results / "discovery_table.csv", to_csv(rows))
        atomic_write_text(args.results / "discovery_cells.csv", cells_csv(statuses))
        print(page)
        print("this command's cells: " + report([store.status(cell, fingerprints[cell]) for cell in run_cells]))
        print(f"{ended}\ntable: {args.results / 'discovery_table.md'} (.csv); cells: {store.folder}")
    return code


if __name__ == "__main__":
    sys.exit(main())
