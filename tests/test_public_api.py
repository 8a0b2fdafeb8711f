"""The public API shown in the README works as written."""
import torch

import contrafeat
from contrafeat.gan.identity import generator_identity


def test_readme_example_on_shapes3d(tmp_path):
    G = contrafeat.load_generator("shapes3d")
    w = G.mapping(torch.randn(4, G.z_dim), truncation_psi=0.7)
    ws = G.broadcast(w)
    assert w.shape == (4, G.w_dim) and ws.shape == (4, G.num_ws, G.w_dim)
    direction, layer_weights = G.true_edits()[2]
    contrafeat.Directions(direction[None], layer_weights[None], torch.ones(1), "truth", generator_identity(G)).save(tmp_path)
    directions = contrafeat.load_directions(tmp_path)
    directions.check_compatible(G)
    edited = directions.apply(ws, index=0, strength=2.0)
    images = G.synthesis(edited, noise_mode="const")
    assert images.shape == (4, 3, G.img_resolution, G.img_resolution)
    assert images.min() >= -1 and images.max() <= 1
    moved = (G.factors(edited) - G.factors(ws)).abs().mean(0)
    assert int(moved.argmax()) == 2  # the object hue edit moves the object hue
    assert G.discriminator is None and not any(p.requires_grad for p in G.parameters())
