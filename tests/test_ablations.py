"""`contrafeat ablate`: every study at a tiny size, its tables and figures, exact reruns, reuse of finished runs, bad input."""
from __future__ import annotations

import csv
import json

import pytest

from contrafeat.cli import main
from contrafeat.experiments import cells
from contrafeat.experiments.ablations import AblationSettings
from contrafeat.experiments.studies import (
    DIVERSITY_WEIGHTS,
    STUDY_NAMES,
    TRAINING_STUDIES,
    StudyContext,
    check_study_names,
    sensor_variants,
    subspace_variants,
)

TINY = ["--steps", "2", "--pca-samples", "2000", "--samples", "16", "--mask-samples", "4", "--no-progress"]
EXPECTED_ROWS = {"subspace": 10, "diversity": len(DIVERSITY_WEIGHTS), "focus": 6, "attention": 6, "sensor": 3, "mask": 6}


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CONTRAFEAT_CACHE", str(tmp_path_factory.getbasetemp() / "ablation-cache"))
    monkeypatch.setenv("CONTRAFEAT_OFFLINE", "1")


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_every_study_runs_tiny_and_writes_tables_and_a_figure(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["ablate", "all", "--jobs", "1", "--seeds", "3", "--work", str(tmp_path / "work"), "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    for name in STUDY_NAMES:
        folder = out / name
        table = read_csv(folder / f"{name}.csv")
        assert len(table) == EXPECTED_ROWS[name], name
        assert (folder / f"{name}.png").stat().st_size > 5000
        record = json.loads((folder / f"{name}.json").read_text())
        assert record["seeds"] == [3] and record["steps"] == 2 and record["job_threads"] == 1
        assert f"| {table[0][next(iter(table[0]))]} |" in printed
    for name in TRAINING_STUDIES:
        for row in read_csv(out / name / f"{name}_runs.csv"):
            assert row["seed"] == "3"
            assert 0.0 <= float(row["score_fixed"]) <= 1.0
            assert 1 <= int(row["found_fixed"]) <= 6
            assert 0.0 < float(row["true_edit_cos"]) <= 1.0
    mask = read_csv(out / "mask" / "mask.csv")
    assert {row["similarity"] for row in mask} == {"Pooled", "No-Foc", "L2-mask"}
    assert all(0.0 <= float(row["correct"]) <= 1.0 for row in mask)
    # the L2-mask Bi run at k=20 is the same configuration in four studies: trained once
    cells = {row["cell"] for name in TRAINING_STUDIES for row in read_csv(out / name / f"{name}_runs.csv")}
    assert len(cells) == len(list((tmp_path / "work" / "cells").glob("contra-*"))) + 6
    assert json.loads((out / "ablations.json").read_text())["cells"] == len(cells) + 1


@pytest.mark.slow
def test_rerun_with_the_same_seeds_reproduces_the_numbers_exactly(tmp_path):
    arguments = ["ablate", "attention", "--seeds", "0", "1", *TINY]
    assert main([*arguments, "--jobs", "1", "--work", str(tmp_path / "a"), "--out", str(tmp_path / "a-out")]) == 0
    assert main([*arguments, "--jobs", "2", "--work", str(tmp_path / "b"), "--out", str(tmp_path / "b-out")]) == 0
    first = (tmp_path / "a-out" / "attention" / "attention.csv").read_text()
    assert first == (tmp_path / "b-out" / "attention" / "attention.csv").read_text()
    header = first.splitlines()[0].split(",")
    assert "score_fixed_std" in header and "true_edit_cos_std" in header
    runs = read_csv(tmp_path / "a-out" / "attention" / "attention_runs.csv")
    assert sorted({row["seed"] for row in runs}) == ["0", "1"]
    # closed-form directions do not depend on the seed; trained ones do
    by_seed = {(row["setting"], row["series"], row["seed"]): row["score_fixed"] for row in runs}
    assert by_seed["no attention", "GANSpace", "0"] == by_seed["no attention", "GANSpace", "1"]
    assert by_seed["+att Bi", "GANSpace", "0"] != by_seed["+att Bi", "GANSpace", "1"]


@pytest.mark.slow
def test_finished_runs_are_reused_and_changed_settings_recomputed(tmp_path, monkeypatch):
    work, arguments = tmp_path / "work", ["ablate", "focus", "--jobs", "1", "--seeds", "0", *TINY]
    assert main([*arguments, "--work", str(work), "--out", str(tmp_path / "first")]) == 0

    def refuse(self):
        raise AssertionError(f"{self.folder.name} was computed again")

    monkeypatch.setattr(cells.TrainingCell, "compute", refuse)
    assert main([*arguments, "--work", str(work), "--out", str(tmp_path / "second")]) == 0
    assert (tmp_path / "first" / "focus" / "focus.csv").read_text() == (tmp_path / "second" / "focus" / "focus.csv").read_text()
    with pytest.raises(AssertionError, match="computed again"):
        main([*arguments[:-len(TINY)], *TINY[:4], "--samples", "17", "--no-progress", "--work", str(work), "--out", str(tmp_path / "third")])


def test_variants_follow_the_generator_and_the_alexnet_file():
    sizes = [variant.overrides["subspace_dim"] for variant in subspace_variants(StudyContext(w_dim=30)) if variant.series == "Bi"]
    assert sizes == [5, 10, 20, 30]
    assert [variant.setting for variant in sensor_variants(StudyContext(w_dim=64))][-1] == "random MobileNetV2"
    with_alexnet = sensor_variants(StudyContext(w_dim=64, alexnet_weights="alexnet.pth"))
    assert with_alexnet[-1].overrides == {"method": "contra-bi", "sensor": "alexnet", "sensor_weights": "alexnet.pth"}


def test_quick_settings_are_a_smaller_suite():
    quick = AblationSettings(seeds=(4, 5, 6)).quick()
    assert quick.seeds == (4,) and quick.steps < AblationSettings().steps and quick.mask_samples < AblationSettings().mask_samples
    assert check_study_names(["mask", "subspace"]) == ["subspace", "mask"]
    assert check_study_names(["all"]) == list(STUDY_NAMES)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["ablate", "widths"], "study 'widths': expected one of subspace, diversity, focus, attention, sensor, mask or all"),
        (["ablate", "focus", "--seeds", "1", "1"], "--seeds 1 1: expected one or more distinct seeds"),
        (["ablate", "focus", "--steps", "0"], "--steps 0: expected a positive integer"),
        (["ablate", "sensor", "--alexnet-weights", "/nonexistent/alexnet.pth"], "--alexnet-weights /nonexistent/alexnet.pth: file not found"),
    ],
)
def test_bad_input_is_named(arguments, message, tmp_path, capsys):
    assert main([*arguments, "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
