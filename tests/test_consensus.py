"""`contrafeat consensus`: directions of several runs matched by what they do, without labels."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_world import TinyGenerator, TinySensor
from true_edit_directions import true_directions

from contrafeat.cli import main
from contrafeat.discovery.directions import Directions, load_directions
from contrafeat.evaluation.consensus import (
    consensus_directions,
    consensus_groups,
    direction_purity,
    edit_signatures,
    effect_signatures,
    match_runs,
    purity_ranking,
    spearman,
    stability_table,
)
from contrafeat.evaluation.true_edits import read_projectors
from contrafeat.gan.interface import seeded_codes

pytestmark = pytest.mark.usefixtures("one_thread")

FACTORS = 6
NOISE = 3


def shuffled(directions: Directions, order: list[int], flipped: list[int]) -> Directions:
    """The directions in another order, the listed positions (of the new order) pointing the other way."""
    signs = torch.tensor([-1.0 if position in flipped else 1.0 for position in range(len(order))])
    return Directions(
        directions.vectors[order] * signs[:, None], directions.attention[order], directions.strengths[order], "truth", directions.generator_id
    )


def noise_edits(shapes, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Seeded random (vector, attention) rows: directions no other run holds."""
    generator = torch.Generator().manual_seed(7)
    return [(torch.randn(shapes.w_dim, generator=generator), torch.rand(shapes.num_ws, generator=generator)) for _ in range(count)]


@pytest.fixture(scope="module")
def runs(shapes) -> list[Directions]:
    """Three runs holding the six true edits (shuffled, some flipped); the second also holds three noise directions."""
    with_noise = true_directions(shapes, extra=noise_edits(shapes, NOISE))
    return [
        true_directions(shapes),
        shuffled(with_noise, [8, 3, 0, 6, 5, 7, 1, 2, 4], flipped=[1, 2, 5]),
        shuffled(true_directions(shapes), [5, 4, 3, 2, 1, 0], flipped=[0, 4]),
    ]


@pytest.fixture(scope="module")
def effects(shapes, runs) -> list[torch.Tensor]:
    codes = seeded_codes(shapes, 6, seed=0, truncation_psi=0.5)
    return [effect_signatures(shapes, directions, TinySensor(), codes) for directions in runs]


def test_effect_signatures_are_pooled_changes_that_flip_with_the_direction(shapes, runs, effects):
    assert effects[0].shape == (FACTORS, 6 * (8 + 8))  # 6 codes x (8 + 8 pooled channels of the two stages)
    position = [8, 3, 0, 6, 5, 7, 1, 2, 4].index(0)  # floor hue in the second run, flipped there
    assert torch.allclose(effects[1][position], -effects[0][0], atol=1e-6)
    assert edit_signatures(runs[0]).shape == (FACTORS, shapes.num_ws * shapes.w_dim)


@pytest.mark.parametrize("kind", ["effect", "edit"])
def test_true_edits_are_found_in_every_run_and_noise_in_its_own_only(kind, runs, effects):
    signatures = effects if kind == "effect" else [edit_signatures(directions) for directions in runs]
    matching = match_runs(signatures)
    assert matching.found_in(0).tolist() == [3] * FACTORS and matching.found_in(2).tolist() == [3] * FACTORS
    order = [8, 3, 0, 6, 5, 7, 1, 2, 4]
    noisy = [order.index(index) for index in range(FACTORS, FACTORS + NOISE)]
    found = matching.found_in(1)
    assert [int(found[position]) for position in noisy] == [1] * NOISE
    assert sorted(found.tolist()) == [1] * NOISE + [3] * FACTORS
    stability = matching.stability(1)
    assert torch.allclose(matching.stability(0), torch.ones(FACTORS, dtype=torch.float64))
    assert max(float(stability[position]) for position in noisy) < 0.95


def test_the_consensus_holds_the_true_edits_first(shapes, runs, effects):
    groups = consensus_groups(match_runs(effects))
    consensus = consensus_directions(runs, groups)
    assert consensus.count == FACTORS + NOISE and consensus.method == "consensus" and consensus.names == [None] * consensus.count
    assert consensus.generator_id == runs[0].generator_id
    truth = true_directions(shapes).edits().flatten(1)
    cosines = torch.nn.functional.normalize(consensus.edits().flatten(1), dim=1) @ torch.nn.functional.normalize(truth, dim=1).T
    best = cosines.abs().max(dim=1)
    assert sorted(best.indices[:FACTORS].tolist()) == list(range(FACTORS))
    assert torch.allclose(best.values[:FACTORS], torch.ones(FACTORS), atol=1e-5) and (best.values[FACTORS:] < 0.9).all()
    assert [len(group.members) for group in groups] == [3] * FACTORS + [1] * NOISE
    floor = next(group for group in groups if (0, 0) in group.members)
    assert dict(zip(floor.members, floor.signs))[1, 2] == -dict(zip(floor.members, floor.signs))[0, 0]


