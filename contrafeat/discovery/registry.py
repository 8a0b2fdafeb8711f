"""The method registry, without torch: each `--method` name's directions, attention and objective, the contrast
losses, and how many generator renders each objective makes per step."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from contrafeat.errors import UserError

AUTHORS_BASELINE = {"lr": 0.01, "strength_range": 0.5, "diversity_weight": 0.0}
"""The authors' LatentCLR and Recog runs: Adam lr 0.01, edit strengths in U(-0.5, 0.5), no diversity term."""


@dataclass(frozen=True)
class MethodSpec:
    """What a method is made of: one row of METHODS.

    directions: `learned` (trained in the top-k PCA subspace), `ganspace` (the top PCs of W, fixed),
    `sefa` (SeFa's closed-form eigenvectors, fixed), `truth` (the generator's exact per-factor edits with
    their own layer weights, for generators that know them) or `best-linear` (per factor, the optimised linear
    edit, for generators with factor levels). attention: the attention mode the method requires, or None when
    `--attention` decides (or, for the answer keys, when the edits bring their own). objective: `bi`, `pt`,
    `latentclr`, `recog` (a row of RENDER_COUNTS and an Objective class of that name), `loss` (the contrast
    chosen with `--loss`) or None (nothing to train). defaults: the method's values under every preset;
    presets: its values under one preset, over the defaults.
    """

    directions: str
    attention: str | None
    objective: str | None
    summary: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def trains(self) -> bool:
        return self.objective is not None


FIXED = {"attention": "none", "steps": 0}
"""A closed-form method on every layer: nothing to train."""

METHODS: dict[str, MethodSpec] = {
    "contra-bi": MethodSpec(
        "learned", None, "bi", "ContraFeat, Bi loss: the same edit on two codes changes the sensor features alike, another edit does not",
        presets={"ffhq": {"batch_size": 12, "steps": 16_667}},  # the authors ran Bi with batch 12: 200k codes
    ),
    "contra-pt": MethodSpec("learned", None, "pt", "ContraFeat, Pt loss: each direction's feature change matches its own learned RGB prototype and no other"),
    "ganspace": MethodSpec("ganspace", "none", None, "GANSpace: the top principal components of W on every layer; nothing is trained", FIXED),
    "ganspace+att": MethodSpec(
        "ganspace", "softmax", "loss", "the GANSpace directions, fixed, with a layer attention trained by the --loss contrast",
        presets={"ffhq": {"steps": 30_000}},
    ),
    "sefa": MethodSpec(
        "sefa", "none", None, "SeFa: top eigenvectors of the stacked, row-normalised style-affine weights on every layer; nothing is trained", FIXED
    ),
    "sefa+att": MethodSpec(
        "sefa", "softmax", "loss", "the SeFa directions, fixed, with a layer attention trained by the --loss contrast", presets={"ffhq": {"steps": 30_000}}
    ),
    # The baselines run the authors' settings: LatentCLR batch 4 and |cos| as in its reference code, Recog batch 8, 300k codes on FFHQ.
    "latentclr": MethodSpec(
        "learned", "none", "latentclr", "LatentCLR: NT-Xent over feature changes, the same direction on other codes is the positive",
        {**AUTHORS_BASELINE, "attention": "none", "batch_size": 4, "cos_mode": "abs"}, {"ffhq": {"steps": 75_000}},
    ),
    "latentclr+att": MethodSpec(
        "learned", "softmax", "latentclr", "LatentCLR with the layer attention trained alongside",
        {**AUTHORS_BASELINE, "batch_size": 4, "cos_mode": "abs"}, {"ffhq": {"steps": 75_000}},
    ),
    "recog": MethodSpec(
        "learned", "none", "recog", "Voynov & Babenko: a reconstructor must tell from an image pair which direction moved and how far",
        {**AUTHORS_BASELINE, "attention": "none", "batch_size": 8}, {"ffhq": {"steps": 37_500}},
    ),
    "recog+att": MethodSpec(
        "learned", "softmax", "recog", "Recog with the layer attention trained alongside", {**AUTHORS_BASELINE, "batch_size": 8}, {"ffhq": {"steps": 37_500}}
    ),
    "truth": MethodSpec(
        "truth", None, None, "the world's exact per-factor edits with their own layer weights (the upper bound of every measure); nothing is trained",
        {"steps": 0},
    ),
    "best-linear": MethodSpec(
        "best-linear",
        None,
        None,
        "per factor, the linear W+ edit (vector and layer weights) that an optimiser finds to move that factor most alone, "
        "read from the world's factor levels (the upper bound of every linear method); nothing is trained",
        {"steps": 0},
    ),
}
"""Every `--method` name, in the order the paper's tables list them, then the answer keys."""
ANSWER_KEYS = ("truth", "best-linear")
"""Direction kinds read from the world's known factors instead of discovered (see `discovery.run.answer_key_directions`)."""
CONTRAST_LOSSES = ("bi", "pt")
"""The ContraFeat losses, the values of `--loss`."""


