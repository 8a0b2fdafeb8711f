"""FFHQ-style face alignment: the crop construction on hand-made landmarks, then on real photos with the detector
(skimage's astronaut and coffee), `contrafeat align` and `contrafeat project --align`."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from stylegan2_factories import random_generator

from contrafeat.cli import main
from contrafeat.editing.face_alignment import Alignment, FaceChoiceError, align_face, align_photo, crop_quad, map_points, quad_transform
from contrafeat.errors import UserError
from contrafeat.gan.checkpoints import save_native

pytestmark = pytest.mark.usefixtures("offline")
torch.set_num_threads(1)

LEVEL_DEGREES = 2.0
CENTRE_SHARE = 0.03
FRONTAL = np.array([[100.0, 100.0], [140.0, 100.0], [120.0, 122.0], [105.0, 140.0], [135.0, 140.0]])
"""A symmetric face: eyes 40 px apart, mouth 40 px below them."""


def _detector_status() -> tuple[bool, str]:
    try:
        from contrafeat.editing.face_detection import mtcnn_weights_status
    except ImportError as error:
        return False, f"the face detector does not import ({error})"
    present, where = mtcnn_weights_status()
    return present, f"the MTCNN weights are absent ({where})"


DETECTOR, WHY_NOT = _detector_status()
try:
    import skimage.data as skimage_data
except ImportError:
    skimage_data = None
needs_detector = pytest.mark.skipif(not DETECTOR or skimage_data is None, reason=WHY_NOT if not DETECTOR else "scikit-image is not installed")


def similarity(angle_degrees: float, scale: float, centre: np.ndarray, new_centre: np.ndarray) -> np.ndarray:
    """The 3x3 matrix turning a picture by `angle_degrees` (counter-clockwise as seen) and scaling it about `centre`."""
    a = math.radians(angle_degrees)
    rotation = scale * np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    matrix = np.eye(3)
    matrix[:2, :2] = rotation
    matrix[:2, 2] = new_centre - rotation @ centre
    return matrix


def warp(image: Image.Image, matrix: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """The picture moved by `matrix` (photo coordinates -> new coordinates) onto a canvas of `size`."""
    inverse = np.linalg.inv(matrix)
    return image.transform(size, Image.Transform.AFFINE, tuple(inverse[:2].ravel()), Image.Resampling.BICUBIC)


def eye_line(alignment: Alignment) -> tuple[float, float]:
    """(angle of the eye line in degrees, horizontal offset of the eyes' midpoint from the centre line / width)."""
    left, right = alignment.aligned_landmarks()[:2]
    angle = math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))
    return angle, (left[0] + right[0]) / 2 / alignment.resolution - 0.5


