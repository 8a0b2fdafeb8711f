"""NVIDIA stylegan2-ada-pytorch / stylegan3 (StyleGAN2 config) network snapshots -> Generator, without their code.

The pickle is read by the restricted unpickler; each network comes back as its persistence meta dict, whose
`state` holds `_parameters`, `_buffers`, `_modules` (children, recursively) and `_init_kwargs`. Sizes (dims,
depths, widths, resolution) come from the tensor shapes; what shapes cannot tell (mapping lr multiplier,
conv_clamp, minibatch-stddev group size, architecture) comes from the init kwargs, else the stored attributes.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from contrafeat.errors import CheckpointError
from contrafeat.gan.assembly import build_generator, finish, load_state, note
from contrafeat.gan.ops import filter_taps
from contrafeat.gan.safe_pickle import load_restricted_pickle
from contrafeat.gan.stylegan2 import Generator

STYLEGAN3_KEY = re.compile(r"^synthesis\.(input\.|L\d+_)")
DEFAULT_MAPPING_LR = 0.01
DEFAULT_MBSTD_GROUP = 4


def is_network(meta: Any) -> bool:
    """Whether an unpickled object is a persistence meta dict of a module."""
    return isinstance(meta, dict) and isinstance(meta.get("state"), dict) and "_modules" in meta["state"]


def flatten_state(meta: dict[str, Any], prefix: str = "") -> dict[str, torch.Tensor]:
    """All persistent parameters and buffers under a network meta dict, keyed as in `state_dict()`."""
    state = meta["state"]
    skipped = state.get("_non_persistent_buffers_set") or set()
    tensors = {}
    for name, value in list(state.get("_parameters", {}).items()) + list(state.get("_buffers", {}).items()):
        if isinstance(value, torch.Tensor) and name not in skipped:
            tensors[prefix + name] = value.detach()
    for name, child in state.get("_modules", {}).items():
        if is_network(child):
            tensors.update(flatten_state(child, f"{prefix}{name}."))
    return tensors


def submodule(meta: dict[str, Any], *names: str) -> dict[str, Any]:
    """The meta dict of a descendant module ({} when absent)."""
    for name in names:
        meta = meta.get("state", {}).get("_modules", {}).get(name) or {}
    return meta


def init_kwargs(meta: dict[str, Any]) -> dict[str, Any]:
    """The constructor keywords stored with a network ({} when absent)."""
    kwargs = meta.get("state", {}).get("_init_kwargs")
    return kwargs if isinstance(kwargs, dict) else {}


def attribute(meta: dict[str, Any], name: str, default: Any = None) -> Any:
    """A plain attribute stored in a module's state, as a Python scalar."""
    value = meta.get("state", {}).get(name, default)
    return value.item() if hasattr(value, "item") else value


def count_layers(tensors: dict[str, torch.Tensor], pattern: str) -> int:
    """How many consecutive indices i from 0 have `pattern.format(i)` among the tensors."""
    count = 0
    while pattern.format(count) in tensors:
        count += 1
    return count


def resolutions_with(tensors: dict[str, torch.Tensor], pattern: str, start: int) -> list[int]:
    """Resolutions start, 2*start, ... for which `pattern.format(res)` is among the tensors."""
    found = []
    res = start
    while pattern.format(res) in tensors:
        found.append(res)
        res *= 2
    return found


def optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def generator_config(meta: dict[str, Any], tensors: dict[str, torch.Tensor], path: Path) -> dict[str, Any]:
    """Generator constructor arguments for G_ema (without the discriminator)."""
    kwargs = init_kwargs(meta)
    c_dim = int(kwargs.get("c_dim", attribute(meta, "c_dim", 0)) or 0)
    if c_dim > 0:
        raise CheckpointError(f"{path}: conditional models (c_dim={c_dim}) are not supported yet")
    if any(STYLEGAN3_KEY.match(key) for key in tensors):
        raise CheckpointError(f"{path}: StyleGAN3-R/T models are not supported yet (only StyleGAN2 networks)")
    for key in ("mapping.fc0.weight", "mapping.w_avg", "synthesis.b4.const", "synthesis.b4.resample_filter", "synthesis.b4.torgb.weight"):
        if key not in tensors:
            raise CheckpointError(f"{path}: G_ema is not a StyleGAN2 generator (it has no '{key}')")
    synthesis_kwargs = kwargs.get("synthesis_kwargs") or {}
    architecture = synthesis_kwargs.get("architecture", "skip")
    if architecture != "skip":
        raise CheckpointError(f"{path}: synthesis architecture '{architecture}' is not supported (only 'skip', the StyleGAN2 default)")
    mapping_kwargs = kwargs.get("mapping_kwargs") or {}
    lr_multiplier = mapping_kwargs.get("lr_multiplier", attribute(submodule(meta, "mapping", "fc0"), "bias_gain", DEFAULT_MAPPING_LR))
    resolutions = resolutions_with(tensors, "synthesis.b{}.conv1.weight", 4)
    conv_clamp = synthesis_kwargs.get("conv_clamp", attribute(submodule(meta, "synthesis", "b4", "conv1"), "conv_clamp"))
    return {
        "z_dim": int(tensors["mapping.fc0.weight"].shape[1]),
        "w_dim": int(tensors["mapping.w_avg"].shape[0]),
        "channels": {str(res): int(tensors[f"synthesis.b{res}.conv1.weight"].shape[0]) for res in resolutions},
        "img_channels": int(tensors["synthesis.b4.torgb.weight"].shape[0]),
        "mapping_layers": count_layers(tensors, "mapping.fc{}.weight"),
        "mapping_layer_features": int(tensors["mapping.fc0.weight"].shape[0]),
        "mapping_lr_multiplier": float(lr_multiplier),
        "use_noise": "synthesis.b4.conv1.noise_const" in tensors,
        "conv_clamp": optional_float(conv_clamp),
        "resample_filter": filter_taps(tensors["synthesis.b4.resample_filter"]),
    }


