"""The group VAE's wall-time levers: the 32 px VAE, the learning-rate schedule, their settings and fingerprints,
and the budget benchmark's recipes and wall-time plot."""
from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_group_vae import LATENT, assert_same_state, sample_pairs

from contrafeat.cli import main
from contrafeat.errors import UserError
from contrafeat.evaluation.distillation import DistillSettings, recipe_note, vae_fingerprint
from contrafeat.evaluation.group_vae import VAE, VAETraining, ada_gvae_loss, encode_mean, lr_factor, to_resolution, train_vae

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from distillation_budget import Recipe, plot, write_csv  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_32_px_vae_drops_one_stride_2_stage_in_encoder_and_decoder():
    small, published = VAE(LATENT, resolution=32), VAE(LATENT)
    convs = [layer for layer in small.encoder.trunk if isinstance(layer, torch.nn.Conv2d)]
    deconvs = [layer for layer in small.decoder.net if isinstance(layer, torch.nn.ConvTranspose2d)]
    assert len(convs) == 3 and len(deconvs) == 3
    assert len([m for m in published.encoder.trunk if isinstance(m, torch.nn.Conv2d)]) == 4
    images = torch.rand(2, 3, 32, 32)
    assert small.encoder.trunk[:7](images).shape == (2, 1024)
    mean, logvar = small.encode(images)
    assert mean.shape == logvar.shape == (2, LATENT)
    assert small.decode(mean).shape == (2, 3, 32, 32)
    with pytest.raises(UserError, match="resolution"):
        VAE(LATENT, resolution=48)