def textured(size: tuple[int, int], seed: int = 0) -> Image.Image:
    noise = np.random.default_rng(seed).integers(40, 216, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(noise).filter(ImageFilter.GaussianBlur(2))


def one_line_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("contrafeat: error: "), lines
    return lines[0]


# ------------------------------------------------------------------------------------------------ the construction


def test_quad_of_a_frontal_face_is_ffhq_square() -> None:
    # eye_to_eye (40, 0), eye_to_mouth (0, 40): the axis (40 + 40, 0) scaled to max(2 * 40, 1.8 * 40) = 80,
    # the centre 0.1 of the way from the eyes (120, 100) to the mouth (120, 140)
    quad = crop_quad(FRONTAL)
    assert np.allclose(quad, [[40, 24], [40, 184], [200, 184], [200, 24]])
    assert np.allclose(quad_transform(quad, 160), [[1, 0, -40], [0, 1, -24], [0, 0, 1]])
    # a long face: 1.8 x eye-to-mouth wins
    long_face = FRONTAL + np.array([[0, 0], [0, 0], [0, 20], [0, 40], [0, 40]])
    assert math.hypot(*(crop_quad(long_face)[3] - crop_quad(long_face)[0])) == pytest.approx(2 * 1.8 * 80)


@pytest.mark.parametrize("angle", [-40.0, -15.0, 0.0, 10.0, 33.0])
@pytest.mark.parametrize("scale", [0.5, 1.0, 2.5])
def test_a_turned_and_scaled_face_comes_out_level_and_centred(angle: float, scale: float) -> None:
    move = similarity(angle, scale, np.array([120.0, 120.0]), np.array([300.0, 300.0]))
    landmarks = map_points(move, FRONTAL)
    alignment = align_face(textured((600, 600)), landmarks, 64)
    level, offset = eye_line(alignment)
    assert abs(level) < 1e-6 and abs(offset) < 1e-9
    assert np.allclose(alignment.aligned_landmarks(), map_points(quad_transform(crop_quad(FRONTAL), 64), FRONTAL))
    # FFHQ's place for the eyes: 0.1 of the eye-to-mouth distance above the centre, in a crop 4 eye distances wide
    assert alignment.aligned_landmarks()[0, 1] == pytest.approx(32 - 0.1 * 40 * 64 / 160)
    assert alignment.image.size == (64, 64) and alignment.image.mode == "RGB"


def test_the_transform_maps_photo_points_onto_the_aligned_image() -> None:
    spot = np.array([131.3, 117.8])
    ys, xs = np.mgrid[:300, :400] + 0.5
    glow = np.exp(-((xs - spot[0]) ** 2 + (ys - spot[1]) ** 2) / (2 * 3.0**2))
    photo = np.zeros((300, 400, 3), np.uint8)
    photo[..., 0] = np.rint(255 * glow)
    landmarks = np.array([[110.0, 100.0], [150.0, 92.0], [132.0, 120.0], [118.0, 145.0], [155.0, 138.0]])
    for resolution, supersampling in ((256, None), (64, None), (32, None), (64, 4)):  # upsampled, 3x, shrunk, FFHQ's 4x
        alignment = align_face(photo, landmarks, resolution, supersampling=supersampling)
        red = np.asarray(alignment.image, dtype=np.float64)[..., 0]
        red = np.where(red > 0.2 * red.max(), red, 0.0)
        rows, columns = np.mgrid[:resolution, :resolution] + 0.5
        found = np.array([(red * columns).sum(), (red * rows).sum()]) / red.sum()
        expected = map_points(alignment.transform, spot[None])[0]
        assert np.abs(found - expected).max() < 0.2, (resolution, found, expected)


def test_default_supersampling_gives_ffhq_picture() -> None:
    photo, landmarks = textured((500, 400)), FRONTAL * 1.5 + 60
    for resolution in (64, 256):
        ours = np.asarray(align_face(photo, landmarks, resolution).image, dtype=np.int16)
        ffhq = np.asarray(align_face(photo, landmarks, resolution, supersampling=4).image, dtype=np.int16)
        assert np.abs(ours - ffhq).max() <= 2 and np.abs(ours - ffhq).mean() < 0.5


def test_a_crop_past_the_border_is_padded_by_blurred_reflection() -> None:
    photo = Image.new("RGB", (300, 300), (200, 180, 160))
    corner_face = FRONTAL - 90  # the crop square reaches 66 px past the top-left corner
    padded = np.asarray(align_face(photo, corner_face, 64).image)
    bare = np.asarray(align_face(photo, corner_face, 64, padding=False).image)
    assert bare[:5, :5].max() == 0
    assert np.abs(padded.astype(int) - (200, 180, 160)).max() <= 2  # reflection, blur and fade of one colour: that colour
    assert np.array_equal(padded[40:, 40:], bare[40:, 40:])


@pytest.mark.parametrize(
    "landmarks, message",
    [
        (np.zeros((4, 2)), r"expected \[5, 2\]"),
        (np.full((5, 2), np.nan), "finite"),
        (np.full((5, 2), 7.0), "in one place"),
        (FRONTAL + 5000, "outside the image"),
    ],
)
def test_bad_landmarks_are_refused(landmarks: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        align_face(textured((300, 300)), landmarks, 64)


def test_corrupt_photo_gets_one_line_and_nothing_is_written(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.png"
    textured((200, 200)).save(broken)
    broken.write_bytes(broken.read_bytes()[:3000])
    assert main(["--threads", "1", "align", str(broken), "--out", str(tmp_path / "out")]) == 2
    assert "broken.png: damaged or truncated image" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ real photos


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skimage_data.astronaut())


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, astronaut: Image.Image) -> Path:
    """astronaut.png, coffee.png (no face), small.png (a 25 px face) and two.png (two faces) in one folder."""
    folder = tmp_path_factory.mktemp("photos")
    astronaut.save(folder / "astronaut.png")
    Image.fromarray(skimage_data.coffee()).save(folder / "coffee.png")
    astronaut.resize((128, 128), Image.Resampling.LANCZOS).save(folder / "small.png")
    two = Image.new("RGB", (768, 512), (90, 90, 90))
    two.paste(astronaut, (0, 0))
    two.paste(astronaut.crop((128, 0, 384, 256)).resize((128, 128), Image.Resampling.LANCZOS), (600, 60))
    two.save(folder / "two.png")
    return folder


@needs_detector
def test_astronaut_aligns_level_and_centred(astronaut: Image.Image) -> None:
    alignment = align_photo(astronaut, 256)
    assert alignment.faces_found == 1 and alignment.face is not None
    x0, y0, x1, y1 = alignment.face.box
    assert alignment.landmarks.shape == (5, 2)
    assert ((alignment.landmarks >= (x0, y0)) & (alignment.landmarks <= (x1, y1))).all()
    level, offset = eye_line(alignment)
    assert abs(level) < LEVEL_DEGREES and abs(offset) < CENTRE_SHARE


@needs_detector
def test_align_photo_refuses_with_messages_naming_the_photo(astronaut: Image.Image) -> None:
    with pytest.raises(FaceChoiceError, match=r"^face 3: only 1 face found in astro$") as refused:
        align_photo(astronaut, 64, face=3, name="astro")
    assert (refused.value.number, refused.value.found) == (3, 1)
    with pytest.raises(UserError, match=r"^face too small to align in astro \(99 px across; expected at least 120 px\)$"):
        align_photo(astronaut, 64, name="astro", min_face_size=120)
    with pytest.raises(UserError, match="^no face found in coffee$"):
        align_photo(skimage_data.coffee(), 64, name="coffee")


@needs_detector
def test_turned_and_shrunk_astronaut_aligns_to_the_same_crop(astronaut: Image.Image) -> None:
    move = similarity(15.0, 0.7, np.array([256.0, 256.0]), np.array([220.0, 220.0]))
    moved = warp(astronaut, move, (440, 440))
    original, turned = align_photo(astronaut, 256), align_photo(moved, 256)
    level, offset = eye_line(turned)
    assert abs(level) < LEVEL_DEGREES and abs(offset) < CENTRE_SHARE
    back = map_points(np.linalg.inv(move), turned.quad)  # the turned photo's crop, in the original photo
    assert np.abs(back - original.quad).max() < CENTRE_SHARE * original.crop_size
    difference = np.abs(np.asarray(original.image, dtype=np.int16) - np.asarray(turned.image, dtype=np.int16))
    assert difference.mean() < 12


@needs_detector
def test_align_writes_the_face_and_its_json(photos: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "aligned"
    assert main(["--threads", "1", "align", str(photos / "astronaut.png"), "--out", str(out), "--resolution", "128"]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["astronaut.json", "astronaut.png"]
    assert "astronaut.png: face 1 of 1" in capsys.readouterr().out
    expected = align_photo(Image.open(photos / "astronaut.png"), 128)
    assert np.array_equal(np.asarray(Image.open(out / "astronaut.png")), np.asarray(expected.image))
    record = json.loads((out / "astronaut.json").read_text())
    assert record["source"] == str(photos / "astronaut.png") and record["resolution"] == 128 and record["faces_found"] == 1
    assert np.allclose(list(record["landmarks"].values()), expected.landmarks, atol=1e-3)
    assert np.allclose(record["quad"], expected.quad, atol=1e-3) and np.allclose(record["transform"], expected.transform)
    assert len(record["box"]) == 4


@needs_detector
@pytest.mark.parametrize(
    "files, options, message",
    [
        (["coffee.png"], [], "no face found in {folder}/coffee.png"),
        (["astronaut.png", "coffee.png"], [], "no face found in {folder}/coffee.png"),
        (["astronaut.png"], ["--face", "2"], "--face 2: only 1 face found in {folder}/astronaut.png"),
        (["small.png"], [], "face too small to align in {folder}/small.png (25 px across; expected at least 32 px)"),
    ],
)
def test_bad_photos_get_one_line_and_nothing_is_written(photos: Path, tmp_path: Path, capsys, files, options, message) -> None:
    out = tmp_path / "out"
    assert main(["--threads", "1", "align", *(str(photos / name) for name in files), "--out", str(out), *options]) == 2
    assert one_line_error(capsys) == f"contrafeat: error: {message.format(folder=photos)}"
    assert not out.exists()


@needs_detector
def test_several_faces_align_the_largest_and_say_so(photos: Path, tmp_path: Path, capsys) -> None:
    assert main(["--threads", "1", "align", str(photos / "two.png"), "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: 2 faces found in {photos / 'two.png'}; aligning the largest (--face 1..2 to choose)"]
    assert main(["--threads", "1", "align", str(photos / "two.png"), "--out", str(tmp_path / "b"), "--face", "2"]) == 0
    assert capsys.readouterr().err == ""
    largest, second = (json.loads((tmp_path / folder / "two.json").read_text()) for folder in "ab")
    assert (largest["face"], second["face"]) == (1, 2)
    assert largest["box"][0] < 300 < second["box"][0]  # the full-size face on the left, the smaller copy on the right


def test_project_refuses_face_without_align(tmp_path: Path, capsys) -> None:
    assert main(["project", str(tmp_path / "a.png"), "--face", "2"]) == 2
    assert "--face 2 chooses the face to align; add --align" in one_line_error(capsys)


@needs_detector
def test_project_align_runs_end_to_end_on_a_small_generator(photos: Path, tmp_path: Path, capsys) -> None:
    checkpoint = save_native(random_generator(channels={4: 16, 8: 12, 16: 8, 32: 8, 64: 8}, with_discriminator=False), tmp_path / "g64")
    out = tmp_path / "projections"
    argv = ["project", str(photos / "astronaut.png"), "--align", "--checkpoint", str(checkpoint), "--steps", "2"]
    assert main(["--threads", "1", *argv, "--sensor", "mobilenet_v2", "--out", str(out), "--no-progress"]) == 0
    folder = out / "astronaut"
    names = ["aligned.png", "alignment.json", "projected_w.npz", "reconstruction.png", "side_by_side.png"]
    assert sorted(path.name for path in folder.iterdir()) == names
    aligned = np.asarray(Image.open(folder / "aligned.png"))
    assert np.array_equal(aligned, np.asarray(align_photo(Image.open(photos / "astronaut.png"), 64).image))
    side_by_side = np.asarray(Image.open(folder / "side_by_side.png"))
    assert side_by_side.shape == (64, 192, 3)
    assert np.array_equal(side_by_side[:, 64:128], aligned)
    assert np.array_equal(side_by_side[:, 128:], np.asarray(Image.open(folder / "reconstruction.png")))
    assert json.loads((folder / "alignment.json").read_text())["resolution"] == 64
    assert "astronaut.png: perceptual" in capsys.readouterr().out
