"""The Directions artefact: what every downstream consumer (pictures, metrics, editing, UI) reads."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from contrafeat.checks import check_shape
from contrafeat.errors import UserError
from contrafeat.gan.interface import GeneratorLike
from contrafeat.io_utils import atomic_replace, atomic_write_text

TENSORS_FILE = "directions.safetensors"
META_FILE = "directions.json"
FORMAT_VERSION = 1
LEGACY_STRENGTHS_KEY = "steps"
"""What directions.safetensors called the suggested strengths before they were named so (still read)."""


@dataclass
class Directions:
    """K edits: a W vector [K, C] (RMS 1) times a layer attention [K, L], with a suggested strength each."""

    vectors: torch.Tensor
    attention: torch.Tensor
    strengths: torch.Tensor
    method: str
    generator_id: str
    names: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.vectors = self.vectors.detach().float().cpu()
        self.attention = self.attention.detach().float().cpu()
        self.strengths = self.strengths.detach().float().cpu().reshape(-1)
        count = self.vectors.shape[0]
        if self.attention.shape[0] != count or self.strengths.shape[0] != count:
            raise ValueError(
                f"directions: {count} vectors but {self.attention.shape[0]} attention rows and {self.strengths.shape[0]} strengths"
            )
        if not self.names:
            self.names = [None] * count
        if len(self.names) != count:
            raise ValueError(f"directions: {count} vectors but {len(self.names)} names")

    @property
    def count(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def num_ws(self) -> int:
        return int(self.attention.shape[1])

    @property
    def w_dim(self) -> int:
        return int(self.vectors.shape[1])

    def edits(self) -> torch.Tensor:
        """The full W+ edits [K, L, C]: attention (outer) vector."""
        return self.attention[:, :, None] * self.vectors[:, None, :]

    def dominant_layers(self, index: int, mass: float = 0.8) -> list[int]:
        """The fewest layers (sorted) that hold at least `mass` of direction `index`'s attention."""
        weights, order = torch.sort(self.attention[index], descending=True)
        needed = int(torch.searchsorted(torch.cumsum(weights, 0), torch.tensor(mass * float(weights.sum()))).item()) + 1
        return sorted(int(layer) for layer in order[:needed])

    def resolve_index(self, index: int | None = None, name: str | None = None) -> int:
        """A direction index from an index or a stored name, with a clear error for either being unknown."""
        if name is not None:
            if name not in self.names:
                known = ", ".join(f"{i}={n}" for i, n in enumerate(self.names) if n) or "none"
                raise UserError(f"{name!r}: no direction has that name (named directions: {known})")
            return self.names.index(name)
        if index is None or not -self.count <= index < self.count:
            raise UserError(f"{index}: expected a direction index in 0..{self.count - 1}")
        return index % self.count

    def apply(self, ws: torch.Tensor, index: int | torch.Tensor, strength: float | torch.Tensor) -> torch.Tensor:
        """ws [B, L, C] + strength * edit[index]; index and strength may be per-sample tensors [B]."""
        check_shape(ws, ["B", self.num_ws, self.w_dim], "W+ codes for these directions")
        edits = self.edits().to(ws.device, ws.dtype)[index]
        strength = torch.as_tensor(strength, dtype=ws.dtype, device=ws.device)
        if edits.ndim == 3:
            strength = strength.reshape(-1, 1, 1)
        return ws + strength * edits

    def check_compatible(self, generator: GeneratorLike) -> None:
        """Refuse a generator whose W+ shape differs from the one the directions were found in."""
        if (generator.num_ws, generator.w_dim) != (self.num_ws, self.w_dim):
            raise UserError(
                f"these directions were found in a W+ of {self.num_ws} x {self.w_dim} (generator {self.generator_id}), "
                f"but the generator has {generator.num_ws} x {generator.w_dim}"
            )

    def save(self, folder: Path) -> None:
        """Write directions.safetensors and directions.json into `folder` (atomically)."""
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"vectors": self.vectors.contiguous(), "attention": self.attention.contiguous(), "strengths": self.strengths}
        temporary = folder / (TENSORS_FILE + ".tmp")
        save_file(tensors, str(temporary))
        atomic_replace(temporary, folder / TENSORS_FILE)
        meta = {
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "generator_id": self.generator_id,
            "num_ws": self.num_ws,
            "w_dim": self.w_dim,
            "count": self.count,
            "directions": [
                {
                    "index": i,
                    "name": self.names[i],
                    "suggested_strength": float(self.strengths[i]),
                    "dominant_layers": self.dominant_layers(i),
                }
                for i in range(self.count)
            ],
        }
        atomic_write_text(folder / META_FILE, json.dumps(meta, indent=2))


def load_directions(path: str | Path) -> Directions:
    """Read a Directions artefact from a run folder (or its directions.json / .safetensors file)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    tensors_path, meta_path = folder / TENSORS_FILE, folder / META_FILE
    for required in (tensors_path, meta_path):
        if not required.is_file():
            raise UserError(f"{path}: no {required.name} there; expected a run folder written by `contrafeat discover`")
    try:
        meta = json.loads(meta_path.read_text())
        tensors = load_file(str(tensors_path))
        directions = Directions(
            vectors=tensors["vectors"],
            attention=tensors["attention"],
            strengths=tensors["strengths"] if "strengths" in tensors else tensors[LEGACY_STRENGTHS_KEY],
            method=meta["method"],
            generator_id=meta["generator_id"],
            names=[entry.get("name") for entry in meta["directions"]],
        )
    except (ValueError, KeyError, OSError, json.JSONDecodeError) as error:
        raise UserError(f"{folder}: unreadable directions artefact ({error})") from error
    if (directions.num_ws, directions.w_dim) != (meta["num_ws"], meta["w_dim"]):
        raise UserError(f"{meta_path}: says {meta['num_ws']} x {meta['w_dim']} but the tensors are {directions.num_ws} x {directions.w_dim}")
    return directions
