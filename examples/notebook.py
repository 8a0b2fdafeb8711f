# %% [markdown]
# # contrafeat from Python
# Load the built-in learned world, discover directions, look at a traversal, edit a code.
# Each `# %%` block is a notebook cell (VS Code, Jupytext and PyCharm run them one by one);
# `python examples/notebook.py` runs them all and writes the pictures to ./notebook_output.
# A short run (100 steps instead of the preset's 1,500) keeps it under a minute on 2 CPU cores.

# %%
import logging
from pathlib import Path

import torch

import contrafeat
from contrafeat.gan.interface import seeded_codes
from contrafeat.viz.images import image_grid, to_pil
from contrafeat.viz.traversal import traversal_images

logging.basicConfig(level=logging.INFO, format="%(message)s")  # show what discover() logs; leave out for a quiet run
out = Path("notebook_output")
out.mkdir(exist_ok=True)

# %% The generator: a zoo name or a checkpoint path (NVIDIA .pkl, rosinality .pt, a native folder)
G = contrafeat.load_generator("shapes3d-learned")
print(f"W has {G.w_dim} dimensions over {G.num_ws} layers; images are {G.img_resolution} px")

# %% Discover: any option of `contrafeat discover` by its Python name; out=None trains in memory
directions = contrafeat.discover(G, steps=100, pca_samples=50_000, out=None, progress=False)
assert directions is not None  # a single process holds the result
print(f"{directions.count} directions; the layers each one mostly edits:")
for index in range(directions.count):
    print(f"  {index}: layers {directions.dominant_layers(index)} at strength {float(directions.strengths[index]):.2f}")

# %% A traversal: rows are samples, columns walk from -s to +s along direction 0
codes = seeded_codes(G, 3, seed=0, truncation_psi=0.7)  # [3, L, C]
strength = float(directions.strengths[0])
frames = traversal_images(G, directions, 0, codes, torch.linspace(-strength, strength, 7))  # [3 * 7, 3, H, W]
traversal = to_pil(image_grid(frames, columns=7))
traversal.save(out / "traversal_0.png")
traversal  # noqa: B018 (a notebook shows the picture here)

# %% An edit: two directions at once on one code, before and after
code = codes[:1]
edited = directions.apply(directions.apply(code, 1, 1.5), 2, -1.5)
with torch.no_grad():
    pair = torch.cat([G.synthesis(code, noise_mode="const"), G.synthesis(edited, noise_mode="const")])
before_after = to_pil(image_grid(pair, columns=2))
before_after.save(out / "edit.png")
before_after  # noqa: B018

# %% Keep the directions: the same artefact `contrafeat discover` writes, loadable anywhere
directions.save(out / "directions")
again = contrafeat.Directions.load(out / "directions")
again.check_compatible(G)  # the same generator: its identity and W+ shape match
print(f"saved and loaded {again.count} directions found by {again.method}")