def test_to_resolution_averages_each_2x2_block_and_refuses_other_sides():
    images = torch.arange(16.0).view(1, 1, 4, 4)
    torch.testing.assert_close(to_resolution(images, 2), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    assert to_resolution(images, 4) is images
    with pytest.raises(UserError, match="cannot be area-downsampled"):
        to_resolution(torch.zeros(1, 3, 48, 48), 32)


def test_encode_mean_of_a_32_px_vae_downsamples_the_64_px_grid_images():
    torch.manual_seed(0)
    model = VAE(LATENT, resolution=32).eval()
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    small = torch.nn.functional.interpolate(images.float() / 255, size=(32, 32), mode="area")
    with torch.no_grad():
        expected = model.encode(small)[0].numpy()
    np.testing.assert_allclose(encode_mean(model, images.numpy()), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(encode_mean(model, small), expected, rtol=1e-5, atol=1e-6)


def test_a_32_px_vae_learns_from_64_px_pairs():
    options = {"latent_dim": LATENT, "batch": 8, "lr": 1e-3, "progress": False, "resolution": 32}
    x1, x2, labels = sample_pairs(16, torch.Generator().manual_seed(99))
    x1, x2 = to_resolution(x1, 32), to_resolution(x2, 32)

    def loss(model):
        with torch.no_grad():
            return float(ada_gvae_loss(model, x1, x2, beta=1.0, label=labels, generator=torch.Generator().manual_seed(0))["loss"])

    untrained = train_vae("ada-gvae", sample_pairs, steps=0, **options)
    trained = train_vae("ada-gvae", sample_pairs, steps=25, **options)
    assert trained.resolution == 32
    assert loss(trained) < 0.8 * loss(untrained)


def test_warmup_cosine_rises_linearly_then_decays_to_zero():
    assert [lr_factor("constant", step, 100) for step in (0, 50, 99)] == [1.0, 1.0, 1.0]
    rates = [lr_factor("warmup-cosine", step, 100) for step in range(100)]
    assert rates[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert rates[5] == pytest.approx(1.0)
    assert rates[5 + 95 // 2] == pytest.approx(0.5 * (1 + math.cos(math.pi * 47 / 95)))
    assert all(later <= earlier for earlier, later in zip(rates[5:], rates[6:]))
    assert rates[-1] < 0.01
    with pytest.raises(UserError, match="schedule"):
        lr_factor("cosine", 0, 100)


def test_the_optimiser_steps_at_the_scheduled_rate():
    training = VAETraining("ada-gvae", LATENT, 3, 1e-3, 1.0, 10.0, 0, "cpu", schedule="warmup-cosine", total_steps=40)
    seen = []
    for _ in range(6):
        training.step(sample_pairs(2, training.generator))
        seen.append(training.optimizer.param_groups[0]["lr"])
    assert seen == pytest.approx([1e-3 * lr_factor("warmup-cosine", step, 40) for step in range(6)])
    assert seen[0] == pytest.approx(5e-4) and seen[1] == pytest.approx(1e-3)


def test_a_scheduled_32_px_run_resumes_exactly(tmp_path):
    options = {"latent_dim": LATENT, "batch": 4, "lr": 1e-3, "progress": False, "save_every": 2, "resolution": 32, "schedule": "warmup-cosine"}
    train_vae("ada-gvae", sample_pairs, steps=5, state_path=tmp_path / "straight.pt", **options)

    def interrupt_at_three(step, terms):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_vae("ada-gvae", sample_pairs, steps=5, state_path=tmp_path / "split.pt", on_step=interrupt_at_three, **options)
    train_vae("ada-gvae", sample_pairs, steps=5, state_path=tmp_path / "split.pt", **options)
    assert_same_state(torch.load(tmp_path / "straight.pt", weights_only=True), torch.load(tmp_path / "split.pt", weights_only=True))
    with pytest.raises(UserError, match="32 px VAE, cannot resume it at 64 px"):
        train_vae("ada-gvae", sample_pairs, steps=6, state_path=tmp_path / "split.pt", latent_dim=LATENT, batch=4, progress=False)


def test_settings_validate_and_fingerprint_the_resolution_and_schedule():
    published = DistillSettings()
    assert (published.resolution, published.schedule) == (64, "constant")
    assert vae_fingerprint(published) == {"vae_steps": 10_000, "batch": 64, "beta": 1.0, "lr": 1e-3, "variant": "label", "seed": 0}
    assert recipe_note(published) is None
    small = DistillSettings(resolution=32, schedule="warmup-cosine")
    small.validate()
    assert vae_fingerprint(small)["resolution"] == 32 and vae_fingerprint(small)["schedule"] == "warmup-cosine"
    note = recipe_note(small)
    assert note is not None and "32 px" in note and "published 64 px" in note and "warmup-cosine" in note
    with pytest.raises(UserError, match="--vae-resolution"):
        DistillSettings(resolution=48).validate()
    with pytest.raises(UserError, match="--vae-schedule"):
        DistillSettings(schedule="cosine").validate()


def test_budget_recipes_keep_their_old_names_and_carry_resolution_and_schedule():
    old = Recipe.parse("label:1e-3:1:64:20000")
    assert (old.resolution, old.schedule, old.name(8000)) == (64, "constant", "label-lr0.001-beta1-b64-p20000")
    new = Recipe.parse("label:1e-3:1:64:20000:32:warmup-cosine")
    assert (new.resolution, new.schedule) == (32, "warmup-cosine")
    assert new.name(8000) == "label-lr0.001-beta1-b64-p20000-r32-warmup-cosine8000"
    for wrong in ("label:1e-3:1:64", "label:1e-3:1:64:20000:48", "label:1e-3:1:64:20000:32:cosine"):
        with pytest.raises(SystemExit):
            Recipe.parse(wrong)


def test_budget_csv_and_plot_carry_wall_seconds(tmp_path):
    rows = [
        {"recipe": "a", "counts": "quick", "vae_steps": 1000, "vae_s": 120.0, "fvm": 0.6, "mig": 0.3, "dci": 0.3},
        {"recipe": "a", "counts": "quick", "vae_steps": 2000, "vae_s": 240.0, "fvm": 0.7, "mig": 0.4, "dci": 0.4, "step_s": 0.12},
    ]
    write_csv(rows, tmp_path / "curve.csv")
    with open(tmp_path / "curve.csv") as handle:
        read = list(csv.DictReader(handle))
    assert [row["vae_s"] for row in read] == ["120.0", "240.0"] and read[0]["step_s"] == "" and read[1]["step_s"] == "0.12"
    plot(rows, tmp_path / "curve.png")
    import matplotlib.pyplot as plt

    figure = plt.gcf()
    labels = [axis.get_xlabel() for axis in figure.axes]
    assert labels.count("group-VAE steps") == 3 and labels.count("group-VAE wall seconds (training only)") == 3
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_evaluate_says_when_the_vae_departs_from_the_published_recipe(tiny_run, tmp_path, capsys):
    tiny = ["--samples", "20", "--pairs", "24", "--vae-steps", "2", "--metric-counts", "quick", "--metric-fraction", "0.01", "--sensor", "random-alexnet"]
    assert main(["evaluate", str(tiny_run), "--out", str(tmp_path), *tiny, "--no-progress", "--vae-resolution", "32", "--vae-schedule", "warmup-cosine"]) == 0
    stored = json.loads((tiny_run / "evaluation.json").read_text())
    distill = stored["fingerprint"]["settings"]["distill"]
    assert (distill["resolution"], distill["schedule"]) == (32, "warmup-cosine")
    printed = capsys.readouterr().out
    assert "group VAE: 32 px VAE (one stride-2 stage fewer than the published 64 px" in printed and "warmup-cosine" in printed
    states = list((tiny_run / "evaluation").glob("group_vae-*.pt"))
    assert any(torch.load(path, weights_only=True)["resolution"] == 32 for path in states)
