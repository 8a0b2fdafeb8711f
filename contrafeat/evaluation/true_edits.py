"""Judging directions against a generator whose exact per-factor edits are known (the shapes3d world)."""
from __future__ import annotations

import torch

from contrafeat.discovery.directions import Directions
from contrafeat.discovery.steps import suggest_steps
from contrafeat.discovery.subspace import PCABasis
from contrafeat.gan.interface import GeneratorLike

FACTOR_RANGES = torch.tensor([1.0, 1.0, 1.0, 0.5, 3.0, 60.0])
"""Span of each shapes3d factor (floor, wall, object hue, scale, shape, orientation) used to normalise changes."""
CIRCULAR_FACTORS = (0, 1, 2)
"""Hues wrap around: their differences are taken on the circle."""
TRUE_EDIT_STEP = 0.5
"""A step at which every true shapes3d edit changes its factor alone, by a clearly visible amount."""


def true_edit_tensor(generator: GeneratorLike) -> torch.Tensor:
    """The generator's exact per-factor edits as [F, L, C] (layer weights outer direction)."""
    return torch.stack([weights[:, None] * direction[None, :] for direction, weights in generator.true_edits()]).float().cpu()


READ_RANK_TOLERANCE = 1e-5
"""Singular values below this fraction of a layer's largest span no direction the generator reads."""


def read_projectors(generator: GeneratorLike) -> torch.Tensor:
    """[L, C, C]: per W+ layer, the orthogonal projector onto the row space of its style-affine matrix, the part
    of W that layer reads (the identity for a layer whose matrix has full rank, or a generator without one)."""
    weights = getattr(generator, "style_affine_weights", None)
    identity = torch.eye(generator.w_dim, dtype=torch.float64)
    if not callable(weights):
        return identity.expand(generator.num_ws, -1, -1).clone()
    projectors = []
    for matrix in weights():
        _, singular, right = torch.linalg.svd(matrix.detach().double().cpu(), full_matrices=False)
        basis = right[singular > READ_RANK_TOLERANCE * singular.max()]  # [rank, C]
        projectors.append(basis.T @ basis)
    return torch.stack(projectors)


def edit_cosines(edits: torch.Tensor, truth: torch.Tensor, projectors: torch.Tensor | None = None) -> torch.Tensor:
    """|cos| between each flattened edit [K, L, C] and each true edit [F, L, C] -> [K, F].

    With `projectors` [L, C, C] (read_projectors) both sides are first projected, layer by layer, onto what the
    generator reads: a component in the null space changes no pixel and then costs no agreement."""
    learned, true = edits.flatten(1), truth.flatten(1)  # [K, L*C], [F, L*C]
    if projectors is not None:
        learned = read_part(edits, projectors.to(edits.dtype)).flatten(1)
        true = read_part(truth, projectors.to(truth.dtype)).flatten(1)
    learned = torch.nn.functional.normalize(learned, dim=1)
    true = torch.nn.functional.normalize(true, dim=1)
    return (learned @ true.T).abs()


def read_part(edits: torch.Tensor, projectors: torch.Tensor) -> torch.Tensor:
    """Edits [K, L, C] projected layer by layer onto what the generator reads; an edit whose read part is float
    noise (below READ_RANK_TOLERANCE of its length) becomes zero, so it agrees with nothing."""
    read = torch.einsum("lcd,kld->klc", projectors, edits)
    alive = read.flatten(1).norm(dim=1) > READ_RANK_TOLERANCE * edits.flatten(1).norm(dim=1)
    return read * alive[:, None, None]


def true_edit_agreement(generator: GeneratorLike, directions: Directions) -> dict[str, float]:
    """Mean over the directions of each one's best |cos| with a true edit: on what the generator reads
    (`true_edit_cos`, the honest one) and on the flattened W+ edit (`flat_edit_cos`, fooled by the null space)."""
    truth, edits = true_edit_tensor(generator).double(), directions.edits().double()
    return {
        "true_edit_cos": float(edit_cosines(edits, truth, read_projectors(generator)).max(dim=1).values.mean()),
        "flat_edit_cos": float(edit_cosines(edits, truth).max(dim=1).values.mean()),
    }


