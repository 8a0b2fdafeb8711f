"""Stability of discovered directions without labels: the directions of several runs matched by what they do.

A direction's signature is what it does: the change of the sensor features from G(w - s*edit) to G(w + s*edit)
on fixed seeded codes, each stage averaged over space and taken relative to its features (`pairs.change_vectors`),
flattened over codes and stages; or, to compare against, its flattened W+ edit. Two directions are compared by
the |cos| of their signatures (a direction and its opposite do the same). The stability of a direction is the mean
over the other runs of its best |cos| there; it is found in another run when its best match there is mutual (each
is the other's best) and reaches the threshold. Mutually matched directions form groups, each represented by its
medoid: the consensus directions, the groups found in most runs first.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn

from contrafeat.discovery.directions import Directions
from contrafeat.errors import UserError
from contrafeat.evaluation.attribute_scores import ExactFactors, top_two_gap
from contrafeat.evaluation.evaluate_run import EvaluationSettings, fixed_strength_matrix, fixed_strength_scores
from contrafeat.evaluation.pairs import change_vectors
from contrafeat.gan.interface import GeneratorLike, has_factors

DEFAULT_THRESHOLD = 0.8
"""|cos| a mutual best match needs to count as the same direction (between the true shapes3d edits: at most 0.28)."""
DEFAULT_SENSOR = "mobilenet_v2"
MATCHINGS = ("effect", "edit")
"""What directions are matched by: their effect on the sensor features, or their flattened W+ edits."""
CONSENSUS_METHOD = "consensus"
SIGNATURE_BATCH = 16
"""Codes rendered at once for the effect signatures."""

RunDirection = tuple[int, int]
"""(run, direction index in that run)."""


class PooledSensor(nn.Module):
    """A sensor whose every stage is averaged over space: [B, C, h, w] -> [B, C]."""

    def __init__(self, sensor: nn.Module) -> None:
        super().__init__()
        self.sensor = sensor

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [stage.mean(dim=(2, 3)) for stage in self.sensor(images)]


def effect_signatures(
    generator: GeneratorLike, directions: Directions, sensor: nn.Module, codes: torch.Tensor, strength_multiplier: float = 1.0
) -> torch.Tensor:
    """[K, N*D]: per direction, the pooled relative sensor change from w - s*edit to w + s*edit on the codes [N, L, C]
    (s: the suggested strength times the multiplier)."""
    pooled, strengths = PooledSensor(sensor), directions.strengths * strength_multiplier
    changes = [change_vectors(generator, directions, pooled, strengths, chunk) for chunk in codes.split(SIGNATURE_BATCH)]  # [K, n, D] each
    return torch.cat(changes, dim=1).flatten(1)


def edit_signatures(directions: Directions) -> torch.Tensor:
    """[K, L*C]: the flattened W+ edits."""
    return directions.edits().flatten(1)


def signed_cosines(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """[K1, K2]: cos between the rows of two signature matrices (0 for an all-zero row)."""
    return F.normalize(first.double(), dim=1) @ F.normalize(second.double(), dim=1).T


@dataclass
class Matching:
    """The signed cosines between the directions of every ordered pair of runs, and the threshold of a match."""

    cosines: dict[tuple[int, int], torch.Tensor]  # (run, other) -> [K_run, K_other]
    counts: list[int]
    threshold: float

    @property
    def runs(self) -> int:
        return len(self.counts)

    def others(self, run: int) -> list[int]:
        return [other for other in range(self.runs) if other != run]

    def partners(self, run: int, other: int) -> torch.Tensor:
        """[K_run]: each direction's mutual best match in `other` at or above the threshold, -1 where none."""
        similarity = self.cosines[run, other].abs()
        value, best = similarity.max(dim=1)
        back = similarity.argmax(dim=0)  # [K_other]: each other direction's best match in `run`
        mutual = (back[best] == torch.arange(self.counts[run])) & (value >= self.threshold)
        return torch.where(mutual, best, -1)

    def stability(self, run: int) -> torch.Tensor:
        """[K_run]: mean over the other runs of each direction's best |cos| there."""
        return torch.stack([self.cosines[run, other].abs().max(dim=1).values for other in self.others(run)]).mean(dim=0)

    def found_in(self, run: int) -> torch.Tensor:
        """[K_run]: 1 + the number of other runs holding a mutual match."""
        return 1 + torch.stack([self.partners(run, other) >= 0 for other in self.others(run)]).sum(dim=0)

    def all_stability(self) -> torch.Tensor:
        """[sum K]: every direction's stability, run after run."""
        return torch.cat([self.stability(run) for run in range(self.runs)])


def match_runs(signatures: Sequence[torch.Tensor], threshold: float = DEFAULT_THRESHOLD) -> Matching:
    """The cosines between the signatures [K_r, D] of every pair of runs."""
    if len(signatures) < 2:
        raise ValueError(f"signatures: {len(signatures)} runs; matching needs at least 2")
    cosines = {}
    for run, first in enumerate(signatures):
        for other in range(run + 1, len(signatures)):
            cosines[run, other] = signed_cosines(first, signatures[other])
            cosines[other, run] = cosines[run, other].T
    return Matching(cosines, [len(signature) for signature in signatures], threshold)


