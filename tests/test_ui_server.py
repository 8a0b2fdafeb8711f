"""The editor's HTTP API without a browser: renders, downloads, uploads and refusals, on the shapes3d true edits."""
from __future__ import annotations

import http.client
import io
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from ui_helpers import running_editor, write_true_edit_run

from contrafeat.editing.face_alignment import align_photo
from contrafeat.editing.face_detection import mtcnn_weights_status
from contrafeat.ui.projections import ProjectionJobs
from contrafeat.viz.images import to_pil, to_uint8
from contrafeat.zoo import load_generator

torch.set_num_threads(1)
PROJECT_STEPS = 4
try:
    import skimage.data as skimage_data
except ImportError:
    skimage_data = None
needs_detector = pytest.mark.skipif(
    skimage_data is None or not mtcnn_weights_status()[0], reason="needs scikit-image (its sample photos) and the MTCNN weights"
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_true_edit_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def server(run: Path):
    with running_editor(run, "--project-steps", str(PROJECT_STEPS), "--max-upload-mb", "1") as server:
        yield server


@pytest.fixture(scope="module")
def generator():
    return load_generator("shapes3d")


def get(server, path: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a GET (error statuses included)."""
    try:
        with urllib.request.urlopen(server.url.rstrip("/") + path, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def post(server, path: str, body: bytes, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(server.url.rstrip("/") + path, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def seed_code(generator, seed: int, psi: float = 1.0) -> torch.Tensor:
    """The W+ code [1, num_ws, w_dim] that `contrafeat generate --seeds SEED --trunc PSI` renders."""
    z = torch.randn(1, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    return generator.broadcast(generator.mapping(z, truncation_psi=psi))


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def expected_pixels(generator, ws: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return to_uint8(generator.synthesis(ws))[0]


def test_binds_loopback_by_default(server) -> None:
    host, port = server.server_address[:2]
    assert host == "127.0.0.1" and port > 0
    assert server.url == f"http://127.0.0.1:{port}/"


def test_page_and_info(server, run: Path) -> None:
    status, headers, page = get(server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'id="picture"' in page and b"/api/render.png" in page
    status, _, body = get(server, "/api/info")
    info = json.loads(body)
    assert status == 200
    assert [d["label"] for d in info["directions"]] == ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
    assert [d["dominant_layers"] for d in info["directions"]] == [[8, 9], [7, 8], [4, 5, 6], [3, 4], [0, 1], [0, 1, 2]]
    assert {d["suggested_strength"] for d in info["directions"]} == {0.5}
    assert (info["resolution"], info["num_ws"], info["w_dim"]) == (64, 10, 64)
    assert (info["project_steps"], info["max_upload_bytes"], info["slider_range"]) == (PROJECT_STEPS, 2**20, 3.0)
    assert info["face_alignment"] is mtcnn_weights_status()[0]


def test_render_for_a_seed_matches_generate(server, generator) -> None:
    status, headers, png = get(server, "/api/render.png?seed=3&psi=0.7")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert "Content-Disposition" not in headers
    np.testing.assert_array_equal(pixels(png), expected_pixels(generator, seed_code(generator, 3, psi=0.7)))


def test_strengths_move_the_picture_along_the_edits(server, generator) -> None:
    _, _, still = get(server, "/api/render.png?seed=3&psi=1&s=0,0,0,0,0,0")
    _, _, edited = get(server, "/api/render.png?seed=3&psi=1&s=0,0,0,2,0,-1")
    vector_scale, weights_scale = generator.true_edits()[3]
    vector_turn, weights_turn = generator.true_edits()[5]
    # strengths are multiples of the suggested strengths (0.5 here)
    ws = seed_code(generator, 3) + 1.0 * weights_scale[None, :, None] * vector_scale - 0.5 * weights_turn[None, :, None] * vector_turn
    assert not np.array_equal(pixels(still), pixels(edited))
    np.testing.assert_array_equal(pixels(edited), expected_pixels(generator, ws))


def test_renders_are_fast_enough_to_drag_a_slider(server) -> None:
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    times = []
    for value in np.linspace(-3, 3, 30):
        started = time.perf_counter()
        connection.request("GET", f"/api/render.png?seed=4&psi=0.8&s=0,0,0,{value:.2f},0,0")
        response = connection.getresponse()
        assert response.status == 200 and response.read().startswith(b"\x89PNG")
        times.append(time.perf_counter() - started)
    connection.close()
    # about 8 ms here; a TCP stall (Nagle + delayed ACK) alone would cost 40 ms
    assert np.median(times) < 0.04


def test_code_download_holds_w_plus(server, generator) -> None:
    status, headers, body = get(server, "/api/code.npz?seed=12&psi=0.5&s=1,0,0,0,0,0")
    assert status == 200
    assert headers["Content-Disposition"] == 'attachment; filename="contrafeat_seed0012.npz"'
    with np.load(io.BytesIO(body)) as archive:
        assert archive.files == ["w"]
        code = archive["w"]
    vector, weights = generator.true_edits()[0]
    expected = seed_code(generator, 12, psi=0.5) + 0.5 * weights[None, :, None] * vector
    assert code.shape == (1, 10, 64) and code.dtype == np.float32
    np.testing.assert_allclose(code, expected.numpy(), atol=1e-5)


def test_png_download_is_an_attachment(server) -> None:
    _, headers, png = get(server, "/api/render.png?seed=7&download=1")
    assert headers["Content-Disposition"] == 'attachment; filename="contrafeat_seed0007.png"'
    assert pixels(png).shape == (64, 64, 3)


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("seed=abc", 400, "seed 'abc': expected an integer"),
        ("seed=1&upload=ab", 400, "give exactly one source"),
        ("seed=1&psi=nan", 400, "expected a finite number"),
        ("seed=1&s=1,2", 400, "expected 6 comma-separated strengths"),
        ("seed=1&s=0,0,0,0,0,1e9", 400, "limited to +-100"),
        ("upload=0123456789abcdef", 404, "no upload '0123456789abcdef'"),
        ("upload=..%2Fetc", 400, "expected the id that the upload answered with"),
    ],
)
def test_bad_render_requests_get_a_json_message(server, query: str, status: int, message: str) -> None:
    code, headers, body = get(server, f"/api/render.png?{query}")
    assert code == status and headers["Content-Type"] == "application/json"
    assert message in json.loads(body)["error"]
    assert b"Traceback" not in body


def test_unknown_path_is_a_json_404(server) -> None:
    code, _, body = get(server, "/etc/passwd")
    assert code == 404 and json.loads(body) == {"error": "no such page: /etc/passwd"}


def test_bad_uploads_are_refused_with_a_message(server) -> None:
    status, body = post(server, "/api/upload", b"just some text\n", "image/png")
    assert status == 400 and body["error"]
    status, body = post(server, "/api/upload", b"just some text\n", "text/plain")
    assert status == 415 and "not an image" in body["error"] and "text/plain" in body["error"]
    assert get(server, "/api/render.png?seed=1")[0] == 200


@pytest.mark.parametrize("expect_continue", [False, True])
def test_oversized_upload_is_refused_before_its_body(server, expect_continue: bool) -> None:
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    connection.putrequest("POST", "/api/upload")
    connection.putheader("Content-Type", "image/png")
    connection.putheader("Content-Length", str(50 * 2**20))
    if expect_continue:
        connection.putheader("Expect", "100-continue")
    connection.endheaders()  # no body is sent: the answer must come from the headers alone
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"] == "the image is 50.0 MiB; uploads are limited to 1.0 MiB"
    connection.close()


def test_uploaded_image_is_projected_then_editable(server, generator) -> None:
    target = io.BytesIO()
    with torch.no_grad():
        to_pil(generator.synthesis(seed_code(generator, 5))[0]).save(target, format="PNG")
    status, job = post(server, "/api/upload", target.getvalue(), "image/png")
    assert status == 202 and job["steps"] == PROJECT_STEPS and job["note"] is None
    job = finished(server, job)
    assert job["state"] == "done" and job["step"] == PROJECT_STEPS and job["loss"] > 0
    assert np.array_equal(pixels(get(server, f"/api/jobs/{job['id']}/target.png")[2]), pixels(target.getvalue()))
    status, headers, png = get(server, f"/api/render.png?upload={job['id']}&s=0,0,0,0,0,0")
    assert status == 200 and pixels(png).shape == (64, 64, 3)
    _, headers, body = get(server, f"/api/code.npz?upload={job['id']}&psi=1&s=0,0,0,0,0,2")
    assert headers["Content-Disposition"] == f'attachment; filename="contrafeat_upload_{job["id"]}.npz"'
    with np.load(io.BytesIO(body)) as archive:
        assert archive["w"].shape == (1, 10, 64)


def finished(server, job: dict) -> dict:
    """The job's status once its projection has ended (or 30 s have passed)."""
    deadline = time.monotonic() + 30
    while job["state"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.1)
        job = json.loads(get(server, f"/api/jobs/{job['id']}")[2])
    return job


@needs_detector
def test_upload_with_align_projects_the_aligned_face(server) -> None:
    photo = io.BytesIO()
    Image.fromarray(skimage_data.astronaut()).save(photo, format="PNG")
    status, job = post(server, "/api/upload?align=1", photo.getvalue(), "image/png")
    assert status == 202 and job["note"] == "face aligned"
    status, headers, target = get(server, f"/api/jobs/{job['id']}/target.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert np.array_equal(pixels(target), np.asarray(align_photo(Image.fromarray(skimage_data.astronaut()), 64).image))
    assert finished(server, job)["state"] == "done"
    coffee = io.BytesIO()
    Image.fromarray(skimage_data.coffee()).save(coffee, format="JPEG")
    assert post(server, "/api/upload?align=1", coffee.getvalue(), "image/jpeg") == (400, {"error": "no face found in the uploaded image"})


def test_closing_stops_a_running_projection(generator) -> None:
    jobs = ProjectionJobs(generator, steps=100_000)
    job = jobs.submit(torch.zeros(1, 3, 64, 64))
    deadline = time.monotonic() + 20
    while job.step == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    jobs.close()
    jobs.worker.shutdown(wait=True)
    assert job.state == "failed" and job.error == "cancelled: the editor is shutting down"
    assert 0 < job.step < 100_000


def test_cli_prints_the_url_and_serves(run: Path) -> None:
    command = [sys.executable, "-m", "contrafeat", "--threads", "1", "ui", "--directions", str(run), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("contrafeat editor at http://127.0.0.1:"), line + process.stderr.read()
        url = line.split()[3]
        with urllib.request.urlopen(url + "api/info", timeout=30) as response:
            assert json.loads(response.read())["checkpoint"] == "shapes3d"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_cli_refuses_a_folder_without_directions(tmp_path: Path) -> None:
    from contrafeat.cli import main

    assert main(["ui", "--directions", str(tmp_path), "--port", "0"]) == 2
