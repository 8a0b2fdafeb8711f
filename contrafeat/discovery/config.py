"""Discovery hyper-parameters: presets, YAML files and command-line overrides, in that order."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from contrafeat.discovery.latentclr import TEMPERATURE_MODES
from contrafeat.discovery.losses import COS_MODES, MASK_MODES
from contrafeat.discovery.navigator import ATTENTION_MODES
from contrafeat.discovery.precision import PRECISIONS
from contrafeat.discovery.registry import CONTRAST_LOSSES, METHODS, MethodPlan, resolve_method
from contrafeat.errors import UserError
from contrafeat.gan.stylegan2 import NOISE_MODES
from contrafeat.options import COUNT, FINITE, INDEX, MAX_COUNT, NON_NEGATIVE, POSITIVE, RENAMED_OPTIONS, SHARE, Domain, check_settings, flag

LATENTCLR_FEATURES = ("auto", "generator", "sensor")
EXECUTION_FIELDS = ("save_every", "log_every", "validate_every", "device", "micro_batch", "precision", "channels_last", "compile")
"""Options that change how a run executes (where, in what chunks, how fast), not what it learns."""
RESUME_OVERRIDABLE = ("steps", "renders", *EXECUTION_FIELDS)
"""Options a resumed run may change: how long it runs, and how it executes."""
BUDGET_KEYS = ("renders_per_step", "total_renders")
"""What config.yaml states after the options: the generator renders of one step and of the whole run (ignored when read)."""
DIRECTION_COUNT = Domain(int, 2, MAX_COUNT, "an integer >= 2 (the contrast needs two directions)")
ADAM_BETA = Domain(float, 0, math.nextafter(1, 0), "a number in [0, 1)")


@dataclass
class DiscoveryConfig:
    """Everything a discovery run depends on; saved as config.yaml in the run folder."""

    checkpoint: str = field(default="shapes3d-learned", metadata={"help": "generator: zoo name (shapes3d-learned, shapes3d) or checkpoint path"})
    method: str = field(default="contra-bi", metadata={"choices": tuple(METHODS), "help": f"discovery method, one of {', '.join(METHODS)}"})
    loss: str = field(
        default="bi", metadata={"choices": CONTRAST_LOSSES, "help": "contrast loss (bi or pt) that trains the attention of ganspace+att and sefa+att"}
    )
    num_directions: int = field(default=10, metadata={"domain": DIRECTION_COUNT, "help": "K, the number of directions learned"})
    subspace_dim: int = field(default=20, metadata={"domain": COUNT, "help": "k, the number of top PCs of W the directions live in"})
    attention: str = field(default="softmax", metadata={"choices": ATTENTION_MODES, "help": "layer attention: softmax (learned) or none (uniform)"})
    mask: str = field(default="l2", metadata={"choices": MASK_MODES, "help": "spatial focus of the contrast: l2, none (No-Foc) or pooled"})
    cos_mode: str = field(default="squared", metadata={"choices": COS_MODES, "help": "cosine form in the similarity: squared or abs"})
    diversity_weight: float = field(default=0.1, metadata={"domain": NON_NEGATIVE, "help": "lambda_div, weight of the diversity sum"})
    lr: float = field(default=0.05, metadata={"domain": POSITIVE, "help": "Adam learning rate of the navigator (and of Pt's prototypes)"})
    beta1: float = field(default=0.0, metadata={"domain": ADAM_BETA, "help": "Adam beta1"})
    beta2: float = field(default=0.99, metadata={"domain": ADAM_BETA, "help": "Adam beta2"})
    batch_size: int = field(default=10, metadata={"domain": COUNT, "help": "codes per step (Bi renders 2.5x, Pt 2x this many images)"})
    steps: int = field(default=1500, metadata={"domain": INDEX, "help": "training steps"})
    renders: int | None = field(
        default=None,
        metadata={
            "domain": COUNT,
            "help": "render budget: train ceil(renders / renders per step) steps, to compare methods by generator renders "
            "(images) rather than steps; --steps, when also given, must agree"
        },
    )
    averaging: float = field(
        default=0.0,
        metadata={"domain": SHARE, "help": "share of the last steps whose navigator parameters are averaged into the result (0: the last step's)"},
    )
    strength_range: float = field(default=1.0, metadata={"domain": POSITIVE, "help": "training edits draw their strengths from U(-range, range)"})
    style_mix: bool = field(default=True, metadata={"help": "start codes mix two z: layers [0, L/2) and [L/2, L)"})
    truncation: float = field(default=1.0, metadata={"domain": FINITE, "help": "truncation psi of the training codes"})
    noise_mode: str = field(default="random", metadata={"choices": NOISE_MODES, "help": "generator noise while training: random, const or none"})
    sensor: str = field(default="mobilenet_v2", metadata={"help": "feature extractor (see `contrafeat sensors`)"})
    sensor_weights: str | None = field(default=None, metadata={"help": "path of the sensor's weight file"})
    sensor_input_size: int | None = field(default=None, metadata={"domain": COUNT, "help": "resize images to this size for the sensor"})
    pca_samples: int = field(default=1_000_000, metadata={"domain": COUNT, "help": "mapped samples for the PCA of W"})
    seed: int = field(default=0, metadata={"domain": INDEX, "help": "seed of every random draw"})
    save_every: int = field(default=100, metadata={"domain": COUNT, "help": "steps between atomic saves of the training state"})
    log_every: int = field(default=10, metadata={"domain": COUNT, "help": "steps between log.jsonl lines (each the mean of the steps since the last)"})
    validate_every: int = field(
        default=100,
        metadata={
            "domain": COUNT,
            "help": "steps between looks at a fixed validation batch (and a world's exact-factor score), in validation.jsonl; "
            "also at the start and the end; a shorter run makes none",
        },
    )
    device: str = field(
        default="auto",
        metadata={"help": "auto (cuda, then mps, then cpu), cpu, cuda or mps; under torchrun each rank uses cuda:LOCAL_RANK"},
    )
    micro_batch: int | None = field(
        default=None,
        metadata={
            "domain": COUNT,
            "help": "codes per forward pass of one process; gradients accumulate over the process's share of the batch (default: all of it)",
        },
    )
    precision: str = field(
        default="fp32",
        metadata={"choices": PRECISIONS, "help": "generator and sensor autocast: fp32, bf16 (CUDA or CPU) or fp16 (CUDA, with loss scaling)"},
    )
    channels_last: bool = field(default=False, metadata={"help": "channels-last memory layout for the sensor (CUDA)"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the sensor"})
    latentclr_features: str = field(
        default="auto",
        metadata={
            "choices": LATENTCLR_FEATURES,
            "help": "LatentCLR's features: generator (first 3 synthesis blocks), sensor, or auto (generator when it has blocks)",
        },
    )
    latentclr_temperature: float = field(default=0.5, metadata={"domain": POSITIVE, "help": "LatentCLR's NT-Xent temperature"})
    latentclr_temperature_mode: str = field(
        default="multiply",
        metadata={"choices": TEMPERATURE_MODES, "help": "multiply (the reference code: exp(sim * t)) or divide (textbook: exp(sim / t))"},
    )
    recog_strength_weight: float = field(default=0.25, metadata={"domain": NON_NEGATIVE, "help": "Recog: weight of the L1 loss on the predicted strength"})
    recog_width: int = field(default=32, metadata={"domain": COUNT, "help": "Recog: channels of the reconstructor's first stage"})
    recog_depth: int = field(default=3, metadata={"domain": COUNT, "help": "Recog: stride-2 residual blocks of the reconstructor"})
    recog_lr: float = field(
        default=1e-3,
        metadata={
            "domain": POSITIVE,
            "help": "Recog: learning rate of the reconstructor's own Adam (--lr trains the navigator); the reference's 1e-4 is "
            "for 100k steps and leaves the reconstructor at 0.75 held-out accuracy after 768 steps, 1e-3 reaches 0.95"
        },
    )

    def plan(self) -> MethodPlan:
        """The method resolved once for this config (again only after `method` or `loss` changed)."""
        plan: MethodPlan | None = self.__dict__.get("_plan")
        if plan is None or (plan.name, plan.loss) != (self.method, self.loss):
            plan = resolve_method(self.method, self.loss)
            self.__dict__["_plan"] = plan
        return plan

    @property
    def renders_per_step(self) -> int:
        """Generator renders of one training step (MethodPlan.renders_per_step at this K and batch); 0 when nothing trains."""
        return self.plan().renders_per_step(self.num_directions, self.batch_size)

    def validate(self) -> None:
        """Reject values no run can use, naming the option."""
        self._validate_options()
        self._validate_method()
        budget = self.budget_steps() if self.renders is not None else self.steps
        if self.steps != budget:
            raise UserError(
                f"--steps {self.steps} disagrees with --renders {self.renders}: {self.plan().label} renders {self.renders_per_step} "
                f"images per step at --batch-size {self.batch_size}, so that budget is {budget} steps; give only one of them"
            )

    def budget_steps(self) -> int:
        """The steps the render budget buys, ceil(renders / renders per step); a UserError when --renders cannot be used."""
        self._validate_options()
        self._validate_method()
        if not self.plan().trains:
            raise UserError(f"--renders {self.renders}: method {self.method} has nothing to train; leave --renders out")
        assert self.renders is not None  # asked only when --renders is given
        return math.ceil(self.renders / self.renders_per_step)

    def _validate_options(self) -> None:
        """Rules on one option at a time: each field's choices or numeric domain (its metadata)."""
        for spec in config_fields():
            allowed = spec.metadata.get("choices")
            if allowed is not None and getattr(self, spec.name) not in allowed:
                raise UserError(f"{flag(spec.name)} {getattr(self, spec.name)!r}: expected one of {', '.join(allowed)}")
        check_settings(self)

    def _validate_method(self) -> None:
        """Rules that depend on the method: its attention, whether it trains, what its loss needs."""
        plan = self.plan()
        spec = plan.spec
        if spec.attention is not None and self.attention != spec.attention:
            kinds = {"none": "uniform attention (none)", "softmax": "learned attention (softmax)"}
            other = self.method.removesuffix("+att") if spec.attention == "softmax" else f"{self.method}+att"
            raise UserError(
                f"--attention {self.attention}: method {self.method} uses {kinds[spec.attention]}; "
                f"use --method {other} for {kinds[self.attention]}"
            )
        if spec.trains and self.steps < 1:
            raise UserError(f"--steps {self.steps}: expected a positive integer")
        if not spec.trains and self.steps != 0:
            raise UserError(f"--steps {self.steps}: method {self.method} has nothing to train; expected 0 (leave --steps out)")
        if plan.contrast == "bi" and (self.batch_size < 2 or self.batch_size % 2):
            raise UserError(f"--batch-size {self.batch_size}: the Bi loss splits the batch in halves; expected an even number >= 2")
        if plan.contrast == "bi" and self.micro_batch is not None and self.micro_batch % 2:
            raise UserError(f"--micro-batch {self.micro_batch}: the Bi loss works on pairs of codes; expected an even number")
        if spec.objective == "latentclr" and self.batch_size < 2:
            raise UserError(f"--batch-size {self.batch_size}: LatentCLR's positives are the same direction on other codes; expected >= 2")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DEFAULT_PRESET = "shapes3d-learned"