def discriminator_config(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any] | str:
    """Discriminator constructor arguments, or the reason why this discriminator cannot be used."""
    kwargs = init_kwargs(meta)
    if int(kwargs.get("c_dim", attribute(meta, "c_dim", 0)) or 0) > 0:
        return "it is conditional"
    resolutions = resolutions_with(tensors, "b{}.conv0.weight", 8)
    if not resolutions or "b4.conv.weight" not in tensors:
        return "it is not a StyleGAN2 discriminator"
    top = resolutions[-1]
    architecture = kwargs.get("architecture", "resnet" if f"b{top}.skip.weight" in tensors else "unknown")
    if architecture != "resnet" or f"b{top}.fromrgb.weight" not in tensors:
        return f"its architecture '{architecture}' is not supported (only 'resnet', the StyleGAN2 default)"
    channels = {4: int(tensors["b4.conv.weight"].shape[0])}
    channels.update({res: int(tensors[f"b{res}.conv0.weight"].shape[0]) for res in resolutions})
    epilogue = submodule(meta, "b4")
    group_size = (kwargs.get("epilogue_kwargs") or {}).get("mbstd_group_size", attribute(submodule(epilogue, "mbstd"), "group_size", DEFAULT_MBSTD_GROUP))
    return {
        "channels": {str(res): width for res, width in sorted(channels.items())},
        "img_channels": int(tensors[f"b{top}.fromrgb.weight"].shape[1]),
        "mbstd_group_size": None if group_size is None else int(group_size),
        "mbstd_num_channels": int(tensors["b4.conv.weight"].shape[1]) - channels[4],
        "conv_clamp": optional_float(kwargs.get("conv_clamp", attribute(submodule(epilogue, "conv"), "conv_clamp"))),
        "resample_filter": filter_taps(tensors[f"b{top}.resample_filter"]),
    }


def load_discriminator(meta: Any, path: Path, resolution: int) -> tuple[dict[str, Any] | None, dict[str, torch.Tensor]]:
    """(config, tensors) of the snapshot's D, or (None, {}) with a note when it is missing or unusable."""
    if not is_network(meta):
        return None, {}
    tensors = flatten_state(meta)
    config = discriminator_config(meta, tensors)
    if isinstance(config, str):
        note(f"{path}: loading the generator without its discriminator: {config}")
        return None, {}
    image_size = max(int(res) for res in config["channels"])
    if image_size != resolution:
        note(f"{path}: loading the generator without its discriminator: it sees {image_size} px images, the generator makes {resolution} px")
        return None, {}
    return config, tensors


def load_nvidia_pickle(path: Path) -> Generator:
    """A network snapshot (dict with G_ema, optional D) -> Generator with the EMA weights (and D when usable)."""
    data = load_restricted_pickle(path)
    if not isinstance(data, dict) or "G_ema" not in data:
        raise CheckpointError(f"{path}: a pickle without 'G_ema': not a StyleGAN2-ADA network snapshot")
    g_meta = data["G_ema"]
    if not is_network(g_meta):
        raise CheckpointError(f"{path}: 'G_ema' is not a stored network")
    tensors = flatten_state(g_meta)
    config = generator_config(g_meta, tensors, path)
    resolution = max(int(res) for res in config["channels"])
    config["discriminator"], d_tensors = load_discriminator(data.get("D"), path, resolution)
    generator = build_generator(config, path)
    tensors.update({f"discriminator.{key}": value for key, value in d_tensors.items()})
    load_state(generator, tensors, path, "the G_ema/D weights")
    return finish(generator)
