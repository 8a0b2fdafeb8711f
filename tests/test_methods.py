"""The method registry: per-method settings and rules, fixed bases (GANSpace, SeFa), LatentCLR and Recog pieces."""
import math
import re

import pytest
import torch
from stylegan2_factories import random_generator
from tiny_world import TinyGenerator, TinySensor

from contrafeat.cli import build_parser
from contrafeat.discovery.config import DiscoveryConfig, build_config
from contrafeat.discovery.latentclr import SynthesisBlockFeatures, latentclr_source, nt_xent_loss
from contrafeat.discovery.methods import build_navigator, uses_sensor
from contrafeat.discovery.objectives import MIN_STRENGTH_FRACTION, FeatureSource, LatentCLR, Recog, build_objective
from contrafeat.discovery.registry import METHODS
from contrafeat.discovery.subspace import compute_pca
from contrafeat.errors import UserError


def tiny_config(method: str, **overrides):
    return build_config("shapes3d", None, {"method": method, "num_directions": 3, "subspace_dim": 4, "batch_size": 4, **overrides})


def test_discover_help_lists_every_method():
    discover = build_parser()._subparsers._group_actions[0].choices["discover"]
    text = discover.format_help()
    assert len(METHODS) == 12 and "best-linear" in METHODS
    for name in METHODS:
        assert name in text, name


def test_per_method_settings():
    latentclr = build_config("shapes3d", None, {"method": "latentclr"})
    assert (latentclr.lr, latentclr.strength_range, latentclr.diversity_weight) == (0.01, 0.5, 0.0)
    assert (latentclr.attention, latentclr.batch_size, latentclr.cos_mode) == ("none", 4, "abs")
    recog = build_config("shapes3d", None, {"method": "recog+att"})
    assert (recog.attention, recog.lr, recog.batch_size, recog.recog_lr) == ("softmax", 0.01, 8, 1e-3)
    ganspace = build_config("shapes3d", None, {"method": "ganspace"})
    assert (ganspace.attention, ganspace.steps) == ("none", 0)
    assert build_config("ffhq", None, {"method": "recog"}).steps == 37_500
    assert build_config("shapes3d", None, {"method": "latentclr", "lr": 0.2}).lr == 0.2


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"method": "ganspace", "steps": 5}, "--steps 5: method ganspace has nothing to train"),
        ({"method": "ganspace", "attention": "softmax"}, "use --method ganspace+att"),
        ({"method": "sefa+att", "attention": "none"}, "use --method sefa"),
        ({"method": "ganspace+att", "loss": "nt"}, "--loss 'nt': expected one of bi, pt"),
        ({"method": "sefa+att", "loss": "bi", "batch_size": 5}, "expected an even number"),
        ({"method": "latentclr", "batch_size": 1}, "LatentCLR's positives"),
        ({"method": "latentclr", "latentclr_temperature": 0}, "--latentclr-temperature 0"),
        ({"method": "latentclr", "latentclr_temperature_mode": "power"}, "--latentclr-temperature-mode 'power'"),
        ({"method": "recog", "recog_depth": 0}, "--recog-depth 0"),
        ({"method": "recog", "recog_lr": 0.0}, "--recog-lr 0.0: expected a positive number at most 1e6"),
        ({"method": "recog", "recog_lr": -1e-4}, "--recog-lr -0.0001: expected a positive number at most 1e6"),
        ({"method": "recog", "recog_lr": float("nan")}, "--recog-lr nan: expected a positive number at most 1e6"),
        ({"method": "recog", "recog_lr": float("inf")}, "--recog-lr inf: expected a positive number at most 1e6"),
        ({"method": "recog", "lr": float("nan")}, "--lr nan: expected a positive number at most 1e6"),
    ],
)
def test_method_rules_are_user_errors(overrides, message):
    with pytest.raises(UserError, match=re.escape(message)):
        build_config("shapes3d", None, overrides)


def test_ganspace_directions_are_orthonormal_pcs_ordered_by_explained_variance():
    generator = TinyGenerator()
    pca = compute_pca(generator, num_samples=2000, batch_size=500, progress=False)
    navigator = build_navigator(tiny_config("ganspace", num_directions=4), generator, pca)
    assert list(navigator.parameters()) == [] and build_objective(tiny_config("ganspace", num_directions=4), generator) is None
    units = navigator.directions() / math.sqrt(generator.w_dim)
    assert torch.allclose(units @ units.T, torch.eye(4), atol=1e-5)
    assert torch.allclose(units, pca.basis[:, :4].T.float(), atol=1e-6)
    w = generator.mapping(torch.randn(4000, generator.z_dim, generator=torch.Generator().manual_seed(5)))
    variance = ((w - w.mean(0)) @ units.T).var(0)
    assert torch.all(variance[:-1] > variance[1:])
    assert torch.allclose(navigator.attention(), torch.full((4, generator.num_ws), 1 / generator.num_ws))


