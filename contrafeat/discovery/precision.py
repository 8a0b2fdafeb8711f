"""Mixed precision and memory layout of the frozen generator and sensor during discovery.

`fp32` runs everything in float32. `bf16` and `fp16` autocast the generator and sensor forward passes
on CUDA (fp16 with a GradScaler, since its gradients underflow); the losses, the navigator and the
optimiser stay in float32. On the CPU bf16 autocast is allowed (torch supports it; useful on CPUs
with bf16 units) and fp16 is refused; MPS accepts neither.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from contrafeat.errors import UserError

PRECISIONS = ("fp32", "bf16", "fp16")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
SUPPORTED = {"cuda": PRECISIONS, "cpu": ("fp32", "bf16"), "mps": ("fp32",)}


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision this device cannot autocast to, naming what it can."""
    allowed = SUPPORTED.get(device.type, ("fp32",))
    if precision not in allowed:
        raise UserError(f"--precision {precision}: not supported on {device.type} (supported there: {', '.join(allowed)}); fp16 needs CUDA")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of the frozen forward passes (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for fp16; a pass-through scaler otherwise."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def accelerate_sensor(sensor: nn.Module, device: torch.device, channels_last: bool, compile_sensor: bool) -> nn.Module:
    """The sensor in channels-last layout (CUDA only, where it helps convolutions) and/or compiled by torch.compile."""
    if channels_last and device.type == "cuda":
        # Module.to takes memory_format (documented, torch >= 1.5); torch's overloads of `to` leave it out.
        sensor = sensor.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if not compile_sensor:
        return sensor
    if not hasattr(torch, "compile"):
        raise UserError("--compile: this torch has no torch.compile; upgrade torch or leave --compile out")
    try:
        # A module compiles to an OptimizedModule (an nn.Module); torch.compile's stub returns Callable for any input.
        return torch.compile(sensor)  # type: ignore[return-value]
    except RuntimeError as error:
        raise UserError(f"--compile: torch.compile is not available here ({error}); leave --compile out") from error
