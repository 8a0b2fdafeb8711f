"""benchmarks/memory_fit.py: the config each method gets, the config-f widths, the memory-line arithmetic, and (slow) a real peak."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import memory_fit  # noqa: E402
from memory_fit import Line, fit_line, guard_estimate, memory_line, parse_micro_batches  # noqa: E402


@pytest.mark.parametrize(
    ("method", "batch", "per_unit", "lr"),
    [("contra-bi", 12, 2, 0.05), ("contra-pt", 10, 1, 0.05), ("latentclr+att", 4, 1, 0.01), ("recog+att", 8, 1, 0.01)],
)
def test_each_method_gets_the_ffhq_preset(method: str, batch: int, per_unit: int, lr: float) -> None:
    config = memory_fit.method_config(method, micro_batch=2)
    assert (config.batch_size, config.num_directions, config.subspace_dim, config.lr) == (batch, 30, 100, lr)
    assert (config.sensor, config.micro_batch, config.attention) == ("random-alexnet", 2, "softmax")
    assert memory_fit.codes_per_unit(method) == per_unit


def test_config_f_widths() -> None:
    assert memory_fit.ffhq_channels(1024) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32}
    assert memory_fit.ffhq_channels(512)[512] == 64
    generator = memory_fit.ffhq_generator(16)
    assert (generator.z_dim, generator.w_dim, generator.mapping.num_layers, generator.num_ws) == (512, 512, 8, 6)
    with pytest.raises(ValueError, match="power of 2"):
        memory_fit.ffhq_channels(48)


def test_fit_and_largest_micro_batch() -> None:
    line = fit_line([(2, 0.5), (4, 0.9), (12, 2.5)])
    assert line.fixed == pytest.approx(0.1) and line.per_code == pytest.approx(0.2)
    assert line.at(10) == pytest.approx(2.1)
    assert line.largest_codes(2.0, step=2, batch=12) == 8  # 9.5 codes fit, pairs round down to 8
    assert line.largest_codes(2.0, step=1, batch=6) == 6  # capped at the batch
    assert line.largest_codes(0.2, step=1, batch=6) == 0
    assert fit_line([(2, 0.5), (2, 0.6)]) is None


def test_a_resolution_without_two_measurements_leans_on_the_one_below() -> None:
    low = (512, Line(0.5, 1.0, "fit"))
    through_point = memory_line([(2, 6.5)], 1024, low)  # the 512 px fixed part, slope (6.5 - 0.5) / 2
    assert (through_point.fixed, through_point.per_code) == pytest.approx((0.5, 3.0))
    assert through_point.source.startswith("extrapolated") and "2-code measurement" in through_point.source
    by_pixels = memory_line([], 1024, low)
    assert (by_pixels.fixed, by_pixels.per_code) == pytest.approx((2.0, 4.0))
    assert "pixel count" in by_pixels.source
    assert memory_line([(1, 6.0)], 1024, None) is None
    assert memory_line([(1, 1.0), (2, 1.5)], 1024, low).per_code == pytest.approx(0.5)


def test_guard_estimates() -> None:
    assert guard_estimate(4, [(2, 3.0)], None) == pytest.approx(6.0)  # one point: scaled by codes, an upper bound
    assert guard_estimate(1, [(2, 3.0)], None) == pytest.approx(3.0)
    assert guard_estimate(4, [], None) is None
    assert guard_estimate(4, [(2, 3.0)], Line(1.0, 0.5, "fit")) == pytest.approx(3.0)


def test_micro_batch_options() -> None:
    assert parse_micro_batches(["2", "full", "1", "2"]) == [1, 2, None]
    with pytest.raises(SystemExit, match="--micro-batches '0'"):
        parse_micro_batches(["0"])
    with pytest.raises(SystemExit, match="--micro-batches 'all'"):
        parse_micro_batches(["all"])


@pytest.mark.slow
def test_a_micro_batched_step_peaks_below_the_whole_batch() -> None:
    """Two fresh processes at 32 px: Bi with 2 codes per forward against all 12 at once."""
    micro = memory_fit.measure("contra-bi", 32, 2, threads=1, modconv="shared")
    full = memory_fit.measure("contra-bi", 32, None, threads=1, modconv="shared")
    assert (micro.codes, micro.renders, full.codes, full.renders) == (2, 5.0, 12, 30.0)
    assert 0 < micro.peak_gb < 0.6 * full.peak_gb
    assert micro.weights_gb == pytest.approx(full.weights_gb) and micro.weights_gb > 0.05
