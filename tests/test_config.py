"""Presets, YAML files and overrides of the discovery configuration."""
import pytest

from contrafeat.discovery.config import build_config, load_config, save_config
from contrafeat.errors import UserError


def test_precedence_preset_yaml_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("num_directions: 7\nlr: 0.01\n")
    config = build_config("ffhq", path, {"lr": 0.2, "steps": None})
    assert config.num_directions == 7  # yaml over preset (30)
    assert config.lr == 0.2  # override over yaml
    assert config.subspace_dim == 100 and config.sensor == "alexnet"  # preset over defaults


def test_ffhq_bi_uses_the_authors_batch():
    assert build_config("ffhq", None, {"method": "contra-bi"}).batch_size == 12
    assert build_config("ffhq", None, {"method": "contra-pt"}).batch_size == 10
    assert build_config("ffhq", None, {"method": "contra-bi", "batch_size": 4}).batch_size == 4


def test_round_trip(tmp_path):
    config = build_config("shapes3d", None, {"seed": 3})
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"method": "nope"}, "--method 'nope': expected one of"),
        ({"mask": "max"}, "--mask 'max'"),
        ({"steps": 0}, "--steps 0: expected a positive integer"),
        ({"method": "contra-bi", "batch_size": 5}, "expected an even number"),
    ],
)
def test_bad_values_are_named(overrides, message):
    with pytest.raises(UserError, match=message):
        build_config("shapes3d", None, overrides)


def test_bad_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("colour: red\n")
    with pytest.raises(UserError, match="unknown option\\(s\\) colour"):
        build_config("shapes3d", path, {})
    with pytest.raises(UserError, match="no such file"):
        build_config("shapes3d", tmp_path / "missing.yaml", {})
    with pytest.raises(UserError, match="--preset 'cats'"):
        build_config("cats", None, {})
