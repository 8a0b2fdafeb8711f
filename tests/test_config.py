"""Presets, YAML files and overrides of the discovery configuration."""
import re

import pytest
import yaml

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


def test_a_render_budget_sets_the_steps(tmp_path):
    assert build_config("shapes3d", None, {"method": "latentclr", "renders": 1000}).steps == 23  # 44 renders a step
    assert build_config("shapes3d", None, {"method": "contra-bi", "renders": 1000}).steps == 40  # 25 renders a step
    assert build_config("ffhq", None, {"method": "recog", "renders": 8000}).steps == 500  # over the preset's 37,500
    assert build_config("shapes3d", None, {"method": "contra-bi", "renders": 1000, "steps": 40}).steps == 40  # they agree
    assert build_config("shapes3d", None, {"method": "contra-pt", "renders": 1001}).steps == 51  # rounded up


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"renders": 1000, "steps": 41},
            "--steps 41 disagrees with --renders 1000: contra-bi renders 25 images per step at --batch-size 10, so that budget is 40 steps",
        ),
        ({"renders": 0}, "--renders 0: expected a positive integer"),
        ({"renders": -5}, "--renders -5: expected a positive integer"),
        ({"method": "ganspace", "renders": 100}, "--renders 100: method ganspace has nothing to train"),
    ],
)
def test_bad_render_budgets_are_named(overrides, message):
    with pytest.raises(UserError, match=re.escape(message)):
        build_config("shapes3d", None, overrides)


def test_steps_in_a_yaml_file_must_agree_with_the_render_budget(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 41\n")
    with pytest.raises(UserError, match="--steps 41 disagrees with --renders 1000"):
        build_config("shapes3d", path, {"renders": 1000})


def test_config_yaml_states_the_render_budget(tmp_path):
    config = build_config("shapes3d", None, {"method": "latentclr", "steps": 7})
    path = tmp_path / "config.yaml"
    save_config(config, path)
    saved = yaml.safe_load(path.read_text())
    assert (saved["renders"], saved["renders_per_step"], saved["total_renders"]) == (None, 44, 308)
    assert load_config(path) == config  # read back, the budget is derived again, not an option
    assert build_config("shapes3d", path, {}).steps == 7


def test_a_config_yaml_from_before_the_rename_reads_the_old_option_names(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("method: recog\nstep_scale: 0.75\ncheckpoint_every: 7\nrecog_shift_weight: 0.5\n")
    config = build_config("shapes3d", path, {})
    assert (config.strength_range, config.save_every, config.recog_strength_weight) == (0.75, 7, 0.5)
