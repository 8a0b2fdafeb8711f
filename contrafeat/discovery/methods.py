"""What each method builds from its plan (`DiscoveryConfig.plan`): the sensor question, the description, the navigator.
The objective is built by `objectives.build_objective`, from the class its plan names."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from contrafeat.discovery.latentclr import has_synthesis_blocks, latentclr_source
from contrafeat.discovery.navigator import Navigator
from contrafeat.discovery.subspace import PCABasis, sefa_basis
from contrafeat.gan.interface import GeneratorLike

if TYPE_CHECKING:
    from contrafeat.discovery.config import DiscoveryConfig


def uses_sensor(config: DiscoveryConfig, generator: GeneratorLike) -> bool:
    """Whether the run's objective reads sensor features (the contrasts, and LatentCLR without generator features)."""
    plan = config.plan()
    return plan.contrast is not None or (plan.objective == "latentclr" and latentclr_source(config, generator) == "sensor")


def describe_method(config: DiscoveryConfig, generator: GeneratorLike) -> str:
    """One line on what the run does, for the console."""
    plan = config.plan()
    line = f"{plan.label}: {plan.spec.summary}"
    if plan.objective == "latentclr":
        if latentclr_source(config, generator) == "generator":
            line += "; features from the generator's first synthesis blocks"
        else:
            reason = " (the generator has no synthesis blocks)" if not has_synthesis_blocks(generator) else ""
            line += f"; features from the sensor {config.sensor}{reason}"
    return line


def direction_basis(config: DiscoveryConfig, generator: GeneratorLike, pca: PCABasis) -> torch.Tensor:
    """The candidate axes [C, n] of the direction branch: PCA axes, or SeFa's eigenvectors."""
    if config.plan().spec.directions == "sefa":
        return sefa_basis(generator)[0].float()
    return pca.basis


def build_navigator(config: DiscoveryConfig, generator: GeneratorLike, pca: PCABasis) -> Navigator:
    """The method's direction branch (learned in the top-k PCA subspace, or fixed) with the configured attention."""
    learned = config.plan().spec.directions == "learned"
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
