"""The method registry: which navigator and which objective each `--method` name trains."""
from __future__ import annotations

from contrafeat.discovery.config import DiscoveryConfig
from contrafeat.discovery.navigator import Navigator
from contrafeat.discovery.objectives import ContrastBi, ContrastPt, Objective
from contrafeat.discovery.subspace import PCABasis
from contrafeat.gan.interface import GeneratorLike


def build_navigator(config: DiscoveryConfig, generator: GeneratorLike, pca: PCABasis) -> Navigator:
    """The learned direction branch in the top-k PCA subspace with the configured attention branch."""
    return Navigator(
        num_directions=config.num_directions,
        num_ws=generator.num_ws,
        w_dim=generator.w_dim,
        basis=pca.basis,
        subspace_dim=min(config.subspace_dim, generator.w_dim),
        direction_mode="learned",
        attention_mode=config.attention,
        seed=config.seed,
    ).to(config.device)


def build_objective(config: DiscoveryConfig, generator: GeneratorLike) -> Objective:
    """The loss the method trains with."""
    if config.method == "contra-bi":
        return ContrastBi(config.step_scale, config.mask, config.cos_mode)
    return ContrastPt(
        config.num_directions,
        generator.img_resolution,
        config.step_scale,
        config.mask,
        config.cos_mode,
        seed=config.seed,
    ).to(config.device)
