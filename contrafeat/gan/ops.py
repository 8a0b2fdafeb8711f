"""Pure-PyTorch StyleGAN2 operations: FIR resampling (upfirdn2d), bias + activation, modulated convolution.

Numerically these follow the reference (non-CUDA) paths of NVIDIA's stylegan2-ada-pytorch, so networks built
on them reproduce the official outputs on CPU and GPU alike.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

LRELU_ALPHA = 0.2
LRELU_GAIN = math.sqrt(2.0)
DEFAULT_FILTER = (1.0, 3.0, 3.0, 1.0)
ACTIVATIONS = ("linear", "lrelu")


def setup_filter(taps: Sequence[float]) -> torch.Tensor:
    """1-D FIR taps -> the 2-D filter [k, k] (outer product) normalised to sum 1."""
    f = torch.as_tensor(list(taps), dtype=torch.float32)
    if f.ndim != 1 or f.numel() == 0:
        raise ValueError(f"resample filter taps must be a non-empty 1-D sequence, got {list(taps)!r}")
    f = torch.outer(f, f)
    return f / f.sum()


def filter_taps(f: torch.Tensor) -> list[float]:
    """The normalised 1-D taps of a separable 2-D filter made by `setup_filter` (its column sums)."""
    if f.ndim != 2 or f.shape[0] != f.shape[1]:
        raise ValueError(f"expected a square 2-D resample filter, got shape {list(f.shape)}")
    return [float(v) for v in f.sum(dim=0).tolist()]


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad (x0, x1, y0, y1; negative crops), convolve with the 2-D FIR filter, downsample."""
    batch, channels, height, width = x.shape
    padx0, padx1, pady0, pady1 = padding
    if up > 1:
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(batch, channels, height * up, width * up)
    x = F.pad(x, [max(padx0, 0), max(padx1, 0), max(pady0, 0), max(pady1, 0)])
    x = x[:, :, max(-pady0, 0) : x.shape[2] - max(-pady1, 0), max(-padx0, 0) : x.shape[3] - max(-padx1, 0)]
    f = (f * gain).to(x.dtype).flip([0, 1])
    weight = f[None, None].repeat(channels, 1, 1, 1)
    x = F.conv2d(x, weight, groups=channels)
    return x[:, :, ::down, ::down]


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """Upsample by `up` with the FIR filter (gain up^2 keeps the mean), output size exactly up * input."""
    taps = f.shape[-1]
    pad = [(taps + up - 1) // 2, (taps - up) // 2]
    return upfirdn2d(x, f, up=up, padding=pad + pad, gain=up * up)


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    activation: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """x + b (broadcast over dim 1), then the activation, times gain (default: the activation's), clamped to +-clamp."""
    if b is not None:
        x = x + b.reshape([1, -1] + [1] * (x.ndim - 2))
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_ALPHA)
        default_gain = LRELU_GAIN
    elif activation == "linear":
        default_gain = 1.0
    else:
        raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
    gain = default_gain if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _conv2d(
    x: torch.Tensor, w: torch.Tensor, stride: int = 1, padding: int = 0, groups: int = 1, transpose: bool = False, flip_weight: bool = True
) -> torch.Tensor:
    """conv2d (cross-correlation when flip_weight, true convolution otherwise), or its transpose."""
    if not flip_weight:
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    groups: int = 1,
    flip_weight: bool = True,
) -> torch.Tensor:
    """2-D convolution with optional FIR up-sampling (transposed conv, then filter) or down-sampling (filter, strided conv)."""
    out_channels, in_channels_per_group, kh, kw = w.shape
    if up > 1 and down > 1:
        raise ValueError("conv2d_resample: up- and down-sampling at once is not supported")
    if up == 1 and down == 1:
        return _conv2d(x, w, padding=padding, groups=groups, flip_weight=flip_weight)
    if f is None:
        raise ValueError("conv2d_resample: resampling needs a FIR filter")
    taps = f.shape[-1]
    if down > 1:
        pad0, pad1 = padding + (taps - down + 1) // 2, padding + (taps - down) // 2
        if kw == 1 and kh == 1:
            x = upfirdn2d(x, f, down=down, padding=[pad0, pad1, pad0, pad1])
            return _conv2d(x, w, groups=groups, flip_weight=flip_weight)
        x = upfirdn2d(x, f, padding=[pad0, pad1, pad0, pad1])
        return _conv2d(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if groups == 1:
        w = w.transpose(0, 1)
    else:
        w = w.reshape(groups, out_channels // groups, in_channels_per_group, kh, kw).transpose(1, 2)
        w = w.reshape(groups * in_channels_per_group, out_channels // groups, kh, kw)
    pad0 = padding + (taps + up - 1) // 2 - (kw - 1)
    pad1 = padding + (taps - up) // 2 - (kw - up)
    transpose_pad = max(min(-pad0, -pad1), 0)
    x = _conv2d(x, w, stride=up, padding=transpose_pad, groups=groups, transpose=True, flip_weight=not flip_weight)
    pad0, pad1 = pad0 + transpose_pad, pad1 + transpose_pad
    return upfirdn2d(x, f, padding=[pad0, pad1, pad0, pad1], gain=up * up)


def default_fused_modconv(x: torch.Tensor, styles: torch.Tensor) -> bool:
    """The modulated-convolution path for this input. Renders that back-propagate take the shared-weight
    (non-fused) form, as StyleGAN2-ADA does in training: the grouped form keeps every image's modulated and
    demodulated weights for backward (about 0.2 GB per image at FFHQ config-f). Otherwise grouped (fused) on
    accelerators and for single images, shared-weight for batches on CPU (20-25 % faster at batch 4-8)."""
    if torch.is_grad_enabled() and (x.requires_grad or styles.requires_grad):
        return False
    return x.device.type != "cpu" or x.shape[0] == 1


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused: bool | None = None,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution of x [B, I, H, W] with weight [O, I, k, k] and styles [B, I].

    fused=True builds per-sample weights and runs one grouped convolution; fused=False scales the input by the
    styles, convolves with the shared weight and demodulates the output (same result, no per-sample weights);
    None picks `default_fused_modconv(x, styles)`. `noise` is added after demodulation.
    """
    batch = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    if fused is None:
        fused = default_fused_modconv(x, styles)
    if not fused:
        x = x * styles.reshape(batch, -1, 1, 1)
        x = conv2d_resample(x, weight, resample_filter, up=up, padding=padding, flip_weight=flip_weight)
        if demodulate:
            dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()
            x = x * dcoefs.reshape(batch, -1, 1, 1)
        return x + noise if noise is not None else x
    w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(batch, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample(x, w, resample_filter, up=up, padding=padding, groups=batch, flip_weight=flip_weight)
    x = x.reshape(batch, -1, *x.shape[2:])
    return x + noise if noise is not None else x
