"""FFHQ-style face alignment: the crop of a photo that puts a face where the faces of FFHQ sit.

A StyleGAN2 trained on FFHQ reconstructs a face only at the place, size and angle its training faces had, and the
FFHQ dataset made those from landmarks (NVlabs/ffhq-dataset, `recreate_aligned_images`). The same construction here,
from the five landmarks of `editing.face_detection` (eye centres, nose, mouth corners):

- the oriented crop square: its horizontal axis points along the sum of the eye-to-eye vector and the
  eye-to-mouth vector turned a quarter turn (onto the eye line for a mouth straight below the eyes), its half side
  the larger of 2 x the eye distance and 1.8 x the eye-to-mouth distance, its centre 0.1 of the way from the eyes'
  midpoint to the mouth's;
- for a crop more than 4 times the output side, the photo is first shrunk by a whole factor (Lanczos);
- the crop with a border of 0.1 x its side is cut out; where the square reaches past the photo, the photo is padded
  by reflection, and the padding is blurred (sigma 0.02 x the side) and faded to the photo's median colour;
- the square is mapped onto `resolution x k` pixels (bilinear) and resized to `resolution` (Lanczos). FFHQ takes
  k = 4 always; here k is by default the smallest whole factor that reaches the photo's own pixel density in the
  crop (1 to 4): where the crop has fewer pixels than the output, a larger k only resamples an upsampled image
  again (about 1 s instead of 0.03 s for a 1024 px output, for a picture within a grey level or two), and where
  it has more, k samples every photo pixel as FFHQ's 4 does (`supersampling=4` gives FFHQ's exact steps).

Coordinates are continuous pixel coordinates, as the detector gives its landmarks: (0, 0) is the top-left corner of
the top-left pixel, whose centre is (0.5, 0.5), and an image of width W spans [0, W]. (FFHQ's script adds 0.5 to its
whole-pixel dlib landmarks to get these.) `Alignment.transform` maps the photo's coordinates to the aligned image's
(a similarity: rotation, uniform scale, shift).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

from contrafeat.errors import UserError

if TYPE_CHECKING:  # the detector (and its network) is imported only by align_photo
    from contrafeat.editing.face_detection import Face

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")
"""The five landmarks, in their order; "left" is the one with the smaller x in the photo."""
MAX_SUPERSAMPLING = 4
"""The crop is transformed to at most this many times the output side, then resized down (FFHQ: 4096 for 1024)."""
MIN_FACE_SIZE = 32
"""Faces smaller than this (square root of the detector's box area, pixels) are refused as too small to align."""
OUTLINE_COLOUR = (255, 64, 32)


class FaceChoiceError(UserError):
    """The face asked for is not there: face `number` of a photo with `found` faces."""

    def __init__(self, number: int, found: int, name: str) -> None:
        super().__init__(f"face {number}: only {found} face{'s' if found > 1 else ''} found in {name}")
        self.number, self.found, self.name = number, found, name


def crop_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop square of five landmarks [5, 2]: its corners [4, 2] in the order top-left, bottom-left,
    bottom-right, top-right of the aligned image (PIL's QUAD order)."""
    points = _check_landmarks(landmarks)
    eye_left, eye_right, _, mouth_left, mouth_right = points
    eye_mid = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (mouth_left + mouth_right) / 2 - eye_mid
    # The horizontal axis: the eye line averaged with the eye-to-mouth line turned to horizontal.
    across = eye_to_eye + np.array([eye_to_mouth[1], -eye_to_mouth[0]])
    length = math.hypot(*across)
    half_side = max(math.hypot(*eye_to_eye) * 2.0, math.hypot(*eye_to_mouth) * 1.8)
    if length < 1e-6 or half_side < 0.5:
        raise ValueError("landmarks: the eyes and the mouth are (nearly) in one place; expected the landmarks of a face")
    across *= half_side / length
    down = np.array([-across[1], across[0]])
    centre = eye_mid + eye_to_mouth * 0.1
    return np.stack([centre - across - down, centre - across + down, centre + across + down, centre + across - down])


def quad_transform(quad: np.ndarray, resolution: int) -> np.ndarray:
    """The 3x3 matrix taking photo coordinates to aligned ones for a crop square `quad` [4, 2] mapped onto
    `resolution` x `resolution` pixels: quad[0] to (0, 0), quad[3] to (resolution, 0), quad[1] to (0, resolution)."""
    corner = np.asarray(quad, dtype=np.float64)[0]
    across = quad[3] - quad[0]
    down = quad[1] - quad[0]
    scale = resolution / math.hypot(*across)
    rotation = np.stack([across / math.hypot(*across), down / math.hypot(*down)]) * scale
    matrix = np.eye(3)
    matrix[:2, :2] = rotation
    matrix[:2, 2] = -rotation @ corner
    return matrix


def map_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points [N, 2] through a 3x3 matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:2, :2].T + matrix[:2, 2]


@dataclass(frozen=True)
class Alignment:
    """An aligned face: the `resolution`-pixel RGB image, and where it came from in the photo."""

    image: Image.Image
    landmarks: np.ndarray
    """[5, 2] in the photo (LANDMARK_NAMES)."""
    quad: np.ndarray
    """[4, 2] the crop square's corners in the photo: top-left, bottom-left, bottom-right, top-right."""
    transform: np.ndarray
    """[3, 3] photo coordinates -> aligned coordinates."""
    source_size: tuple[int, int]
    face: Face | None = None
    """The detected face (box, score), when `align_photo` found it."""
    face_number: int = 1
    """Which face, 1 the largest."""
    faces_found: int = 1

    @property
    def resolution(self) -> int:
        return self.image.size[0]

    @property
    def crop_size(self) -> float:
        """The crop square's side in photo pixels."""
        return float(math.hypot(*(self.quad[3] - self.quad[0])))

    def aligned_landmarks(self) -> np.ndarray:
        """The landmarks [5, 2] in the aligned image."""
        return map_points(self.transform, self.landmarks)

    def describe(self, source: str) -> dict[str, Any]:
        """What `contrafeat align` writes beside the aligned image (JSON-ready)."""
        face = self.face
        return {
            "source": source,
            "source_size": list(self.source_size),
            "resolution": self.resolution,
            "face": self.face_number,
            "faces_found": self.faces_found,
            "box": None if face is None else [round(float(v), 2) for v in face.box],
            "score": None if face is None else round(float(face.score), 4),
            "landmarks": {name: _rounded(point) for name, point in zip(LANDMARK_NAMES, self.landmarks)},
            "aligned_landmarks": {name: _rounded(point) for name, point in zip(LANDMARK_NAMES, self.aligned_landmarks())},
            "quad": [_rounded(point) for point in self.quad],
            "transform": [[float(v) for v in row] for row in self.transform],
            "coordinates": "pixels, (0, 0) the top-left corner of the image, (0.5, 0.5) its first pixel's centre; "
            "transform maps source coordinates to aligned ones",
        }


def _rounded(point: np.ndarray) -> list[float]:
    return [round(float(v), 3) for v in point]


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2):
        raise ValueError(f"landmarks: expected [5, 2] (x, y) points ({', '.join(LANDMARK_NAMES)}), got {list(points.shape)}")
    if not np.isfinite(points).all():
        raise ValueError("landmarks: expected finite coordinates")
    return points


