"""The public Python API around a Directions artefact: Directions.load, check_compatible and evaluate."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from true_edit_directions import true_directions

from contrafeat.commands.common import check_generator_match
from contrafeat.discovery.directions import Directions, GeneratorMismatch, load_directions
from contrafeat.errors import UserError
from contrafeat.evaluation.api import RESULT_FILE, WORK_FOLDER, evaluate
from contrafeat.evaluation.distillation import DistillSettings
from contrafeat.gan.identity import generator_identity

FOREIGN_ID = "0123456789abcdef"
CHEAP = dict(num_samples=16, distill=None, sensor="random-alexnet", progress=False)
"""evaluate() at test sizes: few attribute-matrix samples, no distillation, a sensor without weight files."""
TINY_DISTILL = DistillSettings(num_pairs=24, vae_steps=2, metric_counts="quick", metric_fraction=0.01)


def files_under(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def test_load_round_trips_save_and_load_directions_is_the_same(tmp_path):
    directions = Directions(torch.randn(3, 5), torch.softmax(torch.randn(3, 4), 1), torch.tensor([0.5, 1.0, 2.0]), "contra-pt", "abc", [None, "smile", None])
    directions.save(tmp_path)
    for loaded in (Directions.load(tmp_path), Directions.load(str(tmp_path / "directions.json")), load_directions(tmp_path)):
        assert torch.equal(loaded.vectors, directions.vectors) and torch.equal(loaded.attention, directions.attention)
        assert torch.equal(loaded.strengths, directions.strengths)
        assert (loaded.method, loaded.generator_id, loaded.names) == ("contra-pt", "abc", [None, "smile", None])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty: no directions.safetensors there"):
        Directions.load(tmp_path / "empty")
    with pytest.raises(UserError, match="empty: no directions.safetensors there"):
        load_directions(tmp_path / "empty")


def test_check_compatible_accepts_the_generator_the_directions_were_found_in(shapes, caplog):
    with caplog.at_level(logging.WARNING):
        true_directions(shapes).check_compatible(shapes)
    assert caplog.records == []


def test_check_compatible_refuses_another_generator_naming_both_identities(shapes):
    foreign = true_directions(shapes)
    foreign.generator_id = FOREIGN_ID
    with pytest.raises(GeneratorMismatch) as raised:
        foreign.check_compatible(shapes)
    message = str(raised.value)
    assert isinstance(raised.value, UserError) and "\n" not in message
    assert message == f"these directions were found in generator {FOREIGN_ID}, but the given generator is generator {generator_identity(shapes)}"


def test_check_compatible_only_warns_when_not_strict(shapes, caplog):
    foreign = true_directions(shapes)
    foreign.generator_id = FOREIGN_ID
    with caplog.at_level(logging.WARNING):
        foreign.check_compatible(shapes, strict=False, label="shapes3d")
    assert [(record.levelno, record.getMessage()) for record in caplog.records] == [
        (logging.WARNING, f"these directions were found in generator {FOREIGN_ID}, but shapes3d is generator {generator_identity(shapes)}")
    ]


@pytest.mark.parametrize("strict", [True, False])
def test_check_compatible_refuses_another_w_plus_shape_either_way(shapes, strict):
    other = SimpleNamespace(num_ws=shapes.num_ws + 1, w_dim=shapes.w_dim)
    with pytest.raises(UserError, match=rf"W\+ of {shapes.num_ws} x {shapes.w_dim} .* has {shapes.num_ws + 1} x {shapes.w_dim}"):
        true_directions(shapes).check_compatible(other, strict=strict)


def test_the_commands_check_is_check_compatible_with_force_as_not_strict(shapes, caplog):
    foreign = true_directions(shapes)
    foreign.generator_id = FOREIGN_ID
    with pytest.raises(UserError, match=f"found in generator {FOREIGN_ID}, but run.pkl is generator .*; pass --force to apply them anyway$"):
        check_generator_match(foreign, shapes, "run.pkl", force=False)
    with caplog.at_level(logging.WARNING):
        check_generator_match(foreign, shapes, "run.pkl", force=True)
    assert [record.getMessage() for record in caplog.records] == [
        f"these directions were found in generator {FOREIGN_ID}, but run.pkl is generator {generator_identity(shapes)}"
    ]


def test_evaluate_scores_the_true_edits_at_the_top_and_writes_nothing(shapes, tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)
    result = evaluate(true_directions(shapes, rows=[0, 2, 4]), shapes, **CHEAP)  # three true edits: three factors, each alone
    assert set(result) == {"fingerprint", "metrics", "details"}
    metrics = result["metrics"]
    assert metrics["score_fixed"] == pytest.approx(1.0, abs=1e-3) and metrics["found_fixed"] == 3 and metrics["dead"] == 0
    assert metrics["score_calibrated"] == pytest.approx(1.0, abs=1e-3) and metrics["found_calibrated"] == 3
    assert metrics["true_edit_cos"] == pytest.approx(1.0, abs=1e-5) and metrics["flat_edit_cos"] == pytest.approx(1.0, abs=1e-5)
    assert "fvm" not in metrics  # distill=None skips the group VAE
    assert result["details"]["attributes"] == list(shapes.factor_names) and len(result["details"]["fixed_matrix"]) == 3
    assert [row.index(max(row)) for row in result["details"]["fixed_matrix"]] == [0, 2, 4]
    assert result["fingerprint"]["sensor"] == "random-alexnet" and result["fingerprint"]["predictor"] == "exact"
    assert result["fingerprint"]["settings"]["num_samples"] == 16
    assert list(tmp_path.iterdir()) == []


def test_evaluate_with_out_writes_what_it_returns(shapes, tmp_path, one_thread):
    out = tmp_path / "out"
    result = evaluate(true_directions(shapes, rows=[3]), "shapes3d", out=out, **CHEAP)
    assert json.loads((out / RESULT_FILE).read_text()) == json.loads(json.dumps(result))
    assert result["metrics"]["found_fixed"] == 1 and result["details"]["row_argmax_fixed"] == [3]
    assert files_under(out) == {RESULT_FILE}  # no distillation, no work folder


def test_evaluate_a_run_folder_with_its_own_generator_and_sensor_leaves_it_untouched(tiny_run, one_thread):
    before = files_under(tiny_run)
    result = evaluate(tiny_run, num_samples=16, distill=TINY_DISTILL, progress=False)
    assert files_under(tiny_run) == before and RESULT_FILE not in before and WORK_FOLDER not in before
    assert result["fingerprint"]["sensor"] == "random-alexnet"  # the run's own
    metrics = result["metrics"]
    for key in ("score_fixed", "score_calibrated", "true_edit_cos", "fvm", "mig", "dci"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert 1 <= metrics["directions_kept"] <= 3 and len(result["details"]["fixed_matrix"]) == 3


def test_evaluate_refuses_before_any_work(shapes, tmp_path):
    with pytest.raises(UserError, match="a Directions object does not tell the generator"):
        evaluate(true_directions(shapes), **CHEAP)
    foreign = true_directions(shapes)
    foreign.generator_id = FOREIGN_ID
    with pytest.raises(GeneratorMismatch, match=f"found in generator {FOREIGN_ID}, but shapes3d is generator"):
        evaluate(foreign, "shapes3d", out=tmp_path / "out", **CHEAP)
    with pytest.raises(UserError, match="--samples 0"):
        evaluate(true_directions(shapes), shapes, **{**CHEAP, "num_samples": 0})
    with pytest.raises(UserError, match="no directions.safetensors"):
        evaluate(tmp_path, shapes, **CHEAP)
    assert list(tmp_path.iterdir()) == []
