"""Frozen pretrained feature extractors ("sensors") that turn images into lists of feature maps."""
from contrafeat.features.base import Sensor
from contrafeat.features.registry import SENSOR_HELP, SENSOR_NAMES, build_sensor

__all__ = ["SENSOR_HELP", "SENSOR_NAMES", "Sensor", "build_sensor"]