SETTLED_RECIPE: dict[str, Any] = {"averaging": 0.5}
"""What the built-in worlds' preset adds to the authors' values: the result is the mean of the navigator over the last
half of the steps, so it is no one sample of a noisy walk (docs/discovery_study.md measures it and the levers that
were not adopted)."""
PRESETS: dict[str, dict[str, Any]] = {
    "shapes3d-learned": SETTLED_RECIPE,
    "shapes3d": {**SETTLED_RECIPE, "checkpoint": "shapes3d"},
    "ffhq": {
        "checkpoint": "ffhq.pkl",
        "num_directions": 30,
        "subspace_dim": 100,
        "batch_size": 10,
        "steps": 20_000,
        "sensor": "alexnet",
        "save_every": 500,
    },
}
"""Values that differ from the dataclass defaults (the authors' values): shapes3d-learned (the default) and shapes3d
(the written-down linear world with exact true edits) run the settled recipe, ffhq the authors' FFHQ-512 setting."""


def config_fields() -> list[dataclasses.Field]:
    return list(fields(DiscoveryConfig))


def layered_values(preset: str, method: str) -> dict[str, Any]:
    """What a preset sets for a method, before any YAML file or flag: the preset, then the method's own values (its
    registry row's defaults, then its values under this preset)."""
    spec = METHODS.get(method)
    own = {**spec.defaults, **spec.presets.get(preset, {})} if spec is not None else {}
    return {**PRESETS[preset], "method": method, **own}


