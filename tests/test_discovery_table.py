"""benchmarks/discovery_table.py: the cell store (skip, resume after a budget stop, stale fingerprints) and the table."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from joblib import parallel_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from discovery_table import ORDER, Cell, compute_cell, main, plan_cells  # noqa: E402


class Clock:
    """A clock that moves only when a cell runs: each cell takes `minutes` of it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def counted(compute, clock: Clock, calls: list[Cell], minutes: float = 20.0):
    """`compute`, with each call recorded and `minutes` added to the clock."""

    def run(cell, recipe, work):
        calls.append(cell)
        clock.now += minutes * 60
        return compute(cell, recipe, work)

    return run


def fake_metrics(cell, recipe, work):
    """Numbers that tell the cells apart, made in no time."""
    seed = cell.distillation_seed or 0
    return {"fvm": 0.5 + 0.1 * seed, "mig": 0.2, "dci": 0.3, "score_fixed": 0.9, "found_fixed": 6, "dead": 0}


def real_cell(cell, recipe, work):
    """The benchmark's own cell computation; DCI's trees fitted in threads, not in worker processes that take seconds to start."""
    with parallel_config(backend="threading"):
        return compute_cell(cell, recipe, work)


def table(tmp_path: Path, *options: str, compute=fake_metrics, clock: Clock | None = None, calls: list[Cell] | None = None) -> int:
    clock = clock or Clock()
    calls = [] if calls is None else calls
    argv = ["--tiny", "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results"), *options]
    return main(argv, compute=counted(compute, clock, calls), clock=clock)


def test_the_order_of_work_is_the_issues_rows_at_seed_0_then_the_next_seeds():
    cells = plan_cells(ORDER, [0, 1], None)
    assert [cell.method for cell in cells[:9]] == ORDER == [
        "truth", "contra-pt", "contra-bi", "ganspace", "sefa", "recog+att", "latentclr+att", "beta-vae", "factor-vae",
    ]
    assert cells[0] == Cell("truth", 0, 0) and cells[7] == Cell("beta-vae", None, 0) and cells[9] == Cell("truth", 1, 1)
    assert len(cells) == 18
    direction_level = plan_cells(ORDER, [0], [None])
    assert [cell.method for cell in direction_level] == ORDER[:7] and {cell.distillation_seed for cell in direction_level} == {None}


def test_two_tiny_cells_stop_at_the_budget_and_a_rerun_makes_only_the_missing_one(tmp_path, isolated_cache, one_thread, capsys):
    cells = tmp_path / "results" / "cells"
    options = ["--methods", "beta-vae", "factor-vae", "--seeds", "0", "--budget-minutes", "30"]
    calls: list[Cell] = []
    # The first cell's default estimate (25 min) fits 30 minutes; it takes 20 by the clock, so the second, estimated from it, does not.
    assert table(tmp_path, *options, compute=real_cell, calls=calls) == 0
    out = capsys.readouterr().out
    assert calls == [Cell("beta-vae", None, 0)]
    assert "stopped cleanly before it" in out and "this command's cells: 1 of 2 cells done, 1 missing" in out
    assert "missing  factor-vae (seed -, distillation 0)" in out and "1 of 27 cells done, 26 missing" in out  # the page covers every row
    stored = json.loads((cells / "beta-vae_distill0.json").read_text())
    assert stored["cell"] == {"method": "beta-vae", "discovery_seed": None, "distillation_seed": 0}
    assert set(stored["metrics"]) == {"fvm", "mig", "dci"} and all(0 <= value <= 1 for value in stored["metrics"].values())
    assert stored["wall_seconds"] == 1200.0 and "--budget-minutes 30" in stored["command"] and stored["date"].startswith("20")
    assert stored["fingerprint"]["reference"]["settings"]["vae_steps"] == 2 and len(stored["fingerprint_hash"]) == 12
    assert not (cells / "factor-vae_distill0.json").exists()
    first = (cells / "beta-vae_distill0.json").read_text()

    calls.clear()
    assert table(tmp_path, *options, compute=real_cell, calls=calls) == 0
    assert calls == [Cell("factor-vae", None, 0)]
    assert (cells / "beta-vae_distill0.json").read_text() == first
    assert "this command's cells: 2 of 2 cells done, 0 missing" in capsys.readouterr().out

    calls.clear()
    assert table(tmp_path, *options, compute=real_cell, calls=calls) == 0
    assert calls == [] and "every cell this command asked for is done" in capsys.readouterr().out


