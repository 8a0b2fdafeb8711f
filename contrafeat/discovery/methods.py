"""What each method builds from its registry entry (`discovery.registry`): the navigator and the objective."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from contrafeat.discovery.latentclr import has_synthesis_blocks
from contrafeat.discovery.navigator import Navigator
from contrafeat.discovery.objectives import ContrastBi, ContrastPt, LatentCLR, Objective, Recog
from contrafeat.discovery.registry import contrast_loss, method_label, method_spec, objective_name
from contrafeat.discovery.subspace import PCABasis, sefa_basis
from contrafeat.errors import UserError
from contrafeat.gan.interface import GeneratorLike

if TYPE_CHECKING:
    from contrafeat.discovery.config import DiscoveryConfig


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
        subspace_dim=config.subspace_dim if learned else None,
        direction_mode="learned" if learned else "fixed",
        attention_mode=config.attention,
        seed=config.seed,
    )


def latentclr_objective(config: DiscoveryConfig, generator: GeneratorLike) -> Objective:
    source = generator if latentclr_source(config, generator) == "generator" else None
    return LatentCLR(
        config.num_directions,
        config.strength_range,
        config.latentclr_temperature,
        config.latentclr_temperature_mode,
        config.cos_mode,
        source,
        config.noise_mode,
    )


def recog_objective(config: DiscoveryConfig, generator: GeneratorLike) -> Objective:
    return Recog(
        config.num_directions,
        config.strength_range,
        config.recog_strength_weight,
        config.recog_width,
        config.recog_depth,
        config.seed,
        config.recog_lr,
    )


def bi_objective(config: DiscoveryConfig, generator: GeneratorLike) -> Objective:
    return ContrastBi(config.strength_range, config.mask, config.cos_mode)


def pt_objective(config: DiscoveryConfig, generator: GeneratorLike) -> Objective:
    return ContrastPt(config.num_directions, generator.img_resolution, config.strength_range, config.mask, config.cos_mode, seed=config.seed)


OBJECTIVE_BUILDERS: dict[str, Callable[[DiscoveryConfig, GeneratorLike], Objective]] = {
    "bi": bi_objective,
    "pt": pt_objective,
    "latentclr": latentclr_objective,
    "recog": recog_objective,
}
"""The builder of each objective name of the registry (`loss` resolved to the --loss contrast)."""


def build_objective(config: DiscoveryConfig, generator: GeneratorLike) -> Objective | None:
    """The loss the method trains with; None for methods with nothing to train."""
    objective = objective_name(config)
    return None if objective is None else OBJECTIVE_BUILDERS[objective](config, generator)
