"""`contrafeat project`, `edit` and `name` on the shapes3d world, and the strength and code-file parsing behind them."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from true_edit_directions import true_directions

from contrafeat.cli import main
from contrafeat.discovery.config import build_config, save_config
from contrafeat.discovery.directions import load_directions
from contrafeat.editing.edit import edit_strip, parse_strengths
from contrafeat.editing.projector import load_projected_w, save_projected_w
from contrafeat.errors import UserError
from contrafeat.viz.images import save_png, to_uint8
from contrafeat.zoo import load_generator

pytestmark = pytest.mark.usefixtures("offline")

torch.set_num_threads(1)

STRENGTH = 0.5
"""Suggested strength of every direction in the test run."""


@pytest.fixture(scope="module")
def generator():
    return load_generator("shapes3d")


@pytest.fixture(scope="module")
def code(generator):
    z = torch.randn(1, generator.z_dim, generator=torch.Generator().manual_seed(7))
    return generator.broadcast(generator.mapping(z, truncation_psi=0.7))


@pytest.fixture
def run_dir(tmp_path, generator):
    """A run folder holding the six true edits (strength 0.5) and the default shapes3d config."""
    folder = tmp_path / "run"
    true_directions(generator, strength=STRENGTH).save(folder)
    save_config(build_config("shapes3d"), folder / "config.yaml")
    return folder


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["--threads", "1", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("contrafeat: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize(
    "spec, values",
    [("-2:2:5", [-2, -1, 0, 1, 2]), ("0:1:3", [0, 0.5, 1]), ("3:-3:2", [3, -3]), ("-1,0,2.5", [-1, 0, 2.5]), ("1.5", [1.5]), (" -1 , 1 ", [-1, 1])],
)
def test_parse_strengths_reads_ranges_and_lists(spec, values):
    assert parse_strengths(spec) == pytest.approx(values)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("-2:2", "expected START:STOP:COUNT"),
        ("-2:2:1", "COUNT must be a whole number from 2 to 100, got '1'"),
        ("-2:2:2.5", "COUNT must be a whole number"),
        ("-2:2:1000", "COUNT must be a whole number from 2 to 100"),
        ("a:2:5", "'a' is not a number"),
        ("1,,2", "'' is not a number"),
        ("1,nan", "'nan' is not a finite number"),
        (",".join(["1"] * 101), "101 values; at most 100"),
    ],
)
def test_parse_strengths_refuses_malformed_specs(spec, message):
    with pytest.raises(UserError, match=f"--strength .*{message}"):
        parse_strengths(spec)


def test_edit_strip_renders_the_code_at_each_strength(generator, code):
    directions = true_directions(generator, strength=STRENGTH)
    strip = edit_strip(generator, code, directions, 3, [-1.0, 0.0, 2.0])
    expected = torch.cat([generator.synthesis(directions.apply(code, 3, s)) for s in (-1.0, 0.0, 2.0)])
    assert strip.shape == (3, 3, 64, 64)
    assert torch.allclose(strip, expected, atol=1e-5)
    scale = [float(generator.factors(directions.apply(code, 3, s))[0, 3]) for s in (-1.0, 0.0, 2.0)]
    assert scale[0] < scale[1] < scale[2]


def test_project_writes_code_reconstruction_and_side_by_side(tmp_path, capsys, generator, code):
    image_path = save_png(generator.synthesis(code)[0], tmp_path / "render.png")
    out = tmp_path / "projections"
    status, stdout, _ = run_cli(capsys, "project", image_path, "--steps", 60, "--space", "w", "--sensor", "mobilenet_v2", "--out", out, "--no-progress")
    assert status == 0
    folder = out / "render"
    with np.load(folder / "projected_w.npz", allow_pickle=False) as archive:
        assert archive.files == ["w"]
        w = archive["w"]
    assert w.shape == (1, generator.num_ws, generator.w_dim) and w.dtype == np.float32
    rendered = to_uint8(generator.synthesis(torch.from_numpy(w))[0]).astype(np.int16)
    assert np.abs(pixels(folder / "reconstruction.png") - rendered).max() <= 1
    side = pixels(folder / "side_by_side.png")
    assert side.shape == (64, 128, 3)
    assert np.array_equal(side[:, :64], pixels(image_path))
    assert np.array_equal(side[:, 64:], pixels(folder / "reconstruction.png"))
    line = stdout.strip().splitlines()[-1]
    assert line.startswith(f"{image_path}: perceptual ") and "pixel MSE" in line and line.endswith(str(folder))
    mse = float(line.split("pixel MSE ")[1].split()[0])
    from_files = float(np.mean((side[:, 64:] / 127.5 - side[:, :64] / 127.5) ** 2))
    assert mse == pytest.approx(from_files, abs=2e-3)
    assert mse < 0.05  # 60 steps in W from w_avg (MSE 0.46): measured 0.006 here, at most 0.006 on three renders


def test_project_refuses_bad_inputs_before_optimising(tmp_path, capsys):
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    status, _, err = run_cli(capsys, "project", notes, "--out", tmp_path / "out", "--no-progress")
    assert_one_line_error(status, err, f"{notes}: not an image in an accepted format")
    assert not (tmp_path / "out").exists()
    status, _, err = run_cli(capsys, "project", notes, tmp_path / "other" / "notes.jpg")
    assert_one_line_error(status, err, "would both write to", "rename one")
    status, _, err = run_cli(capsys, "project", notes, "--sensor-weights", tmp_path / "w.pth")
    assert_one_line_error(status, err, "--sensor-weights needs --sensor NAME")


def test_edit_writes_a_strip_in_suggested_steps(tmp_path, capsys, generator, code, run_dir):
    w_path = save_projected_w(code, tmp_path / "projected_w.npz")
    strip_path = tmp_path / "strip.png"
    status, _, err = run_cli(capsys, "edit", "--w", w_path, "--directions", run_dir, "--index", 3, "--strength", "-2:2:5", "--out", strip_path)
    assert status == 0 and str(strip_path) in err
    strip = pixels(strip_path)
    assert strip.shape == (64, 5 * 64, 3)
    directions = load_directions(run_dir)
    for column, multiple in enumerate([-2, -1, 0, 1, 2]):
        expected = to_uint8(generator.synthesis(directions.apply(code, 3, multiple * STRENGTH))[0]).astype(np.int16)
        assert np.abs(strip[:, column * 64 : (column + 1) * 64] - expected).max() <= 1


@pytest.mark.parametrize(
    "arrays, fragments",
    [
        (
            {"w": np.zeros((1, 9, 64), np.float32)},
            ["'w' is a float32 array of shape [1, 9, 64]", "expected an .npz file with key 'w' holding a float array [1, 10, 64]"],
        ),
        ({"latent": np.zeros((1, 10, 64), np.float32)}, ["no key 'w' (keys: latent)"]),
        ({"w": np.zeros((1, 10, 64), np.int64)}, ["'w' is a int64 array"]),
        ({"w": np.full((1, 10, 64), np.nan, np.float32)}, ["NaN or infinite"]),
        ({"w": np.array([{"a": 1}], dtype=object)}, ["'w' is unreadable"]),
    ],
)
def test_edit_refuses_unfit_code_files(tmp_path, capsys, run_dir, arrays, fragments):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    status, _, err = run_cli(capsys, "edit", "--w", path, "--directions", run_dir, "--index", 0, "--out", tmp_path / "strip.png")
    assert_one_line_error(status, err, str(path), *fragments)
    assert not (tmp_path / "strip.png").exists()


def test_load_projected_w_accepts_a_single_code_and_refuses_bare_arrays_and_junk(tmp_path, generator, code):
    path = tmp_path / "single.npz"
    np.savez(path, w=code[0].numpy())
    assert torch.equal(load_projected_w(path, generator), code)
    bare = tmp_path / "bare.npy"
    np.save(bare, code.numpy())
    with pytest.raises(UserError, match="a bare .npy array, not an .npz archive"):
        load_projected_w(bare, generator)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 this is no zip")
    with pytest.raises(UserError, match=f"{junk}: not a readable .npz file"):
        load_projected_w(junk, generator)


def stored_names(run_dir) -> list:
    return [entry["name"] for entry in json.loads((run_dir / "directions.json").read_text())["directions"]]


def test_name_stores_refuses_duplicates_and_clears(tmp_path, capsys, code, run_dir):
    assert run_cli(capsys, "name", run_dir, 3, "size")[0] == 0
    assert stored_names(run_dir) == [None, None, None, "size", None, None]
    assert load_directions(run_dir).resolve_index(name="size") == 3
    w_path = save_projected_w(code, tmp_path / "projected_w.npz")
    assert run_cli(capsys, "edit", "--w", w_path, "--directions", run_dir, "--name", "size", "--strength=-1,1", "--out", tmp_path / "s.png")[0] == 0
    assert pixels(tmp_path / "s.png").shape == (64, 128, 3)
    assert_one_line_error(*run_cli(capsys, "name", run_dir, 4, "size")[::2], "direction 3 already has it")
    assert_one_line_error(*run_cli(capsys, "name", run_dir, 6, "x")[::2], "INDEX 6: expected a direction index in 0..5")
    assert_one_line_error(*run_cli(capsys, "name", run_dir, 0, " ")[::2], "expected 1 to 64 printable characters")
    assert_one_line_error(*run_cli(capsys, "name", run_dir, 0)[::2], "expected RUN INDEX NAME, RUN --auto or RUN [INDEX] --clear")
    assert_one_line_error(*run_cli(capsys, "name", run_dir, 0, "--auto")[::2], "--auto names every direction")
    assert run_cli(capsys, "name", run_dir, 4, "shape")[0] == 0
    assert run_cli(capsys, "name", run_dir, 3, "--clear")[0] == 0
    assert stored_names(run_dir) == [None, None, None, None, "shape", None]
    assert run_cli(capsys, "name", run_dir, "--clear")[0] == 0
    assert stored_names(run_dir) == [None] * 6


def test_name_auto_names_the_true_edits_and_marks_an_entangled_one(tmp_path, capsys, generator):
    edits = generator.true_edits()
    mixed = (edits[4][0], 0.4 * edits[4][1] + 0.6 * edits[2][1])  # the shape vector over the shape and object-hue layers
    folder = tmp_path / "run"
    true_directions(generator, extra=[mixed], strength=STRENGTH).save(folder)
    save_config(build_config("shapes3d"), folder / "config.yaml")
    status, stdout, err = run_cli(capsys, "name", folder, "--auto")
    assert status == 0
    assert stored_names(folder) == [*generator.factor_names, "shape-2?"]
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "direction 6 moves object_hue 0.77 times as much as shape" in warnings[0]
    table = stdout.strip().splitlines()
    assert table[1].split() == ["direction", "name", "moves", "most", "change", "second", "second", "/", "first"]
    assert table[2].split()[:3] == ["0", "floor_hue", "floor_hue"] and len(table) == 2 + 7
