"""The procedural 3DShapes world: factor grid, renderer properties, dataset, npz export and the render command."""
from __future__ import annotations

import argparse
import csv
import math

import numpy as np
import pytest
import torch

from contrafeat.commands import shapes3d_commands
from contrafeat.errors import UserError
from contrafeat.shapes3d.grid import (
    FACTOR_BASES,
    FACTOR_SIZES,
    FACTOR_VALUES,
    NUM_IMAGES,
    Shapes3DDataset,
    export_npz,
    factor_values,
    factors_to_index,
    index_to_factors,
    render_indices,
)
from contrafeat.shapes3d.renderer import SKY_RGB, hue_to_rgb, render, render_scene

SKY, WALL, FLOOR, OBJECT = range(4)
BASE = [0.1, 0.55, 0.85, 1.0, 0.0, 10.0]
"""floor, wall, object hue, scale, shape, orientation used where a test varies one factor."""


def scene(**changes: float) -> torch.Tensor:
    names = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    return torch.tensor([[changes.get(name, BASE[i]) for i, name in enumerate(names)]])


def test_factor_grid_matches_3dshapes() -> None:
    assert FACTOR_SIZES == (10, 10, 10, 8, 4, 15)
    assert [len(values) for values in FACTOR_VALUES] == list(FACTOR_SIZES)
    assert math.prod(FACTOR_SIZES) == NUM_IMAGES == 480_000
    assert FACTOR_BASES == tuple(math.prod(FACTOR_SIZES[i + 1 :]) for i in range(6))
    np.testing.assert_allclose(FACTOR_VALUES[0], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    np.testing.assert_allclose(FACTOR_VALUES[3][[0, -1]], [0.75, 1.25])
    np.testing.assert_allclose(FACTOR_VALUES[5][[0, 7, 14]], [-30.0, 0.0, 30.0])


def test_index_round_trip_over_all_indices() -> None:
    indices = np.arange(NUM_IMAGES)
    factors = index_to_factors(indices)
    assert factors.shape == (NUM_IMAGES, 6)
    np.testing.assert_array_equal(factors_to_index(factors), indices)
    np.testing.assert_array_equal(index_to_factors(48000), [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(index_to_factors(NUM_IMAGES - 1), [9, 9, 9, 7, 3, 14])
    np.testing.assert_array_equal(index_to_factors(4800 * 3 + 60 * 5 + 2), [0, 3, 0, 5, 0, 2])
    np.testing.assert_allclose(factor_values([9, 9, 9, 7, 3, 14]), [0.9, 0.9, 0.9, 1.25, 3.0, 30.0])


def test_bad_indices_are_user_errors() -> None:
    with pytest.raises(UserError, match="index"):
        index_to_factors(NUM_IMAGES)
    with pytest.raises(UserError, match="factors"):
        factors_to_index([0, 0, 0, 8, 0, 0])


def test_hue_to_rgb_follows_hsv() -> None:
    rgb = hue_to_rgb(torch.tensor([0.0, 0.4, 0.7, 1.0]))
    expected = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.4], [0.2, 0.0, 1.0], [1.0, 0.0, 0.0]])
    torch.testing.assert_close(rgb, expected, atol=1e-5, rtol=0)


def test_sky_band_and_layout() -> None:
    factors = torch.cat([scene(orientation=-30.0), scene(orientation=30.0), scene(floor_hue=0.6, wall_hue=0.2)])
    image, coverage = render_scene(factors, 64, 2, 24)
    torch.testing.assert_close(image[:, :, :10], torch.tensor(SKY_RGB)[None, :, None, None].expand(3, 3, 10, 64), atol=1e-6, rtol=0)
    torch.testing.assert_close(coverage.sum(1), torch.ones(3, 64, 64), atol=1e-5, rtol=0)
    centre = coverage[:, :, :, 24:40]
    assert (centre[:, SKY, :14] > 0.99).all() and (centre[:, WALL, 22:36] > 0.99).all() and (coverage[:, FLOOR, 58:, :20] > 0.99).all()
    assert (coverage[:, OBJECT, 40:50, 30:34] > 0.99).all()
    assert coverage[:, OBJECT, :, :12].max() == 0 and coverage[:, OBJECT, :, 52:].max() == 0


@pytest.mark.parametrize(("factor", "surface"), [("wall_hue", WALL), ("floor_hue", FLOOR), ("object_hue", OBJECT)])
def test_each_hue_changes_only_its_own_pixels(factor: str, surface: int) -> None:
    before = render_scene(scene(), 64, 2, 24)
    after = render_scene(scene(**{factor: 0.35}), 64, 2, 24)
    torch.testing.assert_close(before.coverage, after.coverage, atol=0, rtol=0)
    changed = (after.image - before.image).abs().amax(1)[0] > 0
    own = before.coverage[0, surface] > 0
    assert changed.sum() > 100
    assert not (changed & ~own).any()
    assert changed[before.coverage[0, surface] > 0.5].all()


