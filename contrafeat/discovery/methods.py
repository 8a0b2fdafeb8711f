"""The method registry: which directions, which attention and which objective each `--method` name trains."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from contrafeat.discovery.latentclr import has_synthesis_blocks
from contrafeat.discovery.navigator import Navigator
from contrafeat.discovery.objectives import ContrastBi, ContrastPt, LatentCLR, Objective, Recog
from contrafeat.discovery.subspace import PCABasis, sefa_basis
from contrafeat.errors import UserError
from contrafeat.gan.interface import GeneratorLike

if TYPE_CHECKING:
    from contrafeat.discovery.config import DiscoveryConfig


@dataclass(frozen=True)
class MethodSpec:
    """What a method is made of.

    directions: `learned` (trained in the top-k PCA subspace), `ganspace` (the top PCs of W, fixed),
    `sefa` (SeFa's closed-form eigenvectors, fixed), `truth` (the generator's exact per-factor edits with
    their own layer weights, for generators that know them) or `best-linear` (per factor, the optimised linear
    edit, for generators with factor levels). attention: the attention mode the method requires, or None when
    `--attention` decides (or, for the answer keys, when the edits bring their own). objective: `bi`, `pt`,
    `latentclr`, `recog`, `loss` (the contrast chosen with `--loss`) or None (nothing to train).
    """

    directions: str
    attention: str | None
    objective: str | None
    summary: str

    @property
    def trains(self) -> bool:
        return self.objective is not None


METHODS: dict[str, MethodSpec] = {
    "contra-bi": MethodSpec("learned", None, "bi", "ContraFeat, Bi loss: the same edit on two codes changes the sensor features alike, another edit does not"),
    "contra-pt": MethodSpec("learned", None, "pt", "ContraFeat, Pt loss: each direction's feature change matches its own learned RGB prototype and no other"),
    "ganspace": MethodSpec("ganspace", "none", None, "GANSpace: the top principal components of W on every layer; nothing is trained"),
    "ganspace+att": MethodSpec("ganspace", "softmax", "loss", "the GANSpace directions, fixed, with a layer attention trained by the --loss contrast"),
    "sefa": MethodSpec("sefa", "none", None, "SeFa: top eigenvectors of the stacked, row-normalised style-affine weights on every layer; nothing is trained"),
    "sefa+att": MethodSpec("sefa", "softmax", "loss", "the SeFa directions, fixed, with a layer attention trained by the --loss contrast"),
    "latentclr": MethodSpec("learned", "none", "latentclr", "LatentCLR: NT-Xent over feature changes, the same direction on other codes is the positive"),
    "latentclr+att": MethodSpec("learned", "softmax", "latentclr", "LatentCLR with the layer attention trained alongside"),
    "recog": MethodSpec("learned", "none", "recog", "Voynov & Babenko: a reconstructor must tell from an image pair which direction moved and how far"),
    "recog+att": MethodSpec("learned", "softmax", "recog", "Recog with the layer attention trained alongside"),
    "truth": MethodSpec(
        "truth", None, None, "the world's exact per-factor edits with their own layer weights (the upper bound of every measure); nothing is trained"
    ),
    "best-linear": MethodSpec(
        "best-linear",
        None,
        None,
        "per factor, the linear W+ edit (vector and layer weights) that an optimiser finds to move that factor most alone, "
        "read from the world's factor levels (the upper bound of every linear method); nothing is trained",
    ),
}
"""Every `--method` name, in the order the paper's tables list them, then the answer keys."""
ANSWER_KEYS = ("truth", "best-linear")
"""Direction kinds read from the world's known factors instead of discovered (see `discovery.run.answer_key_directions`)."""

CONTRAST_LOSSES = ("bi", "pt")

OBJECTIVES: dict[str, type[Objective]] = {"bi": ContrastBi, "pt": ContrastPt, "latentclr": LatentCLR, "recog": Recog}
"""The objective class of each MethodSpec.objective name (`loss` resolves to the --loss contrast)."""


def method_spec(name: str) -> MethodSpec:
    if name not in METHODS:
        raise UserError(f"--method {name!r}: expected one of {', '.join(METHODS)}")
    return METHODS[name]


def contrast_loss(config: DiscoveryConfig) -> str | None:
    """The ContraFeat loss (bi or pt) a run trains with, or None when its objective is another one."""
    objective = method_spec(config.method).objective
    if objective == "loss":
        return config.loss
    return objective if objective in CONTRAST_LOSSES else None


