"""Run ablation studies on the shapes3d world over several seeds and write, per study, mean +- std tables and a figure.

Training studies score each variant by the fixed-strength attribute-change matrix (exact factors) and the
cosine of its directions to the true edits; the step is the same for every variant and sensor, so the
sensor study is not confounded by sensor-calibrated strengths. The mask study is the L2-mask analysis.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from contrafeat.discovery.subspace import load_or_compute_pca
from contrafeat.errors import UserError
from contrafeat.evaluation.evaluate_run import EvaluationSettings
from contrafeat.evaluation.tables import aggregate, mean_std, to_csv, to_markdown
from contrafeat.experiments.cells import Cell, MaskCell, TrainingCell, config_of, run_cells
from contrafeat.experiments.mask_analysis import MODE_TITLES, MODES, PAPER_TABLE8, SETTINGS
from contrafeat.experiments.studies import MASK_STUDY, TRAINING_STUDIES, StudyContext, Variant
from contrafeat.io_utils import atomic_write_text
from contrafeat.options import COUNT, INDEX, check_settings, option
from contrafeat.paths import cache_dir
from contrafeat.zoo import load_generator

GENERATOR = "shapes3d"


@dataclass(frozen=True)
class AblationSettings:
    """How much work each variant gets; `quick()` is the ten-minute version."""

    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = option(250, "training steps per run", COUNT)
    pca_samples: int = option(1_000_000, "mapped samples of the PCA of W", COUNT)
    samples: int = option(500, "samples of each attribute-change matrix", COUNT)
    mask_samples: int = option(250, "samples per factor pair of the mask study", COUNT)
    mask_sensor: str = "mobilenet_v2"
    jobs: int = option(2, "runs at once", COUNT)
    job_threads: int = option(1, "torch threads of each run", COUNT)
    alexnet_weights: str | None = None

    def validate(self) -> None:
        """Reject values no suite can use, naming the flag (each field is the `contrafeat ablate` flag of its name)."""
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"--seeds {' '.join(map(str, self.seeds))}: expected one or more distinct seeds")
        for seed in self.seeds:
            INDEX.check(seed, "seeds")
        check_settings(self)
        if self.alexnet_weights is not None and not Path(self.alexnet_weights).is_file():
            raise UserError(f"--alexnet-weights {self.alexnet_weights}: file not found; expected torchvision's AlexNet ImageNet weights")

    def quick(self) -> AblationSettings:
        return replace(self, seeds=self.seeds[:1], steps=100, pca_samples=200_000, samples=200, mask_samples=40)

    def evaluation(self) -> EvaluationSettings:
        return EvaluationSettings(num_samples=self.samples, distill=None)


@dataclass
class StudyOutput:
    """One study's summary table, its Markdown section and the folder its files went to (the figure is drawn from `table`)."""

    name: str
    title: str
    table: list[dict]
    markdown: str
    folder: Path


def training_cells(name: str, settings: AblationSettings, work: Path, context: StudyContext) -> list[tuple[Variant, int, Cell]]:
    """(variant, seed, cell) for every variant of the study at every seed."""
    evaluation = settings.evaluation()
    cells: list[tuple[Variant, int, Cell]] = []
    for variant in TRAINING_STUDIES[name].variants(context):
        for seed in settings.seeds:
            config = config_of({"checkpoint": GENERATOR, **variant.overrides}, seed, settings.steps, settings.pca_samples)
            cells.append((variant, seed, TrainingCell.in_work(work, config, evaluation)))
    return cells


def mask_cells(settings: AblationSettings, work: Path) -> list[MaskCell]:
    return [
        MaskCell(settings.mask_sensor, settings.mask_samples, seed, work / "cells" / f"mask-{settings.mask_sensor}-n{settings.mask_samples}-seed{seed}")
        for seed in settings.seeds
    ]


def run_studies(names: list[str], settings: AblationSettings, work: Path, out: Path, progress: bool = True) -> list[StudyOutput]:
    """Every cell of the named studies (each distinct cell once, shared cells reused), then each study's outputs."""
    settings.validate()
    started = time.perf_counter()
    generator = load_generator(GENERATOR)
    context = StudyContext(w_dim=generator.w_dim, alexnet_weights=settings.alexnet_weights)
    planned = {name: training_cells(name, settings, work, context) for name in names if name in TRAINING_STUDIES}
    masks = mask_cells(settings, work) if MASK_STUDY in names else []
    if planned:
        load_or_compute_pca(generator, cache_dir("pca"), settings.pca_samples, seed=0, progress=progress)
    unique: list[Cell] = masks + list({cell.folder: cell for cells in planned.values() for _, _, cell in cells}.values())
    results = dict(zip((cell.folder for cell in unique), run_cells(unique, settings.jobs, settings.job_threads, progress)))
    elapsed = time.perf_counter() - started
    record = {**asdict(settings), "cells": len(unique)}
    outputs = [write_training_study(name, cells, results, record, out) for name, cells in planned.items()]
    if masks:
        outputs.append(write_mask_study([results[cell.folder] for cell in masks], record, out))
    atomic_write_text(out / "ablations.json", json.dumps({**record, "studies": names, "seconds": round(elapsed, 1)}, indent=1))
    return outputs