def test_scale_grows_the_object_area_monotonically() -> None:
    for shape in range(4):
        factors = torch.cat([scene(scale=float(s), shape=float(shape)) for s in FACTOR_VALUES[3]])
        area = render_scene(factors, 64, 2, 24).coverage[:, OBJECT].sum((1, 2))
        assert (area[1:] > area[:-1]).all(), f"shape {shape}: {area.tolist()}"
        assert 2.0 < float(area[-1] / area[0]) < 3.5


def test_shapes_are_distinguishable() -> None:
    factors = torch.cat([scene(shape=float(shape)) for shape in range(4)])
    images = render(factors, 64, 2, 24)
    noise = (render(factors, 64, 4, 64) - images).abs().mean()
    distances = (images[:, None] - images[None]).abs().mean((2, 3, 4))
    off_diagonal = distances[~torch.eye(4, dtype=torch.bool)]
    assert off_diagonal.min() > 0.005
    assert off_diagonal.min() > 10 * noise


def side_wall_columns(image: torch.Tensor, row: int = 22) -> tuple[int, int]:
    """Columns where the back wall starts and ends on a wall row (side walls are darker)."""
    back = image[:, row].amax(0) > 0.8
    columns = torch.nonzero(back).flatten()
    return int(columns.min()), int(columns.max())


def test_orientation_moves_the_wall_corners() -> None:
    factors = torch.cat([scene(orientation=-30.0), scene(orientation=0.0), scene(orientation=30.0)])
    left_of, right_of = zip(*(side_wall_columns(image) for image in render(factors, 64, 2, 24)))
    assert left_of[0] < left_of[1] < left_of[2]
    assert right_of[0] < right_of[1] < right_of[2]
    assert left_of[2] - left_of[0] > 10


def test_renders_are_deterministic() -> None:
    factors = torch.cat([scene(), scene(shape=2.0, scale=1.25, orientation=-30.0)])
    assert torch.equal(render(factors), render(factors))
    np.testing.assert_array_equal(render_indices([5, 123_456]), render_indices([5, 123_456]))


@pytest.mark.parametrize("shape", [0.0, 1.0, 1.5, 3.0])
def test_gradients_reach_every_factor(shape: float) -> None:
    other = scene(shape=shape, floor_hue=0.0, wall_hue=0.33, object_hue=0.7, scale=1.25, orientation=-30.0)
    factors = torch.cat([scene(shape=shape), other])
    factors.requires_grad_(True)
    image = render(factors, 32, 2, 24)
    weights = torch.rand(image.shape, generator=torch.Generator().manual_seed(0))
    (image * weights).sum().backward()
    assert torch.isfinite(factors.grad).all()
    assert (factors.grad.abs() > 1e-6).all(), factors.grad


def test_dataset_yields_rendered_images_and_factor_indices() -> None:
    dataset = Shapes3DDataset(resolution=32, indices=[0, 250_017])
    assert len(dataset) == 2 and len(Shapes3DDataset()) == NUM_IMAGES
    image, factors = dataset[1]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert -1.0 <= float(image.min()) and float(image.max()) <= 1.0
    np.testing.assert_array_equal(factors.numpy(), index_to_factors(250_017))
    expected = torch.from_numpy(render_indices([250_017], 32)[0]).permute(2, 0, 1).float() / 127.5 - 1.0
    assert torch.equal(image, expected)


def test_npz_export_matches_the_original_layout(tmp_path) -> None:
    indices = [0, 1, 479_999]
    export_npz(tmp_path / "shapes.npz", indices)
    with np.load(tmp_path / "shapes.npz") as data:
        assert sorted(data.files) == ["images", "labels"]
        assert data["images"].dtype == np.uint8 and data["images"].shape == (3, 64, 64, 3)
        assert data["labels"].dtype == np.float64 and data["labels"].shape == (3, 6)
        np.testing.assert_allclose(data["labels"][1], [0.0, 0.0, 0.0, 0.75, 0.0, -30.0 + 60.0 / 14])
        np.testing.assert_array_equal(data["images"], render_indices(indices))
    assert [path.name for path in tmp_path.iterdir()] == ["shapes.npz"]


def render_command(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    shapes3d_commands.register(parser.add_subparsers())
    args = parser.parse_args(["shapes3d", "render", *argv])
    return args.handler(args)


def test_render_command_writes_pngs_labels_and_npz(tmp_path) -> None:
    out = tmp_path / "renders"
    assert render_command("--out", str(out), "--n", "3", "--resolution", "32", "--seed", "1", "--npz", str(tmp_path / "r.npz")) == 0
    with open(out / "labels.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["index", "floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
    indices = [int(row[0]) for row in rows[1:]]
    assert len(indices) == 3 and sorted(path.name for path in out.glob("*.png")) == [f"{i:06d}.png" for i in indices]
    np.testing.assert_allclose([[float(v) for v in row[1:]] for row in rows[1:]], factor_values(index_to_factors(indices)))
    with np.load(tmp_path / "r.npz") as data:
        np.testing.assert_array_equal(data["images"], render_indices(indices, 32))


def test_render_command_rejects_a_bad_count(tmp_path) -> None:
    with pytest.raises(SystemExit):
        render_command("--out", str(tmp_path), "--n", "0")
