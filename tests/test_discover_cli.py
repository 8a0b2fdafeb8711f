"""`contrafeat discover` / `traverse` end to end on the shapes3d world with tiny settings."""
import json

import pytest
import torch

from contrafeat.cli import main
from contrafeat.discovery.directions import load_directions

pytestmark = pytest.mark.usefixtures("isolated_cache")

TINY = ["--steps", "4", "--batch-size", "4", "--pca-samples", "2000", "--save-every", "2", "--log-every", "1", "--no-progress"]
TINY += ["--checkpoint", "shapes3d"]


def test_discover_writes_a_complete_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["discover", "--out", str(run), *TINY, "--validate-every", "4"]) == 0
    for name in ("config.yaml", "pca.safetensors", "training_state.pt", "directions.safetensors", "directions.json",
                 "log.jsonl", "report.html", "attention.png", "loss_curves.png"):
        assert (run / name).is_file(), name
    directions = load_directions(run)
    assert directions.count == 10 and directions.num_ws == 10 and directions.w_dim == 64
    assert len(list((run / "traversals").glob("traversal_*.png"))) == 10
    output = capsys.readouterr().out
    assert "against plain PCA and random directions" in output and "mean_best_cos" in output
    report = (run / "report.html").read_text()
    assert "traversals/traversal_09.png" in report and "attention.png" in report and "mean_best_cos" in report
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    looks = [json.loads(line) for line in (run / "validation.jsonl").read_text().splitlines()]
    assert [look["step"] for look in looks] == [0, 4]  # the start and the last step
    assert {"validation_contrast", "score", "factor_score", "found", "true_edit_cos"} <= set(looks[0]) and "angle_mean" in looks[1]
    assert (run / "attribute_matrix.png").is_file()
    order = [report.index(text) for text in ("against plain PCA", "attribute_matrix.png", "traversals/", "training progress", "configuration")]
    assert order == sorted(order), "the report shows what was found first and the configuration last"


def test_resume_from_the_cli_equals_a_straight_run(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    options = TINY[2:]  # everything but the step count
    assert main(["discover", "--method", "contra-bi", "--out", str(straight), "--steps", "4", *options]) == 0
    assert main(["discover", "--method", "contra-bi", "--out", str(split), "--steps", "2", *options]) == 0
    assert main(["discover", "--resume", str(split), "--steps", "4", "--no-progress"]) == 0
    a, b = load_directions(straight), load_directions(split)
    assert torch.equal(a.vectors, b.vectors) and torch.equal(a.attention, b.attention)


def test_traverse_rewrites_the_pictures(tmp_path):
    run = tmp_path / "run"
    assert main(["discover", "--method", "contra-pt", "--out", str(run), *TINY]) == 0
    assert (run / "prototypes.png").is_file()
    for picture in (run / "traversals").glob("*.png"):
        picture.unlink()
    assert main(["traverse", str(run), "--samples", "2", "--frames", "3"]) == 0
    assert len(list((run / "traversals").glob("traversal_*.png"))) == 10


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["discover", "--resume", "{tmp}/nothing"], "expected a run folder with config.yaml"),
        (["discover", "--method", "magic", "--out", "{tmp}/r"], "--method 'magic': expected one of"),
        (["discover", "--sensor", "resnet", "--out", "{tmp}/r", *TINY], "resnet"),
        (["traverse", "{tmp}/nothing"], "no directions.safetensors"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, arguments, message):
    code = main([a.replace("{tmp}", str(tmp_path)) for a in arguments])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert error[-1].startswith("contrafeat: error:") and message in error[-1]


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["discover", "--out", str(run), *TINY]) == 0
    assert main(["discover", "--out", str(run), *TINY]) == 2
    assert "use --resume" in capsys.readouterr().err


def test_resume_refuses_changed_hyper_parameters(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["discover", "--out", str(run), *TINY]) == 0
    assert main(["discover", "--resume", str(run), "--lr", "0.5"]) == 2
    assert "lr cannot change in a resumed run" in capsys.readouterr().err


def test_discover_on_a_stylegan2_checkpoint_with_its_discriminator(tmp_path):
    from stylegan2_factories import random_generator

    from contrafeat.gan.checkpoints import save_native

    generator = random_generator(with_discriminator=True)
    save_native(generator, tmp_path / "native")
    run = tmp_path / "run"
    arguments = ["discover", "--checkpoint", str(tmp_path / "native"), "--preset", "ffhq", "--sensor", "discriminator",
                 "--num-directions", "3", "--subspace-dim", "8", "--out", str(run), *TINY, "--checkpoint", str(tmp_path / "native")]
    assert main(arguments) == 0
    directions = load_directions(run)
    assert (directions.count, directions.num_ws, directions.w_dim) == (3, generator.num_ws, generator.w_dim)
    assert (run / "report.html").is_file() and not (run / "traversals" / "traversal_03.png").exists()


def test_help_states_the_values_each_method_really_gets() -> None:
    from contrafeat.commands.discover_commands import default_summary

    assert default_summary("steps") == (
        "default 1500; ganspace, sefa, truth, best-linear: 0; preset ffhq: contra-bi: 16667; contra-pt: 20000; "
        "ganspace+att, sefa+att: 30000; latentclr, latentclr+att: 75000; recog, recog+att: 37500"
    )
    assert default_summary("lr") == "default 0.05; latentclr, latentclr+att, recog, recog+att: 0.01"
    assert default_summary("num_directions") == "default 10; preset ffhq: 30"
    assert default_summary("mask") == "default l2"
