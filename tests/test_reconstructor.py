"""Recog's reconstructor learns to name the shapes3d world's true edits from image pairs.

The directions are the generator's six exact per-factor edits, fixed; only the reconstructor trains,
with Recog's loss and its own Adam as the recog method builds it, at the default --recog-lr (1e-3; the
reference's 1e-4 reaches only ~0.75 held-out accuracy in this short budget, 1e-3 ~0.95).
The world is rendered at 32 px to keep the test short. Steps below 0.15 in size barely change some
factors, so accuracy is judged on larger ones.
"""
import pytest
import torch

from contrafeat.discovery.config import build_config
from contrafeat.discovery.losses import sample_strengths
from contrafeat.discovery.objectives import Recog
from contrafeat.shapes3d.linear_generator import ShapesGenerator
from contrafeat.shapes3d.truth import true_edit_tensor

HELD_OUT = 128
MIN_STRENGTH = 0.15


@pytest.fixture(scope="module")
def pairs() -> tuple[torch.Tensor, ...]:
    """640 pairs (image, image after true edit k at strength s), k and s; the last HELD_OUT are held out."""
    generator = ShapesGenerator(img_resolution=32).eval()
    edits = true_edit_tensor(generator)
    config = build_config("shapes3d", None, {"method": "recog"})
    rng = torch.Generator().manual_seed(0)
    count = 640
    w = generator.mapping(torch.randn(count, generator.z_dim, generator=rng))
    ws = generator.broadcast(w)
    index = torch.randint(edits.shape[0], (count,), generator=rng)
    strength = sample_strengths(count, rng, config.strength_range)
    with torch.no_grad():
        images = generator.synthesis(ws)
        edited = generator.synthesis(ws + strength[:, None, None] * edits[index])
    return images, edited, index, strength


def train_and_score(pairs, train_count: int, epochs: int) -> float:
    """Held-out accuracy on strengths of at least MIN_STRENGTH."""
    images, edited, index, strength = pairs
    config = build_config("shapes3d", None, {"method": "recog"})
    recog = Recog(6, config.strength_range, config.recog_strength_weight, config.recog_width, config.recog_depth, 0, config.recog_lr)
    parameters, lr = recog.own_optimisers()["reconstructor"]
    optimiser = torch.optim.Adam(parameters, lr=lr, betas=(config.beta1, config.beta2))
    order = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        for batch in torch.randperm(train_count, generator=order).split(16):
            terms = recog.loss(images[batch], edited[batch], index[batch], strength[batch])
            optimiser.zero_grad()
            sum(terms.values()).backward()
            optimiser.step()
    with torch.no_grad():
        logits, _ = recog.reconstructor(images[-HELD_OUT:], edited[-HELD_OUT:])
    visible = strength[-HELD_OUT:].abs() >= MIN_STRENGTH
    correct = logits.argmax(dim=1) == index[-HELD_OUT:]
    return float(correct[visible].float().mean())


def test_reconstructor_recognises_the_true_edits(pairs):
    assert train_and_score(pairs, train_count=len(pairs[0]) - HELD_OUT, epochs=24) > 0.9  # chance: 1/6
