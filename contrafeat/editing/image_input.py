"""Reading a user's image (a file or uploaded bytes) safely into a generator-sized tensor.

Only PNG, JPEG, WEBP and BMP are accepted. The file size is checked before reading, the pixel count from the
header before decoding (Pillow's decompression-bomb guard stays on as well), and the decoded image must be at
least 16 px on its short side and at most 4:1 elongated. Then: EXIF orientation applied, transparency
composited over white, 16-bit grey reduced to 8 bits (`read_image`); then a centre square crop and a Lanczos
resize (as the reference projector prepares its target; `load_image`), or a face alignment
(`editing.face_alignment`), which needs neither the square crop nor its aspect limit.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from contrafeat.errors import UserError

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
EXPECTED = "a PNG, JPEG, WEBP or BMP image"
UPLOAD_NAME = "upload"
MIN_SIDE = 16
MAX_ASPECT = 4.0
"""Longer side / shorter side at most this: a centre square crop keeps at least a quarter of the picture."""
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L")
"""Pillow modes of 16-bit grey images, whose plain conversion to RGB would clip at 255."""


def _read_source(source: Path | str | bytes, max_bytes: int) -> tuple[str, bytes]:
    """(name for messages, raw bytes), refusing missing, empty and oversized inputs before reading them whole."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = UPLOAD_NAME
    else:
        path = Path(source)
        name = str(path)
        if not path.is_file():
            raise UserError(f"{name}: {'a folder' if path.is_dir() else 'file not found'}; expected {EXPECTED}")
        _check_bytes(path.stat().st_size, name, max_bytes)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise UserError(f"{name}: cannot read it ({error.strerror or error}); expected {EXPECTED}") from None
    _check_bytes(len(data), name, max_bytes)
    return name, data


def _check_bytes(size: int, name: str, max_bytes: int) -> None:
    if size == 0:
        raise UserError(f"{name}: empty file; expected {EXPECTED}")
    if size > max_bytes:
        raise UserError(f"{name}: {size:,} bytes is more than the {max_bytes:,} allowed; expected {EXPECTED} of at most that size")


def _check_dimensions(size: tuple[int, int], name: str, max_pixels: int, square_crop: bool) -> None:
    width, height = size
    if width * height > max_pixels:
        raise UserError(f"{name}: {width} x {height} pixels is more than the {max_pixels:,} pixels allowed; expected a smaller image")
    if min(width, height) < MIN_SIDE:
        raise UserError(f"{name}: {width} x {height} pixels is too small; expected at least {MIN_SIDE} x {MIN_SIDE}")
    if square_crop and max(width, height) > MAX_ASPECT * min(width, height):
        raise UserError(
            f"{name}: {width} x {height} pixels is too elongated for a centre square crop; "
            f"expected an aspect ratio of at most {MAX_ASPECT:g}:1 (crop it first)"
        )


def _decode(data: bytes, name: str, max_pixels: int, square_crop: bool) -> Image.Image:
    """Verify, fully decode and orient by EXIF, refusing other formats, damaged files and too many pixels."""
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as probe:
            _check_dimensions(probe.size, name, max_pixels, square_crop)
            probe.verify()
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        image.load()
        return ImageOps.exif_transpose(image)
    except Image.DecompressionBombError:
        raise UserError(f"{name}: refused by the image decoder as a decompression bomb (too many pixels); expected a smaller image") from None
    except UnidentifiedImageError:
        raise UserError(f"{name}: not an image in an accepted format; expected {EXPECTED}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise UserError(f"{name}: damaged or truncated image ({error}); expected {EXPECTED}") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB: 16-bit grey scaled down, transparency composited over white."""
    if image.mode in WIDE_MODES:
        grey = (np.asarray(image, dtype=np.float64) / 257.0).round().clip(0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def _centre_square(image: Image.Image, resolution: int) -> Image.Image:
    width, height = image.size
    side = min(width, height)
    box = ((width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2)
    # Pillow sets the Resampling members as module globals at import, unseen by its annotations (Image.Resampling needs >= 9.1).
    return image.crop(box).resize((resolution, resolution), Image.LANCZOS)  # type: ignore[attr-defined]


def read_image(
    source: Path | str | bytes, max_bytes: int = 20 * 2**20, max_pixels: int = 40_000_000, square_crop: bool = True
) -> tuple[str, Image.Image]:
    """A file path or uploaded bytes -> (its name for messages, the decoded 8-bit RGB image); every refusal a UserError.

    `square_crop`: the image is meant for a centre square crop, so at most MAX_ASPECT:1 elongated (an alignment crops
    around the face wherever it is and needs no such limit).
    """
    name, data = _read_source(source, max_bytes)
    return name, _to_rgb(_decode(data, name, max_pixels, square_crop))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB image -> [1, 3, H, W] float in [-1, 1]."""
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32).copy())
    return (pixels.permute(2, 0, 1)[None] / 127.5 - 1.0).contiguous()


def load_image(source: Path | bytes, resolution: int, max_bytes: int = 20 * 2**20, max_pixels: int = 40_000_000) -> torch.Tensor:
    """A file path or uploaded bytes -> [1, 3, resolution, resolution] float in [-1, 1]; every refusal a UserError."""
    if resolution < 1:
        raise ValueError(f"resolution: expected a positive number of pixels, got {resolution}")
    _, image = read_image(source, max_bytes, max_pixels)
    return to_tensor(_centre_square(image, resolution))
