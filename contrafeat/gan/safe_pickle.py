"""Reading NVIDIA network pickles without running anything from them: an unpickler with an allow-list of globals.

Networks in those pickles are stored through `torch_utils.persistence`, whose reconstruct hook would execute
the source code embedded in the file. Here the hook is replaced by a stand-in that returns the stored meta
dict (`class_name`, `state`, ...) as plain data, and every global outside the allow-list is refused.
"""
from __future__ import annotations

import collections
import importlib
import io
import pickle
import re
from pathlib import Path
from typing import Any, Callable

import torch

from contrafeat.errors import CheckpointError

PERSISTENCE_MODULE = "torch_utils.persistence"
PERSISTENCE_HOOK = "_reconstruct_persistent_obj"
TENSORFLOW_MODULE_PREFIX = "dnnlib.tflib"


def persistent_stand_in(meta: Any) -> Any:
    """Replaces the persistence hook: the meta dict {type, version, module_src, class_name, state} comes back as data."""
    return meta


def refused_global(error: Exception) -> str | None:
    """The global named in a torch weights-only refusal ('Unsupported global: GLOBAL module.name'), if any.

    torch leaves the module off builtins ('GLOBAL exec'); it is put back ('builtins.exec')."""
    match = re.search(r"GLOBAL ([\w.]+)", str(error))
    if match is None:
        return None
    name = match.group(1)
    return name if "." in name else f"builtins.{name}"


def storage_loader(path: Path) -> Callable[[bytes], Any]:
    """Replaces torch.storage._load_from_bytes: each nested legacy torch blob is read with weights_only=True."""

    def load_storage_bytes(data: bytes) -> Any:
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            name = refused_global(error) or "an unknown global"
            raise CheckpointError(f"{path}: refused a tensor storage that needs '{name}' (only plain tensor data is allowed)") from None

    return load_storage_bytes


def _numpy_global(name: str) -> Callable[[Path], Any]:
    """numpy's multiarray helper `name`, wherever this numpy keeps it (numpy 2 renamed numpy.core to numpy._core)."""

    def resolve(path: Path) -> Any:
        try:
            module = importlib.import_module("numpy._core.multiarray")
        except ImportError:
            module = importlib.import_module("numpy.core.multiarray")
        return getattr(module, name)

    return resolve


def _fixed(value: Any) -> Callable[[Path], Any]:
    return lambda path: value


def _numpy(name: str) -> Callable[[Path], Any]:
    return lambda path: getattr(importlib.import_module("numpy"), name)


ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[Path], Any]] = {
    (PERSISTENCE_MODULE, PERSISTENCE_HOOK): _fixed(persistent_stand_in),
    ("dnnlib.util", "EasyDict"): _fixed(dict),
    ("dnnlib", "EasyDict"): _fixed(dict),
    ("torch.storage", "_load_from_bytes"): storage_loader,
    ("torch._utils", "_rebuild_tensor_v2"): _fixed(torch._utils._rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): _fixed(torch._utils._rebuild_parameter),
    ("collections", "OrderedDict"): _fixed(collections.OrderedDict),
    ("numpy.core.multiarray", "scalar"): _numpy_global("scalar"),
    ("numpy._core.multiarray", "scalar"): _numpy_global("scalar"),
    ("numpy.core.multiarray", "_reconstruct"): _numpy_global("_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_global("_reconstruct"),
    ("numpy", "dtype"): _numpy("dtype"),
    ("numpy", "ndarray"): _numpy("ndarray"),
    ("builtins", "set"): _fixed(set),
    ("builtins", "frozenset"): _fixed(frozenset),
    ("builtins", "slice"): _fixed(slice),
    ("builtins", "complex"): _fixed(complex),
    ("builtins", "bytearray"): _fixed(bytearray),
    ("_codecs", "encode"): _fixed(lambda text, encoding="utf-8": text.encode(encoding)),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in ALLOWED_GLOBALS (each resolver gets the file's path); any other global is refused with a CheckpointError naming it."""

    def __init__(self, file: io.BufferedIOBase, path: Path) -> None:
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        resolve = ALLOWED_GLOBALS.get((module, name))
        if resolve is not None:
            return resolve(self.path)
        if module.startswith(TENSORFLOW_MODULE_PREFIX):
            raise CheckpointError(
                f"{self.path}: a TensorFlow-era StyleGAN pickle (it needs '{module}.{name}'); "
                "convert it to a PyTorch pickle with NVIDIA stylegan2-ada-pytorch's legacy.py first"
            )
        raise CheckpointError(
            f"{self.path}: refused to unpickle the global '{module}.{name}' "
            "(only tensors, plain containers and StyleGAN2 network data are allowed; nothing in the file is executed)"
        )


def load_restricted_pickle(path: Path) -> Any:
    """Unpickle `path` with RestrictedUnpickler; a truncated or corrupt stream becomes a one-line CheckpointError."""
    try:
        with open(path, "rb") as handle:
            return RestrictedUnpickler(handle, path).load()
    except CheckpointError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError, AttributeError, RuntimeError, MemoryError) as error:
        detail = " ".join(str(error).split())[:200]
        raise CheckpointError(f"{path}: truncated or corrupt pickle ({type(error).__name__}: {detail})") from None
