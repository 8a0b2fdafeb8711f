"""The StyleGAN2 networks against outputs of the official code (shared fixtures), and the Generator API."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from stylegan2_factories import FIXTURES, random_generator

from contrafeat.gan.checkpoints import load_checkpoint
from contrafeat.gan.interface import GeneratorLike
from contrafeat.gan.stylegan2 import Generator, SynthesisLayer

IMAGE_TOL = 1e-4
LATENT_TOL = 1e-5
FIXTURE_NAMES = ["ada_size32.pkl", "rosinality_size32.pt"]

needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"shared StyleGAN2 fixtures not found at {FIXTURES}")


def reference_outputs(generator: Generator, ref: dict[str, np.ndarray], fused: bool | None) -> dict[str, tuple[torch.Tensor, float]]:
    """Our value and tolerance for every key of a *_ref.npz."""
    z, z_plus = torch.from_numpy(ref["z"]), torch.from_numpy(ref["z_plus"])
    w = generator.mapping(z)
    ws = generator.broadcast(w)
    ws_plus = torch.stack([generator.mapping(z_plus[:, layer]) for layer in range(z_plus.shape[1])], dim=1)
    images = generator.synthesis(ws, noise_mode="const", fused_modconv=fused)
    noise_layers = [layer for block in generator.synthesis.blocks() for layer in block.layers() if isinstance(layer, SynthesisLayer)]
    ours = {
        "z": (z, 0.0),
        "z_plus": (z_plus, 0.0),
        "num_ws": (torch.tensor(generator.num_ws), 0.0),
        "w": (w, LATENT_TOL),
        "ws": (ws, LATENT_TOL),
        "w_psi07": (generator.mapping(z, truncation_psi=0.7), LATENT_TOL),
        "ws_psi07": (generator.truncate(ws, 0.7), LATENT_TOL),
        "ws_plus": (ws_plus, LATENT_TOL),
        "latent_avg": (generator.w_avg, 0.0),
        "w_avg": (generator.w_avg, 0.0),
        "images": (images, IMAGE_TOL),
        "images_from_z": (generator(z, fused_modconv=fused), IMAGE_TOL),
        "images_psi07": (generator(z, truncation_psi=0.7, fused_modconv=fused), IMAGE_TOL),
        "images_plus": (generator.synthesis(torch.from_numpy(ref["ws_plus"]), fused_modconv=fused), IMAGE_TOL),
        "d_logits_on_images": (generator.discriminator(torch.from_numpy(ref["images"])), IMAGE_TOL),
    }
    ours.update({f"noise_{index}": (layer.noise_const[None, None], 0.0) for index, layer in enumerate(noise_layers)})
    return ours


@needs_fixtures
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "non-fused"])
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_reference_arrays_are_reproduced(name: str, fused: bool) -> None:
    generator = load_checkpoint(FIXTURES / name)
    ref = dict(np.load(FIXTURES / name.replace(".pkl", "_ref.npz").replace(".pt", "_ref.npz")))
    with torch.no_grad():
        ours = reference_outputs(generator, ref, fused)
    missing = sorted(set(ref) - set(ours))
    assert not missing, f"reference arrays without a check: {missing}"
    for key, expected in ref.items():
        value, tolerance = ours[key]
        assert tuple(value.shape) == expected.shape, key
        difference = (value.double() - torch.from_numpy(expected).double()).abs().max().item()
        assert difference <= tolerance, f"{name} {key}: max abs diff {difference:.3g} > {tolerance:g}"


@needs_fixtures
@pytest.mark.parametrize(
    "name, config",
    [
        ("ada_size32.pkl", {"z_dim": 64, "w_dim": 64, "mapping_layers": 2, "channels": {"4": 64, "8": 64, "16": 64, "32": 32}}),
        ("rosinality_size32.pt", {"z_dim": 128, "w_dim": 128, "mapping_layers": 4, "channels": {"4": 32, "8": 32, "16": 32, "32": 32}}),
    ],
)
def test_fixture_architecture_is_read_from_the_file(name: str, config: dict) -> None:
    generator = load_checkpoint(FIXTURES / name)
    assert {key: generator.config[key] for key in config} == config
    assert (generator.num_ws, generator.img_resolution, generator.img_channels) == (8, 32, 3)
    assert generator.config["mapping_lr_multiplier"] == pytest.approx(0.01)
    assert isinstance(generator, GeneratorLike)
    assert not generator.training and not any(p.requires_grad for p in generator.parameters())


def test_config_is_json_and_rebuilds_the_same_architecture() -> None:
    generator = random_generator(conv_clamp=256.0, mapping_lr_multiplier=0.05, mapping_layer_features=20)
    config = json.loads(json.dumps(generator.config))
    rebuilt = Generator.from_config(config)
    assert rebuilt.config == generator.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in generator.state_dict().items()}
    assert config["discriminator"]["mbstd_num_channels"] == 2 and config["mapping_layer_features"] == 20


def test_broadcast_truncate_and_forward_agree() -> None:
    generator = random_generator()
    z = torch.randn(3, generator.z_dim, generator=torch.Generator().manual_seed(1))
    w = generator.mapping(z)
    ws = generator.broadcast(w)
    assert ws.shape == (3, generator.num_ws, generator.w_dim) and torch.equal(ws[:, -1], w)
    truncated = generator.truncate(ws, 0.5, cutoff=2)
    assert torch.allclose(truncated[:, :2], generator.w_avg + 0.5 * (ws[:, :2] - generator.w_avg), atol=1e-6)
    assert torch.equal(truncated[:, 2:], ws[:, 2:])
    assert torch.allclose(generator.mapping(z, truncation_psi=0.5), generator.truncate(ws, 0.5)[:, 0], atol=1e-6)
    images = generator(z, truncation_psi=0.5, truncation_cutoff=2)
    assert torch.equal(images, generator.synthesis(truncated))
    assert images.shape == (3, 3, 16, 16)


def test_noise_modes() -> None:
    generator = random_generator()
    ws = generator.broadcast(generator.mapping(torch.randn(2, generator.z_dim)))
    const = generator.synthesis(ws, noise_mode="const")
    assert torch.equal(const, generator.synthesis(ws, noise_mode="const"))
    torch.manual_seed(0)
    random_a = generator.synthesis(ws, noise_mode="random")
    torch.manual_seed(0)
    assert torch.equal(random_a, generator.synthesis(ws, noise_mode="random"))
    assert (random_a - const).abs().max() > 1e-3
    none = generator.synthesis(ws, noise_mode="none")
    for layer in [m for m in generator.modules() if isinstance(m, SynthesisLayer)]:
        layer.noise_strength.zero_()
    assert torch.equal(none, generator.synthesis(ws, noise_mode="const"))
    with pytest.raises(ValueError, match="noise_mode"):
        generator.synthesis(ws, noise_mode="fixed")
    with pytest.raises(ValueError, match=r"ws: expected shape \[B, 6, 16\]"):
        generator.synthesis(ws[:, :5])


def test_conv_clamp_limits_every_layer_output() -> None:
    clamped = random_generator(conv_clamp=0.05)
    ws = clamped.broadcast(clamped.mapping(torch.randn(2, clamped.z_dim)))
    outputs = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for m in clamped.modules() if isinstance(m, SynthesisLayer)]
    clamped.synthesis(ws)
    for hook in hooks:
        hook.remove()
    assert len(outputs) == 5 and all(out.abs().max() <= 0.05 * 2**0.5 + 1e-7 for out in outputs)
    assert (clamped.synthesis(ws) - random_generator().synthesis(ws)).abs().max() > 1e-3


def test_style_affine_weights_follow_layer_order() -> None:
    generator = random_generator(channels={4: 16, 8: 12, 16: 8})
    weights = generator.style_affine_weights()
    # b4: conv1 (16), torgb (16); b8: conv0 (16 in), conv1 (12), torgb (12); b16: conv0 (12 in), conv1 (8), torgb (8)
    assert [tuple(w.shape) for w in weights] == [(c, 16) for c in (16, 16, 16, 12, 12, 12, 8, 8)]
    block = generator.synthesis.b8
    assert torch.equal(weights[3], block.conv1.affine.weight / 16**0.5)
    assert torch.allclose(weights[4], block.torgb.affine.weight / 16**0.5 / 12**0.5)


def test_discriminator_returns_block_features() -> None:
    generator = random_generator(channels={4: 16, 8: 12, 16: 8, 32: 6})
    images = torch.randn(6, 3, 32, 32)  # 6 is not a multiple of the group size 4 -> groups of 3
    generator.discriminator.b4.mbstd.group_size = 4
    logits, features = generator.discriminator(images, return_features=True)
    assert logits.shape == (6, 1)
    assert [tuple(f.shape) for f in features] == [(6, 8, 16, 16), (6, 12, 8, 8), (6, 16, 4, 4), (6, 16, 4, 4)]
    assert torch.equal(logits, generator.discriminator(images))
    with pytest.raises(ValueError, match=r"\[B, 3, 32, 32\]"):
        generator.discriminator(torch.randn(2, 3, 16, 16))
