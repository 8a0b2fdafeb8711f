"""The Directions artefact: math of apply, save/load round trip, and clear errors."""
import json
from types import SimpleNamespace

import pytest
import torch

from contrafeat.discovery.directions import Directions, load_directions
from contrafeat.errors import UserError


def make_directions(count: int = 3, layers: int = 4, width: int = 5) -> Directions:
    generator = torch.Generator().manual_seed(0)
    return Directions(
        vectors=torch.randn(count, width, generator=generator),
        attention=torch.softmax(torch.randn(count, layers, generator=generator), dim=1),
        strengths=torch.arange(1, count + 1, dtype=torch.float32),
        method="contra-pt",
        generator_id="abc123",
    )


def test_apply_is_the_outer_product_edit():
    directions = make_directions()
    ws = torch.randn(2, 4, 5)
    edited = directions.apply(ws, 1, 0.5)
    expected = ws + 0.5 * directions.attention[1][:, None] * directions.vectors[1][None, :]
    assert torch.allclose(edited, expected)


def test_apply_per_sample_indices_and_strengths():
    directions = make_directions()
    ws = torch.zeros(2, 4, 5)
    edited = directions.apply(ws, torch.tensor([0, 2]), torch.tensor([1.0, -2.0]))
    assert torch.allclose(edited[0], directions.edits()[0])
    assert torch.allclose(edited[1], -2.0 * directions.edits()[2])


def test_apply_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"expected shape \[B, 4, 5\]"):
        make_directions().apply(torch.zeros(2, 3, 5), 0, 1.0)


def test_save_load_round_trip(tmp_path):
    directions = make_directions()
    directions.names[2] = "smile"
    directions.save(tmp_path)
    loaded = load_directions(tmp_path)
    assert torch.equal(loaded.vectors, directions.vectors)
    assert torch.equal(loaded.attention, directions.attention)
    assert torch.equal(loaded.strengths, directions.strengths)
    assert loaded.names == [None, None, "smile"]
    assert loaded.resolve_index(name="smile") == 2
    meta = json.loads((tmp_path / "directions.json").read_text())
    assert meta["num_ws"] == 4 and meta["w_dim"] == 5 and meta["count"] == 3
    assert meta["directions"][1]["suggested_strength"] == 2.0


def test_dominant_layers_cover_the_mass():
    directions = Directions(torch.ones(1, 2), torch.tensor([[0.05, 0.6, 0.3, 0.05]]), torch.ones(1), "m", "g")
    assert directions.dominant_layers(0) == [1, 2]


def test_incompatible_generator_is_refused():
    generator = SimpleNamespace(num_ws=6, w_dim=5)
    with pytest.raises(UserError, match="W\\+ of 4 x 5.*6 x 5"):
        make_directions().check_compatible(generator)


def test_missing_artefact_and_unknown_name(tmp_path):
    with pytest.raises(UserError, match="no directions.safetensors"):
        load_directions(tmp_path)
    with pytest.raises(UserError, match="no direction has that name"):
        make_directions().resolve_index(name="smile")
    with pytest.raises(UserError, match="0..2"):
        make_directions().resolve_index(index=7)


def test_an_artefact_from_before_the_rename_reads_its_steps_as_strengths(tmp_path):
    from safetensors.torch import load_file, save_file

    directions = make_directions()
    directions.save(tmp_path)
    tensors = load_file(str(tmp_path / "directions.safetensors"))
    tensors["steps"] = tensors.pop("strengths")
    save_file(tensors, str(tmp_path / "directions.safetensors"))
    assert torch.equal(load_directions(tmp_path).strengths, directions.strengths)
