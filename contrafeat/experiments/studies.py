"""The ablation studies: which discovery settings each one varies, as (series, setting) variants of the shapes3d preset."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from contrafeat.errors import UserError


@dataclass(frozen=True)
class Variant:
    """One row of a study: a series (a line in the figure) at one setting (a point on its x axis)."""

    series: str
    setting: str
    overrides: dict[str, Any] = field(hash=False)

    @property
    def label(self) -> str:
        return f"{self.series} / {self.setting}"


@dataclass(frozen=True)
class StudyContext:
    """What variants depend on: the generator's W size and the ImageNet AlexNet file, when there is one."""

    w_dim: int
    alexnet_weights: str | None = None


@dataclass(frozen=True)
class Study:
    """A named study: its title, the paper's table it mirrors, and how its variants are built."""

    name: str
    title: str
    paper: str
    variants: Callable[[StudyContext], list[Variant]]


LOSSES = {"Bi": "contra-bi", "Pt": "contra-pt"}
SUBSPACE_SIZES = (5, 10, 20, 40)
DIVERSITY_WEIGHTS = (0.0, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)
FOCUS_MODES = {"Pooled": "pooled", "No-Foc": "none", "L2-mask": "l2"}
SENSORS = {"ImageNet MobileNetV2": "mobilenet_v2", "random AlexNet": "random-alexnet", "random MobileNetV2": "random-mobilenet_v2"}


def subspace_variants(context: StudyContext) -> list[Variant]:
    sizes = sorted({*SUBSPACE_SIZES, context.w_dim})
    return [
        Variant(series, f"k={size}" if size != context.w_dim else f"k={size} (w_dim)", {"method": method, "subspace_dim": size})
        for series, method in LOSSES.items()
        for size in sizes
        if size <= context.w_dim
    ]


def diversity_variants(context: StudyContext) -> list[Variant]:
    return [Variant("Bi", f"{weight:g}", {"method": "contra-bi", "diversity_weight": weight}) for weight in DIVERSITY_WEIGHTS]


def focus_variants(context: StudyContext) -> list[Variant]:
    return [
        Variant(series, title, {"method": method, "mask": mode}) for series, method in LOSSES.items() for title, mode in FOCUS_MODES.items()
    ]


def attention_variants(context: StudyContext) -> list[Variant]:
    variants = []
    for series, base in (("GANSpace", "ganspace"), ("SeFa", "sefa")):
        variants.append(Variant(series, "no attention", {"method": base}))
        variants += [Variant(series, f"+att {loss}", {"method": f"{base}+att", "loss": loss.lower()}) for loss in LOSSES]
    return variants


def sensor_variants(context: StudyContext) -> list[Variant]:
    variants = [Variant("Bi", title, {"method": "contra-bi", "sensor": sensor}) for title, sensor in SENSORS.items()]
    if context.alexnet_weights is not None:
        variants.append(Variant("Bi", "ImageNet AlexNet", {"method": "contra-bi", "sensor": "alexnet", "sensor_weights": context.alexnet_weights}))
    return variants


TRAINING_STUDIES: dict[str, Study] = {
    study.name: study
    for study in (
        Study("subspace", "Subspace size k", "Table 2", subspace_variants),
        Study("diversity", "Diversity weight lambda_div", "Tables 5/6", diversity_variants),
        Study("focus", "Spatial focus of the contrast", "Table 7", focus_variants),
        Study("attention", "Attention branch on closed-form directions", "Table 1", attention_variants),
        Study("sensor", "Sensor: does ImageNet pretraining matter?", "central hypothesis", sensor_variants),
    )
}
"""Studies that train directions and score them; the L2-mask analysis (`mask`) is the one that does not."""

MASK_STUDY = "mask"
STUDY_NAMES: tuple[str, ...] = (*TRAINING_STUDIES, MASK_STUDY)


def check_study_names(names: list[str]) -> list[str]:
    """The names asked for ('all' = every study), in suite order, or a UserError naming the unknown one."""
    if "all" in names:
        return list(STUDY_NAMES)
    unknown = [name for name in names if name not in STUDY_NAMES]
    if unknown:
        raise UserError(f"study {unknown[0]!r}: expected one of {', '.join(STUDY_NAMES)} or all")
    return [name for name in STUDY_NAMES if name in names]