@dataclass(frozen=True)
class RenderCount:
    """Generator renders (synthesis passes, one per image, edited or not) of an objective: a batch is arranged in
    units of `codes_per_unit` codes, and each unit costs `fixed + per_direction * K` renders for K directions."""

    codes_per_unit: int
    fixed: int
    per_direction: int = 0

    def per_unit(self, num_directions: int) -> int:
        return self.fixed + self.per_direction * num_directions

    def per_batch(self, num_directions: int, batch_size: int) -> int:
        """Renders of one step on `batch_size` codes (codes beyond whole units are not used)."""
        return self.per_unit(num_directions) * (batch_size // self.codes_per_unit)


RENDER_COUNTS: dict[str, RenderCount] = {
    "bi": RenderCount(2, 5),  # w1, w2 unedited, then w1 + s d_i, w2 + s d_i and w2 + s' d_j
    "pt": RenderCount(1, 2),  # w + s/2 d_q and w - s/2 d_q; the K prototypes go through the sensor only
    "latentclr": RenderCount(1, 1, 1),  # the code unedited, then each of the K directions on it
    "recog": RenderCount(1, 2),  # w and w + s d_k
}
"""The render count of each objective, the one source for the objectives and the render budget."""


@dataclass(frozen=True)
class MethodPlan:
    """A method resolved for one run: its row, and the objective its `--loss` picks. Everything that depends on the
    method (navigator, objective, trainer, description, budget) reads this one object."""

    name: str
    spec: MethodSpec
    loss: str

    @property
    def objective(self) -> str | None:
        """The objective the run trains with (`loss` resolved to the contrast); None when nothing trains."""
        return self.loss if self.spec.objective == "loss" else self.spec.objective

    @property
    def contrast(self) -> str | None:
        """The ContraFeat loss (bi or pt) the run trains with, or None when its objective is another one."""
        return self.objective if self.objective in CONTRAST_LOSSES else None

    @property
    def trains(self) -> bool:
        return self.spec.trains

    @property
    def label(self) -> str:
        """The method name, with the contrast loss where `--loss` chose it (e.g. `ganspace+att (pt)`)."""
        return f"{self.name} ({self.loss})" if self.spec.objective == "loss" else self.name

    def renders_per_step(self, num_directions: int, batch_size: int) -> int:
        """Generator renders of one training step; 0 when nothing trains.

        Bi: 2.5 B, Pt: 2 B, LatentCLR: (K + 1) B, Recog: 2 B for batch B and K directions. It is the method's
        count: how the batch is executed (ranks, micro-batches) does not change it.
        """
        return 0 if self.objective is None else RENDER_COUNTS[self.objective].per_batch(num_directions, batch_size)


def method_spec(name: str) -> MethodSpec:
    if name not in METHODS:
        raise UserError(f"--method {name!r}: expected one of {', '.join(METHODS)}")
    return METHODS[name]


def resolve_method(name: str, loss: str) -> MethodPlan:
    """The plan of method `name` with contrast `loss` (a UserError for an unknown name)."""
    return MethodPlan(name, method_spec(name), loss)