class HandAffineGenerator(TinyGenerator):
    """The tiny generator with style-affine weights chosen so that SeFa's answer is known by hand."""

    def style_affine_weights(self) -> list[torch.Tensor]:
        e = torch.eye(6)
        v = torch.tensor([0.0, 3.0, 4.0, 0.0, 0.0, 0.0])
        return [2 * e[0].repeat(3, 1), torch.stack([2 * e[0], v, v]), 7 * e[5][None]]


def test_sefa_directions_match_a_hand_computed_factorisation():
    # Rows normalised: four times e0, twice (0, .6, .8, 0, 0, 0), once e5, so A^T A = 4 e0 e0^T + 2 v v^T + e5 e5^T:
    # eigenvalues 4, 2, 1 with eigenvectors e0, v, e5.
    generator = HandAffineGenerator()
    pca = compute_pca(generator, num_samples=500, batch_size=250, progress=False)
    navigator = build_navigator(tiny_config("sefa"), generator, pca)
    expected = torch.tensor([[1.0, 0, 0, 0, 0, 0], [0, 0.6, 0.8, 0, 0, 0], [0, 0, 0, 0, 0, 1.0]]) * math.sqrt(6)
    assert torch.allclose(navigator.directions(), expected, atol=1e-5)
    assert list(navigator.parameters()) == []
    att = build_navigator(tiny_config("sefa+att"), generator, pca)
    assert torch.allclose(att.directions(), expected, atol=1e-5)
    assert [name for name, _ in att.named_parameters()] == ["attention_branch.logits"]


def test_nt_xent_by_hand():
    # K = 2 directions on B = 2 codes, changes[k, b]. |cos| (r = 1/sqrt 2): (0,0)-(0,1) 1, (0,0)-(1,0) 0,
    # (0,0)-(1,1) r, (0,1)-(1,0) 0, (0,1)-(1,1) r, (1,0)-(1,1) r. Each anchor's loss is
    # log(mean over the other direction's changes of e^{t sim}) - log(mean over its own direction's other changes of e^{t sim}).
    changes = torch.tensor([[[1.0, 0.0], [-3.0, 0.0]], [[0.0, 2.0], [1.0, 1.0]]])

    def by_hand(t: float, r: float) -> float:
        anchor_00 = math.log((math.exp(t * 0) + math.exp(t * r)) / 2) - t * 1  # anchor (0, 1) alike
        anchor_10 = math.log((math.exp(t * 0) + math.exp(t * 0)) / 2) - t * r
        anchor_11 = math.log((math.exp(t * r) + math.exp(t * r)) / 2) - t * r
        return (2 * anchor_00 + anchor_10 + anchor_11) / 4

    r = 1 / math.sqrt(2)
    assert nt_xent_loss(changes, 0.5, "multiply", "abs").item() == pytest.approx(by_hand(0.5, r), abs=1e-6)
    assert nt_xent_loss(changes, 0.5, "divide", "abs").item() == pytest.approx(by_hand(2.0, r), abs=1e-6)
    assert nt_xent_loss(changes, 0.5, "multiply", "squared").item() == pytest.approx(by_hand(0.5, r**2), abs=1e-6)
    swapped = changes.clone()
    swapped[1, 1] = torch.tensor([1.0, 0.0])  # code 1 of direction 1 now looks like direction 0
    assert nt_xent_loss(swapped, 0.5, "divide") > nt_xent_loss(changes, 0.5, "divide")
    with pytest.raises(ValueError, match="temperature mode"):
        nt_xent_loss(changes, 0.5, "power")
    with pytest.raises(ValueError, match="at least 2 of each"):
        nt_xent_loss(changes[:, :1], 0.5)


