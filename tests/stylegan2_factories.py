"""Small random StyleGAN2 networks and writers of the two external checkpoint layouts, for tests.

The NVIDIA writer mimics what `torch_utils.persistence` stores (a reconstruct call per network with a meta
dict of class name, module state and init kwargs) through fake `torch_utils` / `dnnlib` modules that exist in
sys.modules only while the pickle is written.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import pickle
import sys
import types
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from contrafeat.gan.layers import FullyConnectedLayer
from contrafeat.gan.rosinality import export_rosinality
from contrafeat.gan.stylegan2 import Generator

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "stylegan2"
PLAIN_TYPES = (bool, int, float, str, type(None))


def random_generator(
    z_dim: int = 24,
    w_dim: int = 16,
    channels: dict | None = None,
    mapping_layers: int = 3,
    seed: int = 0,
    with_discriminator: bool = True,
    mbstd_group_size: int = 2,
    **kwargs: Any,
) -> Generator:
    """A small Generator whose every parameter and buffer is perturbed, so that all of them matter.

    Its discriminator (same widths and conv_clamp) uses minibatch-stddev groups of `mbstd_group_size` and 2 channels.
    """
    channels = channels or {4: 16, 8: 12, 16: 8}
    discriminator = None
    if with_discriminator:
        discriminator = {
            "channels": {str(res): width for res, width in channels.items()},
            "mbstd_group_size": mbstd_group_size,
            "mbstd_num_channels": 2,
            "conv_clamp": kwargs.get("conv_clamp"),
        }
    torch.manual_seed(seed)
    generator = Generator(z_dim, w_dim, channels, mapping_layers=mapping_layers, discriminator=discriminator, **kwargs)
    with torch.no_grad():
        for name, tensor in generator.state_dict().items():
            if name.endswith("resample_filter"):
                continue
            if name.startswith("mapping.fc") and name.endswith("bias"):
                tensor.add_(torch.randn_like(tensor) * 5.0)
            elif "torgb.weight" in name:
                tensor.mul_(0.2).add_(torch.randn_like(tensor) * 0.05)
            else:
                tensor.add_(torch.randn_like(tensor) * 0.05)
    return generator.eval().requires_grad_(False)


@contextlib.contextmanager
def fake_nvidia_modules() -> Iterator[tuple[Any, type]]:
    """(persistence reconstruct hook, EasyDict) importable under NVIDIA's module names, only inside the block."""

    def _reconstruct_persistent_obj(meta: dict) -> Any:
        raise AssertionError("writing only")

    persistence = types.ModuleType("torch_utils.persistence")
    _reconstruct_persistent_obj.__module__ = persistence.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")
    util.EasyDict = type("EasyDict", (dict,), {"__module__": "dnnlib.util", "__qualname__": "EasyDict"})
    modules = {
        "torch_utils": types.ModuleType("torch_utils"),
        "torch_utils.persistence": persistence,
        "dnnlib": types.ModuleType("dnnlib"),
        "dnnlib.util": util,
    }
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield persistence._reconstruct_persistent_obj, util.EasyDict
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class Persistent:
    """Pickles as NVIDIA's persistence does: reconstruct_hook(meta)."""

    def __init__(self, hook: Any, meta: dict) -> None:
        self.hook, self.meta = hook, meta

    def __reduce__(self) -> tuple:
        return self.hook, (self.meta,)


def persistent_network(
    module: nn.Module, hook: Any, easydict: type, init_kwargs: dict | None = None, module_src: str = "", skip: tuple[str, ...] = ()
) -> Persistent:
    """A module as a persistence meta dict: parameters, buffers, children (recursively), plain attributes, init kwargs."""
    state: dict[str, Any] = {
        "training": False,
        "_parameters": collections.OrderedDict(module._parameters),
        "_buffers": collections.OrderedDict(module._buffers),
        "_non_persistent_buffers_set": set(),
        "_modules": collections.OrderedDict(
            (name, persistent_network(child, hook, easydict, module_src=module_src) if child is not None else None)
            for name, child in module._modules.items()
            if name not in skip
        ),
        "_forward_hooks": collections.OrderedDict(),
        "_init_args": (),
        "_init_kwargs": easydict(init_kwargs or {}),
    }
    for name, value in vars(module).items():
        if not name.startswith("_") and name not in state and isinstance(value, PLAIN_TYPES):
            state[name] = np.float64(value) if name == "weight_gain" else value
    return Persistent(hook, {"type": "class", "version": 6, "module_src": module_src, "class_name": type(module).__name__, "state": state})


