"""The discovery loop: learning happens only in the navigator, training states resume bit-exactly."""
import copy
import json

import pytest
import torch
from tiny_world import TinyGenerator, TinySensor

from contrafeat.discovery.config import build_config
from contrafeat.discovery.methods import build_navigator
from contrafeat.discovery.objectives import build_objective
from contrafeat.discovery.subspace import compute_pca
from contrafeat.discovery.trainer import LEGACY_STATE_FILE, STATE_FILE, Trainer, navigator_directions, sample_start_codes
from contrafeat.discovery.validation import VALIDATION_FILE
from contrafeat.errors import UserError
from contrafeat.viz.progress import read_log


def make_trainer(run_dir, method="contra-pt", steps=6, measures=(), **overrides):
    config = build_config(
        "shapes3d",
        None,
        {"method": method, "steps": steps, "batch_size": 4, "num_directions": 3, "subspace_dim": 4,
         "save_every": 2, "log_every": 1, "pca_samples": 500, "noise_mode": "random", **overrides},
    )
    generator = TinyGenerator()
    pca = compute_pca(generator, num_samples=500, batch_size=250, progress=False)
    navigator, objective = build_navigator(config, generator, pca), build_objective(config, generator)
    return Trainer(config, generator, TinySensor(), pca, navigator, objective, run_dir, measures=measures)


def parameters(trainer):
    return {**trainer.navigator.state_dict(), **{f"objective.{k}": v for k, v in trainer.objective.state_dict().items()}}


@pytest.mark.parametrize("method", ["contra-bi", "contra-pt", "ganspace+att", "sefa+att", "latentclr+att", "recog+att"])
def test_resume_is_bit_exact(tmp_path, method):
    settings = {"validate_every": 2, "averaging": 0.5}
    straight = make_trainer(tmp_path / "straight", method, steps=6, **settings)
    (tmp_path / "straight").mkdir()
    straight.run(progress=False)

    (tmp_path / "split").mkdir()
    first_half = make_trainer(tmp_path / "split", method, steps=3, **settings)
    first_half.run(progress=False)
    resumed = make_trainer(tmp_path / "split", method, steps=6, **settings)
    resumed.load_state()
    assert resumed.step_count == 3
    resumed.run(progress=False)

    for name, value in parameters(straight).items():
        assert torch.equal(value, parameters(resumed)[name]), name
    assert torch.equal(straight.directions().vectors, resumed.directions().vectors)
    log = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2, 3, 4, 5, 6]
    looks = {folder: read_log(tmp_path / folder / VALIDATION_FILE) for folder in ("straight", "split")}
    assert [entry["step"] for entry in looks["straight"]] == [0, 2, 4, 6]
    assert [entry["step"] for entry in looks["split"]] == [0, 2, 3, 4, 6]  # the first run's last look stays
    split = {entry["step"]: entry for entry in looks["split"]}
    for entry in looks["straight"]:
        validation = {key: value for key, value in entry.items() if key.startswith("validation_")}
        assert validation and validation == {key: split[entry["step"]][key] for key in validation}
    assert looks["straight"][-1]["angle_mean"] == split[6]["angle_mean"]


def test_validation_shows_each_stage_and_the_angles_moved(tmp_path):
    trainer = make_trainer(tmp_path, "contra-bi", steps=4, validate_every=2, measures=[lambda directions: {"count": float(directions.count)}])
    trainer.run(progress=False)
    looks = read_log(tmp_path / VALIDATION_FILE)
    assert [entry["step"] for entry in looks] == [0, 2, 4]
    stages = len(TinySensor.stage_names)
    first = looks[0]
    assert first["count"] == 3.0 and "angle_mean" not in first
    assert first["validation_contrast"] == pytest.approx(
        sum(first[f"validation_negative_{stage}"] - first[f"validation_positive_{stage}"] for stage in range(stages)), abs=1e-6
    )
    assert all(0 <= entry["angle_mean"] <= entry["angle_max"] <= 180 for entry in looks[1:])


def test_a_run_shorter_than_one_validation_interval_makes_no_looks(tmp_path):
    looked = []
    trainer = make_trainer(tmp_path, "contra-bi", steps=3, validate_every=4, measures=[lambda directions: looked.append(1) or {}])
    trainer.run(progress=False)
    assert not (tmp_path / VALIDATION_FILE).exists() and not looked
    assert len(read_log(tmp_path / "log.jsonl")) == 3


def test_averaging_returns_the_mean_of_the_last_steps_parameters(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "averaged").mkdir()
    for steps in (3, 4):  # the last iterates at steps 3 and 4
        trainer = make_trainer(tmp_path / "plain", "contra-bi", steps=steps)
        if steps == 4:
            trainer.load_state()
        trainer.run(progress=False)
        if steps == 3:
            third = {name: value.clone() for name, value in trainer.navigator.named_parameters()}
    averaged = make_trainer(tmp_path / "averaged", "contra-bi", steps=4, averaging=0.5)
    averaged.run(progress=False)
    assert torch.equal(averaged.navigator.direction_branch.coefficients, trainer.navigator.direction_branch.coefficients)
    navigator = copy.deepcopy(trainer.navigator)
    with torch.no_grad():
        for name, parameter in navigator.named_parameters():
            parameter.copy_(third[name] + (parameter - third[name]) / 2)
    expected = navigator_directions(navigator, trainer.pca, "contra-bi", trainer.generator)
    assert torch.allclose(averaged.directions().vectors, expected.vectors, atol=1e-6)
    assert torch.allclose(averaged.directions().attention, expected.attention, atol=1e-6)
    assert not torch.allclose(averaged.directions().vectors, trainer.directions().vectors, atol=1e-4)


