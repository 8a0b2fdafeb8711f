"""The controlled check behind the paper's Table 8: does the L2 mask help the contrastive loss tell
"the same change" from "a different change"? Run on the procedural shapes3d renderer, whose factors
are known exactly.

For each unordered pair of factors (a, b) and each sample, two bases x1, x2 (continuous factor values)
and two edit strengths v, v' ~ U(-sigma, sigma) are drawn, in units of each factor's span:
- Pure:  query q = F(R(x1 + v e_a)) - F(R(x1)), positive p = F(R(x2 + v e_a)) - F(R(x2)),
         negative n = F(R(x2 + v' e_b)) - F(R(x2)).
- Mixed: the same with e_a replaced by (e_a + e_b)/sqrt(2) and e_b by (e_a - e_b)/sqrt(2).
F is the sensor (one map per stage) and R the renderer. The loss of a sample is the Bi loss
sum_l [-S^l(q, p) + S^l(q, n)] for each similarity S (Pooled, No-Foc, L2-mask); a sample is correctly
ordered when its loss is negative, i.e. sum_l S^l(q, p) > sum_l S^l(q, n). Both settings share the
bases and strengths, and the features of each rendered batch serve all three similarities.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from tqdm import tqdm

from contrafeat.discovery.losses import feature_changes, masked_similarity, tensor_sum
from contrafeat.features.base import Sensor
from contrafeat.options import COUNT, Domain
from contrafeat.shapes3d.grid import FACTOR_NAMES, FACTOR_VALUES
from contrafeat.shapes3d.renderer import render
from contrafeat.shapes3d.truth import CIRCULAR_FACTORS, FACTOR_RANGES

SETTINGS = ("Pure", "Mixed")
MODES = ("pooled", "none", "l2")
"""Similarities in the column order of the paper's Table 8."""
MODE_TITLES = {"pooled": "Pooled", "none": "No-Foc", "l2": "L2-mask"}
PAPER_TABLE8 = {
    "Pure": {"pooled": -0.3509, "none": -0.2378, "l2": -0.3977},
    "Mixed": {"pooled": -0.0708, "none": -0.0577, "l2": -0.0656},
}
"""Published mean losses (decoder of a near-disentangled 3DShapes VAE, |cos|, 1000 samples per pair)."""
FACTOR_PAIRS = tuple(itertools.combinations(range(len(FACTOR_NAMES)), 2))
FACTOR_LOW = torch.tensor([float(values.min()) for values in FACTOR_VALUES])
"""Lowest value of each factor; with FACTOR_RANGES it spans the factor's valid interval."""
DEFAULT_SIGMA = 0.3
"""Edits up to 30% of a factor's span (on average 15%: 9 degrees of azimuth, 0.15 of hue, 0.45 of the shape
coordinate) are clearly visible at 64 px, while bases of the edited bounded factors still range over the
middle 40% of their interval, so that x + v e stays valid for every strength."""
MAX_SIGMA = 0.5
SIGMA = Domain(float, 0, math.nextafter(MAX_SIGMA, 0), f"a number in (0, {MAX_SIGMA:g}), in units of each factor's span", open_low=True)
"""An edit of half the span in either direction leaves no room for the base of a bounded factor."""
RESOLUTION = 64
SUPERSAMPLE = 1
TRACE_STEPS = 24
"""Render settings of the shapes3d generator (`ShapesGenerator` defaults)."""
GROUPS = 2 + 3 * len(SETTINGS)
"""Images per sample: x1, x2, then per setting the query, positive and negative edits."""


@dataclass(frozen=True)
class PairDraw:
    """Random draws for one factor pair: bases [2, N, 6] (x1, x2) and strengths [2, N] (v, v')."""

    bases: torch.Tensor
    strengths: torch.Tensor


@dataclass(frozen=True)
class MaskAnalysis:
    """Per-sample losses [settings, modes, pairs, N] and the options that produced them."""

    losses: torch.Tensor
    sensor: str
    sigma: float
    cos_mode: str
    seed: int

    @property
    def samples(self) -> int:
        return self.losses.shape[-1]


def check_options(samples: int, sigma: float) -> None:
    """UserError for a sample count below 1 or a sigma outside (0, MAX_SIGMA), naming the flag."""
    COUNT.check(samples, "samples")
    SIGMA.check(sigma, "sigma")


def draw_pair(a: int, b: int, samples: int, sigma: float, rng: torch.Generator) -> PairDraw:
    """Bases uniform over each factor's interval, kept sigma spans away from the ends for bounded a and b."""
    margin = torch.zeros(len(FACTOR_NAMES))
    margin[[a, b]] = sigma
    margin[list(CIRCULAR_FACTORS)] = 0.0
    unit = margin + (1 - 2 * margin) * torch.rand(2, samples, len(FACTOR_NAMES), generator=rng)
    strengths = (torch.rand(2, samples, generator=rng) * 2 - 1) * sigma
    return PairDraw(FACTOR_LOW + unit * FACTOR_RANGES, strengths)