def test_a_changed_recipe_marks_the_stored_cells_missing_and_says_why(tmp_path, capsys):
    calls: list[Cell] = []
    assert table(tmp_path, "--methods", "truth", "ganspace", "--seeds", "0", calls=calls) == 0
    assert len(calls) == 2
    capsys.readouterr()

    calls.clear()
    assert table(tmp_path, "--methods", "truth", "ganspace", "--seeds", "0", "--distill-option", "beta=2", "--list", calls=calls) == 0
    out = capsys.readouterr().out
    assert calls == [] and "this command's cells: 0 of 2 cells done, 2 missing" in out
    assert "missing  truth (seed 0, distillation 0): stale, stored with other settings (evaluation.settings.distill.beta: 1.0 -> 2.0)" in out

    assert table(tmp_path, "--methods", "truth", "ganspace", "--seeds", "0", "--distill-option", "beta=2", calls=calls) == 0
    assert calls == [Cell("truth", 0, 0), Cell("ganspace", 0, 0)]
    assert "remaking a stale cell" in capsys.readouterr().err
    calls.clear()
    assert table(tmp_path, "--methods", "truth", "ganspace", "--seeds", "0", "--distill-option", "beta=2", calls=calls) == 0
    assert calls == []


def test_a_budget_of_nothing_runs_nothing_and_lists_every_cell_missing(tmp_path, capsys):
    calls: list[Cell] = []
    assert table(tmp_path, "--methods", "truth", "contra-bi", "--seeds", "0", "--budget-minutes", "0", calls=calls) == 0
    out = capsys.readouterr().out
    assert calls == [] and "this command's cells: 0 of 2 cells done, 2 missing" in out and "needs about 26.0 min (default estimate)" in out


def test_the_table_counts_the_cells_of_each_row_beside_the_published_numbers(tmp_path, capsys):
    assert table(tmp_path, "--methods", "truth", "ganspace", "beta-vae", "--seeds", "0", "1") == 0
    capsys.readouterr()
    assert table(tmp_path, "--list") == 0
    out = capsys.readouterr().out
    assert "6 of 27 cells done, 21 missing" in out and "missing  ganspace (seed 2, distillation 2)" in out
    page = (tmp_path / "results" / "discovery_table.md").read_text()
    assert "not on the StyleGAN2 trained on the 3DShapes dataset" in page and "not a like-for-like comparison" in page
    assert "| truth | 2 of 3 | 0, 1 | 0.550 ± 0.071 | 0.200 ± 0.000 | 0.300 ± 0.000 |" in page
    assert "| ganspace | 2 of 3 | 0, 1 |" in page and ".788 / .121 / .284 (GANSpace) |" in page
    assert "| beta-vae (beta 4, on the images) | 2 of 3 | 0, 1 |" in page
    assert "| contra-pt | 0 of 3 | - | - |" in page and "  done     truth (seed 1, distillation 1)" in page
    assert "| DisCo (published only) |" in page and ".877 / .512 / .708 |" in page and ".987 / .473 / .917 |" in page
    assert "quick metric counts x 0.01: a quick look" in page and "--tiny" in page
    with open(tmp_path / "results" / "discovery_table.csv") as handle:
        rows = {row["method"]: row for row in csv.DictReader(handle)}
    assert rows["truth"]["cells"] == "2" and rows["truth"]["planned"] == "3" and float(rows["truth"]["fvm"]) == pytest.approx(0.55)
    assert float(rows["ganspace"]["published_fvm"]) == 0.788 and rows["FDAE"]["published_dci"] == "0.917"
    with open(tmp_path / "results" / "discovery_cells.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 6


def test_bad_options_are_one_line(tmp_path, capsys):
    assert table(tmp_path, "--distill-option", "nonsense=1") == 2
    assert "error: --distill-option nonsense=1: expected NAME=VALUE" in capsys.readouterr().err
    assert table(tmp_path, "--distillation-seeds", "x") == 2
    assert "error: --distillation-seeds x" in capsys.readouterr().err


def test_an_interrupted_cell_is_not_stored_and_the_table_is_still_written(tmp_path, capsys):
    def interrupted(cell, recipe, work):
        if cell.method == "ganspace":
            raise KeyboardInterrupt
        return fake_metrics(cell, recipe, work)

    calls: list[Cell] = []
    assert table(tmp_path, "--methods", "truth", "ganspace", "sefa", "--seeds", "0", compute=interrupted, calls=calls) == 130
    out = capsys.readouterr().out
    assert calls == [Cell("truth", 0, 0), Cell("ganspace", 0, 0)] and "interrupted: rerun the same command to go on" in out
    assert [path.name for path in (tmp_path / "results" / "cells").iterdir()] == ["truth_seed0_distill0.json"]
    assert "| truth | 1 of 3 | 0 |" in (tmp_path / "results" / "discovery_table.md").read_text()
    calls.clear()
    assert table(tmp_path, "--methods", "truth", "ganspace", "sefa", "--seeds", "0", calls=calls) == 0
    assert calls == [Cell("ganspace", 0, 0), Cell("sefa", 0, 0)]
