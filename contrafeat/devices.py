"""Which torch device a command runs on: `auto` picks cuda, then mps, then cpu (one source for every command)."""
from __future__ import annotations

import torch

from contrafeat.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def mps_available() -> bool:
    """Whether Apple's Metal backend can run here."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; plain `cuda` means cuda:LOCAL_RANK (one GPU per rank under torchrun)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r}: expected one of {', '.join(DEVICE_CHOICES)} (or cuda:N)") from None
    if device.type not in DEVICE_CHOICES:
        raise UserError(f"--device {name!r}: expected one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name!r}: CUDA is not available here; use --device auto or cpu")
    if device.type == "mps" and not mps_available():
        raise UserError(f"--device {name!r}: MPS is not available here; use --device auto or cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device
