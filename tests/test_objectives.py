"""The centre of training, contrafeat.discovery.objectives: what Bi and Pt compare, and how their backward splits a step.

Features come from a fake source (fixed random maps + tanh, in float64) and edits from a fake navigator whose edit
rows are one leaf tensor, so every expected value is computed here by hand from the paper's definitions:
Bi:  q = f(w1 + s d_i) - f(w1), p = f(w2 + s d_i) - f(w2), n = f(w2 + s' d_j) - f(w2)
Pt:  c = f(w + s/2 d_q) - f(w - s/2 d_q), against the features of the (mirrored) prototypes.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from contrafeat.discovery.distributed import Runtime
from contrafeat.discovery.losses import bi_loss, masked_similarity, pt_loss, sample_bi_indices, sample_strengths
from contrafeat.discovery.objectives import BiDraws, ContrastBi, ContrastPt, Objective, PtDraws, RecogDraws, Share, StrengthDraws

NUM_WS, W_DIM, RESOLUTION, K = 3, 4, 4, 5
STAGES = [(3, 2, 2), (2, 4, 4)]  # (C, H, W) of the two feature stages
TOLERANCE = 1e-6
DIFFERENT = 1e-3
"""A mixed-up computation must move the loss by more than this (the loss terms are of order 0.1 to 1)."""
MODES = [("l2", "squared"), ("none", "abs"), ("pooled", "squared")]


class FakeFeatures:
    """Deterministic renders and multi-stage features: image = tanh(code @ A), stage l = tanh(image @ B_l + b_l).

    Counts the codes it renders and the images its sensor sees."""

    def __init__(self, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        pixels = 3 * RESOLUTION * RESOLUTION
        self.to_image = torch.randn(NUM_WS * W_DIM, pixels, generator=generator, dtype=torch.float64) / (NUM_WS * W_DIM) ** 0.5
        self.to_stage = [torch.randn(pixels, c * h * w, generator=generator, dtype=torch.float64) / pixels**0.5 * 2 for c, h, w in STAGES]
        self.bias = [torch.randn(c * h * w, generator=generator, dtype=torch.float64) * 0.5 for c, h, w in STAGES]
        self.rendered = 0
        self.sensed = 0

    def render(self, ws: torch.Tensor) -> torch.Tensor:
        self.rendered += ws.shape[0]
        return torch.tanh(ws.flatten(1).double() @ self.to_image).view(-1, 3, RESOLUTION, RESOLUTION)

    def of_images(self, images: torch.Tensor) -> list[torch.Tensor]:
        self.sensed += images.shape[0]
        flat = images.flatten(1).double()
        return [torch.tanh(flat @ matrix + bias).view(-1, *shape) for matrix, bias, shape in zip(self.to_stage, self.bias, STAGES)]

    def of_codes(self, ws: torch.Tensor) -> list[torch.Tensor]:
        return self.of_images(self.render(ws))


class FakeNavigator:
    """K edit rows [K, L, C], a leaf that requires grad; apply_to adds strength[b] * edits[index[b]]."""

    def __init__(self, seed: int = 1) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.num_directions = K
        self.edits = (torch.randn(K, NUM_WS, W_DIM, generator=generator, dtype=torch.float64) * 0.7).requires_grad_(True)

    def apply_to(self, ws: torch.Tensor, index: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        return ws + strength.reshape(-1, 1, 1) * self.edits[index]


def codes(count: int, seed: int) -> torch.Tensor:
    return torch.randn(count, NUM_WS, W_DIM, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def edit(ws: torch.Tensor, edits: torch.Tensor, index: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """The paper's w + s d_index, written out independently of the navigator's apply_to."""
    return ws + strength[:, None, None] * edits[index]


def change(features: FakeFeatures, after: torch.Tensor, before: torch.Tensor) -> list[torch.Tensor]:
    return [a - b for a, b in zip(features.of_codes(after), features.of_codes(before))]


def share(batches: list[list[int]], total: int, scale=lambda loss: loss) -> Share:
    return Share([torch.tensor(batch) for batch in batches], total, Runtime(), scale)


def gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs())


def far(a: torch.Tensor, b: torch.Tensor) -> bool:
    return gap(a, b) > DIFFERENT


# ---------------------------------------------------------------------------------------------- Bi

BI_UNITS = 4


def bi_case() -> tuple[torch.Tensor, torch.Tensor, BiDraws]:
    w1, w2 = codes(BI_UNITS, 10), codes(BI_UNITS, 11)
    draws = BiDraws(
        direction=torch.tensor([0, 2, 4, 1]),
        other=torch.tensor([3, 0, 1, 2]),
        strength=torch.tensor([1.5, -2.0, 0.8, -1.1], dtype=torch.float64),
        other_strength=torch.tensor([-0.9, 1.7, 2.2, 0.6], dtype=torch.float64),
    )
    return w1, w2, draws


@pytest.mark.parametrize("mask, cos", MODES)
def test_bi_compute_is_bi_loss_of_the_papers_changes(mask: str, cos: str) -> None:
    w1, w2, draws = bi_case()
    objective, features, navigator = ContrastBi(3.0, mask, cos), FakeFeatures(), FakeNavigator()
    units = objective.units(torch.cat([w1, w2]))
    assert torch.equal(units, torch.stack([w1, w2], dim=1))  # unit u holds codes u and u + B/2
    terms = objective.compute(units, draws, navigator, features)
    assert features.rendered == objective.render_count.per_unit(K) * BI_UNITS == 5 * BI_UNITS

    edits, i, j, s, s_other = navigator.edits.detach(), draws.direction, draws.other, draws.strength, draws.other_strength
    query = change(features, edit(w1, edits, i, s), w1)
    positive = change(features, edit(w2, edits, i, s), w2)
    negative = change(features, edit(w2, edits, j, s_other), w2)
    expected = bi_loss(query, positive, negative, mask, cos)
    assert set(terms) == {"contrast"}
    assert gap(terms["contrast"], expected) < TOLERANCE

    # each mix-up of the slices would be caught
    assert far(expected, bi_loss(query, negative, positive, mask, cos))  # positive and negative swapped
    assert far(expected, bi_loss(change(features, edit(w2, edits, i, s), w2), positive, negative, mask, cos))  # query on w2
    assert far(expected, bi_loss(query, change(features, edit(w1, edits, i, s), w2), negative, mask, cos))  # positive's base from w2 edited w1
    assert far(expected, bi_loss(query, positive, change(features, edit(w1, edits, j, s_other), w1), mask, cos))  # negative on w1
    assert far(expected, bi_loss(query, positive, change(features, edit(w2, edits, j, s), w2), mask, cos))  # negative with s, not s'

    validation = objective.validation_terms(units, draws, navigator, features)
    assert gap(validation["contrast"], expected) < TOLERANCE
    for stage in range(len(STAGES)):
        assert gap(validation[f"positive_{stage}"], masked_similarity(query[stage], positive[stage], mask, cos).mean()) < TOLERANCE
        assert gap(validation[f"negative_{stage}"], masked_similarity(query[stage], negative[stage], mask, cos).mean()) < TOLERANCE


def bi_backward(batches: list[list[int]], scale=lambda loss: loss) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    w1, w2, draws = bi_case()
    objective, navigator = ContrastBi(3.0, "l2", "squared"), FakeNavigator()
    terms = objective.backward(torch.stack([w1, w2], dim=1), draws, navigator, FakeFeatures(), share(batches, BI_UNITS, scale))
    assert navigator.edits.grad is not None
    return terms, navigator.edits.grad


def test_bi_backward_of_a_whole_batch_is_the_gradient_of_bi_loss() -> None:
    w1, w2, draws = bi_case()
    features, navigator = FakeFeatures(), FakeNavigator()
    edits, i, j = navigator.edits, draws.direction, draws.other
    query = change(features, edit(w1, edits, i, draws.strength), w1)
    positive = change(features, edit(w2, edits, i, draws.strength), w2)
    negative = change(features, edit(w2, edits, j, draws.other_strength), w2)
    loss = bi_loss(query, positive, negative, "l2", "squared")
    (expected,) = torch.autograd.grad(loss, [edits])

    terms, gradient = bi_backward([[0, 1, 2, 3]])
    assert not terms["contrast"].requires_grad
    assert gap(terms["contrast"], loss.detach()) < TOLERANCE
    assert expected.abs().max() > 1e-2  # a gradient worth comparing
    assert torch.allclose(gradient, expected, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("batches", [[[0, 1], [2, 3]], [[0], [1, 2, 3]], [[0, 1, 2], [3]], [[0], [1], [2], [3]]])
def test_bi_backward_over_micro_batches_equals_the_whole_batch(batches: list[list[int]]) -> None:
    whole_terms, whole = bi_backward([[0, 1, 2, 3]])
    terms, gradient = bi_backward(batches)
    assert set(terms) == set(whole_terms) == {"contrast"}
    assert gap(terms["contrast"], whole_terms["contrast"]) < TOLERANCE
    assert torch.allclose(gradient, whole, atol=TOLERANCE, rtol=0)


def test_bi_backward_of_a_partial_share_weights_by_its_units() -> None:
    """A rank holding units 1..2 of 4 returns half its own mean loss; the shares' terms and gradients add to the whole."""
    whole_terms, whole = bi_backward([[0, 1, 2, 3]])
    first_terms, first = bi_backward([[0], [1]])
    second_terms, second = bi_backward([[2, 3]])
    w1, w2, draws = bi_case()
    units, rows = torch.stack([w1, w2], dim=1), draws.rows(torch.tensor([0, 1]))
    own_mean = ContrastBi(3.0, "l2", "squared").compute(units[:2], rows, FakeNavigator(), FakeFeatures())["contrast"]
    assert gap(first_terms["contrast"], 0.5 * own_mean) < TOLERANCE
    assert gap(first_terms["contrast"] + second_terms["contrast"], whole_terms["contrast"]) < TOLERANCE
    assert torch.allclose(first + second, whole, atol=TOLERANCE, rtol=0)
    assert far(first_terms["contrast"], whole_terms["contrast"])


