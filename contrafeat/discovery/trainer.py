"""The discovery loop: seeded codes, objective + diversity, Adam(s), logs, atomic saves of the training state, exact resume.

Data parallelism and gradient accumulation keep the single-process result. Every rank draws the whole
global batch (codes and per-unit random values) from the same seeded generator and trains on its share
of the units, in micro-batches; the objective back-propagates its share (`Objective.backward`: each
micro-batch's loss weighted by its fraction of the batch; Pt's prototypes through the sensor once; a loss
that couples the whole batch, LatentCLR, by caching its gradient), gradients are summed over ranks, and the
diversity term (which does not depend on the batch) is added once after the sum. The random state is thus
the same on every rank, and a training state resumes under any number of ranks.
"""
from __future__ import annotations

import contextlib
import copy
import json
import time
from pathlib import Path
from typing import IO, Sequence

import torch

from contrafeat.discovery import distributed
from contrafeat.discovery.config import DiscoveryConfig
from contrafeat.discovery.directions import Directions
from contrafeat.discovery.distributed import Runtime
from contrafeat.discovery.losses import diversity_loss, tensor_sum
from contrafeat.discovery.navigator import Navigator
from contrafeat.discovery.objectives import FeatureSource, Objective, Share
from contrafeat.discovery.precision import check_precision, grad_scaler
from contrafeat.discovery.strengths import suggest_strengths
from contrafeat.discovery.subspace import PCABasis
from contrafeat.discovery.validation import VALIDATION_CODES, VALIDATION_FILE, VALIDATION_SEED, DirectionsMeasure, Progress, Validation
from contrafeat.errors import UserError
from contrafeat.gan.identity import generator_identity
from contrafeat.gan.interface import GeneratorLike
from contrafeat.io_utils import atomic_torch_save
from contrafeat.resumable import current_or_older, run_steps

STATE_FILE = "training_state.pt"
LEGACY_STATE_FILE = "checkpoint.pt"
"""What run folders called their training state before it was named so (resumed, and replaced at the next save)."""
LOG_FILE = "log.jsonl"
MAIN_OPTIMISER = "main"
"""The Adam of the navigator and of the objective's parameters that have no optimiser of their own."""


def sample_start_codes(generator: GeneratorLike, batch: int, config: DiscoveryConfig, rng: torch.Generator) -> torch.Tensor:
    """W+ codes [B, L, C]; style-mixed from two z (layers [0, L/2) and [L/2, L)) when configured."""
    sources = 2 if config.style_mix else 1
    z = torch.randn(sources * batch, generator.z_dim, generator=rng).to(generator.w_avg.device)
    with torch.no_grad():
        w = generator.mapping(z, truncation_psi=config.truncation)
    ws = w[:batch, None, :].repeat(1, generator.num_ws, 1)
    if config.style_mix:
        ws[:, generator.num_ws // 2 :] = w[batch:, None, :]
    return ws


def tensorboard_writer(run_dir: Path):
    """A TensorBoard SummaryWriter into the run folder when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def saved_state(run_dir: Path) -> Path | None:
    """The run folder's training state file (or its older name), None when there is none."""
    path = current_or_older(run_dir / STATE_FILE, run_dir / LEGACY_STATE_FILE)
    return path if path.is_file() else None


def write_log_line(log: IO[str], board, step: int, values: dict[str, float]) -> None:
    """One line of a .jsonl log (flushed) and the values as TensorBoard scalars when a writer is open."""
    log.write(json.dumps({"step": step, **values}) + "\n")
    log.flush()
    if board is not None:
        for name, value in values.items():
            if name != "images_per_s":
                board.add_scalar(name, value, step)


def truncate_log(path: Path, step: int) -> None:
    """Drop the lines of a .jsonl log written after `step` (a resumed run writes them again)."""
    if path.is_file():
        kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept))


