"""The web editor's HTTP server: the page, a JSON + PNG API, and uploads projected in the background.

State: the page holds the whole editing state (source, truncation, strengths) and sends it with every request, so
each browser tab edits on its own and the server keeps no per-user state. What it does share is guarded by locks:
the generator (one render at a time) and the table of projection jobs, which any tab may render from by id.

Endpoints:
  GET  /                    the editor page
  GET  /api/info            generator, directions (label, suggested strength, dominant layers), limits
  GET  /api/render.png      ?seed=N|upload=ID&psi=X&s=v0,v1,...  (multiples of the suggested strengths; download=1 to save)
  GET  /api/code.npz        the same query -> the edited W+ code, key 'w' [1, num_ws, w_dim] float32
  POST /api/upload          an image body (Content-Type image/...) -> 202 {"id": ...}; projected in the background
                            (?align=1: the face found and aligned as FFHQ's were, instead of the centre crop)
  GET  /api/jobs/ID         a projection's progress: state, step, steps, loss, error, note (what alignment did)
  GET  /api/jobs/ID/target.png  the image being projected (the centre crop or the aligned face)
Errors are JSON {"error": message} with a 4xx status (5xx for a failure of the server itself), never a traceback.
"""
from __future__ import annotations

import json
import socket
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Callable
from urllib.parse import SplitResult, parse_qs, urlsplit

from contrafeat.discovery.directions import Directions
from contrafeat.editing.face_alignment import align_photo
from contrafeat.editing.face_detection import mtcnn_weights_status
from contrafeat.editing.image_input import load_image, read_image, to_tensor
from contrafeat.errors import UserError
from contrafeat.gan.interface import GeneratorLike
from contrafeat.ui.editor import Editor, EditState, parse_state
from contrafeat.ui.projections import BusyError, ProjectionJobs

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/bmp")
"""Content types of an upload; `load_image` then decodes only these formats."""
SLIDER_RANGE = 3.0
"""Direction sliders span +-this many times each suggested strength."""
SOCKET_TIMEOUT_S = 30
Response = tuple[HTTPStatus, str, bytes, dict[str, str]]
"""Status, content type, body and extra headers."""


class HttpError(Exception):
    """A request refused with a status and a message for the page."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class EditorServer(ThreadingHTTPServer):
    """A threading HTTP server that holds the editor, the projection jobs and the page."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], editor: Editor, jobs: ProjectionJobs, info: dict[str, Any], max_upload_bytes: int) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, EditorHandler)
        self.editor, self.jobs, self.info, self.max_upload_bytes = editor, jobs, info, max_upload_bytes
        self.page = resources.files("contrafeat.ui").joinpath("editor.html").read_bytes()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        assert isinstance(host, str)  # getsockname() of an AF_INET(6) socket; the stub also allows bytes
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def server_close(self) -> None:
        super().server_close()
        self.jobs.close()