def write_nvidia_pickle(
    generator: Generator,
    path: Path,
    module_src: str = "",
    g_kwargs: dict | None = None,
    d_kwargs: dict | None = None,
    training_copy: Generator | None = None,
) -> Path:
    """A stylegan2-ada-pytorch style snapshot {training_set_kwargs, G, D, G_ema, augment_pipe} of `generator`.

    g_kwargs / d_kwargs replace the stored init kwargs (default: what upstream's constructors would have been given).
    """
    with fake_nvidia_modules() as (hook, easydict):
        def g_network(source: Generator) -> Persistent:
            mapping = {"num_layers": source.mapping.num_layers}
            if source.mapping.lr_multiplier != 0.01:
                mapping["lr_multiplier"] = source.mapping.lr_multiplier
            kwargs = g_kwargs if g_kwargs is not None else {
                "z_dim": source.z_dim, "w_dim": source.w_dim, "c_dim": 0, "img_resolution": source.img_resolution, "img_channels": source.img_channels,
                "mapping_kwargs": easydict(mapping),
                "synthesis_kwargs": easydict({"channel_base": 1024, "channel_max": 64, "num_fp16_res": 0, "conv_clamp": source.conv_clamp}),
            }
            return persistent_network(source, hook, easydict, kwargs, module_src, skip=("discriminator",))

        augment = nn.Module()
        augment.register_buffer("Hz_geom", torch.randn(12))
        snapshot = {
            "training_set_kwargs": easydict({"class_name": "training.dataset.ImageFolderDataset", "resolution": generator.img_resolution}),
            "G": g_network(training_copy if training_copy is not None else generator),
            "D": None,
            "G_ema": g_network(generator),
            "augment_pipe": persistent_network(augment, hook, easydict, {"xflip": 1}, module_src),
        }
        if generator.discriminator is not None:
            d = generator.discriminator
            kwargs = d_kwargs if d_kwargs is not None else {
                "c_dim": 0, "img_resolution": d.img_resolution, "img_channels": d.img_channels, "architecture": "resnet", "conv_clamp": d.conv_clamp,
                "epilogue_kwargs": easydict({"mbstd_group_size": d.mbstd_group_size}),
            }
            snapshot["D"] = persistent_network(d, hook, easydict, kwargs, module_src)
        with open(path, "wb") as handle:
            pickle.dump(snapshot, handle)
    return path


def write_rosinality(generator: Generator, path: Path, latent_avg_shape: tuple[int, ...] | None = None, training: bool = True) -> Path:
    """A rosinality training-style checkpoint (g, g_ema, d, args, latent_avg) of `generator`.

    latent_avg_shape None writes no latent_avg (as upstream's train.py); otherwise w_avg reshaped to it.
    """
    checkpoint = export_rosinality(generator)
    if latent_avg_shape is None:
        del checkpoint["latent_avg"]
    else:
        checkpoint["latent_avg"] = checkpoint["latent_avg"].reshape(latent_avg_shape)
    if training:
        checkpoint["g"] = {key: value + 1.0 for key, value in checkpoint["g_ema"].items()}
        checkpoint["args"] = argparse.Namespace(size=generator.img_resolution, latent=generator.w_dim, n_mlp=generator.mapping.num_layers, channel_multiplier=1)
        checkpoint["ada_aug_p"] = 0.0
    torch.save(checkpoint, path)
    return path


def with_stylegan3_input(generator: Generator) -> Generator:
    """The generator with a StyleGAN3-style `synthesis.input.affine` submodule added (keys only matter)."""
    synthesis_input = nn.Module()
    synthesis_input.affine = FullyConnectedLayer(generator.w_dim, 4)
    generator.synthesis.input = synthesis_input
    return generator
