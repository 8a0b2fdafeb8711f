"""The editing model behind the web editor: a source code, truncation and one strength per direction -> W+ code and PNG."""
from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from contrafeat.discovery.directions import Directions
from contrafeat.editing.edit import finite_number
from contrafeat.errors import UserError
from contrafeat.gan.interface import GeneratorLike
from contrafeat.viz.images import to_pil

MAX_SEED = 2**32 - 1
PSI_RANGE = (-1.0, 2.0)
STRENGTH_LIMIT = 100.0
"""Largest |strength| accepted, in multiples of the suggested strength (the page's sliders span far less)."""
SEED_CACHE_SIZE = 64
MAX_UPLOAD_ID = 64


@dataclass(frozen=True)
class EditState:
    """What one picture depends on: a seed or a projected upload, truncation psi, and strengths in multiples of the suggested strengths."""

    seed: int | None
    upload: str | None
    psi: float
    strengths: tuple[float, ...]

    @property
    def label(self) -> str:
        """A short name for download files: seed0042 or upload_<id>."""
        return f"seed{self.seed:04d}" if self.seed is not None else f"upload_{self.upload}"


def _one(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[-1] if values else None


def _source(query: dict[str, list[str]]) -> tuple[int | None, str | None]:
    """(seed, None) or (None, upload id) from seed=N or upload=ID."""
    seed_text, upload = _one(query, "seed"), _one(query, "upload")
    if (seed_text is None) == (upload is None):
        raise UserError("give exactly one source: seed=N or upload=ID")
    if upload is not None:
        if not (upload.isascii() and upload.isalnum() and len(upload) <= MAX_UPLOAD_ID):
            raise UserError(f"upload {upload[:MAX_UPLOAD_ID]!r}: expected the id that the upload answered with")
        return None, upload
    assert seed_text is not None  # exactly one of the two was given
    if not seed_text.isdigit() or int(seed_text) > MAX_SEED:
        raise UserError(f"seed {seed_text!r}: expected an integer in 0..{MAX_SEED}")
    return int(seed_text), None


def _strengths(text: str, count: int) -> tuple[float, ...]:
    """count comma-separated strengths in multiples of the suggested strengths; an empty text means all zero."""
    strengths = tuple(finite_number(part, "strength") for part in text.split(",")) if text else (0.0,) * count
    if len(strengths) != count:
        raise UserError(f"s: expected {count} comma-separated strengths (one per direction), got {len(strengths)}")
    if any(abs(value) > STRENGTH_LIMIT for value in strengths):
        raise UserError(f"s: strengths are limited to +-{STRENGTH_LIMIT:g} times the suggested strengths")
    return strengths


def parse_state(query: dict[str, list[str]], count: int) -> EditState:
    """An EditState from URL query values: seed=N or upload=ID, psi=X, s=v0,v1,... (count values, or none for zeros)."""
    seed, upload = _source(query)
    psi = finite_number(_one(query, "psi") or "1", "psi")
    if not PSI_RANGE[0] <= psi <= PSI_RANGE[1]:
        raise UserError(f"psi {psi:g}: expected a truncation in {PSI_RANGE[0]:g}..{PSI_RANGE[1]:g}")
    return EditState(seed, upload, psi, _strengths(_one(query, "s") or "", count))


class Editor:
    """Renders edit states with one generator and one Directions artefact; renders are serialised by a lock."""

    def __init__(self, generator: GeneratorLike, directions: Directions, uploaded_code: Callable[[str], torch.Tensor]) -> None:
        directions.check_shape_of(generator)
        self.generator = generator
        self.directions = directions
        self.uploaded_code = uploaded_code
        self.scaled_edits = (directions.strengths[:, None, None] * directions.edits()).to(generator.w_avg.device)
        self.render_lock = threading.Lock()
        self.seed_codes: OrderedDict[int, torch.Tensor] = OrderedDict()

    def describe(self) -> list[dict]:
        """One entry per direction: index, name, label, suggested strength and dominant layers."""
        names, strengths = self.directions.names, self.directions.strengths
        return [
            {
                "index": index,
                "name": names[index],
                "label": names[index] or f"direction {index}",
                "suggested_strength": float(strengths[index]),
                "dominant_layers": self.directions.dominant_layers(index),
            }
            for index in range(self.directions.count)
        ]

    def _seed_code(self, seed: int) -> torch.Tensor:
        """The untruncated W+ code [1, num_ws, w_dim] of a seed (z from torch.Generator().manual_seed(seed)); cached."""
        if seed not in self.seed_codes:
            z = torch.randn(1, self.generator.z_dim, generator=torch.Generator().manual_seed(seed))
            w = self.generator.mapping(z.to(self.generator.w_avg.device))
            self.seed_codes[seed] = self.generator.broadcast(w)
            if len(self.seed_codes) > SEED_CACHE_SIZE:
                self.seed_codes.popitem(last=False)
        self.seed_codes.move_to_end(seed)
        return self.seed_codes[seed]

    def _edited(self, state: EditState) -> torch.Tensor:
        """The source code lerped towards w_avg by psi, plus the strengths times the scaled edits (call under the lock)."""
        if state.seed is not None:
            base = self._seed_code(state.seed)
        else:
            assert state.upload is not None  # a state has a seed or an upload
            base = self.uploaded_code(state.upload).to(self.generator.w_avg.device)
        truncated = self.generator.truncate(base, state.psi)
        strengths = torch.tensor(state.strengths, dtype=truncated.dtype, device=truncated.device)
        return truncated + torch.einsum("k,klc->lc", strengths, self.scaled_edits)[None]

    @torch.no_grad()
    def code(self, state: EditState) -> torch.Tensor:
        """The edited W+ code [1, num_ws, w_dim]: the source lerped towards w_avg by psi, plus the weighted edits."""
        with self.render_lock:
            return self._edited(state).cpu()

    @torch.no_grad()
    def render_png(self, state: EditState) -> bytes:
        """The edited picture as PNG bytes."""
        with self.render_lock:
            image = self.generator.synthesis(self._edited(state), noise_mode="const")[0].cpu()
        buffer = io.BytesIO()
        to_pil(image).save(buffer, format="PNG")
        return buffer.getvalue()

    def code_npz(self, state: EditState) -> bytes:
        """The edited W+ code as .npz bytes with key 'w' ([1, num_ws, w_dim], float32), as `generate --projected-w` reads."""
        buffer = io.BytesIO()
        np.savez(buffer, w=self.code(state).numpy().astype(np.float32))
        return buffer.getvalue()