def assert_same_optimiser_state(ours: dict, theirs: dict) -> None:
    """Two optimiser state dicts hold the same settings and the same per-parameter tensors."""
    assert ours["param_groups"] == theirs["param_groups"] and set(ours["state"]) == set(theirs["state"])
    for index, values in ours["state"].items():
        for key, value in values.items():
            assert torch.equal(value, theirs["state"][index][key]), (index, key)


def test_recog_trains_its_reconstructor_with_its_own_adam_and_resumes_both(tmp_path):
    trainer = make_trainer(tmp_path, "recog+att", steps=2, recog_lr=3e-4)
    assert set(trainer.optimizers) == {"main", "reconstructor"}
    main, own = trainer.optimizers["main"], trainer.optimizers["reconstructor"]
    assert [group["lr"] for group in main.param_groups] == [0.01] and [group["lr"] for group in own.param_groups] == [3e-4]
    assert {id(p) for group in own.param_groups for p in group["params"]} == {id(p) for p in trainer.objective.reconstructor.parameters()}
    assert {id(p) for group in main.param_groups for p in group["params"]} == {id(p) for p in trainer.navigator.parameters()}
    trainer.run(progress=False)

    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    assert set(state["optimizers"]) == {"main", "reconstructor"} and all(saved["state"] for saved in state["optimizers"].values())
    resumed = make_trainer(tmp_path, "recog+att", steps=2, recog_lr=3e-4)
    resumed.load_state()
    for name, optimizer in trainer.optimizers.items():
        assert_same_optimiser_state(optimizer.state_dict(), resumed.optimizers[name].state_dict())

    del state["optimizers"]["reconstructor"]
    torch.save(state, tmp_path / STATE_FILE)
    with pytest.raises(UserError, match="holds the optimiser\\(s\\) main, this run trains with main, reconstructor"):
        make_trainer(tmp_path, "recog+att", steps=2).load_state()


def test_interrupt_saves_a_training_state_that_resumes_exactly(tmp_path, monkeypatch):
    (tmp_path / "straight").mkdir()
    straight = make_trainer(tmp_path / "straight", steps=5)
    straight.run(progress=False)

    (tmp_path / "killed").mkdir()
    killed = make_trainer(tmp_path / "killed", steps=5)
    original_step = Trainer.train_step

    def step_then_interrupt(self):
        if self.step_count == 3:
            raise KeyboardInterrupt
        return original_step(self)

    monkeypatch.setattr(Trainer, "train_step", step_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        killed.run(progress=False)
    monkeypatch.setattr(Trainer, "train_step", original_step)
    resumed = make_trainer(tmp_path / "killed", steps=5)
    resumed.load_state()
    assert resumed.step_count == 3
    resumed.run(progress=False)
    for name, value in parameters(straight).items():
        assert torch.equal(value, parameters(resumed)[name]), name


def test_training_changes_only_the_navigator_and_lowers_the_contrast(tmp_path):
    trainer = make_trainer(tmp_path, "contra-bi", steps=60, diversity_weight=0.0, lr=0.05)
    generator_before = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    sensor_before = {k: v.clone() for k, v in trainer.features.sensor.state_dict().items()}
    directions_before = trainer.navigator.directions().clone()
    trainer.run(progress=False)
    assert all(torch.equal(v, trainer.generator.state_dict()[k]) for k, v in generator_before.items())
    assert all(torch.equal(v, trainer.features.sensor.state_dict()[k]) for k, v in sensor_before.items())
    assert not torch.equal(directions_before, trainer.navigator.directions())
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    first, last = sum(e["contrast"] for e in log[:15]) / 15, sum(e["contrast"] for e in log[-15:]) / 15
    assert last < first


def test_style_mixed_codes_take_two_sources(tmp_path):
    trainer = make_trainer(tmp_path)
    ws = sample_start_codes(trainer.generator, 3, trainer.config, torch.Generator().manual_seed(0))
    assert ws.shape == (3, 4, 6)
    assert torch.equal(ws[:, 0], ws[:, 1]) and torch.equal(ws[:, 2], ws[:, 3])
    assert not torch.allclose(ws[:, 1], ws[:, 2])


def test_directions_artefact_from_the_trainer(tmp_path):
    trainer = make_trainer(tmp_path)
    directions = trainer.directions()
    assert directions.vectors.shape == (3, 6) and directions.attention.shape == (3, 4)
    assert torch.allclose(directions.vectors.square().mean(1), torch.ones(3), atol=1e-5)
    assert torch.all(directions.strengths > 0)


def test_a_run_folder_from_before_the_rename_resumes_and_is_saved_under_the_new_names(tmp_path):
    """checkpoint.pt with the reconstructor's `step_head` keys: resumed exactly, then replaced by training_state.pt."""
    trainer = make_trainer(tmp_path, "recog+att", steps=2)
    trainer.run(progress=False)
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    heads = [key for key in state["objective"] if ".strength_head." in key]
    assert heads
    for key in heads:
        state["objective"][key.replace(".strength_head.", ".step_head.")] = state["objective"].pop(key)
    torch.save(state, tmp_path / LEGACY_STATE_FILE)
    (tmp_path / STATE_FILE).unlink()

    resumed = make_trainer(tmp_path, "recog+att", steps=3)
    resumed.load_state()
    assert resumed.step_count == 2
    for name, value in parameters(trainer).items():
        assert torch.equal(value, parameters(resumed)[name]), name
    resumed.run(progress=False)
    assert (tmp_path / STATE_FILE).is_file() and not (tmp_path / LEGACY_STATE_FILE).exists()
