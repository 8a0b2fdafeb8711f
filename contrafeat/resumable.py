"""The one training loop of the package (`run_steps`: progress bar, periodic atomic saves, a save on Ctrl-C), and the
resume rules of the small trainings, which keep a training state beside their output file while unfinished.

A training has `step_count`, `total_steps` and `train_step()` (one optimisation step, returns its named loss
terms); a small training also has `state_dict()` (the state after the last completed step) and
`load_state_dict(state, path)` (which refuses a training state made with other settings, naming `path`).
"""
from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import torch
from tqdm import tqdm

from contrafeat.errors import UserError, one_line
from contrafeat.io_utils import atomic_torch_save


class Training(Protocol):
    @property
    def step_count(self) -> int: ...

    @property
    def total_steps(self) -> int: ...

    def train_step(self) -> dict[str, float]: ...


class Resumable(Training, Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any], path: Path) -> None: ...


def current_or_older(current: Path, older: Path) -> Path:
    """`current`, unless only a file under its `older` name exists (a training state saved before the rename)."""
    return older if older.is_file() and not current.exists() else current


def state_path(out: Path) -> Path:
    """Where a run writing `out` keeps its resumable training state until it finishes (or found it under its older name)."""
    return current_or_older(out.with_name(out.name + ".state.pt"), out.with_name(out.name + ".checkpoint.pt"))


def start_or_resume(training: Resumable, state_file: Path, resume: bool) -> None:
    """Load the training state when resuming; refuse to start over an unfinished run or to resume a missing one."""
    if not resume:
        if state_file.exists():
            raise UserError(f"{state_file}: an unfinished run exists; pass --resume to continue it or delete the file")
        return
    if not state_file.is_file():
        raise UserError(f"{state_file}: no training state to resume (it is written while a run is unfinished)")
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        training.load_state_dict(state, state_file)
    except (OSError, RuntimeError, KeyError, AttributeError, pickle.UnpicklingError) as error:
        raise UserError(f"{state_file}: cannot resume from this training state ({one_line(error)})") from error


def state_saver(training: Resumable, state_file: Path) -> Callable[[], None]:
    """What saves a small training: its state written atomically to `state_file`."""
    return lambda: atomic_torch_save(training.state_dict(), state_file)


def run_steps(
    training: Training,
    save: Callable[[], None],
    save_every: int,
    progress: bool,
    description: str,
    after_step: Callable[[dict[str, float]], dict[str, float]] | None = None,
) -> None:
    """Train to `total_steps`, calling `save` every `save_every` steps and on Ctrl-C.

    `after_step` sees each step's terms and returns what the progress bar shows (default: the loss)."""
    if save_every < 1:
        raise UserError(f"--save-every {save_every}: expected a positive integer")
    bar = tqdm(total=training.total_steps, initial=training.step_count, disable=not progress, desc=description, unit="step")
    try:
        while training.step_count < training.total_steps:
            terms = training.train_step()
            bar.update(1)
            shown = after_step(terms) if after_step is not None else {"loss": terms["loss"]}
            if shown:
                bar.set_postfix({name: f"{value:.4f}" for name, value in shown.items()})
            if training.step_count % save_every == 0:
                save()
    except KeyboardInterrupt:
        save()
        raise
    finally:
        bar.close()


def cosine_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, lr: float, step: int, steps: int) -> None:
    """One optimiser step on `loss` at the cosine-decayed rate lr * (1 + cos(pi * step / steps)) / 2."""
    for group in optimizer.param_groups:
        group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / steps))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