def objective_class(config: DiscoveryConfig) -> type[Objective] | None:
    """The class of the objective a run trains with; None for methods with nothing to train."""
    objective = method_spec(config.method).objective
    return None if objective is None else OBJECTIVES[contrast_loss(config) or objective]


def renders_per_step(config: DiscoveryConfig) -> int:
    """Generator renders (images, edited and unedited) of one training step of the run; 0 when nothing trains.

    Bi: 2.5 B, Pt: 2 B, LatentCLR: (K + 1) B, Recog: 2 B for batch B and K directions. It is the method's
    count: how the batch is executed (ranks, micro-batches) does not change it.
    """
    objective = objective_class(config)
    return 0 if objective is None else objective.renders_per_batch(config.num_directions, config.batch_size)


def method_label(config: DiscoveryConfig) -> str:
    """The method name, with the contrast loss where `--loss` chose it (e.g. `ganspace+att (pt)`)."""
    return f"{config.method} ({config.loss})" if method_spec(config.method).objective == "loss" else config.method


def latentclr_source(config: DiscoveryConfig, generator: GeneratorLike) -> str:
    """Where LatentCLR reads its features: `generator` (first synthesis blocks) or `sensor`; resolves `auto`."""
    if config.latentclr_features == "auto":
        return "generator" if has_synthesis_blocks(generator) else "sensor"
    if config.latentclr_features == "generator" and not has_synthesis_blocks(generator):
        raise UserError("--latentclr-features generator: this generator has no synthesis blocks to read features from; use sensor or auto")
    return config.latentclr_features


def uses_sensor(config: DiscoveryConfig, generator: GeneratorLike) -> bool:
    """Whether the run's objective reads sensor features (the contrasts, and LatentCLR without generator features)."""
    objective = method_spec(config.method).objective
    return contrast_loss(config) is not None or (objective == "latentclr" and latentclr_source(config, generator) == "sensor")


def describe_method(config: DiscoveryConfig, generator: GeneratorLike) -> str:
    """One line on what the run does, for the console."""
    line = f"{method_label(config)}: {method_spec(config.method).summary}"
    if method_spec(config.method).objective == "latentclr":
        if latentclr_source(config, generator) == "generator":
            line += "; features from the generator's first synthesis blocks"
        else:
            reason = " (the generator has no synthesis blocks)" if not has_synthesis_blocks(generator) else ""
            line += f"; features from the sensor {config.sensor}{reason}"
    return line


def direction_basis(config: DiscoveryConfig, generator: GeneratorLike, pca: PCABasis) -> torch.Tensor:
    """The candidate axes [C, n] of the direction branch: PCA axes, or SeFa's eigenvectors."""
    if method_spec(config.method).directions == "sefa":
        return sefa_basis(generator)[0].float()
    return pca.basis


def build_navigator(config: DiscoveryConfig, generator: GeneratorLike, pca: PCABasis) -> Navigator:
    """The method's direction branch (learned in the top-k PCA subspace, or fixed) with the configured attention."""
    learned = method_spec(config.method).directions == "learned"
    return Navigator(
        num_directions=config.num_directions,
        num_ws=generator.num_ws,
        w_dim=generator.w_dim,
        basis=direction_basis(config, generator, pca),
        subspace_dim=min(config.subspace_dim, generator.w_dim) if learned else None,
        direction_mode="learned" if learned else "fixed",
        attention_mode=config.attention,
        seed=config.seed,
    )


def build_objective(config: DiscoveryConfig, generator: GeneratorLike) -> Objective | None:
    """The loss the method trains with; None for methods with nothing to train."""
    objective = method_spec(config.method).objective
    if objective is None:
        return None
    if objective == "latentclr":
        return LatentCLR(
            config.num_directions,
            config.step_scale,
            config.latentclr_temperature,
            config.latentclr_temperature_mode,
            config.cos_mode,
            generator if latentclr_source(config, generator) == "generator" else None,
            config.noise_mode,
        )
    if objective == "recog":
        return Recog(
            config.num_directions,
            config.step_scale,
            config.recog_shift_weight,
            config.recog_width,
            config.recog_depth,
            config.seed,
            config.recog_lr,
        )
    if contrast_loss(config) == "bi":
        return ContrastBi(config.step_scale, config.mask, config.cos_mode)
    return ContrastPt(
        config.num_directions,
        generator.img_resolution,
        config.step_scale,
        config.mask,
        config.cos_mode,
        seed=config.seed,
    )
