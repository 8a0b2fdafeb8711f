"""Data-parallel discovery: 2 gloo processes on the CPU train like 1 process on the same global batch."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from distributed_worker import Job, free_port, make_trainer, train, train_in_processes

from contrafeat.cli import main
from contrafeat.devices import resolve_device
from contrafeat.discovery.directions import load_directions
from contrafeat.discovery.distributed import Runtime, rank_share
from contrafeat.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = ("contra-bi", "contra-pt", "recog+att", "latentclr+att")
NAVIGATOR_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
"""Gradients summed in another order differ in the last float32 bits; the navigator's parameters stay this close."""
OBJECTIVE_TOLERANCE = {"rtol": 0.0, "atol": 1e-3}
"""Adam divides each element's gradient by its own RMS, so prototype pixels and reconstructor weights whose
gradient is near zero turn last-bit differences into steps of up to ~1% of lr (0.05 here, 0.01 for Recog)."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One spawn of 2 ranks running every 2-process job; rank 0's parameters by job name, and the root folder."""
    root = tmp_path_factory.mktemp("distributed")
    torch.set_num_threads(1)
    train(Job([root / "1p-half"], "contra-pt", steps=2))
    shutil.copytree(root / "1p-half", root / "1p-half-rank1")
    jobs = {f"straight-{method}": Job(_dirs(root, f"2p-{method}"), method) for method in METHODS}
    jobs["half"] = Job(_dirs(root, "2p-half"), "contra-pt", steps=2)
    jobs["micro"] = Job(_dirs(root, "2p-micro"), "contra-bi", overrides={"micro_batch": 2})
    jobs["resume-1p"] = Job(_dirs(root, "1p-half"), "contra-pt", resume=True)
    results = train_in_processes(list(jobs.values()), world_size=2, results=root / "results.pt")
    return dict(zip(jobs, results)), root


def _dirs(root, name):
    return [root / name, root / f"{name}-rank1"]


def assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        tolerance = OBJECTIVE_TOLERANCE if name.startswith("objective.") else NAVIGATOR_TOLERANCE
        assert torch.allclose(a[name], b[name], **tolerance), name