def _as_rgb(image: Image.Image | np.ndarray) -> Image.Image:
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image: expected an RGB uint8 array [H, W, 3], got {image.dtype} {list(image.shape)}")
        return Image.fromarray(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def _bounds(quad: np.ndarray) -> tuple[int, int, int, int]:
    return (
        math.floor(quad[:, 0].min()), math.floor(quad[:, 1].min()), math.ceil(quad[:, 0].max()), math.ceil(quad[:, 1].max())
    )


def _pad(image: Image.Image, quad: np.ndarray, border: int, side: float) -> tuple[Image.Image, np.ndarray]:
    """Pad by reflection where the square reaches past the image; blur the padding and fade it to the median colour."""
    left, top, right, bottom = _bounds(quad)
    width, height = image.size
    pad = [max(border - left, 0), max(border - top, 0), max(right - width + border, 0), max(bottom - height + border, 0)]
    if max(pad) <= border - 4:
        return image, quad
    least = int(np.rint(side * 0.3))
    pad = [max(value, least, 1) for value in pad]
    pixels = np.pad(np.asarray(image, dtype=np.float32), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), mode="reflect")
    h, w, _ = pixels.shape
    ys, xs = np.arange(h, dtype=np.float32)[:, None, None], np.arange(w, dtype=np.float32)[None, :, None]
    # 1 at the outer edge, 0 at the photo's edge, negative inside the photo
    inside_x = np.minimum(xs / pad[0], (w - 1 - xs) / pad[2])
    inside_y = np.minimum(ys / pad[1], (h - 1 - ys) / pad[3])
    mask = np.maximum(1.0 - inside_x, 1.0 - inside_y)
    sigma = side * 0.02
    pixels += (gaussian_filter(pixels, [sigma, sigma, 0]) - pixels) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    pixels += (np.median(pixels, axis=(0, 1)) - pixels) * np.clip(mask, 0.0, 1.0)
    padded = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
    return padded, quad + np.array(pad[:2], dtype=np.float64)


