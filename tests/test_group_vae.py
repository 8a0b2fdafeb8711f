"""Group VAE: architecture shapes, the Ada-GVAE mask and aggregation, learning, exact resume."""
import math

import numpy as np
import pytest
import torch

from contrafeat.errors import UserError
from contrafeat.evaluation.group_vae import (
    VAE,
    Discriminator,
    ada_gvae_loss,
    ada_shared_mask,
    aggregate_posteriors,
    bernoulli_reconstruction,
    beta_vae_loss,
    encode_mean,
    factor_vae_step,
    label_shared_mask,
    pair_divergence,
    permute_dims,
    train_vae,
)

pytestmark = pytest.mark.usefixtures("one_thread")

LATENT = 4


def render(factors):
    """64x64 RGB in [0, 1] from three factors in 0..3: top brightness, square position, bottom brightness."""
    images = torch.zeros(len(factors), 3, 64, 64)
    images[:, 0, :32] = factors[:, 0, None, None] / 3
    images[:, 2, 32:] = factors[:, 2, None, None] / 3
    for row, position in enumerate(factors[:, 1].long().tolist()):
        images[row, 1, 24:40, 8 + 12 * position : 20 + 12 * position] = 1.0
    return images


def sample_pairs(batch, generator):
    """Pairs differing in one labelled factor."""
    first = torch.randint(4, (batch, 3), generator=generator)
    labels = torch.randint(3, (batch,), generator=generator)
    second = first.clone()
    second[torch.arange(batch), labels] = (first[torch.arange(batch), labels] + torch.randint(1, 4, (batch,), generator=generator)) % 4
    return render(first.float()), render(second.float()), labels


def sample_images(batch, generator):
    return render(torch.randint(4, (batch, 3), generator=generator).float())


class PosteriorTable(torch.nn.Module):
    """A stand-in model whose 'images' are their own posteriors [mean | logvar]."""

    def encode(self, x):
        return x[:, :2], x[:, 2:]

    def decode(self, codes):
        return torch.zeros(len(codes), 4)


def test_encoder_and_decoder_shapes_at_64():
    model = VAE(latent_dim=LATENT)
    images = torch.rand(2, 3, 64, 64)
    assert model.encoder.trunk[:9](images).shape == (2, 1024)
    assert [tuple(layer.kernel_size) for layer in model.encoder.trunk if isinstance(layer, torch.nn.Conv2d)] == [(4, 4), (4, 4), (2, 2), (2, 2)]
    mean, logvar = model.encode(images)
    assert mean.shape == logvar.shape == (2, LATENT)
    assert model.decode(mean).shape == (2, 3, 64, 64)


def test_pair_divergence_is_twice_the_kl_from_first_to_second():
    mean1, logvar1, mean2, logvar2 = torch.randn(4, 3, 5).unbind(0)
    q1 = torch.distributions.Normal(mean1, (0.5 * logvar1).exp())
    q2 = torch.distributions.Normal(mean2, (0.5 * logvar2).exp())
    expected = 2 * torch.distributions.kl_divergence(q1, q2)
    torch.testing.assert_close(pair_divergence(mean1, logvar1, mean2, logvar2), expected)


def test_ada_mask_unshares_only_the_dim_that_differs():
    mean1, logvar = torch.zeros(2, 5), torch.zeros(2, 5)
    mean2 = mean1.clone()
    mean2[0, 2] = 3.0
    shared = ada_shared_mask(pair_divergence(mean1, logvar, mean2, logvar))
    assert shared[0].tolist() == [True, True, False, True, True]
    assert shared[1].tolist() == [False] * 5


def test_label_mask_unshares_exactly_the_labelled_dim():
    shared = label_shared_mask(torch.tensor([1, 3]), 4)
    assert shared.tolist() == [[True, False, True, True], [True, True, True, False]]
    with pytest.raises(UserError, match="label"):
        label_shared_mask(torch.tensor([4]), 4)


def test_aggregation_averages_means_and_variances_on_shared_dims():
    mean1, logvar1 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    mean2, logvar2 = torch.tensor([[3.0, 0.5]]), torch.tensor([[math.log(3.0), 0.0]])
    a_mean1, a_logvar1, a_mean2, a_logvar2 = aggregate_posteriors(mean1, logvar1, mean2, logvar2, torch.tensor([[True, False]]))
    torch.testing.assert_close(a_mean1, torch.tensor([[2.0, 0.0]]))
    torch.testing.assert_close(a_mean2, torch.tensor([[2.0, 0.5]]))
    torch.testing.assert_close(a_logvar1, torch.tensor([[math.log(2.0), 0.0]]))
    torch.testing.assert_close(a_logvar2, torch.tensor([[math.log(2.0), 0.0]]))


def test_ada_gvae_kl_is_taken_on_the_aggregated_posteriors():
    x1 = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    x2 = torch.tensor([[3.0, 0.5, math.log(3.0), 0.0]])
    terms = ada_gvae_loss(PosteriorTable(), x1, x2, beta=2.0, label=torch.tensor([1]))
    # Dim 0 shared: N(2, 2) for both; dim 1 own: N(0, 1) (KL 0) and N(0.5, 1) (KL 0.125).
    expected_kl = 0.5 * (5 - math.log(2.0)) + 0.5 * 0.125
    assert float(terms["kl"]) == pytest.approx(expected_kl, rel=1e-6)
    assert float(terms["loss"]) == pytest.approx(float(terms["reconstruction"]) + 2.0 * expected_kl, rel=1e-6)
    assert float(terms["shared_dims"]) == 1.0