def factor_difference(after: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
    """after - before per factor, wrapped to [-0.5, 0.5) for hues, divided by each factor's span."""
    difference = after - before
    for column in CIRCULAR_FACTORS:
        difference[:, column] = torch.remainder(difference[:, column] + 0.5, 1.0) - 0.5
    return difference / FACTOR_RANGES.to(difference.device)


@torch.no_grad()
def factor_changes(
    generator: GeneratorLike, directions: Directions, num_samples: int = 200, seed: int = 0, truncation_psi: float = 0.5
) -> torch.Tensor:
    """[K, F]: mean |factor change| between w - s*edit and w + s*edit (s = the suggested step), normalised."""
    z = torch.randn(num_samples, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    ws = generator.mapping(z.to(generator.w_avg.device), truncation_psi=truncation_psi)[:, None, :].repeat(1, generator.num_ws, 1)
    rows = []
    for index in range(directions.count):
        step = float(directions.steps[index])
        after = generator.factors(directions.apply(ws, index, step))
        before = generator.factors(directions.apply(ws, index, -step))
        rows.append(factor_difference(after, before).abs().mean(0).cpu())
    return torch.stack(rows)


def reference_directions(generator: GeneratorLike, pca: PCABasis, count: int, seed: int) -> dict[str, Directions]:
    """Plain PCA directions and random directions (both RMS 1, uniform attention) to compare against."""
    uniform = torch.full((count, generator.num_ws), 1.0 / generator.num_ws)
    scale = generator.w_dim**0.5
    pcs = pca.basis[:, :count].T.float() * scale
    random = torch.randn(count, generator.w_dim, generator=torch.Generator().manual_seed(seed))
    random = torch.nn.functional.normalize(random, dim=1) * scale
    return {
        name: Directions(vectors, uniform, suggest_steps(vectors, uniform, pca), name, "reference")
        for name, vectors in (("pca", pcs), ("random", random))
    }


def summarise(directions: Directions, generator: GeneratorLike, truth: torch.Tensor, num_samples: int) -> dict[str, float | int]:
    """Mean best |cos| to a true edit (on what the generator reads), true factors matched, and factors that some direction moves most."""
    cosines = edit_cosines(directions.edits(), truth, read_projectors(generator))
    changes = factor_changes(generator, directions, num_samples=num_samples)
    best = changes.max(dim=1)
    purity = best.values / changes.sum(dim=1).clamp_min(1e-12)
    return {
        "mean_best_cos": float(cosines.max(dim=1).values.mean()),
        "factors_matched": int(cosines.argmax(dim=1).unique().numel()),
        "factors_moved": int(best.indices.unique().numel()),
        "mean_purity": float(purity.mean()),
    }


def per_direction_table(directions: Directions, generator: GeneratorLike, factor_names: list[str], num_samples: int = 200) -> list[dict]:
    """Rows per direction: best-matching true edit and its |cos|, the factor moved most and its share."""
    cosines = edit_cosines(directions.edits(), true_edit_tensor(generator), read_projectors(generator))
    changes = factor_changes(generator, directions, num_samples=num_samples)
    rows = []
    for index in range(directions.count):
        moved = int(changes[index].argmax())
        rows.append(
            {
                "direction": index,
                "best_true_edit": factor_names[int(cosines[index].argmax())],
                "abs_cos": float(cosines[index].max()),
                "moves_most": factor_names[moved],
                "share_of_change": float(changes[index, moved] / changes[index].sum().clamp_min(1e-12)),
            }
        )
    return rows


def comparison_table(generator: GeneratorLike, directions: Directions, pca: PCABasis, seed: int = 0, num_samples: int = 200) -> list[dict]:
    """Learned directions next to plain PCA and random ones, judged with the true edits."""
    truth = true_edit_tensor(generator)
    candidates = {directions.method: directions, **reference_directions(generator, pca, directions.count, seed)}
    return [{"directions": name, **summarise(d, generator, truth, num_samples)} for name, d in candidates.items()]