def test_backward_goes_through_the_share_scale_and_returns_unscaled_terms() -> None:
    terms, gradient = bi_backward([[0, 1], [2, 3]])
    scaled_terms, scaled = bi_backward([[0, 1], [2, 3]], scale=lambda loss: 8.0 * loss)
    assert gap(scaled_terms["contrast"], terms["contrast"]) < TOLERANCE
    assert torch.allclose(scaled, 8.0 * gradient, atol=TOLERANCE, rtol=0)


# ---------------------------------------------------------------------------------------------- Pt

PT_UNITS = 4


def pt_case(mirror: bool) -> tuple[ContrastPt, torch.Tensor, PtDraws]:
    objective = ContrastPt(K, RESOLUTION, 3.0, "l2", "squared", seed=3).double()
    with torch.no_grad():  # patterns well away from tanh's linear start, so the mirror matters
        objective.prototypes.raw.copy_(torch.randn(objective.prototypes.raw.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    draws = PtDraws(torch.tensor([1, 4, 0, 1]), torch.tensor([1.8, -1.2, 2.5, -0.7], dtype=torch.float64), mirror)
    return objective, codes(PT_UNITS, 20), draws


def pt_expected(objective: ContrastPt, ws: torch.Tensor, draws: PtDraws, edits: torch.Tensor, features: FakeFeatures, mask: str, cos: str):
    """The hand-made Pt loss, with the change and prototype features it used."""
    half = draws.strength / 2
    changed = change(features, edit(ws, edits, draws.direction, half), edit(ws, edits, draws.direction, -half))
    prototypes = features.of_images(objective.prototypes.patterns(draws.mirror))
    return pt_loss(changed, prototypes, draws.direction, mask, cos), changed, prototypes


@pytest.mark.parametrize("mirror", [False, True])
@pytest.mark.parametrize("mask, cos", MODES)
def test_pt_compute_is_pt_loss_of_the_papers_change(mirror: bool, mask: str, cos: str) -> None:
    objective, ws, draws = pt_case(mirror)
    objective.mask, objective.cos_mode = mask, cos
    features, navigator = FakeFeatures(), FakeNavigator()
    terms = objective.compute(ws[:, None], draws, navigator, features)
    assert features.rendered == objective.render_count.per_unit(K) * PT_UNITS == 2 * PT_UNITS
    assert features.sensed == 2 * PT_UNITS + K  # the prototypes go through the sensor only

    edits, q = navigator.edits.detach(), draws.direction
    expected, changed, prototypes = pt_expected(objective, ws, draws, edits, features, mask, cos)
    assert set(terms) == {"contrast"}
    assert gap(terms["contrast"], expected) < TOLERANCE

    # a flipped sign is invisible to the (squared or absolute) cosine and the masks ...
    assert gap(pt_loss([-c for c in changed], prototypes, q, mask, cos), expected) < TOLERANCE
    # ... but the half strengths, the mirror coin and the query index are pinned
    one_sided = change(features, edit(ws, edits, q, draws.strength), ws)
    assert far(expected, pt_loss(one_sided, prototypes, q, mask, cos))  # f(w + s d) - f(w)
    other_mirror = features.of_images(objective.prototypes.patterns(not mirror))
    assert far(expected, pt_loss(changed, other_mirror, q, mask, cos))
    assert far(expected, pt_loss(changed, prototypes, (q + 1) % K, mask, cos))
    assert far(expected, pt_loss(changed, prototypes, q.roll(1), mask, cos))  # another unit's query


def pt_backward(batches: list[list[int]], mirror: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, int]:
    objective, ws, draws = pt_case(mirror)
    features, navigator = FakeFeatures(), FakeNavigator()
    terms = objective.backward(ws[:, None], draws, navigator, features, share(batches, PT_UNITS))
    assert navigator.edits.grad is not None and objective.prototypes.raw.grad is not None
    return terms, navigator.edits.grad, objective.prototypes.raw.grad, features.sensed


@pytest.mark.parametrize("mirror", [False, True])
def test_pt_backward_of_a_whole_batch_is_the_gradient_of_pt_loss(mirror: bool) -> None:
    objective, ws, draws = pt_case(mirror)
    navigator = FakeNavigator()
    loss, _, _ = pt_expected(objective, ws, draws, navigator.edits, FakeFeatures(), "l2", "squared")
    expected_edits, expected_raw = torch.autograd.grad(loss, [navigator.edits, objective.prototypes.raw])

    terms, edits, raw, _ = pt_backward([[0, 1, 2, 3]], mirror)
    assert gap(terms["contrast"], loss.detach()) < TOLERANCE
    assert expected_edits.abs().max() > 1e-2 and expected_raw.abs().max() > 1e-3  # gradients worth comparing
    assert torch.allclose(edits, expected_edits, atol=TOLERANCE, rtol=0)
    assert torch.allclose(raw, expected_raw, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("mirror", [False, True])
@pytest.mark.parametrize("batches", [[[0, 1], [2, 3]], [[0], [1, 2, 3]]])
def test_pt_backward_over_micro_batches_equals_the_whole_batch(batches: list[list[int]], mirror: bool) -> None:
    whole_terms, whole_edits, whole_raw, _ = pt_backward([[0, 1, 2, 3]], mirror)
    terms, edits, raw, sensed = pt_backward(batches, mirror)
    assert sensed == 2 * PT_UNITS + K  # the prototypes pass through the sensor once for the whole step
    assert set(terms) == {"contrast"}
    assert gap(terms["contrast"], whole_terms["contrast"]) < TOLERANCE
    assert torch.allclose(edits, whole_edits, atol=TOLERANCE, rtol=0)
    assert whole_raw.abs().max() > 1e-3
    assert torch.allclose(raw, whole_raw, atol=TOLERANCE, rtol=0)


# ---------------------------------------------------------------------------------------------- draws, shares


def test_rows_slices_tensor_fields_and_keeps_per_step_values() -> None:
    index = torch.tensor([2, 0])
    for mirror in (False, True):
        draws = PtDraws(torch.tensor([3, 1, 4]), torch.tensor([0.5, -1.0, 2.0]), mirror)
        rows = draws.rows(index)
        assert type(rows) is PtDraws and rows.mirror is mirror
        assert torch.equal(rows.direction, torch.tensor([4, 3])) and torch.equal(rows.strength, torch.tensor([2.0, 0.5]))
        assert torch.equal(draws.direction, torch.tensor([3, 1, 4]))  # the step's draws are left as they were

    bi = BiDraws(torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0]), torch.tensor([0.1, 0.2, 0.3]), torch.tensor([-0.1, -0.2, -0.3]))
    rows = bi.rows(index)
    assert type(rows) is BiDraws
    expected = {"direction": [2, 0], "other": [0, 1], "strength": [0.3, 0.1], "other_strength": [-0.3, -0.1]}
    for name, values in expected.items():
        assert torch.equal(getattr(rows, name), torch.tensor(values)), name

    strengths = torch.arange(12.0).view(3, 4)  # [U, K]
    assert torch.equal(StrengthDraws(strengths).rows(index).strength, strengths[[2, 0]])
    recog = RecogDraws(torch.tensor([4, 5, 6]), torch.tensor([1.0, 2.0, 3.0])).rows(torch.tensor([1]))
    assert torch.equal(recog.direction, torch.tensor([5])) and torch.equal(recog.strength, torch.tensor([2.0]))
    assert [field.name for field in dataclasses.fields(PtDraws)] == ["direction", "strength", "mirror"]


def test_draws_fill_the_typed_fields_in_order() -> None:
    bi = ContrastBi(3.0, "l2", "squared").draw(64, K, torch.Generator().manual_seed(5))
    i, j, s, s_other = sample_bi_indices(K, 64, torch.Generator().manual_seed(5), 3.0)
    assert torch.equal(bi.direction, i) and torch.equal(bi.other, j) and torch.equal(bi.strength, s) and torch.equal(bi.other_strength, s_other)
    assert bool((bi.other != bi.direction).all())
    rng = torch.Generator().manual_seed(6)
    pt = ContrastPt(K, RESOLUTION, 3.0, "l2", "squared", seed=0).draw(64, K, rng)
    reference = torch.Generator().manual_seed(6)
    assert torch.equal(pt.direction, torch.randint(K, (64,), generator=reference))
    assert torch.equal(pt.strength, sample_strengths(64, reference, 3.0))
    assert type(pt.mirror) is bool and pt.mirror == bool(torch.rand((), generator=reference) < 0.5)


def test_share_weights_and_split() -> None:
    one = share([[0, 1, 2, 3]], 4)
    assert not one.split and one.weight(torch.arange(4)) == 1.0
    two = share([[0], [1, 2, 3]], 4)
    assert two.split and two.weight(torch.tensor([0])) == 0.25 and two.weight(torch.tensor([1, 2, 3])) == 0.75
    assert Share([torch.arange(2)], 4, Runtime(rank=1, world_size=2), lambda loss: loss).split


def test_units_group_the_codes_of_a_unit() -> None:
    ws = codes(7, 30)  # an odd batch: the last code is left out of Bi's units
    units = ContrastBi(3.0, "l2", "squared").units(ws)
    assert units.shape == (3, 2, NUM_WS, W_DIM)
    assert torch.equal(units[:, 0], ws[:3]) and torch.equal(units[:, 1], ws[3:6])
    assert torch.equal(Objective().units(ws)[:, 0], ws)
