"""The L2-mask analysis (Table 8): draws, per-sample losses against a direct computation, tables and the CLI."""
import csv
import math

import pytest
import torch

from contrafeat.cli import main
from contrafeat.discovery.losses import bi_loss, masked_similarity
from contrafeat.experiments.mask_analysis import (
    FACTOR_LOW,
    FACTOR_PAIRS,
    MODES,
    SETTINGS,
    draw_pair,
    edit_directions,
    pair_table,
    run_mask_analysis,
    sample_factors,
    sample_losses,
    summary_table,
)
from contrafeat.features import build_sensor
from contrafeat.shapes3d.renderer import render
from contrafeat.shapes3d.truth import FACTOR_RANGES

pytestmark = pytest.mark.usefixtures("offline")

BOUNDED = [3, 4, 5]  # scale, shape, orientation


@pytest.fixture(scope="module")
def alexnet():
    return build_sensor("random-alexnet")


@pytest.fixture(scope="module")
def small_run(alexnet):
    return run_mask_analysis(alexnet, samples=3, sigma=0.3, cos_mode="abs", seed=5)


def test_edits_keep_bounded_factors_inside_their_range():
    rng = torch.Generator().manual_seed(0)
    for a, b in FACTOR_PAIRS:
        factors = sample_factors(draw_pair(a, b, 200, 0.45, rng), a, b)
        low, high = FACTOR_LOW[BOUNDED], (FACTOR_LOW + FACTOR_RANGES)[BOUNDED]
        assert factors.shape == (8, 200, 6)
        assert (factors[..., BOUNDED] >= low - 1e-5).all() and (factors[..., BOUNDED] <= high + 1e-5).all()


def test_edit_directions_are_the_paper_settings():
    assert torch.equal(edit_directions("Pure", 1, 4)[0], torch.eye(6)[1])
    assert torch.equal(edit_directions("Pure", 1, 4)[1], torch.eye(6)[4])
    positive, negative = edit_directions("Mixed", 1, 4)
    assert torch.allclose(positive, (torch.eye(6)[1] + torch.eye(6)[4]) / math.sqrt(2))
    assert torch.allclose(negative, (torch.eye(6)[1] - torch.eye(6)[4]) / math.sqrt(2))


def test_edits_move_only_the_chosen_factors_by_the_drawn_strength():
    draw = draw_pair(3, 5, 4, 0.2, torch.Generator().manual_seed(1))
    factors = sample_factors(draw, 3, 5)
    x1, x2, (v, v_neg) = factors[0], factors[1], draw.strengths
    assert torch.allclose(factors[2] - x1, v[:, None] * torch.eye(6)[3] * 0.5)  # Pure query: scale, span 0.5
    assert torch.allclose(factors[4] - x2, v_neg[:, None] * torch.eye(6)[5] * 60)  # Pure negative: orientation
    mixed = (v[:, None] / math.sqrt(2)) * torch.tensor([0, 0, 0, 0.5, 0, 60.0])
    assert torch.allclose(factors[6] - x2, mixed, atol=1e-5)  # Mixed positive
    assert ((v.abs() <= 0.2) & (v_neg.abs() <= 0.2)).all()


def test_table_rows_and_keys(small_run):
    assert small_run.losses.shape == (2, 3, 15, 3) and small_run.samples == 3
    summary, pairs = summary_table(small_run), pair_table(small_run)
    assert [(row["setting"], row["mode"]) for row in summary] == [(s, m) for s in SETTINGS for m in MODES]
    assert set(summary[0]) == {"setting", "pair", "mode", "mean_loss", "std_error", "fraction_correct", "samples"}
    assert all(row["pair"] == "all" and row["samples"] == 45 for row in summary)
    assert len(pairs) == 2 * 15 * 3 and pairs[0]["pair"] == "floor_hue/wall_hue" and pairs[0]["samples"] == 3
    losses = small_run.losses[0, 2]
    assert summary[2]["mean_loss"] == pytest.approx(float(losses.mean()))
    assert summary[2]["std_error"] == pytest.approx(float(losses.std() / math.sqrt(45)))
    assert summary[2]["fraction_correct"] == pytest.approx(float((losses < 0).double().mean()))
    assert all(-5 <= row["mean_loss"] <= 5 and 0 <= row["fraction_correct"] <= 1 for row in summary)  # 5 stages, S in [0, 1]


