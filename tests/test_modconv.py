"""The pure-PyTorch StyleGAN2 ops: FIR resampling, bias/activation, and both modulated-convolution paths."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from contrafeat.gan.ops import (
    bias_act,
    conv2d_resample,
    default_fused_modconv,
    filter_taps,
    modulated_conv2d,
    setup_filter,
    upfirdn2d,
    upsample2d,
)

FILTER = setup_filter([1, 3, 3, 1])


def naive_modulated_conv(x, weight, styles, up, demodulate, flip_weight):
    """Per-sample reference: modulate (and demodulate) the weight, then an ordinary (resampling) convolution."""
    outputs = []
    for sample, style in zip(x, styles):
        w = weight * style.reshape(1, -1, 1, 1)
        if demodulate:
            w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        outputs.append(conv2d_resample(sample[None], w, FILTER, up=up, padding=weight.shape[-1] // 2, flip_weight=flip_weight))
    return torch.cat(outputs)


@pytest.mark.parametrize("up, kernel, demodulate", [(1, 3, True), (2, 3, True), (1, 1, False), (1, 3, False)])
def test_fused_and_non_fused_paths_agree(up: int, kernel: int, demodulate: bool) -> None:
    rng = torch.Generator().manual_seed(0)
    x = torch.randn(5, 12, 8, 8, generator=rng)
    weight = torch.randn(10, 12, kernel, kernel, generator=rng)
    styles = torch.randn(5, 12, generator=rng) * 0.5 + 1
    if not demodulate:  # as toRGB does: styles scaled by 1/sqrt(fan_in) keep outputs of order 1
        styles = styles / (12 * kernel * kernel) ** 0.5
    size = 8 * up
    noise = torch.randn(size, size, generator=rng) * 0.3
    kwargs = dict(up=up, padding=kernel // 2, resample_filter=FILTER, demodulate=demodulate, flip_weight=up == 1)
    fused = modulated_conv2d(x, weight, styles, noise, fused=True, **kwargs)
    plain = modulated_conv2d(x, weight, styles, noise, fused=False, **kwargs)
    assert fused.shape == (5, 10, size, size)
    assert (fused - plain).abs().max() <= 1e-5
    reference = naive_modulated_conv(x, weight, styles, up, demodulate, up == 1) + noise
    assert (fused - reference).abs().max() <= 1e-5
    if demodulate:  # demodulated outputs have unit weight norm per output channel, whatever the style scale
        assert (modulated_conv2d(x, weight, styles * 7.0, fused=False, **kwargs) - plain + noise).abs().max() <= 1e-4


def test_automatic_path_choice() -> None:
    styles = torch.ones(4, 2)
    assert default_fused_modconv(torch.zeros(1, 2, 4, 4), styles[:1]) is True
    assert default_fused_modconv(torch.zeros(4, 2, 4, 4), styles) is False
    assert default_fused_modconv(torch.zeros(4, 2, 4, 4, device="meta"), styles.to("meta")) is True
    # renders that back-propagate keep no per-sample weights, on any device
    trained = styles.to("meta").requires_grad_(True)
    assert default_fused_modconv(torch.zeros(4, 2, 4, 4, device="meta"), trained) is False
    assert default_fused_modconv(torch.zeros(1, 2, 4, 4, requires_grad=True), styles[:1]) is False
    with torch.no_grad():
        assert default_fused_modconv(torch.zeros(4, 2, 4, 4, device="meta"), trained) is True


def test_setup_filter_and_taps_round_trip() -> None:
    assert FILTER.shape == (4, 4) and FILTER.sum().item() == pytest.approx(1.0)
    assert torch.equal(FILTER[0], torch.tensor([1, 3, 3, 1]) / 64)
    assert filter_taps(FILTER) == [0.125, 0.375, 0.375, 0.125]
    assert torch.equal(setup_filter(filter_taps(FILTER)), FILTER)


def test_upsample_keeps_constants_and_matches_zero_insertion_convolution() -> None:
    constant = torch.full((2, 3, 5, 5), 0.7)
    up = upsample2d(constant, FILTER)
    assert up.shape == (2, 3, 10, 10)
    assert torch.allclose(up[:, :, 2:-2, 2:-2], torch.full_like(up[:, :, 2:-2, 2:-2], 0.7), atol=1e-6)
    x = torch.randn(1, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    zeros = torch.zeros(1, 1, 12, 12)
    zeros[:, :, ::2, ::2] = x
    expected = F.conv2d(F.pad(zeros, [2, 1, 2, 1]), (FILTER * 4).flip([0, 1])[None, None])
    assert torch.allclose(upsample2d(x, FILTER), expected, atol=1e-6)


def test_upfirdn2d_crops_with_negative_padding_and_downsamples() -> None:
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    identity = torch.ones(1, 1)
    assert torch.equal(upfirdn2d(x, identity, padding=[-1, -2, -3, 0]), x[:, :, 3:, 1:-2])
    assert torch.equal(upfirdn2d(x, identity, down=2), x[:, :, ::2, ::2])


def test_strided_downsampling_conv_matches_filter_then_subsample() -> None:
    rng = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 8, generator=rng)
    weight = torch.randn(6, 4, 3, 3, generator=rng)
    out = conv2d_resample(x, weight, FILTER, down=2, padding=1)
    blurred = upfirdn2d(x, FILTER, padding=[2, 2, 2, 2])
    assert out.shape == (2, 6, 4, 4)
    assert torch.allclose(out, F.conv2d(blurred, weight)[:, :, ::2, ::2], atol=1e-5)


def test_bias_act_gain_and_clamp() -> None:
    x = torch.tensor([[-2.0, 1.0], [3.0, -0.5]])
    bias = torch.tensor([0.5, -1.0])
    expected = F.leaky_relu(x + bias, 0.2) * 2**0.5
    assert torch.allclose(bias_act(x, bias, "lrelu"), expected)
    assert torch.allclose(bias_act(x, bias, "lrelu", clamp=1.0), expected.clamp(-1, 1))
    assert torch.equal(bias_act(x, None, "linear", gain=3.0), x * 3)
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act(x, bias, "gelu")
