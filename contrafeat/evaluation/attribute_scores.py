"""The attribute-change matrix of a set of directions, its disentanglement score and attributes found.

D_ij = | mean over samples of P_j(G(w + e_i d_i)) - P_j(G(w - e_i d_i)) |, rows normalised to max 1;
score = mean_i (top1_i - top2_i) (the paper's, over all K rows), found = number of distinct row argmaxes, and the
per-factor score = mean over attributes j of the largest purity top1_i - top2_i among the rows i whose argmax is j
(0 for an attribute no row moves most), which compares sets of any size K with the attributes one for one. The strength e_i is either one
fixed value for every direction (the published protocol) or calibrated per direction so that the
edit moves the sensor features by a set amount (`calibration.py`).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import torch

from contrafeat.checks import check_shape
from contrafeat.discovery.directions import Directions
from contrafeat.errors import UserError
from contrafeat.gan.interface import GeneratorLike, has_factors, seeded_codes
from contrafeat.shapes3d.truth import factor_difference


class AttributePredictor(Protocol):
    """Predicts named attribute values of generated samples and measures their signed change."""

    names: list[str]

    def predict(self, generator: GeneratorLike, ws: torch.Tensor) -> torch.Tensor:
        """Attribute values [B, A] of the samples of W+ codes [B, L, C]."""
        ...

    def difference(self, after: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
        """Signed change [B, A] between two predictions, in comparable units per attribute."""
        ...


class ExactFactors:
    """A shapes3d generator's own factor values `G.factors(ws)`: the exact answer, no image involved."""

    def __init__(self, generator: GeneratorLike) -> None:
        if not has_factors(generator):
            raise UserError("--predictor exact: this generator has no known factors; use an image predictor (cnn or MODULE:CALLABLE)")
        self.names = list(generator.factor_names)

    def predict(self, generator: GeneratorLike, ws: torch.Tensor) -> torch.Tensor:
        assert has_factors(generator)  # the generator __init__ accepted
        return generator.factors(ws)

    def difference(self, after: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
        return factor_difference(after, before)


@dataclass
class ImageAttributes:
    """Any image model: renders the codes (const noise) and maps images in [-1, 1] to attributes [B, A]."""

    model: Callable[[torch.Tensor], torch.Tensor]
    names: list[str]
    differ: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = field(default=lambda after, before: after - before)

    def predict(self, generator: GeneratorLike, ws: torch.Tensor) -> torch.Tensor:
        values = torch.as_tensor(self.model(generator.synthesis(ws, noise_mode="const"))).float()
        if values.ndim != 2 or values.shape != (ws.shape[0], len(self.names)):
            raise UserError(f"attribute predictor: expected values of shape [{ws.shape[0]}, {len(self.names)}], got {list(values.shape)}")
        return values

    def difference(self, after: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
        return self.differ(after, before)


def shapes3d_cnn_attributes() -> ImageAttributes:
    """The bundled CNN trained on procedural renders: the image-based predictor of the shapes3d world."""
    from contrafeat.shapes3d.factor_predictor import load_factor_predictor
    from contrafeat.shapes3d.grid import FACTOR_NAMES

    model = load_factor_predictor()

    def predict_values(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.predict_values(images.to(next(model.parameters()).device)).cpu()

    return ImageAttributes(predict_values, list(FACTOR_NAMES), factor_difference)


def user_attributes(spec: str) -> ImageAttributes:
    """MODULE:CALLABLE -> that callable as an image predictor; its `names` attribute (if any) names the outputs."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UserError(f"--predictor {spec!r}: expected exact, cnn or MODULE:CALLABLE (a function of images in [-1, 1] -> [B, A])")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise UserError(f"--predictor {spec!r}: cannot import it ({error})") from error
    names = getattr(function, "names", None)
    if names is None:
        raise UserError(f"--predictor {spec!r}: the callable needs a `names` attribute listing its outputs")
    return ImageAttributes(function, list(names))


def build_predictor(spec: str, generator: GeneratorLike) -> AttributePredictor:
    """`exact`, `cnn` (both shapes3d only) or MODULE:CALLABLE."""
    if spec == "exact":
        return ExactFactors(generator)
    if spec == "cnn":
        if not has_factors(generator):
            raise UserError("--predictor cnn: the bundled CNN reads shapes3d images only; pass MODULE:CALLABLE for this generator")
        return shapes3d_cnn_attributes()
    return user_attributes(spec)


@torch.no_grad()
def attribute_change_matrix(
    generator: GeneratorLike,
    directions: Directions,
    predictor: AttributePredictor,
    strengths: torch.Tensor,
    num_samples: int = 500,
    seed: int = 0,
    truncation_psi: float = 0.5,
    batch_size: int = 250,
) -> torch.Tensor:
    """[K, A]: |mean signed change| of each attribute between w - e_i*edit_i and w + e_i*edit_i."""
    check_shape(strengths, [directions.count], "strengths")
    codes = seeded_codes(generator, num_samples, seed, truncation_psi)
    rows = []
    for index in range(directions.count):
        total = torch.zeros(len(predictor.names))
        strength = float(strengths[index])
        for chunk in codes.split(batch_size):
            after = predictor.predict(generator, directions.apply(chunk, index, strength))
            before = predictor.predict(generator, directions.apply(chunk, index, -strength))
            total += predictor.difference(after, before).sum(0).cpu()
        rows.append((total / num_samples).abs())
    return torch.stack(rows)


@dataclass
class AttributeScores:
    """Scores of one attribute-change matrix."""

    score: float
    found: int
    factor_score: float
    score_before_norm: float
    row_argmax: list[int | None]


def top_two_gap(rows: torch.Tensor) -> torch.Tensor:
    """Largest minus second largest entry of each row (the entry itself when there is one column)."""
    if rows.shape[1] == 1:
        return rows[:, 0]
    top = rows.topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


def score_matrix(matrix: torch.Tensor, dead: Sequence[int] = ()) -> AttributeScores:
    """Row-normalised disentanglement score, distinct attributes found, the per-factor score and the raw-matrix score;
    the `dead` rows (directions that do not move the image, see `dead_directions`) and all-zero rows score 0 and find nothing."""
    matrix = matrix.double()
    peak = matrix.max(dim=1).values
    alive = peak > 0
    alive[list(dead)] = False
    normalised = torch.where(alive[:, None], matrix / peak.clamp_min(torch.finfo(matrix.dtype).tiny)[:, None], torch.zeros_like(matrix))
    argmax = [int(row.argmax()) if live else None for row, live in zip(normalised, alive)]
    purity = top_two_gap(normalised)  # [K]
    best = [max((float(purity[row]) for row, column in enumerate(argmax) if column == attribute), default=0.0) for attribute in range(matrix.shape[1])]
    return AttributeScores(
        score=float(purity.mean()),
        found=len({column for column in argmax if column is not None}),
        factor_score=sum(best) / len(best),
        score_before_norm=float(top_two_gap(torch.where(alive[:, None], matrix, torch.zeros_like(matrix))).mean()),
        row_argmax=argmax,
    )
