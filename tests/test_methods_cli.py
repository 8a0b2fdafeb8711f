"""Every method runs from `contrafeat discover` on the shapes3d world and writes a complete run folder."""
import json

import pytest
import torch

from contrafeat.cli import main
from contrafeat.discovery.directions import load_directions
from contrafeat.discovery.registry import ANSWER_KEYS, METHODS

pytestmark = pytest.mark.usefixtures("isolated_cache")

TINY = ["--checkpoint", "shapes3d", "--num-directions", "2", "--batch-size", "4", "--pca-samples", "2000", "--log-every", "1", "--no-progress"]


@pytest.mark.parametrize("method", [name for name in METHODS if not name.startswith("contra-") and METHODS[name].directions not in ANSWER_KEYS])
def test_method_runs_from_the_cli(tmp_path, capsys, method):
    run = tmp_path / "run"
    trains = METHODS[method].trains
    steps = ["--steps", "2"] if trains else []
    assert main(["discover", "--method", method, "--out", str(run), *steps, *TINY]) == 0
    for name in ("config.yaml", "pca.safetensors", "directions.safetensors", "directions.json", "report.html", "attention.png"):
        assert (run / name).is_file(), name
    directions = load_directions(run)
    assert directions.method == method and directions.count == 2 and (directions.strengths > 0).all()
    assert (directions.vectors.square().mean(dim=1) - 1).abs().max() < 1e-4
    uniform = bool(directions.attention.std(dim=1).max() < 1e-7)
    assert uniform == (METHODS[method].attention == "none")
    assert len(list((run / "traversals").glob("traversal_*.png"))) == 2
    assert method in (run / "report.html").read_text()
    captured = capsys.readouterr()
    assert "against plain PCA and random directions" in captured.out
    if trains:
        assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == [1, 2]
    else:
        assert "nothing is trained" in captured.err and not (run / "training_state.pt").exists()


def test_latentclr_says_where_its_features_come_from(tmp_path, capsys):
    assert main(["discover", "--method", "latentclr", "--out", str(tmp_path / "run"), "--steps", "1", *TINY]) == 0
    assert "features from the sensor mobilenet_v2 (the generator has no synthesis blocks)" in capsys.readouterr().err


def test_a_training_free_run_is_not_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["discover", "--method", "ganspace", "--out", str(run), *TINY]) == 0
    assert main(["discover", "--method", "sefa", "--out", str(run), *TINY]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_truth_writes_the_worlds_exact_edits_as_an_ordinary_run(tmp_path, capsys):
    from contrafeat.zoo import load_generator

    run = tmp_path / "run"
    assert main(["discover", "--method", "truth", "--out", str(run), *TINY]) == 0
    for name in ("config.yaml", "pca.safetensors", "directions.safetensors", "directions.json", "report.html", "attention.png"):
        assert (run / name).is_file(), name
    assert not (run / "training_state.pt").exists() and "nothing is trained" in capsys.readouterr().err
    directions = load_directions(run)
    world = load_generator("shapes3d")
    assert directions.count == 6 and directions.method == "truth"
    assert directions.names == list(world.factor_names)
    for index, (vector, weights) in enumerate(world.true_edits()):
        assert torch.allclose(directions.vectors[index], vector) and torch.allclose(directions.attention[index], weights)
    assert (directions.strengths > 0).all()
    assert len(list((run / "traversals").glob("traversal_*.png"))) == 6


def test_truth_on_a_generator_without_known_edits_is_one_clear_error(tmp_path, capsys):
    from stylegan2_factories import random_generator

    from contrafeat.gan.checkpoints import save_native

    save_native(random_generator(with_discriminator=False), tmp_path / "native")
    code = main(["discover", "--method", "truth", *TINY, "--checkpoint", str(tmp_path / "native"), "--out", str(tmp_path / "run")])
    assert code == 2
    assert "does not know its exact per-factor edits" in capsys.readouterr().err
