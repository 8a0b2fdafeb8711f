"""Runs compare by generator renders: renders_per_step is what a training step renders, --renders sets the steps."""
import pytest
import torch
import yaml

from contrafeat.cli import build_parser, main
from contrafeat.discovery import run as run_module
from contrafeat.discovery.config import build_config, save_config
from contrafeat.discovery.distributed import Runtime
from contrafeat.discovery.registry import METHODS
from contrafeat.discovery.trainer import STATE_FILE, Trainer
from contrafeat.zoo import load_generator

pytestmark = pytest.mark.usefixtures("isolated_cache")

TINY = {"num_directions": 2, "batch_size": 4, "pca_samples": 2000, "steps": 1, "log_every": 1}
"""The smallest run the CLI tests train: K = 2, B = 4, one step."""


@pytest.mark.parametrize(
    "method, loss, renders",
    [
        ("contra-bi", None, 10),  # w1, w2, w1 + s d_i, w2 + s d_i, w2 + s' d_j on B / 2 pairs: 2.5 B
        ("contra-pt", None, 8),  # w +- s/2 d_q: 2 B (the prototypes are never rendered)
        ("ganspace+att", "bi", 10),
        ("sefa+att", "pt", 8),
        ("latentclr", None, 12),  # w and the K directions on it: (K + 1) B
        ("latentclr+att", None, 12),
        ("recog", None, 8),  # w and w + s d_k: 2 B
        ("recog+att", None, 8),
    ],
)
def test_renders_per_step_is_what_a_training_step_renders(tmp_path, monkeypatch, method, loss, renders):
    generator = load_generator("shapes3d")
    synthesis, images = generator.synthesis, []

    def counted(ws: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        images.append(ws.shape[0])
        return synthesis(ws, *args, **kwargs)

    generator.synthesis = counted
    monkeypatch.setattr(run_module, "load_generator", lambda checkpoint, device="cpu": generator)
    monkeypatch.setattr(Trainer, "_look", lambda *arguments: None)  # the validation batch is no part of the training budget
    config = build_config("shapes3d", None, {"method": method, **({"loss": loss} if loss else {}), **TINY})
    run_module.train_run(config, tmp_path, resuming=False, runtime=Runtime(), progress=False)
    assert images and sum(images) == config.renders_per_step == renders


def test_every_trained_method_is_counted():
    counted = {"contra-bi", "contra-pt", "ganspace+att", "sefa+att", "latentclr", "latentclr+att", "recog", "recog+att"}
    assert counted == {name for name, spec in METHODS.items() if spec.trains}


def dry_run(capsys, *arguments: str) -> dict:
    """The configuration `contrafeat discover ... --dry-run` prints."""
    assert main(["discover", *arguments, "--dry-run"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_the_budget_flags_reach_the_config(capsys):
    config = dry_run(capsys, "--method", "latentclr", "--renders", "1000", "--recog-lr", "0.001")
    assert (config["renders"], config["steps"], config["recog_lr"]) == (1000, 23, 0.001)  # ceil(1000 / 44)
    help_text = build_parser()._subparsers._group_actions[0].choices["discover"].format_help()
    assert "--renders" in help_text and "--recog-lr" in help_text


def test_a_resumed_run_takes_a_new_render_budget(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    save_config(build_config("shapes3d", None, {"method": "contra-bi", "renders": 1000}), run / "config.yaml")
    (run / STATE_FILE).write_bytes(b"")
    assert yaml.safe_load((run / "config.yaml").read_text())["total_renders"] == 1000  # 40 steps of 25
    config = dry_run(capsys, "--resume", str(run), "--renders", "2000")
    assert (config["renders"], config["steps"]) == (2000, 80)
    assert main(["discover", "--resume", str(run), "--steps", "50", "--dry-run"]) == 2
    assert "--steps 50 disagrees with --renders 1000" in capsys.readouterr().err
