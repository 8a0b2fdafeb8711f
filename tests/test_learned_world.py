"""The learned shapes3d world: its interface, the shipped weights' measured properties, training and resume, errors."""
import math

import pytest
import torch

from contrafeat.cli import main
from contrafeat.discovery.best_linear import best_linear_edits
from contrafeat.discovery.directions import load_directions
from contrafeat.discovery.latentclr import SynthesisBlockFeatures, has_synthesis_blocks
from contrafeat.errors import UserError
from contrafeat.gan.interface import seeded_codes
from contrafeat.gan.tagged_weights import save_tagged_weights
from contrafeat.resumable import state_path
from contrafeat.shapes3d import world_properties
from contrafeat.shapes3d.factor_levels import COLOUR_FACTORS, GEOMETRY_FACTORS, level_jacobians
from contrafeat.shapes3d.learned_generator import DEFAULT_WEIGHTS, NUM_BLOCKS, load_learned_world
from contrafeat.shapes3d.linear_generator import ShapesGenerator
from contrafeat.shapes3d.world_training import WorldSettings, WorldTraining, train_world
from contrafeat.zoo import load_generator

TINY = WorldSettings(steps=6, batch=32, projections=8, regularise_every=2)


@pytest.fixture(scope="module")
def world():
    return load_generator("shapes3d-learned")


@pytest.fixture(scope="module")
def jacobians(world):
    return level_jacobians(world, seeded_codes(world, 96, seed=0))


def test_the_shipped_world_has_the_stylegan2_interface(world):
    assert (world.z_dim, world.w_dim, world.num_ws, world.img_resolution) == (64, 64, 10, 64)
    z = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    ws = world.truncate(world.broadcast(world.mapping(z)), 0.7)
    images, factors = world.synthesis(ws), world.factors(ws)
    assert images.shape == (4, 3, 64, 64) and images.min() >= -1 and images.max() <= 1
    assert factors.shape == (4, 6) and ((factors[:, :3] >= 0) & (factors[:, :3] < 1)).all()
    assert ((factors[:, 3] >= 0.75) & (factors[:, 3] <= 1.25)).all() and ((factors[:, 5] >= -30) & (factors[:, 5] <= 30)).all()
    assert torch.allclose(world.mapping(z, truncation_psi=0.0), world.w_avg.expand(4, -1))
    assert len(world.style_affine_weights()) == world.num_ws and world_properties.style_rank(world) == world.w_dim


def test_latentclr_reads_the_worlds_own_block_features(world):
    assert has_synthesis_blocks(world) and not has_synthesis_blocks(ShapesGenerator())
    ws = world.broadcast(world.mapping(torch.randn(3, 64)))
    blocks = list(world.synthesis.iterate_blocks(ws))
    assert len(blocks) == NUM_BLOCKS and blocks[0][0].shape == (3, 64, 1, 1)
    assert torch.allclose(torch.sigmoid(blocks[-1][1]), world.levels(ws))
    assert [features.shape for features in SynthesisBlockFeatures(world, "const").of_codes(ws)] == [(3, 64, 1, 1)] * 3


def test_effects_depend_on_w_in_the_learned_world_and_not_in_the_linear_one(world, jacobians):
    learned = world_properties.gradient_consistency(jacobians)
    linear = world_properties.gradient_consistency(level_jacobians(ShapesGenerator(), seeded_codes(ShapesGenerator(), 16, 0)))
    assert (learned < 0.9).all() and torch.allclose(linear, torch.ones(6), atol=1e-4)
    assert world_properties.span_overlap(jacobians) < 0.8 and world_properties.span_rank(jacobians) == pytest.approx(6.0)


def test_coarse_layers_hold_the_geometry_and_fine_layers_the_colours(jacobians):
    coarse = world_properties.coarse_share(world_properties.layer_sensitivity(jacobians))
    assert (coarse[list(GEOMETRY_FACTORS)] > 0.8).all() and (coarse[list(COLOUR_FACTORS)] < 0.2).all()


def test_the_factor_levels_are_close_to_independent_and_uniform(world):
    with torch.no_grad():
        levels = world.levels(seeded_codes(world, 5000, seed=3)).double().numpy()
    assert (world_properties.uniformity(levels) < 0.1).all()
    assert world_properties.pairwise_dependence(levels)["max_abs_spearman"] < 0.3


def test_best_linear_edits_are_exact_in_the_linear_world_and_imperfect_in_the_learned_one(world):
    linear = best_linear_edits(ShapesGenerator(), samples=64, steps=40)
    assert min(edit.share for edit in linear) > 0.99
    learned = best_linear_edits(world, samples=96, steps=120)
    assert all(0.8 <= edit.share <= 0.98 for edit in learned), [edit.share for edit in learned]
    assert all(abs(edit.change - 0.25) < 0.05 for edit in learned) and all(math.isclose(float(edit.weights.sum()), 1.0, rel_tol=1e-5) for edit in learned)


