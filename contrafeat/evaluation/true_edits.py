"""Judging directions against a generator whose exact per-factor edits are known (the shapes3d world)."""
from __future__ import annotations

import torch

from contrafeat.discovery.directions import Directions
from contrafeat.discovery.strengths import suggest_strengths
from contrafeat.discovery.subspace import PCABasis
from contrafeat.gan.interface import FactorWorld, GeneratorLike, TrueEditWorld, has_style_affine_weights, seeded_codes
from contrafeat.shapes3d.truth import factor_difference, true_edit_tensor

READ_RANK_TOLERANCE = 1e-5
"""Singular values below this fraction of a layer's largest span no direction the generator reads."""


def read_projectors(generator: GeneratorLike) -> torch.Tensor:
    """[L, C, C]: per W+ layer, the orthogonal projector onto the row space of its style-affine matrix, the part
    of W that layer reads (the identity for a layer whose matrix has full rank, or a generator without one)."""
    identity = torch.eye(generator.w_dim, dtype=torch.float64)
    if not has_style_affine_weights(generator):
        return identity.expand(generator.num_ws, -1, -1).clone()
    projectors = []
    for matrix in generator.style_affine_weights():
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


def true_edit_agreement(generator: TrueEditWorld, directions: Directions) -> dict[str, float]:
    """Mean over the directions of each one's best |cos| with a true edit: on what the generator reads
    (`true_edit_cos`, the honest one) and on the flattened W+ edit (`flat_edit_cos`, fooled by the null space)."""
    truth, edits = true_edit_tensor(generator).double(), directions.edits().double()
    return {
        "true_edit_cos": float(edit_cosines(edits, truth, read_projectors(generator)).max(dim=1).values.mean()),
        "flat_edit_cos": float(edit_cosines(edits, truth).max(dim=1).values.mean()),
    }


@torch.no_grad()
def factor_changes(
    generator: FactorWorld, directions: Directions, num_samples: int = 200, seed: int = 0, truncation_psi: float = 0.5
) -> torch.Tensor:
    """[K, F]: mean |factor change| between w - s*edit and w + s*edit (s = the suggested strength), normalised."""
    ws = seeded_codes(generator, num_samples, seed, truncation_psi)
    rows = []
    for index in range(directions.count):
        strength = float(directions.strengths[index])
        after = generator.factors(directions.apply(ws, index, strength))
        before = generator.factors(directions.apply(ws, index, -strength))
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
        name: Directions(vectors, uniform, suggest_strengths(vectors, uniform, pca), name, "reference")
        for name, vectors in (("pca", pcs), ("random", random))
    }


def summarise(directions: Directions, generator: FactorWorld, truth: torch.Tensor, num_samples: int) -> dict[str, float | int]:
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


def per_direction_table(directions: Directions, generator: TrueEditWorld, factor_names: list[str], num_samples: int = 200) -> list[dict]:
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


def comparison_table(generator: TrueEditWorld, directions: Directions, pca: PCABasis, seed: int = 0, num_samples: int = 200) -> list[dict]:
    """Learned directions next to plain PCA and random ones, judged with the true edits."""
    truth = true_edit_tensor(generator)
    candidates = {directions.method: directions, **reference_directions(generator, pca, directions.count, seed)}
    return [{"directions": name, **summarise(d, generator, truth, num_samples)} for name, d in candidates.items()]