def test_a_match_must_be_mutual_and_reach_the_threshold():
    first = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.2, 0.0], [0.0, 0.0, 1.0]])  # two near-duplicates and a third
    second = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]])
    matching = match_runs([first, second], threshold=0.9)
    assert matching.partners(0, 1).tolist() == [0, -1, -1]  # the duplicate is not the best back; 0.8 < 0.9
    assert matching.found_in(0).tolist() == [2, 1, 1] and matching.found_in(1).tolist() == [2, 1]
    assert match_runs([first, second], threshold=0.75).found_in(0).tolist() == [2, 1, 2]
    assert matching.stability(1)[1] == pytest.approx(0.8)
    rows = stability_table(matching, ["a", "b"], consensus_groups(matching))
    assert rows[0] == {"run": "a", "index": 0, "found_in": 2, "stability": 1.0, "consensus": 0}
    assert [row["consensus"] for row in rows] == [0, 1, 2, 0, 3]  # singletons by stability: a1 0.98, then a2 and b1 0.8


def test_stability_ranks_the_pure_directions_first(shapes, runs, effects):
    matchings = {"effect": match_runs(effects), "edit": match_runs([edit_signatures(directions) for directions in runs])}
    ranking = purity_ranking(shapes, runs, matchings)
    assert ranking is not None and ranking.keys() == {"effect", "edit"}
    assert ranking["effect"] > 0.5 and ranking["edit"] > 0.5
    assert purity_ranking(TinyGenerator(), runs, matchings) is None
    assert spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 5.0, 9.0])) == pytest.approx(1.0)
    assert spearman(torch.ones(3), torch.tensor([3.0, 5.0, 9.0])) is None


def test_a_direction_that_moves_nothing_has_purity_zero(shapes):
    null = torch.randn(shapes.w_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for projector in read_projectors(shapes):  # what no layer reads: the factors move by float noise only
        null = null - projector @ null
    uniform = torch.full((shapes.num_ws,), 1.0 / shapes.num_ws)
    purity = direction_purity(shapes, true_directions(shapes, rows=[0], extra=[(null.float() / null.norm().float() * 8, uniform)]))
    assert purity.tolist() == pytest.approx([1.0, 0.0])


def write_run(folder: Path, directions: Directions) -> Path:
    """A run folder as `contrafeat discover` leaves it, as far as consensus reads it."""
    directions.save(folder)
    (folder / "config.yaml").write_text("checkpoint: shapes3d\n")
    return folder


@pytest.fixture
def run_folders(runs, tmp_path, isolated_cache) -> list[Path]:
    return [write_run(tmp_path / f"run{number}", directions) for number, directions in enumerate(runs)]


def test_consensus_prints_the_table_and_writes_the_artefact(run_folders, tmp_path, capsys):
    out = tmp_path / "consensus"
    assert main(["consensus", *map(str, run_folders), "--out", str(out), "--samples", "3", "--sensor", "random-alexnet"]) == 0
    printed = capsys.readouterr()
    assert "| run | index | found_in | stability | consensus |" in printed.out
    assert f"| {run_folders[0]} | 0 | 3 of 3 | 1.000 | " in printed.out and printed.out.count("| 1 of 3 |") == NOISE
    assert "Spearman of stability with exact-factor purity, by matching: effect " in printed.out and ", edit " in printed.out
    assert f"consensus: {out} ({FACTORS + NOISE} directions, {FACTORS} found in every run)" in printed.err
    consensus = load_directions(out)
    assert consensus.count == FACTORS + NOISE and consensus.method == "consensus"
    result = json.loads((out / "consensus.json").read_text())
    assert result["runs"] == list(map(str, run_folders)) and result["match"] == "effect" and result["threshold"] == 0.8
    assert len(result["directions"]) == 2 * FACTORS + FACTORS + NOISE
    assert [group["found_in"] for group in result["groups"]] == [3] * FACTORS + [1] * NOISE
    assert result["spearman"].keys() == {"effect", "edit"} and result["spearman"]["effect"] > 0.5


def test_consensus_can_match_by_the_edits(run_folders, tmp_path, capsys):
    out = tmp_path / "by_edit"
    folders = [str(run_folders[0]), str(run_folders[2])]
    assert main(["consensus", *folders, "--out", str(out), "--match", "edit", "--samples", "2", "--sensor", "random-alexnet"]) == 0
    result = json.loads((out / "consensus.json").read_text())
    assert result["match"] == "edit" and [group["found_in"] for group in result["groups"]] == [2] * FACTORS
    assert load_directions(out).count == FACTORS


def error_line(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_consensus_bad_input_is_one_line(run_folders, tmp_path, capsys):
    out = ["--out", str(tmp_path / "out")]
    assert "consensus needs at least 2 run folders, got 1" in error_line(["consensus", str(run_folders[0]), *out], capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert f"{empty}: no directions.safetensors there" in error_line(["consensus", str(run_folders[0]), str(empty), *out], capsys)
    meta_path = run_folders[2] / "directions.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "generator_id": "0123456789abcdef"}))
    line = error_line(["consensus", *map(str, run_folders), *out], capsys)
    assert f"{run_folders[2]}: found on generator 0123456789abcdef, but {run_folders[0]} on generator" in line
    line = error_line(["consensus", *map(str, run_folders[:2]), "--out", str(run_folders[1])], capsys)
    assert line == f"contrafeat: error: --out {run_folders[1]}: already holds directions.safetensors; choose another folder"
    assert "--threshold 2: expected a number in [0, 1]" in error_line(["consensus", *map(str, run_folders[:2]), *out, "--threshold", "2"], capsys)
    assert not (tmp_path / "out").exists()
