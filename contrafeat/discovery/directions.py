"""The Directions artefact: what every downstream consumer (pictures, metrics, editing, UI) reads."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from contrafeat.checks import check_shape
from contrafeat.errors import UserError
from contrafeat.gan.identity import generator_identity
from contrafeat.gan.interface import GeneratorLike
from contrafeat.io_utils import atomic_replace, atomic_write_text

TENSORS_FILE = "directions.safetensors"
META_FILE = "directions.json"
FORMAT_VERSION = 1
LEGACY_STRENGTHS_KEY = "steps"
"""What directions.safetensors called the suggested strengths before they were named so (still read)."""
LOG = logging.getLogger(__name__)


class GeneratorMismatch(UserError):
    """Directions applied to a generator other than the one they were found in (the commands add `--force`)."""


@dataclass
class Directions:
    """K edits of W+: a W vector [K, C] (RMS 1) times a layer attention [K, L], with a suggested strength each.

    Edit k at strength s moves W+ codes by `s * attention[k] (outer) vectors[k]`; the suggested strength is one a
    visible but moderate edit takes. A run folder holds the artefact (`save`, `load`).

    Args:
        vectors: [K, C] W directions (C = the generator's w_dim).
        attention: [K, L] weight of each of the L = num_ws layers per direction.
        strengths: [K] suggested strength per direction.
        method: the discovery method that found them (e.g. `contra-bi`, `truth`).
        generator_id: `gan.identity.generator_identity` of the generator they were found in.
        names: a name or None per direction (empty: all None).

    Raises:
        ValueError: the tensors or names disagree on K.
    """

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
        """The full W+ edits at strength 1.

        Returns:
            [K, L, C]: attention (outer) vector of every direction.
        """
        return self.attention[:, :, None] * self.vectors[:, None, :]

    def dominant_layers(self, index: int, mass: float = 0.8) -> list[int]:
        """The fewest layers (sorted) that hold at least `mass` of direction `index`'s attention."""
        weights, order = torch.sort(self.attention[index], descending=True)
        needed = int(torch.searchsorted(torch.cumsum(weights, 0), torch.tensor(mass * float(weights.sum()))).item()) + 1
        return sorted(int(layer) for layer in order[:needed])

    def resolve_index(self, index: int | None = None, name: str | None = None) -> int:
        """A direction's index from an index (negative ones count from the end) or a stored name.

        Args:
            index: the direction's index, used when `name` is None.
            name: a name given to a direction (`contrafeat name`).

        Returns:
            The index in 0..K-1.

        Raises:
            UserError: no direction has that name, or the index is out of range.
        """
        if name is not None:
            if name not in self.names:
                known = ", ".join(f"{i}={n}" for i, n in enumerate(self.names) if n) or "none"
                raise UserError(f"{name!r}: no direction has that name (named directions: {known})")
            return self.names.index(name)
        if index is None or not -self.count <= index < self.count:
            raise UserError(f"{index}: expected a direction index in 0..{self.count - 1}")
        return index % self.count

    def apply(self, ws: torch.Tensor, index: int | torch.Tensor, strength: float | torch.Tensor) -> torch.Tensor:
        """Edit W+ codes: ws + strength * edits()[index].

        Args:
            ws: [B, L, C] W+ codes (e.g. `G.broadcast(G.mapping(z))`).
            index: one direction, or one per sample ([B] long tensor).
            strength: one strength, or one per sample ([B] tensor); `self.strengths[index]` is the suggested one.

        Returns:
            [B, L, C] edited codes, on ws's device and dtype.

        Raises:
            ValueError: ws is not [B, num_ws, w_dim].
        """
        check_shape(ws, ["B", self.num_ws, self.w_dim], "W+ codes for these directions")
        edits = self.edits().to(ws.device, ws.dtype)[index]
        strength = torch.as_tensor(strength, dtype=ws.dtype, device=ws.device)
        if edits.ndim == 3:
            strength = strength.reshape(-1, 1, 1)
        return ws + strength * edits

    def check_shape_of(self, generator: GeneratorLike) -> None:
        """Refuse a generator whose W+ shape differs from the one the directions were found in (UserError)."""
        if (generator.num_ws, generator.w_dim) != (self.num_ws, self.w_dim):
            raise UserError(
                f"these directions were found in a W+ of {self.num_ws} x {self.w_dim} (generator {self.generator_id}), "
                f"but the generator has {generator.num_ws} x {generator.w_dim}"
            )

    def check_compatible(self, generator: GeneratorLike, strict: bool = True, label: str = "the given generator") -> None:
        """Check that the directions belong to `generator`: the same W+ shape and the same weights.

        The same shape is not enough: directions found in one generator mean nothing in another's W.

        Args:
            generator: the generator the directions are to be applied in.
            strict: True refuses another generator's directions; False only logs a warning (`logging`, this
                module's logger) and lets them be applied.
            label: how messages name the generator (the commands pass the checkpoint).

        Raises:
            UserError: the W+ shapes differ (whatever `strict` is).
            GeneratorMismatch: a UserError: the generator's identity (`gan.identity.generator_identity`) is not
                `generator_id`, under `strict`.
        """
        self.check_shape_of(generator)
        identity = generator_identity(generator)
        if identity == self.generator_id:
            return
        message = f"these directions were found in generator {self.generator_id}, but {label} is generator {identity}"
        if strict:
            raise GeneratorMismatch(message)
        LOG.warning(message)

    def save(self, folder: str | Path) -> None:
        """Write the artefact into `folder` (created if needed), each file atomically.

        Args:
            folder: typically a run folder; gets directions.safetensors (vectors, attention, strengths) and
                directions.json (method, generator identity, shapes, per direction its name, suggested
                strength and dominant layers).
        """
        folder = Path(folder)
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

    @classmethod
    def load(cls, path: str | Path) -> Directions:
        """Read an artefact written by `save` (or by `contrafeat discover`).

        Args:
            path: a run folder, or its directions.json or directions.safetensors file.

        Returns:
            The directions, equal to those saved.

        Raises:
            UserError: a file is missing or unreadable, or the two files disagree on the shape.
        """
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        tensors_path, meta_path = folder / TENSORS_FILE, folder / META_FILE
        for required in (tensors_path, meta_path):
            if not required.is_file():
                raise UserError(f"{path}: no {required.name} there; expected a run folder written by `contrafeat discover`")
        try:
            meta = json.loads(meta_path.read_text())
            tensors = load_file(str(tensors_path))
            directions = cls(
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


def load_directions(path: str | Path) -> Directions:
    """Read a Directions artefact: the same as `Directions.load`.

    Args:
        path: a run folder, or its directions.json or directions.safetensors file.

    Returns:
        The directions.

    Raises:
        UserError: a file is missing or unreadable.
    """
    return Directions.load(path)
