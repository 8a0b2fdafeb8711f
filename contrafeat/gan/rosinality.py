"""rosinality/stylegan2-pytorch checkpoints (`g_ema`, optional `latent_avg`, `d`, `args`) <-> our networks.

One key table per network drives both directions. Each entry pairs a native key with a rosinality key and
a layout kind: rosinality keeps a leading 1 on conv weights, the constant and noise strengths, [1, 1, r, r]
noise maps, [1, C, 1, 1] toRGB biases, and FIR up-sampling kernels that include the gain of 4.
"""
from __future__ import annotations

import argparse
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from contrafeat.errors import CheckpointError, one_line
from contrafeat.gan.assembly import build_generator, finish, load_state, note
from contrafeat.gan.ops import DEFAULT_FILTER, filter_taps
from contrafeat.gan.safe_pickle import refused_global
from contrafeat.gan.stylegan2 import Generator
from contrafeat.gan.stylegan2_discriminator import Discriminator

UP_GAIN = 4.0
"""rosinality's up-sampling kernels are the normalised FIR filter times factor^2."""
DEFAULT_MAPPING_LR = 0.01
MBSTD_GROUP_SIZE = 4
LATENT_AVG_SAMPLES = 10_000
LATENT_AVG_SEED = 0

TO_ROSINALITY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "same": lambda t: t,
    "lead": lambda t: t.unsqueeze(0),
    "noise": lambda t: t[None, None],
    "rgb_bias": lambda t: t.reshape(1, -1, 1, 1),
    "kernel": lambda t: t * UP_GAIN,
}
"""How a native tensor is laid out in a rosinality checkpoint, per kind."""

KeyTable = list[tuple[str, str, str]]
"""(native key, rosinality key, layout kind)."""


def generator_key_table(mapping_layers: int, resolutions: list[int]) -> KeyTable:
    """The key table of a generator with this mapping depth and these block resolutions (4, 8, ..., R)."""
    table = []
    for index in range(mapping_layers):
        for part in ("weight", "bias"):
            table.append((f"mapping.fc{index}.{part}", f"style.{index + 1}.{part}", "same"))
    table.append(("synthesis.b4.const", "input.input", "lead"))
    noise_index = 0
    for level, res in enumerate(resolutions):
        block = f"synthesis.b{res}"
        layers = [("conv1", "conv1")] if res == 4 else [("conv0", f"convs.{2 * level - 2}"), ("conv1", f"convs.{2 * level - 1}")]
        for name, theirs in layers:
            ours = f"{block}.{name}"
            table += [
                (f"{ours}.weight", f"{theirs}.conv.weight", "lead"),
                (f"{ours}.affine.weight", f"{theirs}.conv.modulation.weight", "same"),
                (f"{ours}.affine.bias", f"{theirs}.conv.modulation.bias", "same"),
                (f"{ours}.bias", f"{theirs}.activate.bias", "same"),
                (f"{ours}.noise_strength", f"{theirs}.noise.weight", "lead"),
                (f"{ours}.noise_const", f"noises.noise_{noise_index}", "noise"),
            ]
            noise_index += 1
            if name == "conv0":
                table.append((f"{ours}.resample_filter", f"{theirs}.conv.blur.kernel", "kernel"))
        rgb = "to_rgb1" if res == 4 else f"to_rgbs.{level - 1}"
        table += [
            (f"{block}.torgb.weight", f"{rgb}.conv.weight", "lead"),
            (f"{block}.torgb.affine.weight", f"{rgb}.conv.modulation.weight", "same"),
            (f"{block}.torgb.affine.bias", f"{rgb}.conv.modulation.bias", "same"),
            (f"{block}.torgb.bias", f"{rgb}.bias", "rgb_bias"),
        ]
        if res > 4:
            table.append((f"{block}.resample_filter", f"{rgb}.upsample.kernel", "kernel"))
    return table


def discriminator_key_table(resolutions: list[int]) -> KeyTable:
    """The key table of a discriminator whose residual blocks run at these resolutions (R, R/2, ..., 8)."""
    table = [(f"b{resolutions[0]}.fromrgb.weight", "convs.0.0.weight", "same"), (f"b{resolutions[0]}.fromrgb.bias", "convs.0.1.bias", "same")]
    for index, res in enumerate(resolutions, start=1):
        ours, theirs = f"b{res}", f"convs.{index}"
        table += [
            (f"{ours}.conv0.weight", f"{theirs}.conv1.0.weight", "same"),
            (f"{ours}.conv0.bias", f"{theirs}.conv1.1.bias", "same"),
            (f"{ours}.conv1.resample_filter", f"{theirs}.conv2.0.kernel", "same"),
            (f"{ours}.conv1.weight", f"{theirs}.conv2.1.weight", "same"),
            (f"{ours}.conv1.bias", f"{theirs}.conv2.2.bias", "same"),
            (f"{ours}.skip.resample_filter", f"{theirs}.skip.0.kernel", "same"),
            (f"{ours}.skip.weight", f"{theirs}.skip.1.weight", "same"),
        ]
    table += [
        ("b4.conv.weight", "final_conv.0.weight", "same"),
        ("b4.conv.bias", "final_conv.1.bias", "same"),
        ("b4.fc.weight", "final_linear.0.weight", "same"),
        ("b4.fc.bias", "final_linear.0.bias", "same"),
        ("b4.out.weight", "final_linear.1.weight", "same"),
        ("b4.out.bias", "final_linear.1.bias", "same"),
    ]
    return table