def run_rows(cells: list[tuple[Variant, int, Cell]], results: dict[Path, dict[str, Any]]) -> list[dict]:
    """One row per (variant, seed) with the cell's metrics under the table's metric names."""
    rows = []
    for variant, seed, cell in cells:
        result = results[cell.folder]
        rows.append(
            {
                "variant": variant.label,
                "series": variant.series,
                "setting": variant.setting,
                "seed": seed,
                "score_fixed": result["score"],
                "found_fixed": result["found"],
                "factor_score_fixed": result.get("factor_score"),
                "true_edit_cos": result["true_edit_cos"],
                "cell": cell.folder.name,
            }
        )
    return rows


def summary_rows(rows: list[dict]) -> list[dict]:
    """Mean +- std per variant, led by its series and setting."""
    by_label = {row["variant"]: row for row in rows}
    return [
        {"series": by_label[row["variant"]]["series"], "setting": by_label[row["variant"]]["setting"], **{k: v for k, v in row.items() if k != "variant"}}
        for row in aggregate(rows, group="variant")
    ]


def header(title: str, paper: str, record: dict) -> str:
    seeds = ", ".join(map(str, record["seeds"]))
    return (
        f"## {title} (paper {paper})\n\nshapes3d world; seeds {seeds}; {record['steps']} training steps; attribute matrix "
        f"{record['samples']} samples, truncation 0.5, fixed strength 0.5, exact factors; mean ± std over seeds\n"
    )


def write_table_files(folder: Path, stem: str, table: list[dict], markdown: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{stem}.csv", to_csv(table))
    atomic_write_text(folder / f"{stem}.md", markdown)


def write_training_study(name: str, cells: list[tuple[Variant, int, Cell]], results: dict[Path, dict], record: dict, out: Path) -> StudyOutput:
    """<name>_runs.csv/.md (every seed), <name>.csv/.md (mean +- std), <name>.json (settings, seeds, rows)."""
    study = TRAINING_STUDIES[name]
    rows = run_rows(cells, results)
    table = summary_rows(rows)
    folder = out / name
    write_table_files(folder, f"{name}_runs", rows, to_markdown(rows))
    markdown = header(study.title, study.paper, record) + "\n" + to_markdown(table)
    write_table_files(folder, name, table, markdown)
    atomic_write_text(folder / f"{name}.json", json.dumps({"study": name, **record, "rows": rows}, indent=1))
    return StudyOutput(name, study.title, table, markdown, folder)


def mask_summary(seed_results: list[dict]) -> list[dict]:
    """Per setting and similarity: mean +- std over seeds of the mean loss and of the share correctly ordered, and the paper's loss."""
    table = []
    for setting in SETTINGS:
        for mode in MODES:
            picked = [next(r for r in result["rows"] if r["setting"] == setting and r["mode"] == mode) for result in seed_results]
            losses, correct = [r["mean_loss"] for r in picked], [r["fraction_correct"] for r in picked]
            table.append(
                {
                    "setting": setting,
                    "similarity": MODE_TITLES[mode],
                    "loss": mean_std(losses) if len(picked) > 1 else losses[0],
                    "correct": mean_std(correct) if len(picked) > 1 else correct[0],
                    "paper loss": PAPER_TABLE8[setting][mode],
                }
            )
    return table


def write_mask_study(seed_results: list[dict], record: dict, out: Path) -> StudyOutput:
    """mask.csv/.md (mean +- std over seeds beside the paper's Table 8) and mask.json."""
    table = mask_summary(seed_results)
    folder = out / MASK_STUDY
    intro = (
        f"## L2-mask analysis (paper Table 8)\n\nsensor {record['mask_sensor']}; {record['mask_samples']} samples per factor pair; "
        f"seeds {', '.join(map(str, record['seeds']))}; loss lower is better; correct = share of samples with S(q, p) > S(q, n)\n"
    )
    markdown = intro + "\n" + to_markdown(table)
    write_table_files(folder, MASK_STUDY, table, markdown)
    atomic_write_text(folder / f"{MASK_STUDY}.json", json.dumps({"study": MASK_STUDY, **record, "seed_results": seed_results}, indent=1))
    return StudyOutput(MASK_STUDY, "L2-mask analysis", table, markdown, folder)
