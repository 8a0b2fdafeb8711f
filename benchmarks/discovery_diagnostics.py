"""Is a discovery run held back by its optimiser, its objective or its parameterisation? Measured on a world with factors.

1. The objective: the contrast loss (Bi, or Pt's with its trained prototypes left out: Bi is the one that needs no
   trained part) of fixed direction sets on one fixed batch of pairs (constant noise), next to their exact-factor
   scores: the initial navigator, each trained run given, plain PCA, random directions and the best linear edits.
   If the loss ranks the sets by purity with margins above the noise between the two halves of the batch, the
   objective can see purity here.
2. The optimiser: the gradient's signal-to-noise at each trained run's final point, |mean g| / rms(g_b - mean g)
   over independent training batches b of the run's own batch size.
3. The parameterisation: the best linear edits pushed through the navigator's own form (the vector projected onto
   the top-k PCs of W; the layer weights fitted by a softmax followed by the Gaussian smoothing), scored alike, at
   the default k and, for the scores only, at every k of --subspace-dims.

Usage: .venv/bin/python benchmarks/discovery_diagnostics.py RUN [RUN ...] [--checkpoint shapes3d-learned] [--pairs 64]
       [--batches 16] [--sensor-sizes 0 128] [--subspace-dims 10 20 40 64] [--out docs/diagnostics]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from contrafeat.discovery.config import DiscoveryConfig, load_config
from contrafeat.discovery.directions import Directions, load_directions
from contrafeat.discovery.methods import build_navigator
from contrafeat.discovery.navigator import AttentionBranch
from contrafeat.discovery.objectives import ContrastBi, FeatureSource
from contrafeat.discovery.run import answer_key_directions
from contrafeat.discovery.strengths import suggest_strengths
from contrafeat.discovery.subspace import PCABasis, load_or_compute_pca
from contrafeat.discovery.trainer import navigator_directions, sample_start_codes
from contrafeat.evaluation.attribute_scores import ExactFactors, score_matrix
from contrafeat.evaluation.evaluate_run import EvaluationSettings, fixed_strength_matrix
from contrafeat.evaluation.tables import write_tables
from contrafeat.evaluation.true_edits import reference_directions
from contrafeat.features import build_sensor
from contrafeat.paths import cache_dir
from contrafeat.zoo import load_generator

BATCH_SEED = 7
ATTENTION_FIT_STEPS = 500


class EditSet(torch.nn.Module):
    """Fixed W+ edits [K, L, C] behind the navigator's `apply_to` (what an objective reads of a navigator)."""

    def __init__(self, directions: Directions) -> None:
        super().__init__()
        self.edits = directions.edits()
        self.num_directions = directions.count

    def apply_to(self, ws: torch.Tensor, index: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        return ws + strength.reshape(-1, 1, 1) * self.edits[index.reshape(-1)]


def exact_scores(generator, directions: Directions) -> dict[str, float]:
    """The fixed-strength exact-factor scores (evaluation protocol, no dead-direction check)."""
    scores = score_matrix(fixed_strength_matrix(generator, directions, ExactFactors(generator), EvaluationSettings(distill=None)))
    return {"score": scores.score, "factor_score": scores.factor_score, "found": scores.found}


@torch.no_grad()
def contrast_on_fixed_batch(objective: ContrastBi, features: FeatureSource, directions: Directions, config: DiscoveryConfig, pairs: int) -> tuple[float, float]:
    """The Bi loss of `directions` on a fixed batch of `pairs` pairs, and |difference| of its two halves' losses."""
    rng = torch.Generator().manual_seed(BATCH_SEED)
    ws = sample_start_codes(features.generator, 2 * pairs, config, rng)
    units = objective.units(ws)
    draws = objective.draw(units.shape[0], directions.count, rng)
    edits = EditSet(directions)
    halves = [torch.arange(0, pairs // 2), torch.arange(pairs // 2, pairs)]
    values = []
    for half in halves:
        terms = objective.compute(units[half], draws.rows(half), edits, features)  # type: ignore[arg-type]
        values.append(float(terms["contrast"]))
    return sum(values) / 2, abs(values[0] - values[1])


def gradient_snr(run: Path, generator, sensor, pca: PCABasis, batches: int) -> float:
    """|mean g| / rms(g_b - mean g) of the contrast's gradient w.r.t. the navigator at the run's final point."""
    config = load_config(run / "config.yaml")
    navigator = build_navigator(config, generator, pca)
    state = torch.load(run / "training_state.pt", map_location="cpu", weights_only=True)
    navigator.load_state_dict(state["navigator"])
    objective = ContrastBi(config.strength_range, config.mask, config.cos_mode)
    features = FeatureSource(generator, sensor, "const")
    rng = torch.Generator().manual_seed(BATCH_SEED + 1)
    gradients = []
    for _ in range(batches):
        navigator.zero_grad(set_to_none=True)
        ws = sample_start_codes(generator, config.batch_size, config, rng)
        units = objective.units(ws)
        objective.compute(units, objective.draw(units.shape[0], navigator.num_directions, rng), navigator, features)["contrast"].backward()
        gradients.append(torch.cat([p.grad.flatten() for p in navigator.parameters() if p.grad is not None]))
    stacked = torch.stack(gradients).double()  # [B, P]
    mean = stacked.mean(dim=0)
    noise = (stacked - mean).square().sum(dim=1).mean().sqrt()
    return float(mean.norm() / noise)


def fitted_attention(target: torch.Tensor, num_ws: int) -> torch.Tensor:
    """[K, L]: the smoothed softmax attention of the navigator closest (least squares) to target layer weights [K, L]."""
    branch = AttentionBranch(target.shape[0], num_ws)
    optimiser = torch.optim.Adam(branch.parameters(), lr=0.1)
    for _ in range(ATTENTION_FIT_STEPS):
        optimiser.zero_grad(set_to_none=True)
        (branch() - target).square().sum().backward()
        optimiser.step()
    return branch().detach()


def through_navigator(best: Directions, pca: PCABasis, subspace_dim: int, project: bool, smooth: bool) -> Directions:
    """The best linear edits with their vectors projected onto the top PCs and/or their layer weights smoothed as the navigator's."""
    vectors, attention = best.vectors, best.attention
    if project:
        basis = pca.basis[:, :subspace_dim].float()  # [C, k]
        projected = vectors @ basis @ basis.T
        vectors = projected / projected.square().mean(dim=1, keepdim=True).sqrt()
    if smooth:
        attention = fitted_attention(attention, best.num_ws)
    return Directions(vectors, attention, suggest_strengths(vectors, attention, pca), best.method, best.generator_id, names=best.names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="*", help="trained run folders (contra-bi / contra-pt)")
    parser.add_argument("--checkpoint", default="shapes3d-learned")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--batches", type=int, default=16, help="training batches for the gradient's signal-to-noise")
    parser.add_argument("--sensor-sizes", type=int, nargs="+", default=[0, 128], help="sensor input sizes (0: the generator's own)")
    parser.add_argument("--subspace-dim", type=int, default=20, help="k of the navigator the best linear edits are pushed through")
    parser.add_argument("--subspace-dims", type=int, nargs="*", default=[], help="more k at which to score the pushed edits")
    parser.add_argument("--out", type=Path, default=None, help="stem of a CSV and Markdown table to write")
    args = parser.parse_args()
    started = time.perf_counter()
    generator = load_generator(args.checkpoint)
    pca = load_or_compute_pca(generator, cache_dir("pca"), DiscoveryConfig.pca_samples, progress=False)
    config = DiscoveryConfig(checkpoint=args.checkpoint)
    initial = navigator_directions(build_navigator(config, generator, pca), pca, "initial", generator)
    best = answer_key_directions("best-linear", generator, pca, config)
    sets = {"initial navigator": initial, **{run.name: load_directions(run) for run in args.runs}}
    sets.update(reference_directions(generator, pca, config.num_directions, seed=0))
    sets["best linear"] = best
    sets["best linear, top-k PCs"] = through_navigator(best, pca, args.subspace_dim, project=True, smooth=False)
    sets["best linear, smoothed attention"] = through_navigator(best, pca, args.subspace_dim, project=False, smooth=True)
    sets["best linear, both"] = through_navigator(best, pca, args.subspace_dim, project=True, smooth=True)
    objective = ContrastBi(config.strength_range, config.mask, config.cos_mode)
    rows = [{"directions": name, "K": candidate.count, **exact_scores(generator, candidate)} for name, candidate in sets.items()]
    for size in args.sensor_sizes:
        sensor = build_sensor(config.sensor, generator=generator, input_size=size or None)
        features = FeatureSource(generator, sensor, "const")
        label = f"{size} px" if size else "native"
        for row, candidate in zip(rows, sets.values()):
            loss, halves = contrast_on_fixed_batch(objective, features, candidate, config, args.pairs)
            row[f"contrast ({label})"], row[f"halves differ ({label})"] = loss, halves
        for row, run in zip(rows[1:], args.runs):
            row[f"gradient SNR ({label})"] = gradient_snr(run, generator, sensor, pca, args.batches)
    for size in args.subspace_dims:
        for smooth in (False, True):
            pushed = through_navigator(best, pca, size, project=True, smooth=smooth)
            label = f"best linear, top-{size} PCs" + (", smoothed attention" if smooth else "")
            rows.append({"directions": label, "K": pushed.count, **exact_scores(generator, pushed)})
    columns = list(dict.fromkeys(key for row in rows for key in row))
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(f"{row.get(c):.3f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns) + " |")
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.out is not None:
        write_tables(rows, args.out)


if __name__ == "__main__":
    main()
