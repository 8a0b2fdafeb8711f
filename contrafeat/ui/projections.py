"""Background projection of uploaded images into W+: one worker thread, a bounded table of jobs the page polls."""
from __future__ import annotations

import copy
import io
import secrets
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from contrafeat.editing.projector import default_loss_network, project
from contrafeat.errors import UserError
from contrafeat.features import Sensor
from contrafeat.gan.interface import GeneratorLike
from contrafeat.viz.images import to_pil

MAX_PENDING = 2
"""Uploads queued or projecting at once; a further upload is refused until one finishes."""
MAX_KEPT = 16
"""Jobs remembered (oldest finished ones are forgotten first)."""


class BusyError(UserError):
    """Too many uploads are waiting for their projection."""


class Cancelled(Exception):
    """The editor is shutting down while a projection runs."""


@dataclass
class ProjectionJob:
    """One upload's projection: its target (the upload centre-cropped or its face aligned, [1, 3, R, R] in [-1, 1]),
    its progress while running, its W+ code [1, num_ws, w_dim] when done."""

    id: str
    steps: int
    target: torch.Tensor = field(repr=False)
    note: str | None = None
    """What was done to the upload before projecting it (the face alignment), for the page."""
    state: str = "queued"
    step: int = 0
    loss: float | None = None
    error: str | None = None
    code: torch.Tensor | None = field(default=None, repr=False)

    def status(self) -> dict:
        """The JSON the page polls."""
        return {
            "id": self.id, "state": self.state, "step": self.step, "steps": self.steps, "loss": self.loss, "error": self.error,
            "note": self.note,
        }

    def target_png(self) -> bytes:
        """The image being projected, as PNG bytes."""
        buffer = io.BytesIO()
        to_pil(self.target[0]).save(buffer, format="PNG")
        return buffer.getvalue()


class ProjectionJobs:
    """Projects uploaded targets one at a time in a worker thread; jobs are looked up by id.

    The projector swaps a generator's noise maps while it runs, so it works on a copy of the generator and the
    editor's renders go on meanwhile.
    """

    def __init__(self, generator: GeneratorLike, steps: int) -> None:
        self.generator = copy.deepcopy(generator)
        self.steps = steps
        self.jobs: OrderedDict[str, ProjectionJob] = OrderedDict()
        self.lock = threading.Lock()
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="projection")
        self.stopping = threading.Event()
        self.loss_network: Sensor | None = None

    def submit(self, target: torch.Tensor, note: str | None = None) -> ProjectionJob:
        """Queue the projection of one target image [1, 3, R, R] in [-1, 1]."""
        with self.lock:
            if sum(job.state in ("queued", "running") for job in self.jobs.values()) >= MAX_PENDING:
                raise BusyError("busy: an earlier upload is still being projected; wait for it to finish")
            job = ProjectionJob(secrets.token_hex(8), self.steps, target.detach().cpu(), note)
            self.jobs[job.id] = job
            self._forget_old()
        self.worker.submit(self._run, job, target)
        return job

    def _forget_old(self) -> None:
        finished = [key for key, job in self.jobs.items() if job.state in ("done", "failed")]
        for key in finished[: max(0, len(self.jobs) - MAX_KEPT)]:
            del self.jobs[key]

    def _run(self, job: ProjectionJob, target: torch.Tensor) -> None:
        job.state = "running"

        def on_step(done: int, stats: dict[str, float]) -> None:
            job.step, job.loss = done, stats["loss"]
            if self.stopping.is_set():
                raise Cancelled

        try:
            if self.loss_network is None:
                self.loss_network = default_loss_network(self.generator)
            device = self.generator.w_avg.device
            result = project(
                self.generator, target.to(device), steps=job.steps, loss_network=self.loss_network, progress=False, on_step=on_step
            )
            job.code = result.ws[:1].detach().cpu()
            job.step, job.state = job.steps, "done"
        except UserError as error:
            job.error, job.state = str(error), "failed"
        except Cancelled:
            job.error, job.state = "cancelled: the editor is shutting down", "failed"
        except Exception as error:  # noqa: BLE001 - the page shows the reason; the worker must survive any failure
            job.error, job.state = f"projection failed ({type(error).__name__}: {error})", "failed"

    def get(self, job_id: str) -> ProjectionJob:
        """The job with this id; LookupError (404) when there is none."""
        with self.lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise LookupError(f"no upload {job_id!r} (it may have been forgotten after {MAX_KEPT} newer ones)")
        return job

    def code(self, job_id: str) -> torch.Tensor:
        """The projected W+ code of a finished job."""
        job = self.get(job_id)
        if job.state != "done" or job.code is None:
            raise UserError(f"upload {job_id!r} is not projected yet (state: {job.state})")
        return job.code

    def close(self) -> None:
        """Drop queued jobs and stop a running projection at its next step."""
        self.stopping.set()
        self.worker.shutdown(wait=False, cancel_futures=True)
