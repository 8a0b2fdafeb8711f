"""benchmarks/discovery_diagnostics.py and discovery_budget.py: the parameterisation check and the study's summary."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from true_edit_directions import true_directions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from discovery_budget import run_rows, summary  # noqa: E402
from discovery_diagnostics import fitted_attention, through_navigator  # noqa: E402

from contrafeat.discovery.navigator import AttentionBranch  # noqa: E402
from contrafeat.discovery.subspace import compute_pca  # noqa: E402


def test_an_attention_the_navigator_can_make_is_fitted_back():
    target = AttentionBranch(4, 10, generator=torch.Generator().manual_seed(3))().detach()
    assert torch.allclose(fitted_attention(target, 10), target, atol=2e-3)


def test_pushing_through_all_of_w_keeps_the_vectors_and_one_pc_keeps_only_its_axis(shapes, one_thread):
    pca = compute_pca(shapes, num_samples=2000, batch_size=1000, progress=False)
    truth = true_directions(shapes)
    whole = through_navigator(truth, pca, shapes.w_dim, project=True, smooth=False)
    assert torch.allclose(whole.vectors, truth.vectors, atol=1e-4) and torch.equal(whole.attention, truth.attention)
    axis = pca.basis[:, 0].float()
    single = through_navigator(truth, pca, 1, project=True, smooth=False)
    assert torch.allclose(single.vectors.abs() / single.vectors.abs().amax(dim=1, keepdim=True), (axis.abs() / axis.abs().max()).expand(6, -1), atol=1e-4)


def fake_run(folder: Path, scores: list[float], found: int, per_step: int = 25) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"renders_per_step": per_step}))
    looks = [{"step": 100 * index, "score": score, "factor_score": score + 0.1, "found": found} for index, score in enumerate(scores)]
    (folder / "validation.jsonl").write_text("".join(json.dumps(look) + "\n" for look in looks))
    folder.with_suffix(".log").write_text("wall 60.0 s\n")
    return folder


def test_the_summary_takes_each_seeds_last_look(tmp_path):
    folders = {("a", 0): fake_run(tmp_path / "a_s0", [0.1, 0.5], 6), ("a", 1): fake_run(tmp_path / "a_s1", [0.2, 0.7], 5)}
    looks = [row for (name, seed), folder in folders.items() for row in run_rows(name, folder, seed)]
    assert [row["renders"] for row in looks] == [0, 2500, 0, 2500]
    (row,) = summary(looks, folders)
    assert row["runs"] == 2 and row["renders"] == 2500 and row["all six found"] == 1 and row["wall s"] == 60.0
    assert row["score"] == pytest.approx((0.6, 2**0.5 * 0.1))
    assert row["factor_score"][0] == pytest.approx(0.7)