def to_native(table: KeyTable, theirs: Mapping[str, torch.Tensor], template: Mapping[str, torch.Tensor], path: Path, what: str) -> dict[str, torch.Tensor]:
    """The template state dict with every table entry replaced by the converted rosinality tensor (shapes checked)."""
    state = dict(template)
    for native_key, their_key, kind in table:
        value = theirs.get(their_key)
        expected = tuple(TO_ROSINALITY[kind](template[native_key]).shape)
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: {what} has no tensor '{their_key}': not a rosinality StyleGAN2 network")
        if tuple(value.shape) != expected:
            raise CheckpointError(f"{path}: {what} '{their_key}' has shape {list(value.shape)}, expected {list(expected)}")
        value = value.detach().float().reshape(template[native_key].shape)
        state[native_key] = value / UP_GAIN if kind == "kernel" else value
    return state


def from_native(table: KeyTable, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Native tensors laid out as rosinality keys."""
    return {their_key: TO_ROSINALITY[kind](state[native_key].detach().cpu()).clone() for native_key, their_key, kind in table}


def _indexed_count(state: Mapping[str, Any], pattern: str, start: int = 0) -> int:
    count = 0
    while pattern.format(start + count) in state:
        count += 1
    return count


def _shape(state: Mapping[str, Any], key: str, path: Path, what: str) -> torch.Size:
    value = state.get(key)
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{path}: {what} has no tensor '{key}': not a rosinality StyleGAN2 network")
    return value.shape


def generator_config(g_ema: Mapping[str, Any], args: Any, path: Path) -> dict[str, Any]:
    """Generator constructor arguments read from g_ema's tensor shapes (mapping lr from args.lr_mlp when stored)."""
    mapping_layers = _indexed_count(g_ema, "style.{}.weight", start=1)
    if mapping_layers == 0:
        raise CheckpointError(f"{path}: g_ema has no tensor 'style.1.weight': not a rosinality StyleGAN2 generator")
    channels = {4: int(_shape(g_ema, "input.input", path, "g_ema")[1])}
    for level in range(1, _indexed_count(g_ema, "to_rgbs.{}.conv.weight") + 1):
        channels[4 * 2**level] = int(_shape(g_ema, f"convs.{2 * level - 1}.conv.weight", path, "g_ema")[1])
    kernel = g_ema.get("to_rgbs.0.upsample.kernel")
    taps = filter_taps(kernel.float() / UP_GAIN) if isinstance(kernel, torch.Tensor) and kernel.ndim == 2 else list(DEFAULT_FILTER)
    first = _shape(g_ema, "style.1.weight", path, "g_ema")
    return {
        "z_dim": int(first[1]),
        "w_dim": int(_shape(g_ema, f"style.{mapping_layers}.weight", path, "g_ema")[0]),
        "channels": {str(res): width for res, width in channels.items()},
        "img_channels": int(_shape(g_ema, "to_rgb1.conv.weight", path, "g_ema")[1]),
        "mapping_layers": mapping_layers,
        "mapping_layer_features": int(first[0]),
        "mapping_lr_multiplier": float(getattr(args, "lr_mlp", DEFAULT_MAPPING_LR)),
        "use_noise": True,
        "conv_clamp": None,
        "resample_filter": taps,
        "discriminator": None,
    }


def discriminator_config(d: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Discriminator constructor arguments read from d's tensor shapes."""
    blocks = _indexed_count(d, "convs.{}.conv1.0.weight", start=1)
    resolution = 4 * 2**blocks
    channels = {resolution: int(_shape(d, "convs.0.0.weight", path, "d")[0])}
    for index in range(1, blocks + 1):
        channels[resolution // 2**index] = int(_shape(d, f"convs.{index}.conv2.1.weight", path, "d")[0])
    final = _shape(d, "final_conv.0.weight", path, "d")
    kernel = d.get("convs.1.conv2.0.kernel")
    return {
        "channels": {str(res): width for res, width in sorted(channels.items())},
        "img_channels": int(_shape(d, "convs.0.0.weight", path, "d")[1]),
        "mbstd_group_size": MBSTD_GROUP_SIZE,
        "mbstd_num_channels": int(final[1] - final[0]),
        "conv_clamp": None,
        "resample_filter": filter_taps(kernel.float()) if isinstance(kernel, torch.Tensor) and kernel.ndim == 2 else list(DEFAULT_FILTER),
    }


def read_torch_file(path: Path) -> Any:
    """torch.load with weights_only=True (argparse.Namespace allowed), on CPU; failures become one-line CheckpointErrors."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        name = refused_global(error)
        if name is not None:
            raise CheckpointError(f"{path}: refused to load: the torch file needs the global '{name}' (only tensors and plain data are allowed)") from None
        raise CheckpointError(f"{path}: corrupt torch file ({one_line(error)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, OSError) as error:
        raise CheckpointError(f"{path}: truncated or corrupt torch file ({one_line(error)})") from None


def estimate_w_avg(generator: Generator, samples: int = LATENT_AVG_SAMPLES, seed: int = LATENT_AVG_SEED) -> torch.Tensor:
    """The mean of `samples` mapped latents drawn with `seed`."""
    z = torch.randn(samples, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return generator.mapping(z).mean(dim=0)


def latent_average(checkpoint: Mapping[str, Any], generator: Generator, path: Path) -> torch.Tensor:
    """The stored `latent_avg` ([w_dim] or [1, w_dim]), or an estimate (with a note) when the file has none."""
    value = checkpoint.get("latent_avg")
    if value is None:
        note(f"{path} has no latent_avg; estimated the average w from {LATENT_AVG_SAMPLES:,} mapped samples (seed {LATENT_AVG_SEED})")
        return estimate_w_avg(generator)
    if not isinstance(value, torch.Tensor) or value.numel() != generator.w_dim or value.ndim > 2:
        shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise CheckpointError(f"{path}: latent_avg has shape {shape}, expected [{generator.w_dim}] or [1, {generator.w_dim}]")
    return value.detach().float().reshape(generator.w_dim)


def attach_discriminator(generator: Generator, d: Any, path: Path) -> None:
    """Convert and attach the checkpoint's `d`, or leave the generator without one (with a note when `d` is unusable)."""
    if d is None:
        return
    try:
        if not isinstance(d, Mapping):
            raise CheckpointError("'d' is not a state dict")
        config = discriminator_config(d, path)
        if int(max(map(int, config["channels"]))) != generator.img_resolution:
            raise CheckpointError("its resolution differs from the generator's")
        discriminator = Discriminator.from_config(config)
        table = discriminator_key_table(discriminator.block_resolutions)
        load_state(discriminator, to_native(table, d, discriminator.state_dict(), path, "d"), path, "d")
    except (CheckpointError, ValueError) as error:
        note(f"{path}: loading the generator without its discriminator: {one_line(error)}")
        return
    generator.discriminator = discriminator.eval()


def load_rosinality(path: Path) -> Generator:
    """A rosinality checkpoint (training or converted) -> Generator with the g_ema weights, latent_avg and d."""
    checkpoint = read_torch_file(path)
    if not isinstance(checkpoint, Mapping) or "g_ema" not in checkpoint:
        raise CheckpointError(f"{path}: a torch file without 'g_ema': not a rosinality StyleGAN2 checkpoint")
    g_ema = checkpoint["g_ema"]
    if not isinstance(g_ema, Mapping):
        raise CheckpointError(f"{path}: 'g_ema' is not a state dict")
    generator = build_generator(generator_config(g_ema, checkpoint.get("args"), path), path)
    table = generator_key_table(generator.mapping.num_layers, generator.synthesis.block_resolutions)
    state = to_native(table, g_ema, generator.state_dict(), path, "g_ema")
    unmapped = sorted(set(g_ema) - {their_key for _, their_key, _ in table})
    if unmapped:
        raise CheckpointError(f"{path}: g_ema has tensors this StyleGAN2 layout does not use: {unmapped[:3]}")
    load_state(generator, state, path, "g_ema")
    generator.mapping.w_avg.copy_(latent_average(checkpoint, generator, path))
    attach_discriminator(generator, checkpoint.get("d"), path)
    return finish(generator)


def export_rosinality(generator: Generator) -> dict[str, Any]:
    """A rosinality checkpoint dict for `generator`: g_ema, latent_avg [w_dim] and, when present, d."""
    table = generator_key_table(generator.mapping.num_layers, generator.synthesis.block_resolutions)
    checkpoint: dict[str, Any] = {"g_ema": from_native(table, generator.state_dict()), "latent_avg": generator.w_avg.detach().cpu().clone()}
    if generator.discriminator is not None:
        d_table = discriminator_key_table(generator.discriminator.block_resolutions)
        checkpoint["d"] = from_native(d_table, generator.discriminator.state_dict())
    return checkpoint
