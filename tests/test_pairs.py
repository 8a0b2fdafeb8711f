"""Duplicate-direction removal, the sharded resumable pair folder, and the grid-render store."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from true_edit_directions import true_directions

from contrafeat.discovery.directions import Directions
from contrafeat.errors import UserError
from contrafeat.evaluation.pairs import (
    SHARD_PATTERN,
    PairDataset,
    PairSettings,
    direction_similarity,
    directions_digest,
    distinct_directions,
    keep_distinct,
    write_pairs,
)
from contrafeat.features import build_sensor
from contrafeat.shapes3d.grid import factor_values, index_to_factors
from contrafeat.shapes3d.render_cache import RenderCache
from contrafeat.shapes3d.renderer import render


def test_keep_distinct_drops_dead_and_repeated_directions():
    rng = torch.Generator().manual_seed(0)
    base = torch.randn(3, 20, 50, generator=rng)
    changes = torch.cat([base, -base[1:2] * 2.0, torch.zeros(1, 20, 50)])  # 3: a mirror of 1, 4: dead
    assert keep_distinct(changes, threshold=0.5) == [0, 1, 2]
    similarity = direction_similarity(changes)
    assert float(similarity[1, 3]) == pytest.approx(1.0)
    assert float(similarity[0, 1]) < 0.3


def test_a_copy_of_a_true_edit_is_dropped_and_the_six_edits_kept(shapes):
    scale_vector, scale_weights = shapes.true_edits()[3]
    directions = true_directions(shapes, strength=0.3, extra=[(-scale_vector, scale_weights)])
    sensor = build_sensor("random-alexnet", generator=shapes)
    assert distinct_directions(shapes, directions, sensor, directions.strengths, num_samples=12) == [0, 1, 2, 3, 4, 5]


def settings_for(shapes, directions: Directions, num_pairs: int = 20, shard_size: int = 8) -> PairSettings:
    return PairSettings(
        generator_id="shapes3d", directions_digest=directions_digest(directions), kept=[1, 3, 5],
        strengths=[0.2, 0.4, 0.3], num_pairs=num_pairs, shard_size=shard_size, seed=7,
    )


def test_pairs_are_written_in_shards_and_resume_to_identical_files(tmp_path, shapes):
    directions = true_directions(shapes, strength=0.3)
    settings = settings_for(shapes, directions)
    write_pairs(tmp_path, shapes, directions, settings, progress=False)
    shards = sorted(tmp_path.glob("pairs-*.npz"))
    assert [path.name for path in shards] == [SHARD_PATTERN.format(i) for i in range(3)]
    before = {path.name: dict(np.load(path)) for path in shards}
    (tmp_path / SHARD_PATTERN.format(1)).unlink()
    write_pairs(tmp_path, shapes, directions, settings, progress=False)
    for name, arrays in before.items():
        with np.load(tmp_path / name) as again:
            for key, value in arrays.items():
                assert np.array_equal(again[key], value), (name, key)
    dataset = PairDataset(tmp_path)
    assert len(dataset) == 20
    assert set(dataset.labels.tolist()) <= {1, 3, 5}
    first, second, labels = dataset.sample_batch(5, torch.Generator().manual_seed(0))
    assert first.shape == second.shape == (5, 3, 64, 64)
    assert 0.0 <= float(first.min()) and float(first.max()) <= 1.0
    assert labels.shape == (5,)


def test_pair_images_differ_in_the_labelled_factor_only(tmp_path, shapes):
    directions = true_directions(shapes, strength=0.3)
    write_pairs(tmp_path, shapes, directions, settings_for(shapes, directions, num_pairs=6, shard_size=6), progress=False)
    dataset = PairDataset(tmp_path)
    changed = (dataset.first.float() - dataset.second.float()).abs().mean(dim=(1, 2, 3))
    assert bool((changed > 0.5).all())  # every pair shows its edit


def test_a_pair_folder_is_never_mixed_with_other_settings(tmp_path, shapes):
    directions = true_directions(shapes, strength=0.3)
    write_pairs(tmp_path, shapes, directions, settings_for(shapes, directions, num_pairs=4, shard_size=4), progress=False)
    with pytest.raises(UserError, match="num_pairs"):
        write_pairs(tmp_path, shapes, directions, settings_for(shapes, directions, num_pairs=5, shard_size=4), progress=False)
    assert json.loads((tmp_path / "pairs.json").read_text())["num_pairs"] == 4


def test_a_pair_folder_from_before_the_rename_is_resumed_with_its_steps_as_strengths(tmp_path, shapes):
    directions = true_directions(shapes, strength=0.3)
    settings = settings_for(shapes, directions, num_pairs=4, shard_size=4)
    write_pairs(tmp_path, shapes, directions, settings, progress=False)
    stored = json.loads((tmp_path / "pairs.json").read_text())
    stored["steps"] = stored.pop("strengths")
    (tmp_path / "pairs.json").write_text(json.dumps(stored))
    write_pairs(tmp_path, shapes, directions, settings, progress=False)  # same settings: accepted
    assert PairDataset(tmp_path).settings == settings


def test_an_unfinished_pair_folder_names_the_missing_shard(tmp_path, shapes):
    directions = true_directions(shapes, strength=0.3)
    write_pairs(tmp_path, shapes, directions, settings_for(shapes, directions, num_pairs=8, shard_size=4), progress=False)
    (tmp_path / SHARD_PATTERN.format(0)).unlink()
    with pytest.raises(UserError, match="pairs-00000.npz is missing"):
        PairDataset(tmp_path)


def test_render_cache_matches_the_renderer_and_persists(tmp_path):
    indices = np.array([5, 123_456, 479_999, 5])
    cache = RenderCache(tmp_path, resolution=16, supersample=1, trace_steps=8)
    images = cache.images(indices)
    expected = render(torch.from_numpy(factor_values(index_to_factors(indices))).float(), 16, 1, 8)
    expected = (expected.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert images.shape == (4, 16, 16, 3)
    assert np.array_equal(images, expected)
    reopened = RenderCache(tmp_path, resolution=16, supersample=1, trace_steps=8)
    assert reopened.filled.sum() == 3
    assert np.array_equal(reopened.images(indices[:1]), expected[:1])
    assert cache.images_path.stat().st_blocks * 512 < cache.images_path.stat().st_size  # sparse: unrendered images take no space


def test_grid_codes_encode_each_grid_image_once_and_equal_direct_encoding(tmp_path):
    from contrafeat.evaluation.disentanglement import encode_factors
    from contrafeat.evaluation.shapes3d_truth import Shapes3DSampler, grid_representation

    cache = RenderCache(tmp_path, resolution=16, supersample=1, trace_steps=8)
    seen: list[int] = []

    def encode(images: torch.Tensor) -> np.ndarray:  # a fixed linear "encoder" of [n, 3, 16, 16] images
        seen.append(len(images))
        return images.flatten(1).double().numpy() @ np.linspace(-1.0, 1.0, 3 * 16 * 16 * 2).reshape(-1, 2)

    world, represent = grid_representation(cache, encode)
    factors = np.random.RandomState(0).randint(2, size=(40, 6))  # 40 rows over at most 64 distinct grid images
    codes = encode_factors(world, represent, factors, rows_per_call=16)
    assert sum(seen) == len(np.unique(factors, axis=0))  # each distinct grid image encoded once
    again = encode_factors(world, represent, factors, rows_per_call=16)
    assert np.array_equal(again, codes) and sum(seen) == len(np.unique(factors, axis=0))  # and never again
    direct = encode_factors(Shapes3DSampler(cache), encode, factors, rows_per_call=16)
    assert codes.shape == (40, 2) and np.allclose(codes, direct, atol=1e-9)