def test_a_short_training_resumes_bit_for_bit_and_loads_back(tmp_path):
    straight, split = tmp_path / "straight.safetensors", tmp_path / "split.safetensors"
    train_world(straight, TINY, save_every=3, progress=False)
    training = WorldTraining(TINY)
    for _ in range(3):
        training.train_step()
    torch.save(training.state_dict(), state_path(split))
    with pytest.raises(UserError, match="an unfinished run exists"):
        train_world(split, TINY, progress=False)
    train_world(split, TINY, progress=False, resume=True)
    a, b = load_learned_world(straight).state_dict(), load_learned_world(split).state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a) and not state_path(split).exists()


def test_training_moves_the_levels_towards_uniform():
    training = WorldTraining(WorldSettings(steps=150, batch=256, projections=16))
    before = training.model.levels(training.codes(2000)).detach().double().numpy()
    while training.step_count < training.total_steps:
        training.train_step()
    after = training.finish().levels(training.codes(2000)).detach().double().numpy()
    assert world_properties.uniformity(after).mean() < 0.5 * world_properties.uniformity(before).mean()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "nan"], "--lr nan: expected a positive number"),
        (["--lr=-0.001"], "--lr -0.001: expected a positive number"),
        (["--mixing", "1.5"], "--mixing 1.5: expected a number in [0, 1]"),
        (["--path-weight", "inf"], "--path-weight inf: expected a number in [0, 1e6]"),
        (["--steps", "0"], "--steps 0: expected a positive integer"),
        (["--batch", "4"], "--batch 4: expected at least 8 codes"),
        (["--save-every", "0"], "--save-every 0: expected a positive integer"),
        (["--resume"], "no training state to resume"),
    ],
)
def test_bad_training_options_are_named(tmp_path, capsys, flags, message):
    assert main(["shapes3d", "train-world", "--out", str(tmp_path / "w.safetensors"), "--no-progress", *flags]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1, error


def test_train_world_command_writes_a_loadable_world(tmp_path, capsys):
    out = tmp_path / "world.safetensors"
    flags = ["--steps", "4", "--batch", "16", "--projections", "4", "--no-progress"]
    assert main(["shapes3d", "train-world", "--out", str(out), *flags]) == 0
    assert "wrote" in capsys.readouterr().out and load_learned_world(out).num_ws == 10
    trained, shipped = load_generator(out), load_generator("shapes3d-learned")  # --checkpoint takes the file
    codes = seeded_codes(shipped, 8, seed=0, truncation_psi=0.5)
    assert isinstance(trained, type(shipped)) and not torch.equal(trained.levels(codes), shipped.levels(codes))
    assert torch.equal(load_generator(DEFAULT_WEIGHTS).levels(codes), shipped.levels(codes))


def test_unusable_weight_files_are_refused(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        load_learned_world(tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="unreadable"):
        load_learned_world(garbage)
    other = tmp_path / "other.safetensors"
    save_tagged_weights(torch.nn.Linear(2, 2), other, "something-else", "1", {})
    with pytest.raises(UserError, match="not of this format"):
        load_learned_world(other)
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size < 2_000_000


def test_discover_runs_on_the_learned_world_by_default(tmp_path, capsys):
    run = tmp_path / "run"
    flags = ["--steps", "2", "--batch-size", "4", "--num-directions", "3", "--pca-samples", "2000", "--no-progress"]
    assert main(["discover", "--out", str(run), *flags]) == 0
    output = capsys.readouterr().out
    assert "checkpoint: shapes3d-learned" in (run / "config.yaml").read_text()
    assert "attribute matrix at the fixed strength, against plain PCA and random directions" in output
    rows = [line.split() for line in output.splitlines() if line.split()[:1] in (["contra-bi"], ["pca"], ["random"])]
    assert [row[0] for row in rows] == ["contra-bi", "pca", "random"] and all(0 <= float(row[1]) <= 1 for row in rows)


def test_best_linear_row_on_the_learned_world_and_no_truth_row(tmp_path, capsys):
    run = tmp_path / "best"
    assert main(["discover", "--method", "best-linear", "--pca-samples", "2000", "--out", str(run), "--no-progress"]) == 0
    directions = load_directions(run)
    assert directions.count == 6 and directions.names == list(ShapesGenerator.factor_names)
    assert torch.allclose(directions.attention.sum(dim=1), torch.ones(6)) and "best-linear share of each factor" in capsys.readouterr().err
    assert main(["discover", "--method", "truth", "--pca-samples", "2000", "--out", str(tmp_path / "truth"), "--no-progress"]) == 2
    assert "--method best-linear" in capsys.readouterr().err