def test_block_features_equal_the_full_synthesis_blocks():
    generator = random_generator(with_discriminator=False).eval().requires_grad_(False)
    ws = generator.broadcast(generator.mapping(torch.randn(2, generator.z_dim, generator=torch.Generator().manual_seed(0))))
    captured = []
    hooks = [block.register_forward_hook(lambda module, inputs, output: captured.append(output[0])) for block in generator.synthesis.blocks()]
    generator.synthesis(ws, noise_mode="const")
    for hook in hooks:
        hook.remove()
    features = SynthesisBlockFeatures(generator, "const").of_codes(ws)
    assert [tuple(f.shape) for f in features] == [(2, 16, 4, 4), (2, 12, 8, 8), (2, 8, 16, 16)]
    for ours, reference in zip(features, captured):
        assert torch.equal(ours, reference)


def test_latentclr_reads_the_generator_when_it_can():
    stylegan = random_generator(with_discriminator=False)
    assert latentclr_source(tiny_config("latentclr"), stylegan) == "generator"
    assert not uses_sensor(tiny_config("latentclr"), stylegan)
    assert latentclr_source(tiny_config("latentclr"), TinyGenerator()) == "sensor"
    assert uses_sensor(tiny_config("latentclr"), TinyGenerator())
    assert latentclr_source(tiny_config("latentclr", latentclr_features="sensor"), stylegan) == "sensor"
    with pytest.raises(UserError, match="--latentclr-features generator: this generator has no synthesis blocks"):
        latentclr_source(tiny_config("latentclr", latentclr_features="generator"), TinyGenerator())


def gradients_of(method: str, generator, sensor):
    config = tiny_config(method, noise_mode="const")
    pca = compute_pca(generator, num_samples=500, batch_size=250, progress=False)
    navigator, objective = build_navigator(config, generator, pca), build_objective(config, generator)
    w = generator.mapping(torch.randn(4, generator.z_dim, generator=torch.Generator().manual_seed(1)))
    ws = generator.broadcast(w)
    terms = objective(ws, navigator, FeatureSource(generator, sensor, "const"), torch.Generator().manual_seed(2))
    sum(terms.values()).backward()
    return terms, navigator, objective


def test_latentclr_objective_trains_directions_and_attention_on_generator_features():
    terms, navigator, objective = gradients_of("latentclr+att", random_generator(with_discriminator=False).requires_grad_(False), None)
    assert isinstance(objective, LatentCLR) and objective.render_count.per_unit(3) == 4
    assert set(terms) == {"nt_xent"} and torch.isfinite(terms["nt_xent"])
    assert navigator.direction_branch.coefficients.grad.abs().sum() > 0
    assert navigator.attention_branch.logits.grad.abs().sum() > 0


def test_recog_objective_trains_the_navigator_and_the_reconstructor():
    terms, navigator, objective = gradients_of("recog", TinyGenerator(), None)
    assert isinstance(objective, Recog) and set(terms) == {"recognition", "strength"}
    assert 0 < terms["recognition"].item() < 5
    assert navigator.direction_branch.coefficients.grad.abs().sum() > 0
    assert all(p.grad is not None for p in objective.reconstructor.parameters())
    logits, strengths = objective.reconstructor(torch.zeros(5, 3, 16, 16), torch.zeros(5, 3, 16, 16))
    assert logits.shape == (5, 3) and strengths.shape == (5,)
    parameters, lr = objective.own_optimisers()["reconstructor"]
    assert lr == DiscoveryConfig.recog_lr == 1e-3 and {id(p) for p in parameters} == {id(p) for p in objective.reconstructor.parameters()}


def test_recog_draws_no_strength_too_small_to_tell():
    recog = build_objective(tiny_config("recog"), TinyGenerator())
    draws = recog.draw(20_000, 3, torch.Generator().manual_seed(0))
    magnitude, minimum = draws.strength.abs(), MIN_STRENGTH_FRACTION * recog.strength_range
    assert recog.strength_range == 0.5 and minimum == pytest.approx(0.5 / 12)
    assert magnitude.min() >= minimum and magnitude.max() <= recog.strength_range
    assert (magnitude == minimum).float().mean().item() == pytest.approx(MIN_STRENGTH_FRACTION, abs=0.01)  # the raised share
    assert (draws.strength < 0).float().mean().item() == pytest.approx(0.5, abs=0.02)
    assert set(draws.direction.tolist()) == {0, 1, 2}


def test_contrast_of_ganspace_att_trains_only_the_attention():
    terms, navigator, objective = gradients_of("ganspace+att", TinyGenerator(), TinySensor())
    assert set(terms) == {"contrast"}
    assert [name for name, _ in navigator.named_parameters()] == ["attention_branch.logits"]
    assert navigator.attention_branch.logits.grad.abs().sum() > 0