def align_face(
    image: Image.Image | np.ndarray, landmarks: np.ndarray, resolution: int, padding: bool = True, supersampling: int | None = None
) -> Alignment:
    """Align the face of these five landmarks [5, 2] (LANDMARK_NAMES) to `resolution` x `resolution` pixels, as FFHQ.

    `padding`: reflect, blur and fade where the crop reaches past the photo (else black there); `supersampling`: the
    factor k of the transform (None: the photo's own density, 1 to MAX_SUPERSAMPLING; FFHQ: 4).
    """
    if resolution < 1:
        raise ValueError(f"resolution: expected a positive number of pixels, got {resolution}")
    if supersampling is not None and supersampling < 1:
        raise ValueError(f"supersampling: expected a positive whole factor, got {supersampling}")
    photo = _as_rgb(image)
    points = _check_landmarks(landmarks)
    quad = crop_quad(points)
    side = math.hypot(*(quad[3] - quad[0]))
    work = photo
    corners = quad.copy()
    shrink = int(math.floor(side / resolution * 0.5))
    if shrink > 1:
        shrunk = (max(1, round(photo.size[0] / shrink)), max(1, round(photo.size[1] / shrink)))
        work = photo.resize(shrunk, Image.Resampling.LANCZOS)
        corners = corners * (np.array(shrunk, dtype=np.float64) / np.array(photo.size, dtype=np.float64))
        side /= shrink
    border = max(int(np.rint(side * 0.1)), 3)
    left, top, right, bottom = _bounds(corners)
    crop = (max(left - border, 0), max(top - border, 0), min(right + border, work.size[0]), min(bottom + border, work.size[1]))
    if crop[2] <= crop[0] or crop[3] <= crop[1]:
        raise ValueError("landmarks: the face's crop lies outside the image; expected landmarks inside it")
    if crop != (0, 0, *work.size):
        work = work.crop(crop)
        corners = corners - np.array(crop[:2], dtype=np.float64)
    if padding:
        work, corners = _pad(work, corners, border, side)
    factor = supersampling or min(MAX_SUPERSAMPLING, max(1, math.ceil(side / resolution - 1e-9)))
    size = resolution * factor
    aligned = work.transform((size, size), Image.Transform.QUAD, tuple(corners.flatten()), Image.Resampling.BILINEAR)
    if size != resolution:
        aligned = aligned.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return Alignment(aligned, points, quad, quad_transform(quad, resolution), photo.size)


def detect(image: Image.Image | np.ndarray, device: str = "cpu") -> list[Face]:
    """The faces of a photo, largest first (`editing.face_detection`)."""
    from contrafeat.editing.face_detection import detect_faces

    return sorted(detect_faces(image, device=device), key=lambda face: face.size, reverse=True)


def align_photo(
    image: Image.Image | np.ndarray,
    resolution: int,
    face: int | None = None,
    name: str = "the image",
    min_face_size: float = MIN_FACE_SIZE,
    device: str = "cpu",
) -> Alignment:
    """Detect the faces of a photo and align one: number `face` (1 the largest), the largest by default.

    A UserError naming `name` when no face is found, when the face is smaller than `min_face_size` pixels, and a
    FaceChoiceError when there is no face `face`.
    """
    photo = _as_rgb(image)
    faces = detect(photo, device)
    if not faces:
        raise UserError(f"no face found in {name}")
    if face is not None and not 1 <= face <= len(faces):
        raise FaceChoiceError(face, len(faces), name)
    number = face or 1
    chosen = faces[number - 1]
    if chosen.size < min_face_size:
        raise UserError(f"face too small to align in {name} ({chosen.size:.0f} px across; expected at least {min_face_size:g} px)")
    return replace(align_face(photo, chosen.landmarks, resolution), face=chosen, face_number=number, faces_found=len(faces))


def outline(image: Image.Image | np.ndarray, alignment: Alignment, resolution: int) -> Image.Image:
    """The whole photo fitted into a `resolution` square (grey margins), with the crop square and the landmarks drawn."""
    photo = _as_rgb(image)
    scale = resolution / max(photo.size)
    size = (max(1, round(photo.size[0] * scale)), max(1, round(photo.size[1] * scale)))
    offset = np.array([(resolution - size[0]) / 2, (resolution - size[1]) / 2])
    canvas = Image.new("RGB", (resolution, resolution), (128, 128, 128))
    canvas.paste(photo.resize(size, Image.Resampling.LANCZOS), (int(offset[0]), int(offset[1])))
    draw = ImageDraw.Draw(canvas)

    def to_canvas(points: np.ndarray) -> np.ndarray:
        return np.asarray(points) * scale + offset.astype(int)

    corners = [tuple(point) for point in to_canvas(alignment.quad)]
    width = max(1, resolution // 128)
    draw.line([*corners, corners[0]], fill=OUTLINE_COLOUR, width=width)
    radius = max(1.0, resolution / 160)
    for x, y in to_canvas(alignment.landmarks):
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=OUTLINE_COLOUR)
    return canvas