class EditorHandler(BaseHTTPRequestHandler):
    """Routes requests to the editor; every failure becomes a JSON error response."""

    server: EditorServer
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT_S
    disable_nagle_algorithm = True  # headers and body go out in two writes; Nagle would hold the body ~40 ms

    def do_GET(self) -> None:
        self._respond(self._get)

    def do_POST(self) -> None:
        self.close_connection = True  # a refused upload's body is never read, so the connection cannot be reused
        self._respond(self._post)

    def handle_expect_100(self) -> bool:
        """Refuse an upload before its body is sent when its headers already say it cannot be accepted."""
        try:
            self._check_upload_headers()
        except HttpError as error:
            self.close_connection = True
            self._send_error(error.status, str(error))
            return False
        return super().handle_expect_100()

    def _respond(self, route: Callable[[SplitResult], Response]) -> None:
        try:
            status, content_type, body, headers = route(urlsplit(self.path))
        except HttpError as error:
            self._send_error(error.status, str(error))
        except BusyError as error:
            self._send_error(HTTPStatus.TOO_MANY_REQUESTS, str(error))
        except UserError as error:
            self._send_error(HTTPStatus.BAD_REQUEST, str(error))
        except LookupError as error:
            self._send_error(HTTPStatus.NOT_FOUND, str(error.args[0]) if error.args else "not found")
        except Exception as error:  # noqa: BLE001 - the server must answer and stay up whatever a request does
            self.log_message("internal error on %s %s: %s: %s", self.command, self.path, type(error).__name__, error)
            self._send_error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error ({type(error).__name__}); see the server's log")
        else:
            self._send(status, content_type, body, headers)

    def _get(self, url: SplitResult) -> Response:
        query = parse_qs(url.query)
        if url.path in ("/", "/index.html"):
            return HTTPStatus.OK, "text/html; charset=utf-8", self.server.page, {}
        if url.path == "/api/info":
            return _json(HTTPStatus.OK, self.server.info)
        if url.path == "/api/render.png":
            state = parse_state(query, self.server.editor.directions.count)
            headers = _attachment(state, "png") if query.get("download") == ["1"] else {}
            return HTTPStatus.OK, "image/png", self.server.editor.render_png(state), headers
        if url.path == "/api/code.npz":
            state = parse_state(query, self.server.editor.directions.count)
            return HTTPStatus.OK, "application/octet-stream", self.server.editor.code_npz(state), _attachment(state, "npz")
        if url.path.startswith("/api/jobs/") and url.path.endswith("/target.png"):
            job = self.server.jobs.get(url.path.removeprefix("/api/jobs/").removesuffix("/target.png"))
            return HTTPStatus.OK, "image/png", job.target_png(), {}
        if url.path.startswith("/api/jobs/"):
            return _json(HTTPStatus.OK, self.server.jobs.get(url.path.removeprefix("/api/jobs/")).status())
        raise HttpError(HTTPStatus.NOT_FOUND, f"no such page: {url.path}")

    def _post(self, url: SplitResult) -> Response:
        if url.path != "/api/upload":
            raise HttpError(HTTPStatus.NOT_FOUND, f"no such endpoint: POST {url.path}")
        length = self._check_upload_headers()
        data = self.rfile.read(length)
        if len(data) != length:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"the upload ended after {len(data)} of {length} bytes")
        resolution, limit = self.server.editor.generator.img_resolution, self.server.max_upload_bytes
        if parse_qs(url.query).get("align") != ["1"]:
            return _json(HTTPStatus.ACCEPTED, self.server.jobs.submit(load_image(data, resolution, max_bytes=limit)).status())
        if not self.server.info["face_alignment"]:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"face alignment needs the face detector's weights: {mtcnn_weights_status()[1]}")
        _, photo = read_image(data, max_bytes=limit, square_crop=False)
        alignment = align_photo(photo, resolution, name="the uploaded image")
        found = alignment.faces_found
        note = "face aligned" + (f" (the largest of {found} faces found)" if found > 1 else "")
        return _json(HTTPStatus.ACCEPTED, self.server.jobs.submit(to_tensor(alignment.image), note).status())

    def _check_upload_headers(self) -> int:
        """The upload's declared length, after checking its content type and size limit (no body read yet)."""
        if self.command != "POST" or urlsplit(self.path).path != "/api/upload":
            return 0
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type not in IMAGE_TYPES:
            raise HttpError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"not an image: the file was sent as {content_type or 'an unknown type'}; upload a PNG, JPEG, WebP or BMP image",
            )
        length_text = self.headers.get("Content-Length") or ""
        if not length_text.isdigit():
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "the upload must state its size (Content-Length)")
        length, limit = int(length_text), self.server.max_upload_bytes
        if length > limit:
            raise HttpError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the image is {length / 2**20:.1f} MiB; uploads are limited to {limit / 2**20:.1f} MiB"
            )
        return length

    def _send_error(self, status: HTTPStatus, message: str) -> None:
        self._send(*_json(status, {"error": message}))

    def _send(self, status: HTTPStatus, content_type: str, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in headers.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log refused and failed requests only (a slider drag would flood the log otherwise)."""
        if int(code) >= 400:
            super().log_request(code, size)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} {self.address_string()} {format % args}\n")


def _json(status: HTTPStatus, data: dict[str, Any]) -> Response:
    return status, "application/json", json.dumps(data).encode(), {}


def _attachment(state: EditState, extension: str) -> dict[str, str]:
    """A Content-Disposition header that saves the response as contrafeat_<source>.<extension>."""
    return {"Content-Disposition": f'attachment; filename="contrafeat_{state.label}.{extension}"'}


def create_server(
    generator: GeneratorLike,
    directions: Directions,
    checkpoint: str,
    host: str = "127.0.0.1",
    port: int = 7860,
    project_steps: int = 200,
    max_upload_bytes: int = 20 * 2**20,
) -> EditorServer:
    """A bound (not yet serving) editor server; port 0 takes a free port (see `.url`)."""
    jobs = ProjectionJobs(generator, project_steps)
    editor = Editor(generator, directions, jobs.code)
    info = {
        "checkpoint": checkpoint,
        "method": directions.method,
        "resolution": generator.img_resolution,
        "num_ws": generator.num_ws,
        "w_dim": generator.w_dim,
        "directions": editor.describe(),
        "slider_range": SLIDER_RANGE,
        "project_steps": project_steps,
        "max_upload_bytes": max_upload_bytes,
        "image_types": list(IMAGE_TYPES),
        "face_alignment": mtcnn_weights_status()[0],
    }
    return EditorServer((host, port), editor, jobs, info, max_upload_bytes)
