"""`contrafeat evaluate` end to end at tiny sizes: discover -> pairs -> group VAE -> FVM / MIG / DCI, and its tables."""
from __future__ import annotations

import csv
import json

import pytest

from contrafeat.cli import main
from contrafeat.evaluation.tables import aggregate, mean_std, to_csv, to_markdown

TINY_EVALUATION = [
    "--samples", "20", "--pairs", "24", "--vae-steps", "2", "--metric-counts", "quick", "--metric-fraction", "0.01", "--sensor", "random-alexnet",
    "--no-progress",
]


def test_evaluate_runs_the_whole_chain_and_writes_its_results(tiny_run, tmp_path, capsys):
    out = tmp_path / "tables"
    assert main(["evaluate", str(tiny_run), "--out", str(out), *TINY_EVALUATION]) == 0
    stored = json.loads((tiny_run / "evaluation.json").read_text())
    metrics = stored["metrics"]
    for key in ("score_fixed", "score_calibrated", "true_edit_cos", "fvm", "mig", "dci"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert 1 <= metrics["found_fixed"] <= 3 and 1 <= metrics["found_calibrated"] <= 3
    assert 1 <= metrics["directions_kept"] <= 3
    assert metrics["dead"] == len(stored["details"]["dead_directions"]) and len(stored["details"]["image_change"]) == 3
    assert 0.0 <= metrics["flat_edit_cos"] <= 1.0
    assert len(stored["details"]["fixed_matrix"]) == 3 and len(stored["details"]["fixed_matrix"][0]) == 6
    assert (tiny_run / "evaluation" / "pairs" / "pairs.json").is_file()
    assert len(list((tiny_run / "evaluation").glob("group_vae-*.pt"))) == 1
    assert (tiny_run / "attribute_matrix.png").stat().st_size > 1000
    with open(out / "evaluation.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["method"] == "contra-bi" and float(rows[0]["fvm"]) == pytest.approx(metrics["fvm"])
    printed = capsys.readouterr()
    assert "| contra-bi | 1 |" in printed.out and "±" not in printed.out
    assert "quick metric counts x 0.01: a quick look, not comparable with published numbers" in printed.out

    assert main(["evaluate", str(tiny_run), "--out", str(out), *TINY_EVALUATION]) == 0
    assert "using evaluation.json made earlier" in capsys.readouterr().err


def test_the_truth_row_goes_through_evaluate_at_the_top_of_the_direction_measures(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CONTRAFEAT_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "truth"
    assert main(["discover", "--checkpoint", "shapes3d", "--method", "truth", "--pca-samples", "2000", "--out", str(run), "--no-progress"]) == 0
    assert main(["evaluate", str(run), "--out", str(tmp_path / "tables"), *TINY_EVALUATION]) == 0
    metrics = json.loads((run / "evaluation.json").read_text())["metrics"]
    assert metrics["true_edit_cos"] == pytest.approx(1.0, abs=1e-5) and metrics["flat_edit_cos"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["score_fixed"] == pytest.approx(1.0, abs=1e-3) and metrics["found_fixed"] == 6
    assert metrics["dead"] == 0 and metrics["directions_kept"] == 6
    assert "| truth | 1 |" in capsys.readouterr().out


def test_reference_rows_are_trained_on_the_images(tiny_run, tmp_path, capsys):
    out = tmp_path / "tables"
    assert main(["evaluate", "--references", "--out", str(out), *TINY_EVALUATION]) == 0
    table = (out / "evaluation.md").read_text()
    assert "beta-vae (beta 4, on the data)" in table and "factor-vae (gamma 10, on the data)" in table
    assert json.loads((out / "references" / "beta-vae.json").read_text())["metrics"].keys() == {"fvm", "mig", "dci"}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--samples", "0"], "--samples 0"),
        (["--fixed-strength", "-1"], "--fixed-strength"),
        (["--fixed-strength", "nan"], "--fixed-strength nan"),
        (["--predictor", "nonsense"], "--predictor 'nonsense'"),
        (["--metric-fraction", "2"], "--metric-fraction 2"),
        (["--metric-fraction", "nan"], "--metric-fraction nan"),
        (["--vae-lr", "nan"], "--vae-lr nan"),
        (["--vae-lr=-0.001"], "--vae-lr -0.001"),
        (["--beta", "inf"], "--beta inf"),
        (["--vae-batch", "0"], "--vae-batch 0"),
        (["--pairs", "-5"], "--pairs -5"),
        (["--vae-steps", "0"], "--vae-steps 0"),
        (["--calibration-target", "nan"], "--calibration-target nan"),
    ],
)
def test_bad_evaluate_options_are_one_line_errors_before_any_work(tiny_run, tmp_path, capsys, extra, message):
    assert main(["evaluate", str(tiny_run), "--out", str(tmp_path), *extra]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (tmp_path / "evaluation.csv").exists()


def test_evaluate_without_runs_is_an_error(capsys):
    assert main(["evaluate"]) == 2
    assert "give run folders" in capsys.readouterr().err


def test_tables_average_per_method_with_sample_std():
    rows = [{"method": "a", "seed": 0, "fvm": 0.5}, {"method": "a", "seed": 1, "fvm": 0.7}, {"method": "b", "seed": 0, "fvm": 0.1, "mig": 0.2}]
    table = aggregate(rows)
    assert [row["method"] for row in table] == ["a", "b"]
    assert table[0]["runs"] == 2 and table[0]["fvm"] == pytest.approx((0.6, mean_std([0.5, 0.7])[1]))
    assert mean_std([0.5, 0.7])[1] == pytest.approx(0.1414, abs=1e-4)
    assert "mig" not in table[0]
    markdown = to_markdown(table)
    assert markdown.splitlines()[2] == "| a | 2 | 0.600 ± 0.141 |  |"
    header = to_csv(table).splitlines()[0].split(",")
    assert header == ["method", "runs", "fvm", "fvm_std", "mig"]
    assert table[1]["fvm"] == 0.1  # a single run: its value, no spread
