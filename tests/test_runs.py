"""`contrafeat.discover`: the one owner of a run, from Python and from the command line alike."""
import errno
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import contrafeat
from contrafeat import runs
from contrafeat.cli import main
from contrafeat.discovery import registry
from contrafeat.discovery import trainer as trainer_module
from contrafeat.discovery.directions import Directions, load_directions
from contrafeat.discovery.trainer import Trainer
from contrafeat.errors import UserError

OPTIONS = {"method": "contra-bi", "steps": 4, "batch_size": 2, "num_directions": 3, "subspace_dim": 4, "pca_samples": 2000,
           "sensor": "random-alexnet", "save_every": 1}
FLAGS = ["--checkpoint", "shapes3d", "--method", "contra-bi", "--steps", "4", "--batch-size", "2", "--num-directions", "3", "--subspace-dim", "4",
         "--pca-samples", "2000", "--sensor", "random-alexnet", "--save-every", "1", "--no-progress"]


@pytest.fixture(autouse=True)
def cache(isolated_cache, one_thread):
    """Each test has its own cache, offline, on one thread."""


def test_discover_in_memory_writes_nothing(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    directions = contrafeat.discover("shapes3d", out=None, progress=False, **OPTIONS)
    assert isinstance(directions, Directions) and directions.count == 3 and directions.method == "contra-bi"
    assert list(work.iterdir()) == []


def test_python_and_command_line_write_the_same_run(tmp_path):
    by_cli, by_python = tmp_path / "cli", tmp_path / "python"
    assert main(["discover", *FLAGS, "--out", str(by_cli)]) == 0
    returned = contrafeat.discover("shapes3d", out=by_python, progress=False, **OPTIONS)
    assert returned is not None
    files = sorted(path.relative_to(by_cli).as_posix() for path in by_cli.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(by_python).as_posix() for path in by_python.rglob("*") if path.is_file())
    assert {"config.yaml", "directions.safetensors", "report.html", "attention.png", "training_state.pt"} <= set(files)
    assert (by_cli / "config.yaml").read_text() == (by_python / "config.yaml").read_text()
    a, b = load_file(by_cli / "directions.safetensors"), load_file(by_python / "directions.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert torch.equal(returned.vectors, load_directions(by_python).vectors)


def test_the_method_is_resolved_once_per_run(tmp_path, monkeypatch):
    calls = []
    original = registry.method_spec
    monkeypatch.setattr(registry, "method_spec", lambda name: calls.append(name) or original(name))
    contrafeat.discover("shapes3d", out=tmp_path / "run", progress=False, **OPTIONS)
    assert calls == ["contra-bi"]


def test_the_training_step_does_not_branch_on_the_objective():
    source = inspect.getsource(Trainer.train_step)
    assert "isinstance" not in source and "objective.backward(" in source


def test_an_existing_run_is_refused_and_an_unknown_option_named(tmp_path):
    contrafeat.discover("shapes3d", out=tmp_path / "run", progress=False, **OPTIONS)
    with pytest.raises(UserError, match="already holds a run"):
        contrafeat.discover("shapes3d", out=tmp_path / "run", progress=False, **OPTIONS)
    with pytest.raises(UserError, match="trains on shapes3d, not shapes3d-learned"):
        contrafeat.discover("shapes3d-learned", out=tmp_path / "run", resume=True)
    with pytest.raises(UserError, match="unknown option.*stepz"):
        contrafeat.discover("shapes3d", out=None, stepz=3)


def error_lines(capsys) -> list[str]:
    """The error lines on stderr, which must end it (the lines before are the run's messages)."""
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("contrafeat: error:")]
    assert errors and lines[-1] == errors[-1]
    return errors


def failing_save(after: int):
    """atomic_torch_save that fails with a full disk after `after` saves."""
    saves = []
    original = trainer_module.atomic_torch_save

    def save(value, target):
        if len(saves) >= after:
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        saves.append(target)
        original(value, target)

    return save


def test_a_full_disk_mid_run_is_one_line_and_the_run_resumes(tmp_path, monkeypatch, capsys):
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert main(["discover", *FLAGS, "--out", str(straight)]) == 0
    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, "atomic_torch_save", failing_save(after=2))
        assert main(["discover", *FLAGS, "--out", str(broken)]) == 2
    error = error_lines(capsys)
    assert len(error) == 1 and "No space left on device" in error[0] and "training_state.pt" in error[0] and f"--resume {broken}" in error[0]
    assert torch.load(broken / "training_state.pt", weights_only=True)["step"] == 2
    assert main(["discover", "--resume", str(broken), "--no-progress"]) == 0
    assert torch.equal(load_directions(straight).vectors, load_directions(broken).vectors)


def test_a_full_disk_while_writing_pictures_keeps_the_trained_run(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"

    def full_disk(*arguments, **options):
        raise OSError(errno.ENOSPC, "No space left on device", str(run / "traversals" / "traversal_00.png"))

    monkeypatch.setattr(runs, "write_traversals", full_disk)
    assert main(["discover", *FLAGS, "--out", str(run)]) == 2
    error = error_lines(capsys)
    assert len(error) == 1 and error[0].startswith(f"contrafeat: error: {run / 'traversals' / 'traversal_00.png'}: No space left on device")
    assert (run / "training_state.pt").is_file() and (run / "directions.safetensors").is_file()
    with pytest.raises(UserError, match="No space left on device"):
        contrafeat.discover("shapes3d", out=tmp_path / "again", progress=False, **OPTIONS)


def test_a_read_only_folder_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    run = tmp_path / "locked" / "run"
    original = Path.mkdir

    def refuse(self, *arguments, **options):
        if self == run:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        original(self, *arguments, **options)

    monkeypatch.setattr(Path, "mkdir", refuse)
    assert main(["discover", *FLAGS, "--out", str(run)]) == 2
    assert error_lines(capsys) == [f"contrafeat: error: {run}: Permission denied"]
    assert not run.exists()


def test_a_fresh_process_discovers_with_the_default_world_in_memory(tmp_path):
    """The call a notebook makes first, in its own process: nothing printed unless logging is configured, no file written."""
    code = (
        "import contrafeat; d = contrafeat.discover('shapes3d-learned', steps=2, batch_size=2, pca_samples=2000, out=None, progress=False); "
        "print(type(d).__name__, d.count)"
    )
    cache = tmp_path / "cache"
    work = tmp_path / "work"
    work.mkdir()
    env = {"CONTRAFEAT_CACHE": str(cache), "CONTRAFEAT_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Directions 10" and list(work.iterdir()) == []
    assert json.dumps(done.stderr).count("budget:") == 0  # the library logs, it does not print