def test_bernoulli_reconstruction_sums_pixels_and_averages_the_batch():
    images = torch.rand(3, 3, 64, 64)
    assert float(bernoulli_reconstruction(torch.zeros_like(images), images)) == pytest.approx(3 * 64 * 64 * math.log(2.0), rel=1e-5)


def test_beta_vae_loss_weights_the_kl():
    torch.manual_seed(0)
    model, images = VAE(LATENT), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        terms = beta_vae_loss(model, images, beta=4.0, generator=torch.Generator().manual_seed(1))
    assert float(terms["loss"]) == pytest.approx(float(terms["reconstruction"]) + 4.0 * float(terms["kl"]), rel=1e-6)


def test_permute_dims_shuffles_each_dim_within_the_batch():
    codes = torch.arange(40.0).reshape(10, 4)
    permuted = permute_dims(codes, torch.Generator().manual_seed(0))
    assert not torch.equal(permuted, codes)
    for column in range(4):
        assert sorted(permuted[:, column].tolist()) == codes[:, column].tolist()


def test_factor_vae_step_updates_both_networks():
    torch.manual_seed(0)
    model, discriminator = VAE(LATENT), Discriminator(LATENT, hidden=32, layers=2)
    before = [p.detach().clone() for p in list(model.parameters()) + list(discriminator.parameters())]
    terms = factor_vae_step(
        model, discriminator, torch.optim.Adam(model.parameters()), torch.optim.Adam(discriminator.parameters()),
        torch.rand(8, 3, 64, 64), gamma=10.0, generator=torch.Generator().manual_seed(0),
    )
    assert {"loss", "reconstruction", "kl", "tc", "discriminator"} <= set(terms)
    after = list(model.parameters()) + list(discriminator.parameters())
    assert all(not torch.equal(old, new) for old, new in zip(before, after))


def fixed_batch_loss(model):
    x1, x2, labels = sample_pairs(16, torch.Generator().manual_seed(99))
    with torch.no_grad():
        return float(ada_gvae_loss(model, x1, x2, beta=1.0, label=labels, generator=torch.Generator().manual_seed(0))["loss"])


def test_training_reduces_the_ada_gvae_loss():
    options = {"latent_dim": LATENT, "batch": 8, "lr": 1e-3, "progress": False}
    untrained = train_vae("ada-gvae", sample_pairs, steps=0, **options)
    trained = train_vae("ada-gvae", sample_pairs, steps=25, **options)
    assert fixed_batch_loss(trained) < 0.8 * fixed_batch_loss(untrained)


def flat_state(value, prefix=""):
    if isinstance(value, dict):
        return {key: leaf for name, item in value.items() for key, leaf in flat_state(item, f"{prefix}{name}.").items()}
    return {prefix: value}


def assert_same_state(first, second):
    a, b = flat_state(first), flat_state(second)
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("kind, sampler", [("ada-gvae", sample_pairs), ("factor-vae", sample_images)])
def test_resume_matches_an_uninterrupted_run(tmp_path, kind, sampler):
    options = {"latent_dim": LATENT, "batch": 4, "lr": 1e-3, "progress": False, "save_every": 2}
    train_vae(kind, sampler, steps=5, state_path=tmp_path / "straight.pt", **options)

    def interrupt_at_three(step, terms):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_vae(kind, sampler, steps=5, state_path=tmp_path / "split.pt", on_step=interrupt_at_three, **options)
    assert torch.load(tmp_path / "split.pt", weights_only=True)["step"] == 3
    train_vae(kind, sampler, steps=5, state_path=tmp_path / "split.pt", **options)

    straight = torch.load(tmp_path / "straight.pt", weights_only=True)
    resumed = torch.load(tmp_path / "split.pt", weights_only=True)
    assert straight["step"] == resumed["step"] == 5
    assert_same_state(straight, resumed)


def test_resume_refuses_another_model_kind(tmp_path):
    options = {"latent_dim": LATENT, "batch": 2, "progress": False, "state_path": tmp_path / "run.pt"}
    train_vae("beta-vae", sample_images, steps=1, **options)
    with pytest.raises(UserError, match="state_path"):
        train_vae("ada-gvae", sample_pairs, steps=2, **options)
    with pytest.raises(UserError, match="model_kind"):
        train_vae("vae", sample_images, steps=1, latent_dim=LATENT, progress=False)


def test_encode_mean_accepts_float_and_uint8_images():
    torch.manual_seed(0)
    model = VAE(LATENT).eval()
    images = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8)
    from_uint8 = encode_mean(model, images.numpy(), batch_size=2)
    from_float = encode_mean(model, images.float() / 255)
    assert from_uint8.shape == (5, LATENT) and from_uint8.dtype == np.float64
    np.testing.assert_allclose(from_uint8, from_float, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(from_float, model.encode(images.float() / 255)[0].numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"images: expected shape \[N, 3, 64, 64\], got \[2, 64, 64, 3\]"):
        encode_mean(model, np.zeros((2, 64, 64, 3)))