def effective_defaults(name: str) -> dict[tuple[str, str], Any]:
    """The value of option `name` that each (preset, method) runs with when neither a YAML file nor a flag sets it."""
    default = DiscoveryConfig.__dataclass_fields__[name].default
    return {(preset, method): layered_values(preset, method).get(name, default) for preset in PRESETS for method in METHODS}


def build_config(preset: str = DEFAULT_PRESET, yaml_path: Path | None = None, overrides: dict[str, Any] | None = None) -> DiscoveryConfig:
    """Preset values, then a YAML file's, then explicit overrides (None values are ignored); --renders sets steps unless given."""
    if preset not in PRESETS:
        raise UserError(f"--preset {preset!r}: expected one of {', '.join(PRESETS)}")
    from_yaml = _read_yaml(yaml_path) if yaml_path is not None else {}
    explicit = {key: value for key, value in (overrides or {}).items() if value is not None}
    method = explicit.get("method", from_yaml.get("method", PRESETS[preset].get("method", DiscoveryConfig.method)))
    config = DiscoveryConfig(**{**layered_values(preset, method), **from_yaml, **explicit})
    if config.renders is not None and "steps" not in {**from_yaml, **explicit}:
        config.steps = config.budget_steps()
    config.validate()
    return config


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"--config {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "unreadable"
        raise UserError(f"--config {path}: not valid YAML{where} ({problem})") from None
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: expected a mapping of option names to values")
    data = {RENAMED_OPTIONS.get(key, key): value for key, value in data.items() if key not in BUDGET_KEYS}
    known = {f.name for f in config_fields()}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"--config {path}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return data


def run_budget(config: DiscoveryConfig) -> dict[str, int]:
    """The generator renders of one training step and of the whole run (steps of them), under BUDGET_KEYS."""
    per_step = config.renders_per_step
    return dict(zip(BUDGET_KEYS, (per_step, per_step * config.steps)))


def config_text(config: DiscoveryConfig) -> str:
    """config.yaml's text: the options, then the run's render budget (BUDGET_KEYS), so tables can state it."""
    return yaml.safe_dump({**config.to_dict(), **run_budget(config)}, sort_keys=False)


def save_config(config: DiscoveryConfig, path: Path) -> None:
    from contrafeat.io_utils import atomic_write_text

    atomic_write_text(path, config_text(config))


def load_config(path: Path) -> DiscoveryConfig:
    """Read a run's config.yaml back (used by --resume)."""
    config = DiscoveryConfig(**_read_yaml(path))
    config.validate()
    return config