def test_same_seed_same_losses_whatever_the_batch_size(alexnet, small_run):
    again = run_mask_analysis(alexnet, samples=3, sigma=0.3, cos_mode="abs", seed=5, batch_size=2)
    assert torch.allclose(again.losses, small_run.losses, atol=1e-5)
    other = run_mask_analysis(alexnet, samples=3, sigma=0.3, cos_mode="abs", seed=6)
    assert not torch.allclose(other.losses, small_run.losses, atol=1e-3)


def features(sensor, factors: torch.Tensor) -> list[torch.Tensor]:
    return sensor(render(factors, 64, 1, 24) * 2 - 1)


@pytest.mark.parametrize("cos_mode", ["abs", "squared"])
def test_loss_of_a_sample_is_minus_positive_plus_negative_similarity(alexnet, cos_mode):
    """Rebuilds the first pair's draw (floor_hue, wall_hue: both spans 1) and computes both settings by hand."""
    result = run_mask_analysis(alexnet, samples=3, sigma=0.25, cos_mode=cos_mode, seed=2)
    draw = draw_pair(0, 1, 3, 0.25, torch.Generator().manual_seed(2))
    (x1, x2), (v, v_neg) = draw.bases, draw.strengths
    base1, base2 = features(alexnet, x1), features(alexnet, x2)
    floor, wall = torch.eye(6)[0], torch.eye(6)[1]
    directions = [(floor, wall), ((floor + wall) / math.sqrt(2), (floor - wall) / math.sqrt(2))]
    for s, (step, neg_step) in enumerate(directions):
        q_feats = features(alexnet, x1 + v[:, None] * step)
        p_feats = features(alexnet, x2 + v[:, None] * step)
        n_feats = features(alexnet, x2 + v_neg[:, None] * neg_step)
        for m, mode in enumerate(MODES):
            expected = torch.zeros(3)
            for f1, f2, fq, fp, fn in zip(base1, base2, q_feats, p_feats, n_feats):
                q = fq - f1
                expected += -masked_similarity(q, fp - f2, mode, cos_mode) + masked_similarity(q, fn - f2, mode, cos_mode)
            assert torch.allclose(result.losses[s, m, 0].float(), expected, rtol=1e-4, atol=1e-5), (SETTINGS[s], mode)


def test_per_sample_losses_average_to_the_training_bi_loss():
    torch.manual_seed(0)
    q, p, n = ([torch.randn(4, 3, 5, 5), torch.randn(4, 6, 2, 2)] for _ in range(3))
    for mode in MODES:
        assert float(sample_losses(q, p, n, mode, "squared").mean()) == pytest.approx(float(bi_loss(q, p, n, mode, "squared")), rel=1e-6)


def test_pretrained_sensor_with_l2_mask_tells_same_from_different_pure_edits():
    result = run_mask_analysis(build_sensor("mobilenet_v2"), samples=12, seed=0)
    pure_l2 = summary_table(result)[MODES.index("l2")]
    assert pure_l2["setting"] == "Pure" and pure_l2["samples"] == 180
    assert pure_l2["fraction_correct"] > 0.7
    assert pure_l2["mean_loss"] < -0.3


def test_cli_prints_the_table_and_writes_csv_and_markdown(tmp_path, capsys):
    out = tmp_path / "analysis"
    code = main(["mask-analysis", "--sensor", "random-alexnet", "--samples", "2", "--seed", "1", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| setting | Pooled | No-Foc | L2-mask | Pooled correct" in printed
    assert "| Pure | " in printed and "| Mixed | " in printed and "-0.3977" in printed and "-0.0656" in printed
    with open(out / "mask_analysis.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 + 90
    assert [row["pair"] for row in rows[:6]] == ["all"] * 6 and rows[6]["pair"] == "floor_hue/wall_hue"
    assert all(-5 <= float(row["mean_loss"]) <= 5 for row in rows)
    markdown = (out / "mask_analysis.md").read_text()
    assert "sensor random-alexnet, 2 samples per factor pair" in markdown and "| Mixed | shape/orientation |" in markdown
    assert printed.splitlines()[2] in markdown  # the printed Pure row is the file's


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--samples", "0"], "--samples 0: expected a positive integer"),
        (["--sigma", "0"], "--sigma 0: expected a number in (0, 0.5)"),
        (["--sigma", "0.5"], "--sigma 0.5: expected a number in (0, 0.5)"),
        (["--sensor", "resnet"], "--sensor 'resnet': unknown sensor"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, arguments, message):
    assert main(["mask-analysis", "--no-progress", *arguments]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"contrafeat: error: {message}")
    assert captured.err.count("\n") == 1 and captured.out == ""