def check_one_generator(runs: Sequence[Directions], labels: Sequence[str]) -> None:
    """A UserError naming the first run whose directions were found on another generator than the first run's."""
    for directions, label in zip(runs, labels):
        if directions.generator_id != runs[0].generator_id:
            raise UserError(
                f"{label}: found on generator {directions.generator_id}, but {labels[0]} on generator {runs[0].generator_id}; "
                "consensus matches runs of one generator"
            )


@dataclass
class Group:
    """Mutually matched directions of different runs, their medoid and the medoid's stability."""

    members: list[RunDirection]
    signs: list[int]
    medoid: RunDirection
    stability: float


def medoid_group(matching: Matching, members: list[RunDirection]) -> Group:
    """The group of `members`: the medoid has the highest mean |cos| to the others; signs are relative to it."""

    def cosine(a: RunDirection, b: RunDirection) -> float:
        return 1.0 if a == b else float(matching.cosines[a[0], b[0]][a[1], b[1]])

    medoid = max(members, key=lambda member: sum(abs(cosine(member, other)) for other in members))
    signs = [1 if cosine(medoid, member) >= 0 else -1 for member in members]
    return Group(members, signs, medoid, float(matching.stability(medoid[0])[medoid[1]]))


def consensus_groups(matching: Matching) -> list[Group]:
    """Greedy groups: each direction not yet taken, most often found and most stable first, with its mutual matches
    not yet taken; ordered by the number of runs they were found in, then by stability."""
    found = [matching.found_in(run) for run in range(matching.runs)]
    stability = [matching.stability(run) for run in range(matching.runs)]
    directions = [(run, index) for run in range(matching.runs) for index in range(matching.counts[run])]
    directions.sort(key=lambda item: (-int(found[item[0]][item[1]]), -float(stability[item[0]][item[1]])))
    partners = {(run, other): matching.partners(run, other) for run, other in matching.cosines}
    taken: set[RunDirection] = set()
    groups = []
    for run, index in directions:
        if (run, index) in taken:
            continue
        matches = [(other, int(partners[run, other][index])) for other in matching.others(run) if partners[run, other][index] >= 0]
        members = [(run, index), *(match for match in matches if match not in taken)]
        taken.update(members)
        groups.append(medoid_group(matching, members))
    return sorted(groups, key=lambda group: (-len(group.members), -group.stability))


def consensus_directions(runs: Sequence[Directions], groups: Sequence[Group]) -> Directions:
    """One direction per group, its medoid's, in the groups' order."""
    medoids = [group.medoid for group in groups]
    return Directions(
        torch.stack([runs[run].vectors[index] for run, index in medoids]),  # [G, C]
        torch.stack([runs[run].attention[index] for run, index in medoids]),  # [G, L]
        torch.stack([runs[run].strengths[index] for run, index in medoids]),  # [G]
        CONSENSUS_METHOD,
        runs[0].generator_id,
    )


def stability_table(matching: Matching, labels: Sequence[str], groups: Sequence[Group]) -> list[dict[str, Any]]:
    """A row per direction of every run: run, index, found_in, stability and its consensus direction."""
    consensus = {member: number for number, group in enumerate(groups) for member in group.members}
    rows = []
    for run, label in enumerate(labels):
        found, stability = matching.found_in(run), matching.stability(run)
        for index in range(matching.counts[run]):
            rows.append(
                {"run": label, "index": index, "found_in": int(found[index]), "stability": float(stability[index]), "consensus": consensus[run, index]}
            )
    return rows


def group_rows(groups: Sequence[Group], labels: Sequence[str]) -> list[dict[str, Any]]:
    """The groups as JSON rows: found_in, stability, the medoid and the members with their signs."""
    return [
        {
            "found_in": len(group.members),
            "stability": group.stability,
            "medoid": {"run": labels[group.medoid[0]], "index": group.medoid[1]},
            "members": [{"run": labels[run], "index": index, "sign": sign} for (run, index), sign in zip(group.members, group.signs)],
        }
        for group in groups
    ]


def direction_purity(generator: GeneratorLike, directions: Directions) -> torch.Tensor:
    """[K]: top1 - top2 of each direction's exact-factor change row at the fixed strength, normalised to max 1;
    0 for a direction that does not move the image there (its row is float noise)."""
    settings, predictor = EvaluationSettings(distill=None), ExactFactors(generator)
    matrix = fixed_strength_matrix(generator, directions, predictor, settings)  # [K, F]
    scores = fixed_strength_scores(generator, directions, predictor, settings, matrix)
    alive = torch.tensor([column is not None for column in scores.row_argmax])
    return top_two_gap(matrix / matrix.max(dim=1, keepdim=True).values.clamp_min(1e-12)) * alive


def spearman(first: torch.Tensor, second: torch.Tensor) -> float | None:
    """Spearman's rank correlation of two [N] series; None where either is constant."""
    if first.unique().numel() < 2 or second.unique().numel() < 2:
        return None
    return float(spearmanr(first.numpy(), second.numpy()).statistic)


def purity_ranking(generator: GeneratorLike, runs: Sequence[Directions], matchings: Mapping[str, Matching]) -> dict[str, float | None] | None:
    """Per matching, the Spearman correlation of stability with exact-factor purity over every direction of every
    run; None for a generator without known factors."""
    if not has_factors(generator):
        return None
    purity = torch.cat([direction_purity(generator, directions) for directions in runs]).double()
    return {name: spearman(matching.all_stability(), purity) for name, matching in matchings.items()}