class ParameterAverage:
    """The running mean of a module's parameters over the steps after `start` (Polyak averaging)."""

    def __init__(self) -> None:
        self.start, self.count = -1, 0
        self.means: dict[str, torch.Tensor] = {}

    def update(self, module: torch.nn.Module, start: int) -> None:
        """Add the current parameters; a new `start` (a resumed run with more steps) begins the mean again."""
        if start != self.start:
            self.start, self.count, self.means = start, 0, {}
        self.count += 1
        for name, parameter in module.named_parameters():
            value = parameter.detach()
            mean = self.means.setdefault(name, torch.zeros_like(value))
            mean += (value - mean) / self.count

    def averaged(self, module: torch.nn.Module) -> torch.nn.Module:
        """A copy of `module` holding the mean parameters (the module itself while nothing is averaged)."""
        if not self.count:
            return module
        result = copy.deepcopy(module)
        with torch.no_grad():
            for name, parameter in result.named_parameters():
                parameter.copy_(self.means[name])
        return result

    def state_dict(self) -> dict:
        return {"start": self.start, "count": self.count, "means": self.means}

    def load_state_dict(self, state: dict) -> None:
        self.start, self.count, self.means = int(state["start"]), int(state["count"]), dict(state["means"])


class Trainer:
    """Owns the navigator, the objective, the optimisers and every random state of one run (of one rank).

    `run_dir` None trains in memory: no logs, no looks, no training state.

    `optimizers` holds the main Adam (lr, betas of the config: navigator, prototypes) and one Adam per entry
    of the objective's `own_optimisers` (Recog's reconstructor at --recog-lr), with the config's betas.
    """

    def __init__(
        self,
        config: DiscoveryConfig,
        generator: GeneratorLike,
        sensor: torch.nn.Module | None,
        pca: PCABasis,
        navigator: Navigator,
        objective: Objective,
        run_dir: Path | None,
        runtime: Runtime | None = None,
        measures: Sequence[DirectionsMeasure] = (),
    ) -> None:
        self.config, self.generator, self.pca = config, generator, pca
        self.generator_id = generator_identity(generator)
        self.runtime = runtime or Runtime(device=generator.w_avg.device)
        check_precision(config.precision, self.runtime.device)
        self.features = FeatureSource(generator, sensor, config.noise_mode, config.precision, config.channels_last)
        self.navigator, self.objective, self.run_dir = navigator.to(self.runtime.device), objective.to(self.runtime.device), run_dir
        betas = (config.beta1, config.beta2)
        own = {name: ([p for p in parameters if p.requires_grad], lr) for name, (parameters, lr) in objective.own_optimisers().items()}
        separate = {id(p) for parameters, _ in own.values() for p in parameters}
        shared = [p for p in [*navigator.parameters(), *objective.parameters()] if p.requires_grad and id(p) not in separate]
        self.optimizers = {
            MAIN_OPTIMISER: torch.optim.Adam(shared, lr=config.lr, betas=betas),
            **{name: torch.optim.Adam(parameters, lr=lr, betas=betas) for name, (parameters, lr) in own.items()},
        }
        self.scaler = grad_scaler(config.precision, self.runtime.device)
        self.rng = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(distributed.local_seed(config.seed, self.runtime.rank, 0))
        self.step_count = 0
        self.average = ParameterAverage()
        self.progress = Progress(self._validation(), measures) if self.runtime.is_main else None

    def _validation(self) -> Validation:
        """The fixed validation batch: codes drawn as training draws them, and the objective's draws for them."""
        rng = torch.Generator().manual_seed(VALIDATION_SEED)
        ws = sample_start_codes(self.generator, VALIDATION_CODES, self.config, rng)
        return Validation(self.objective, self.features, ws.to(self.runtime.device), self.navigator.num_directions, rng)

    @property
    def average_start(self) -> int:
        """The step after which the navigator's parameters are averaged into the result (config.averaging of the steps)."""
        return self.config.steps - round(self.config.averaging * self.config.steps)

    def result_navigator(self) -> Navigator:
        """The navigator whose directions the run returns now: the averaged one inside the averaging window."""
        navigator = self.average.averaged(self.navigator)
        assert isinstance(navigator, Navigator)  # a copy of the navigator, or itself
        return navigator

    @property
    def total_steps(self) -> int:
        return self.config.steps

    @property
    def parameters(self) -> list[torch.nn.Parameter]:
        """Every trained parameter, optimiser by optimiser."""
        return [p for optimizer in self.optimizers.values() for group in optimizer.param_groups for p in group["params"]]

    def share(self, units: int) -> Share:
        """This rank's share of a step's units, cut into micro-batches of config.micro_batch codes."""
        share = distributed.rank_share(units, self.runtime)
        codes_per_unit = self.objective.codes_per_unit
        size = max(1, self.config.micro_batch // codes_per_unit) if self.config.micro_batch else len(share)
        return Share(list(share.split(size)), units, self.runtime, self.scaler.scale)

    def train_step(self) -> dict[str, float]:
        """One optimisation step on the global batch: draw, backward of this rank's share, sum over ranks, diversity,
        step; returns the loss terms (over the whole batch) as floats."""
        ws = sample_start_codes(self.generator, self.config.batch_size, self.config, self.rng)
        units = self.objective.units(ws)
        draws = self.objective.draw(units.shape[0], self.navigator.num_directions, self.rng)
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        terms = self.objective.backward(units, draws, self.navigator, self.features, self.share(units.shape[0]))
        self._sum_over_ranks(terms)
        if self.config.diversity_weight:
            terms["diversity"] = diversity_loss(self.navigator.edits())
            self.scaler.scale(self.config.diversity_weight * terms["diversity"]).backward()
        self._optimizer_step()
        self.step_count += 1
        if self.config.averaging and self.step_count > self.average_start:
            self.average.update(self.navigator, self.average_start)
        total = tensor_sum((self.config.diversity_weight if name == "diversity" else 1.0) * value for name, value in terms.items())
        return {"loss": float(total.detach()), **{name: float(value.detach()) for name, value in terms.items()}}

    def _sum_over_ranks(self, terms: dict[str, torch.Tensor]) -> None:
        """Gradients and loss terms summed over the ranks (each already weighted by its share of the batch)."""
        gradients = []
        for parameter in self.parameters:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            gradients.append(parameter.grad)
        values = torch.stack(list(terms.values()))
        distributed.all_reduce_sum_(gradients + [values], self.runtime)
        terms.update(zip(terms, values))

    def _optimizer_step(self) -> None:
        """Unscale (fp16), replace non-finite gradients, a step of every Adam, one scaler update."""
        for optimizer in self.optimizers.values():
            self.scaler.unscale_(optimizer)
        for parameter in self.parameters:
            assert parameter.grad is not None  # _sum_over_ranks gave every parameter one
            torch.nan_to_num_(parameter.grad, nan=0.0, posinf=1e5, neginf=-1e5)
        for optimizer in self.optimizers.values():
            self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict:
        """Everything a resume needs; the same on every rank but the torch RNG (rank 0's, which only feeds synthesis noise)."""
        return {
            "step": self.step_count,
            "navigator": self.navigator.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizers": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
            "scaler": self.scaler.state_dict(),
            "average": self.average.state_dict(),
            "rng": self.rng.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def save_state(self) -> None:
        """Write training_state.pt atomically (rank 0 of a run with a folder)."""
        if self.runtime.is_main and self.run_dir is not None:
            atomic_torch_save(self.state_dict(), self.run_dir / STATE_FILE)
            (self.run_dir / LEGACY_STATE_FILE).unlink(missing_ok=True)

    def load_state(self) -> None:
        """Restore everything saved by save_state, so the run continues bit-exactly (under any number of ranks)."""
        path = saved_state(self.run_dir) if self.run_dir is not None else None
        if path is None:
            raise UserError(f"{self.run_dir}: no {STATE_FILE} to resume")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as error:
            raise UserError(f"{path}: cannot resume from this training state ({error})") from error
        self.step_count = int(state["step"])
        self.navigator.load_state_dict(state["navigator"])
        self.objective.load_state_dict(state["objective"])
        self._load_optimizers(state, path)
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if "average" in state:
            self.average.load_state_dict(state["average"])
        self.rng.set_state(state["rng"])
        if self.runtime.is_main:
            torch.set_rng_state(state["torch_rng"])
            for name in (LOG_FILE, VALIDATION_FILE):
                truncate_log(path.parent / name, self.step_count)
            if self.progress is not None:  # the next look's angles are measured from here
                self.progress.previous = self.directions().vectors
        else:
            torch.manual_seed(distributed.local_seed(self.config.seed, self.runtime.rank, self.step_count))

    def _load_optimizers(self, state: dict, path: Path) -> None:
        """Every optimiser's state, by name (a training state of one optimiser, from before they were named, as the main one)."""
        saved = state["optimizers"] if "optimizers" in state else {MAIN_OPTIMISER: state["optimizer"]}
        if set(saved) != set(self.optimizers):
            raise UserError(
                f"{path}: the training state holds the optimiser(s) {', '.join(sorted(saved))}, this run trains with "
                f"{', '.join(sorted(self.optimizers))}; it cannot resume exactly"
            )
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(saved[name])

    def run(self, progress: bool = True) -> None:
        """Train until config.steps, logging (the mean of each term since the last line), looking at the validation
        batch at step 0, every config.validate_every steps and at the last (runs of at least that many steps) and saving
        the training state (rank 0); Ctrl-C saves it first."""
        images_per_step = self.config.renders_per_step
        started, started_step = time.perf_counter(), self.step_count
        board = tensorboard_writer(self.run_dir) if self.runtime.is_main and self.run_dir is not None else None
        sums: dict[str, float] = {}
        counted = 0
        shown: dict[str, float] = {}
        looks = self.config.steps >= self.config.validate_every  # a run shorter than one interval has no curve to show
        try:
            with self._log_file(LOG_FILE) as log, self._log_file(VALIDATION_FILE, looks) as validation_log:

                def after_step(terms: dict[str, float]) -> dict[str, float]:
                    nonlocal sums, counted, shown
                    sums, counted = {name: sums.get(name, 0.0) + value for name, value in terms.items()}, counted + 1
                    last = self.step_count == self.config.steps
                    if log is not None and (self.step_count % self.config.log_every == 0 or last):
                        rate = images_per_step * (self.step_count - started_step) / max(time.perf_counter() - started, 1e-9)
                        write_log_line(log, board, self.step_count, {**{name: total / counted for name, total in sums.items()}, "images_per_s": rate})
                        sums, counted = {}, 0
                    if validation_log is not None and (self.step_count % self.config.validate_every == 0 or last):
                        shown = self._look(validation_log, board)
                    return shown or {"loss": terms["loss"]}

                if validation_log is not None and self.step_count == 0:
                    shown = self._look(validation_log, board)
                run_steps(self, self.save_state, self.config.save_every, progress and self.runtime.is_main, "discover", after_step)
        finally:
            if board is not None:
                board.close()
        self.save_state()

    def _look(self, log: IO[str], board) -> dict[str, float]:
        """One line of validation.jsonl: the validation batch, the angles moved and the measures of the current result;
        returns what the progress bar shows of it."""
        assert self.progress is not None  # rank 0 looks
        navigator = self.result_navigator()
        values = self.progress.look(navigator, navigator_directions(navigator, self.pca, self.config.method, self.generator, self.generator_id))
        write_log_line(log, board, self.step_count, values)
        return {key: values[key] for key in ("validation_contrast", "score", "found") if key in values}

    def _log_file(self, name: str, wanted: bool = True) -> contextlib.AbstractContextManager[IO[str] | None]:
        """A log of the run folder opened for appending on rank 0 when `wanted`; None elsewhere (and without a folder)."""
        if self.run_dir is None or not (self.runtime.is_main and wanted):
            return contextlib.nullcontext(None)
        return open(self.run_dir / name, "a")

    def directions(self) -> Directions:
        """The trained directions (averaged over the averaging window) as the artefact every consumer reads."""
        return navigator_directions(self.result_navigator(), self.pca, self.config.method, self.generator, self.generator_id)


@torch.no_grad()
def navigator_directions(navigator: Navigator, pca: PCABasis, method: str, generator: GeneratorLike, generator_id: str | None = None) -> Directions:
    """A navigator's directions, attention and suggested strengths as the Directions artefact (`generator_id`: the
    generator's identity when already known)."""
    vectors = navigator.directions()
    attention = navigator.attention()
    return Directions(
        vectors=vectors,
        attention=attention,
        strengths=suggest_strengths(vectors, attention, pca),
        method=method,
        generator_id=generator_id or generator_identity(generator),
    )