def edit_directions(setting: str, a: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit edit directions [6] in span units: (query and positive, negative)."""
    e_a, e_b = torch.eye(len(FACTOR_NAMES))[[a, b]]
    if setting == "Pure":
        return e_a, e_b
    return (e_a + e_b) / math.sqrt(2), (e_a - e_b) / math.sqrt(2)


def sample_factors(draw: PairDraw, a: int, b: int) -> torch.Tensor:
    """Factor values [GROUPS, N, 6]: x1, x2, then per setting x1 + v d, x2 + v d, x2 + v' d_neg."""
    (x1, x2), (v, v_neg) = draw.bases, draw.strengths
    groups = [x1, x2]
    for setting in SETTINGS:
        positive, negative = (direction * FACTOR_RANGES for direction in edit_directions(setting, a, b))
        groups += [x1 + v[:, None] * positive, x2 + v[:, None] * positive, x2 + v_neg[:, None] * negative]
    return torch.stack(groups)


def grouped_features(sensor: Sensor, factors: torch.Tensor) -> list[torch.Tensor]:
    """Render factors [G, B, 6] and return the sensor's maps per stage as [G, B, C, H, W]."""
    images = render(factors.flatten(0, 1), RESOLUTION, SUPERSAMPLE, TRACE_STEPS) * 2 - 1
    return [stage.unflatten(0, factors.shape[:2]) for stage in sensor(images)]


def sample_losses(
    changes_q: list[torch.Tensor], changes_p: list[torch.Tensor], changes_n: list[torch.Tensor], mask_mode: str, cos_mode: str
) -> torch.Tensor:
    """Per-sample Bi loss sum_l [-S^l(q, p) + S^l(q, n)] -> [B]."""
    return tensor_sum(
        -masked_similarity(q, p, mask_mode, cos_mode) + masked_similarity(q, n, mask_mode, cos_mode)
        for q, p, n in zip(changes_q, changes_p, changes_n, strict=True)
    )


def batch_losses(features: list[torch.Tensor], cos_mode: str) -> torch.Tensor:
    """Losses [settings, modes, B] from grouped features (see `sample_factors` for the group order)."""
    x1, x2 = [stage[0] for stage in features], [stage[1] for stage in features]
    rows = []
    for index in range(len(SETTINGS)):
        first = 2 + 3 * index
        q = feature_changes([stage[first] for stage in features], x1)
        p = feature_changes([stage[first + 1] for stage in features], x2)
        n = feature_changes([stage[first + 2] for stage in features], x2)
        rows.append(torch.stack([sample_losses(q, p, n, mode, cos_mode) for mode in MODES]))
    return torch.stack(rows)


@torch.no_grad()
def run_mask_analysis(
    sensor: Sensor,
    samples: int = 1000,
    sigma: float = DEFAULT_SIGMA,
    cos_mode: str = "abs",
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = False,
) -> MaskAnalysis:
    """Per-sample losses of every setting, similarity and factor pair; the draws depend only on the seed."""
    check_options(samples, sigma)
    rng = torch.Generator().manual_seed(seed)
    draws = [draw_pair(a, b, samples, sigma, rng) for a, b in FACTOR_PAIRS]
    per_pair = []
    with tqdm(total=samples * len(FACTOR_PAIRS), disable=not progress, desc="mask analysis", unit="sample") as bar:
        for (a, b), draw in zip(FACTOR_PAIRS, draws):
            factors = sample_factors(draw, a, b)
            chunks = []
            for start in range(0, samples, batch_size):
                chunk = factors[:, start : start + batch_size]
                chunks.append(batch_losses(grouped_features(sensor, chunk), cos_mode))
                bar.update(chunk.shape[1])
            per_pair.append(torch.cat(chunks, dim=-1))
    return MaskAnalysis(torch.stack(per_pair, dim=2).double(), sensor.name, sigma, cos_mode, seed)


def _row(setting: str, pair: str, mode: str, losses: torch.Tensor) -> dict:
    count = losses.numel()
    std_error = float(losses.std() / math.sqrt(count)) if count > 1 else float("nan")
    return {
        "setting": setting,
        "pair": pair,
        "mode": mode,
        "mean_loss": float(losses.mean()),
        "std_error": std_error,
        "fraction_correct": float((losses < 0).double().mean()),
        "samples": count,
    }


def summary_table(result: MaskAnalysis) -> list[dict]:
    """One row per setting and similarity over all factor pairs (pair 'all')."""
    return [
        _row(setting, "all", mode, result.losses[s, m])
        for s, setting in enumerate(SETTINGS)
        for m, mode in enumerate(MODES)
    ]


def pair_table(result: MaskAnalysis) -> list[dict]:
    """One row per setting, factor pair ('floor_hue/scale', ...) and similarity."""
    return [
        _row(setting, f"{FACTOR_NAMES[a]}/{FACTOR_NAMES[b]}", mode, result.losses[s, m, p])
        for s, setting in enumerate(SETTINGS)
        for p, (a, b) in enumerate(FACTOR_PAIRS)
        for m, mode in enumerate(MODES)
    ]
