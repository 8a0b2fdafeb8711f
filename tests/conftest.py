"""Fixtures shared by several test files."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from contrafeat.cli import main
from contrafeat.gan.interface import GeneratorLike
from contrafeat.zoo import load_generator


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No weights are downloaded: a missing file is an error, as on a machine without a network."""
    monkeypatch.setenv("CONTRAFEAT_OFFLINE", "1")


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: None) -> None:
    """A fresh cache folder (PCA, renders) per test, offline."""
    monkeypatch.setenv("CONTRAFEAT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Small networks run fastest on one thread, and do not stall when other processes hold the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shapes() -> GeneratorLike:
    """The written-down shapes3d world, with exact true edits."""
    return load_generator("shapes3d")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A finished two-step contra-bi run on shapes3d (3 directions, random AlexNet), in its own cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("CONTRAFEAT_CACHE", str(tmp_path_factory.mktemp("cache")))
    run = tmp_path_factory.mktemp("runs") / "bi"
    options = ["--method", "contra-bi", "--steps", "2", "--batch-size", "2", "--num-directions", "3", "--subspace-dim", "4", "--pca-samples", "2000"]
    code = main(["discover", "--checkpoint", "shapes3d", *options, "--sensor", "random-alexnet", "--out", str(run), "--no-progress"])
    assert code == 0
    yield run
    patch.undo()