def log_of(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", METHODS)
def test_two_processes_equal_one_process(runs, tmp_path, method):
    results, root = runs
    single = train(Job([tmp_path], method))
    assert_same(results[f"straight-{method}"], single)
    assert not torch.equal(single["direction_branch.coefficients"], make_trainer(Job([tmp_path], method)).navigator.direction_branch.coefficients)
    two, one = log_of(root / f"2p-{method}"), log_of(tmp_path)
    assert [e["step"] for e in two] == [1, 2, 3, 4]
    assert [e["loss"] for e in two] == pytest.approx([e["loss"] for e in one], rel=1e-4, abs=1e-5)


def test_only_rank_zero_writes(runs):
    _, root = runs
    for name in (*(f"2p-{method}" for method in METHODS), "2p-half", "2p-micro"):
        assert sorted(p.name for p in (root / name).iterdir()) == ["log.jsonl", "training_state.pt"], name  # 4 steps: shorter than one validation interval
        assert not (root / f"{name}-rank1").exists(), name


def test_a_two_process_training_state_resumes_in_one_process(runs, tmp_path):
    results, root = runs
    shutil.copytree(root / "2p-half", tmp_path / "run")
    resumed = train(Job([tmp_path / "run"], "contra-pt", resume=True))
    assert_same(resumed, results["straight-contra-pt"])
    assert [e["step"] for e in log_of(tmp_path / "run")] == [1, 2, 3, 4]


def test_a_one_process_training_state_resumes_in_two_processes(runs):
    results, _ = runs
    assert_same(results["resume-1p"], results["straight-contra-pt"])


def test_micro_batches_over_two_processes_equal_the_full_batch(runs):
    results, _ = runs
    assert_same(results["micro"], results["straight-contra-bi"])


@pytest.mark.parametrize("method", METHODS)
def test_micro_batches_equal_the_full_batch(tmp_path, method):
    # two steps: from the third on, Recog's reconstructor (its last-bit differences grown by Adam, see
    # OBJECTIVE_TOLERANCE) feeds them back into the navigator's gradient, by up to 8e-4 on some CPUs
    full = train(Job([tmp_path / "full"], method, steps=2))
    accumulated = train(Job([tmp_path / "micro"], method, steps=2, overrides={"micro_batch": 2}))
    assert_same(accumulated, full)
    trainer = make_trainer(Job([tmp_path], method, overrides={"micro_batch": 2}))
    expected = [[0], [1], [2], [3]] if method == "contra-bi" else [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert [chunk.tolist() for chunk in trainer.share(8 // trainer.objective.codes_per_unit).batches] == expected


@pytest.mark.parametrize("micro_batch, expected", [(None, [8 + 3]), (2, [3, 4, 4])])
def test_a_pt_step_passes_the_prototypes_through_the_sensor_once(tmp_path, monkeypatch, micro_batch, expected):
    """Whole batch: one pass of the 2 x 4 renders and the K = 3 prototypes; two micro-batches: the prototypes first, once."""
    trainer = make_trainer(Job([tmp_path], "contra-pt", overrides={"batch_size": 4, "micro_batch": micro_batch}))
    sizes, of_images = [], trainer.features.of_images
    monkeypatch.setattr(trainer.features, "of_images", lambda images: sizes.append(images.shape[0]) or of_images(images))
    trainer.train_step()
    assert sizes == expected


def test_shares_of_a_batch():
    assert rank_share(5, Runtime(0, 2)).tolist() == [0, 1, 2] and rank_share(5, Runtime(1, 2)).tolist() == [3, 4]
    with pytest.raises(UserError, match="cannot be shared by 4 processes"):
        rank_share(3, Runtime(0, 4))


def test_latentclr_split_batches_recompute_the_same_noise(tmp_path):
    """The gradient-cached path renders each micro-batch twice; both passes must see the same synthesis noise."""
    trainer = make_trainer(Job([tmp_path], "latentclr+att", overrides={"micro_batch": 2, "noise_mode": "random"}))
    calls = []
    original = trainer.objective.changes

    def recording(*args):
        calls.append(torch.get_rng_state())
        torch.rand(3)  # what per-pixel synthesis noise would draw
        return original(*args)

    trainer.objective.changes = recording
    trainer.train_step()
    assert len(calls) == 8
    assert all(torch.equal(first, second) for first, second in zip(calls[:4], calls[4:]))
    assert not torch.equal(calls[0], calls[1])


def test_fp16_on_the_cpu_is_refused(tmp_path, capsys):
    with pytest.raises(UserError, match="fp16 needs CUDA"):
        make_trainer(Job([tmp_path], overrides={"precision": "fp16"}))
    assert main(["discover", "--out", str(tmp_path / "run"), "--device", "cpu", "--precision", "fp16", "--no-progress"]) == 2
    assert "--precision fp16: not supported on cpu" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bf16_autocast_on_the_cpu_stays_close_to_fp32(tmp_path):
    fp32 = make_trainer(Job([tmp_path / "a"], steps=1))
    bf16 = make_trainer(Job([tmp_path / "b"], steps=1, overrides={"precision": "bf16"}))
    a, b = fp32.train_step(), bf16.train_step()
    assert b["contrast"] != a["contrast"] and b["contrast"] == pytest.approx(a["contrast"], abs=0.05)


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="an accelerator is present")
def test_device_auto_is_the_cpu_here():
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device("cuda")


def test_torchrun_discover_equals_one_process(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTRAFEAT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CONTRAFEAT_OFFLINE", "1")
    options = ["discover", "--checkpoint", "shapes3d", "--steps", "2", "--batch-size", "4", "--pca-samples", "2000", "--log-every", "1", "--no-progress"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    finished = subprocess.run(
        [*launcher, "-m", "contrafeat", "--threads", "1", *options, "--out", str(tmp_path / "two")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stderr.count("report: ") == 1 and finished.stdout.count("against plain PCA") == 1
    assert "2 process(es) on cpu" in finished.stderr
    assert main([*options, "--out", str(tmp_path / "one")]) == 0
    two, one = load_directions(tmp_path / "two"), load_directions(tmp_path / "one")
    assert torch.allclose(two.vectors, one.vectors, **NAVIGATOR_TOLERANCE)
    assert torch.allclose(two.attention, one.attention, **NAVIGATOR_TOLERANCE)
    assert (tmp_path / "two" / "config.yaml").read_text() == (tmp_path / "one" / "config.yaml").read_text()
